"""Canary divergence: do the canary's predicted classes differ from the live version's on the same traffic?

A verdict of divergence needs a significant test AND a large enough effect, as the drift checks do: Fisher's exact
test for two classes (Pearson's chi-square, sparse classes pooled, for more), and Cohen's h of the class shares.
numpy and math only (the control function carries no scipy); checked against scipy in
tests/unit/test_reference_canary.py. Formulas, references and figures: docs/statistics.md, "Canary divergence".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlops.core.schemas import CanaryPolicy
from mlops.stats.distributions import pooled_chi_square

# Tables whose probability is within this relative distance of the observed one count as "as extreme" (R's
# fisher.test uses 1 + 1e-7): mirror-image tables have equal probabilities that rounding must not split.
FISHER_RELATIVE_TOLERANCE = 1e-7


def fisher_exact(table: Any) -> float:
    """Two-sided p-value of Fisher's exact test of a 2 x 2 table of counts [[a, b], [c, d]] (rows: samples,
    columns: classes): the probability, under the hypergeometric law of `a` given the table's margins, of every
    table at most as probable as the observed one (Fisher 1935; Agresti, *Categorical Data Analysis*, 3rd ed.,
    §3.5). Probabilities come from the ratio of consecutive hypergeometric terms, summed in log space, so any
    count the captures can hold is exact to about 1e-12. Equals `scipy.stats.fisher_exact(table).pvalue`.

    A table with an empty row or column has one possible table: p = 1. Raises ValueError for a table that is not
    2 x 2 or holds negative, fractional or non-finite counts."""
    counts = _counts_table(table)
    (a, b), (c, d) = counts.tolist()
    rows, positives, total = a + b, a + c, a + b + c + d
    low, high = max(0, rows - (total - positives)), min(rows, positives)
    if low == high:
        return 1.0
    k = np.arange(low, high, dtype=np.float64)
    # P(k + 1) / P(k) for the hypergeometric law of a: (K - k)(n - k) / ((k + 1)(N - K - n + k + 1)).
    log_ratio = (np.log(positives - k) + np.log(rows - k) - np.log(k + 1.0)
                 - np.log(total - positives - rows + k + 1.0))
    log_terms = np.concatenate(([0.0], np.cumsum(log_ratio)))
    log_terms -= log_terms.max()
    terms = np.exp(log_terms)
    observed = log_terms[a - low]
    extreme = log_terms <= observed + math.log1p(FISHER_RELATIVE_TOLERANCE)
    return min(1.0, float(terms[extreme].sum() / terms.sum()))


def cohens_h(live_counts: Any, canary_counts: Any) -> float:
    """Cohen's h between two class distributions given as counts over the same classes: for two classes
    |2 asin(sqrt(q)) - 2 asin(sqrt(p))| over the positive shares p (live) and q (canary) (Cohen, *Statistical
    Power Analysis for the Behavioral Sciences*, 2nd ed., 1988, §6.2: 0.2 small, 0.5 medium, 0.8 large). For k
    classes it is twice the Bhattacharyya angle arccos(sum_j sqrt(p_j q_j)), which equals h for k = 2, computed
    as 4 asin(||sqrt(p) - sqrt(q)|| / 2) (no cancellation near 0). Range 0 (identical) .. pi (disjoint). Raises
    ValueError for mismatched lengths, negative or non-finite counts, or an empty side."""
    p, q = np.asarray(live_counts, np.float64), np.asarray(canary_counts, np.float64)
    if p.ndim != 1 or p.shape != q.shape:
        raise ValueError(f"class counts must be two vectors of one length, got shapes {p.shape} and {q.shape}")
    if not (np.isfinite(p).all() and np.isfinite(q).all()) or (p < 0).any() or (q < 0).any():
        raise ValueError("class counts must be finite and non-negative")
    if p.sum() == 0 or q.sum() == 0:
        raise ValueError("Cohen's h needs at least one prediction on each side")
    distance = float(np.linalg.norm(np.sqrt(p / p.sum()) - np.sqrt(q / q.sum())))
    return min(math.pi, 4.0 * math.asin(min(1.0, distance / 2.0)))


def judged_steps(policy: CanaryPolicy) -> int:
    """How many canary checks judge divergence in one rollout: one per step below 100 (the last step, 100, is the
    promotion). Each tests at `divergence_pvalue / judged_steps` (Bonferroni), so an identical model is rolled
    back with probability at most `divergence_pvalue` over the whole rollout."""
    return max(1, sum(1 for step in policy.steps if step < 100))


def prediction_divergence(live_labels: np.ndarray, canary_labels: np.ndarray, policy: CanaryPolicy
                          ) -> dict[str, Any]:
    """Judge whether the canary's predicted classes diverge from the live version's in one bake window.

    live_labels, canary_labels: int class indices (0 = negative, 1 = positive, ...), one per captured prediction.
    Returns `status` "insufficient_data" (fewer than `policy.min_requests` predictions on either side: no
    verdict) or "checked" with `test` ("fisher_exact" for two classes, "chi_square" for more), `p_value`, `alpha`
    (= divergence_pvalue / judged steps), `cohens_h`, `min_cohens_h`, the class counts and positive rates, and
    `diverged`: p_value < alpha AND cohens_h >= min_cohens_h. `summary` says why in words. Raises ValueError for
    negative or non-integer labels."""
    live, canary = _labels(live_labels, "live"), _labels(canary_labels, "canary")
    result: dict[str, Any] = {"live_predictions": int(live.size), "canary_predictions": int(canary.size)}
    if min(live.size, canary.size) < policy.min_requests:
        return {**result, "status": "insufficient_data", "diverged": None,
                "summary": f"{canary.size} canary and {live.size} live predictions; {policy.min_requests} needed "
                           "on each side to judge divergence"}
    classes = max(2, int(max(live.max(), canary.max())) + 1)
    live_counts, canary_counts = np.bincount(live, minlength=classes), np.bincount(canary, minlength=classes)
    alpha = policy.divergence_pvalue / judged_steps(policy)
    if classes == 2:
        test, p_value = "fisher_exact", fisher_exact(np.vstack([live_counts, canary_counts]))
    else:
        test, (_, p_value, _) = "chi_square", pooled_chi_square(live_counts, canary_counts)
    h = cohens_h(live_counts, canary_counts)
    significant, large = p_value < alpha, h >= policy.divergence_min_cohens_h
    rates = {"canary": float(canary_counts[1] / canary.size), "live": float(live_counts[1] / live.size)}
    name = "Fisher's exact" if test == "fisher_exact" else "chi-square"
    verdict = (f"positive rate {rates['canary']:.1%} vs {rates['live']:.1%} on {canary.size} vs {live.size} "
               f"predictions: Cohen's h {h:.3f} {'>=' if large else '<'} {policy.divergence_min_cohens_h:g}, "
               f"{name} p {p_value:.3g} {'<' if significant else '>='} {alpha:.3g}")
    return {**result, "status": "checked", "test": test, "p_value": p_value, "alpha": alpha, "cohens_h": h,
            "min_cohens_h": policy.divergence_min_cohens_h, "positive_rate": rates,
            "class_counts": {"canary": canary_counts.tolist(), "live": live_counts.tolist()},
            "diverged": bool(significant and large), "summary": verdict}


def _labels(values: np.ndarray, side: str) -> np.ndarray:
    labels = np.asarray(values)
    if labels.size == 0:
        return labels.astype(np.int64).ravel()
    if labels.dtype.kind not in "iu" or labels.min() < 0:
        raise ValueError(f"{side} predictions must be class indices (integers >= 0)")
    return labels.astype(np.int64).ravel()


def _counts_table(table: Any) -> np.ndarray:
    values = np.asarray(table, dtype=np.float64)
    if values.shape != (2, 2):
        raise ValueError(f"Fisher's exact test needs a 2 x 2 table, got shape {values.shape}")
    if not np.isfinite(values).all() or (values < 0).any() or (values != np.round(values)).any():
        raise ValueError("a contingency table holds non-negative whole counts")
    return values.astype(np.int64)
