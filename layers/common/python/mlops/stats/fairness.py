"""Fairness of a candidate's holdout decisions across the groups of a sensitive attribute: demographic parity and
equal opportunity differences, judged only on groups large enough to measure, and the gate's fairness checks.

Definitions follow fairlearn (`demographic_parity_difference`, `equal_opportunity_difference`, between groups);
tests/unit/test_reference_fairness.py compares them with fairlearn. Rules and conventions: docs/statistics.md,
"Fairness".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops.core.schemas import GatePolicy

# Groups carried in the pipeline state (and the version's lineage): the largest ones, plus those that set the
# figures; the full per-group table goes to the artifact store (Step Functions' state limit is 256 KB).
MAX_GROUPS_IN_STATE = 50

CHECKED, INSUFFICIENT_DATA = "checked", "insufficient_data"


def fairness_not_checked(reason: str) -> dict[str, Any]:
    """The fairness figures of a candidate that has no sensitive attribute to check: no check, and why."""
    return {"checked": False, "status": "not_checked", "reason": reason}


def fairness_metrics(y: np.ndarray, labels: np.ndarray, groups: np.ndarray, favorable: int, *,
                     min_group_size: int = 30, attribute: str | None = None,
                     favorable_label: Any = None) -> dict[str, Any]:
    """Demographic parity difference and equal opportunity difference of holdout decisions across the groups of a
    sensitive attribute, each judged on the groups whose rate is measured on at least `min_group_size` rows.

    y: true class indices, shape (rows,); labels: decided class indices (at the family's threshold), shape (rows,);
    groups: the sensitive attribute's value per row, shape (rows,) (compared as text); favorable: the class index
    of the favourable outcome.

    Per group: `rows`, `favorable_rate` = P(label = favorable | group) (fairlearn's selection rate),
    `true_favorable_rows` and `true_favorable_rate` = P(label = favorable | group, y = favorable) (fairlearn's
    true positive rate with pos_label = favorable; None when the group has no truly favourable row).
    `demographic_parity_difference` = max - min favourable rate over the groups of at least `min_group_size`
    rows; `equal_opportunity_difference` = max - min true favourable rate over the groups with at least
    `min_group_size` truly favourable rows. With every group qualifying both equal fairlearn's (between_groups).
    Fewer than two qualifying groups: the difference is None and its `status` "insufficient_data" with the reason
    (a constant attribute, or groups too small), never 0.0.

    Convention on a group without truly favourable rows: fairlearn scores its true positive rate 0 (scikit-learn's
    zero-division fill), which turns a rate that does not exist into the largest possible gap; here the rate is
    None and the group is left out of equal opportunity, as any group whose rate rests on too few rows.

    Raises ValueError for arrays of different lengths or non-integer class indices."""
    y, labels = _indices(y, "y"), _indices(labels, "labels")
    values = np.asarray(groups).astype(str).ravel()
    if not (y.size == labels.size == values.size):
        raise ValueError(f"y, labels and groups must have one value per row, got {y.size}, {labels.size} and "
                         f"{values.size}")
    names, inverse = np.unique(values, return_inverse=True)
    truly = y == favorable
    decided = labels == favorable
    rows = np.bincount(inverse, minlength=names.size)
    favourable_decisions = np.bincount(inverse, weights=decided, minlength=names.size)
    true_rows = np.bincount(inverse, weights=truly, minlength=names.size).astype(np.int64)
    true_decisions = np.bincount(inverse, weights=truly & decided, minlength=names.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = favourable_decisions / rows
        true_rate = np.where(true_rows > 0, true_decisions / np.maximum(true_rows, 1), np.nan)
    in_parity = rows >= min_group_size
    in_opportunity = true_rows >= min_group_size
    dp = _spread("demographic parity", names, rate, in_parity, rows, min_group_size, "rows")
    eo = _spread("equal opportunity", names, true_rate, in_opportunity, true_rows, min_group_size,
                 "truly favourable rows")
    per_group = {
        str(name): {"rows": int(rows[i]), "favorable_rate": float(rate[i]), "true_favorable_rows": int(true_rows[i]),
                    "true_favorable_rate": None if np.isnan(true_rate[i]) else float(true_rate[i]),
                    "in_parity": bool(in_parity[i]), "in_opportunity": bool(in_opportunity[i])}
        for i, name in enumerate(names)}
    small = ~in_parity
    return {
        "checked": True, "status": CHECKED if dp["status"] == eo["status"] == CHECKED else INSUFFICIENT_DATA,
        "sensitive_attribute": attribute, "favorable_label": favorable_label, "favorable_index": int(favorable),
        "min_group_size": int(min_group_size), "rows": int(y.size),
        "demographic_parity_difference": dp.pop("difference"), "demographic_parity": dp,
        "equal_opportunity_difference": eo.pop("difference"), "equal_opportunity": eo,
        "groups_total": int(names.size), "small_groups": int(small.sum()), "small_group_rows": int(rows[small].sum()),
        "groups": per_group,
    }


def fairness_for_state(fairness: dict[str, Any], detail: dict[str, Any] | None = None,
                       max_groups: int = MAX_GROUPS_IN_STATE) -> dict[str, Any]:
    """The fairness figures with at most `max_groups` largest groups (plus the groups that set the highest and
    lowest rates), so a high-cardinality attribute cannot outgrow the pipeline state; `groups_omitted` counts the
    rest and `detail` (an artifact reference) holds every group."""
    groups = fairness.get("groups")
    if not isinstance(groups, dict):
        return dict(fairness)
    largest = sorted(groups, key=lambda name: (-groups[name]["rows"], name))[:max_groups]
    extremes = [fairness.get(k, {}).get(side) for k in ("demographic_parity", "equal_opportunity")
                for side in ("highest", "lowest")]
    kept = dict.fromkeys(largest + [name for name in extremes if name in groups])
    return {**fairness, "groups": {name: groups[name] for name in kept}, "groups_omitted": len(groups) - len(kept),
            "detail": detail}


def fairness_checks(policy: GatePolicy, fairness: dict[str, Any]) -> list[dict[str, Any]]:
    """The gate's fairness checks, each {"check", "value", "threshold", "passed", "detail", "status"}.

    - No sensitive attribute (fairness["checked"] False): no checks; `fairness_notes` says why.
    - A difference with status "insufficient_data" (fewer than two groups of `min_group_size`): value None,
      passed True, status "insufficient_data", the reason in `detail`. Too little data is reported, never
      counted as a measured 0.0, and does not reject a candidate on its own.
    - Otherwise passed when the difference is at most the policy's maximum."""
    if fairness.get("checked") is False:
        return []
    checks = []
    size = fairness.get("min_group_size", policy.min_group_size)
    for name, key, maximum, what, small in (
            ("demographic_parity_difference", "demographic_parity", policy.max_demographic_parity_difference,
             "favourable-rate spread", f"under {size} rows"),
            ("equal_opportunity_difference", "equal_opportunity", policy.max_equal_opportunity_difference,
             "true-favourable-rate spread", f"with under {size} truly favourable rows")):
        value = fairness.get(name)
        spread = fairness.get(key) or {}
        if value is None:
            checks.append({"check": name, "value": None, "threshold": maximum, "passed": True,
                           "status": INSUFFICIENT_DATA,
                           "detail": f"{what}: insufficient data, not checked: "
                                     f"{spread.get('reason') or 'no figure was computed'}"})
            continue
        compared = spread.get("groups_compared")
        among = f" across {compared} groups" if compared else ""
        extremes = (f" (highest {spread['highest']!r} {spread['highest_rate']:.4f}, lowest {spread['lowest']!r} "
                    f"{spread['lowest_rate']:.4f})" if spread.get("highest") is not None else "")
        left_out = f"; {spread['groups_left_out']} groups {small} not compared" if spread.get("groups_left_out") \
            else ""
        checks.append({"check": name, "value": value, "threshold": maximum, "passed": bool(value <= maximum),
                       "status": CHECKED,
                       "detail": f"{what}{among} {value:.4f}{extremes} vs maximum {maximum}{left_out}"})
    return checks


def fairness_notes(fairness: dict[str, Any]) -> list[str]:
    """Sentences for the gate decision's notes: why fairness was not checked, or which figure lacked data."""
    if fairness.get("checked") is False:
        return ["fairness not checked: " + str(fairness.get("reason") or "the family declares no sensitive "
                                                                          "attribute")]
    return [f"{key.replace('_', ' ')}: insufficient data: {spread.get('reason')}"
            for key in ("demographic_parity", "equal_opportunity")
            if (spread := fairness.get(key) or {}).get("status") == INSUFFICIENT_DATA]


def _spread(title: str, names: np.ndarray, rate: np.ndarray, qualifies: np.ndarray, sizes: np.ndarray,
            min_size: int, unit: str) -> dict[str, Any]:
    """max - min of `rate` over the qualifying groups, or why there is no figure."""
    compared = np.flatnonzero(qualifies)
    left_out = int(names.size - compared.size)
    if compared.size >= 2:
        values = rate[compared]
        high, low = compared[int(np.argmax(values))], compared[int(np.argmin(values))]
        return {"status": CHECKED, "difference": float(rate[high] - rate[low]), "groups_compared": int(compared.size),
                "groups_left_out": left_out, "highest": str(names[high]), "highest_rate": float(rate[high]),
                "lowest": str(names[low]), "lowest_rate": float(rate[low]), "reason": None}
    if names.size == 0:
        reason = "the holdout has no rows"
    elif names.size == 1:
        reason = f"the sensitive attribute has one value in the holdout ({str(names[0])!r}): nothing to compare"
    else:
        order = np.argsort(-sizes, kind="stable")[:5]
        largest = ", ".join(f"{str(names[i])!r} {int(sizes[i])}" for i in order)
        reason = (f"{compared.size} of {names.size} groups have at least {min_size} {unit}; {title} needs two "
                  f"(largest: {largest})")
    return {"status": INSUFFICIENT_DATA, "difference": None, "groups_compared": int(compared.size),
            "groups_left_out": left_out, "highest": None, "lowest": None, "reason": reason}


def _indices(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values).ravel()
    if array.size and array.dtype.kind not in "iub":
        raise ValueError(f"{name} must be class indices (integers), got dtype {array.dtype}")
    return array.astype(np.int64)
