"""Offline evaluation of an ONNX candidate: metrics, ONNX/sklearn parity, fairness, and the gate decision."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops.core.schemas import LOWER_IS_BETTER, REGRESSION, GatePolicy, Label, label_text, same_label
from mlops.stats.fairness import fairness_checks, fairness_notes
from mlops.stats.fairness import fairness_metrics as fairness_metrics
from mlops.stats.metrics import classification_metrics as classification_metrics
from mlops.stats.metrics import label_metrics, multiclass_metrics, regression_metrics
from mlops.stats.metrics import roc_auc as roc_auc


def parity(onnx_proba: np.ndarray, onnx_labels: np.ndarray, sklearn_proba: np.ndarray,
           sklearn_labels: np.ndarray, tolerance: float) -> dict[str, Any]:
    """Does the served artifact reproduce the trained model? Max abs probability gap and label mismatches
    (probabilities [rows, k], binary or multiclass; labels: the index of the largest probability)."""
    if onnx_proba.shape != sklearn_proba.shape:
        return {"ok": False, "max_abs_diff": None, "label_mismatches": None,
                "reason": f"shape {onnx_proba.shape} != {sklearn_proba.shape}"}
    gap = float(np.max(np.abs(onnx_proba.astype(np.float64) - sklearn_proba)))
    mismatches = int((onnx_labels.astype(np.int64) != sklearn_labels).sum())
    # A label may legitimately differ only where the two largest probabilities tie within the tolerance (binary:
    # p1 within the tolerance of 0.5).
    top = np.sort(sklearn_proba, axis=1)
    near_boundary = top[:, -1] - top[:, -2] <= 2 * tolerance
    real_mismatches = int(((onnx_labels != sklearn_labels) & ~near_boundary).sum())
    return {"ok": gap <= tolerance and real_mismatches == 0, "max_abs_diff": gap, "label_mismatches": mismatches,
            "tolerance": tolerance}


TRIVIAL_METRICS = ("balanced_accuracy", "recall", "f1")


def label_metric(name: str, y: np.ndarray, labels: np.ndarray) -> float:
    """balanced_accuracy, recall or f1 of class-index labels against the truth y (1 = positive), as
    `metrics.label_metrics` computes them (equal to scikit-learn's, zero_division=0)."""
    if name not in TRIVIAL_METRICS:
        raise ValueError(f"unknown metric {name!r}; expected one of {TRIVIAL_METRICS}")
    return label_metrics(y, labels)[name]


def trivial_model_comparison(metric: str, y: np.ndarray, labels: np.ndarray, prior: float,
                             threshold: float) -> dict[str, Any]:
    """The candidate against the trivial model that predicts the training prior (the positive rate of the
    training rows) for every row: at the threshold it labels every row positive when prior >= threshold, else
    every row negative. y and labels: class indices on the holdout (labels at the threshold). Returns the metric,
    both figures and the lift (candidate - trivial), rounded to 6 digits."""
    trivial_label = 1 if prior >= threshold else 0
    candidate = label_metric(metric, y, labels)
    trivial = label_metric(metric, y, np.full(np.shape(y), trivial_label))
    return {"metric": metric, "candidate": round(candidate, 6), "trivial": round(trivial, 6),
            "lift": round(candidate - trivial, 6), "training_prior": round(float(prior), 6),
            "trivial_label": trivial_label, "threshold": threshold}


def leakage_warnings(policy: GatePolicy, holdout_auc: float,
                     single_feature_auc: dict[str, float | None] | None) -> list[str]:
    """Signs of target leakage (warnings, never a rejection on their own): a holdout AUC of at least
    `policy.leakage_auc`, or one feature alone separating the classes with max(AUC, 1 - AUC) of at least
    `policy.leakage_single_feature_auc`. Missing figures (None, NaN) raise no warning."""
    warnings: list[str] = []
    if holdout_auc == holdout_auc and holdout_auc >= policy.leakage_auc:
        warnings.append(f"possible target leakage: holdout AUC {holdout_auc:.4f} >= {policy.leakage_auc}; check "
                        "for features derived from the target or recorded after the outcome")
    strong = sorted(((auc, name) for name, auc in (single_feature_auc or {}).items()
                     if auc is not None and auc == auc and auc >= policy.leakage_single_feature_auc), reverse=True)
    for auc, name in strong[:10]:
        warnings.append(f"possible target leakage: feature {name!r} alone separates the classes with AUC "
                        f"{auc:.4f} >= {policy.leakage_single_feature_auc}")
    if len(strong) > 10:
        warnings.append(f"... and {len(strong) - 10} more features above {policy.leakage_single_feature_auc}")
    return warnings


def _check(name: str, value: Any, threshold: Any, ok: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "value": value, "threshold": threshold, "passed": bool(ok), "detail": detail}


LIVE_SAME_ROWS = "candidate holdout"


def live_basis_text(live: dict[str, Any]) -> str:
    """Where the live model's figure comes from, for a gate reason: the candidate's holdout rows the live model
    did not train on (`live["comparison"]`, mlops.training.steps.live_comparison_rows), all of them when that is
    unknown (a version trained before fingerprints, said so), or, when the live model cannot score them (other
    features, task or classes), the metric recorded when it was trained, on its own holdout: not the same rows,
    and said so."""
    if live.get("basis", LIVE_SAME_ROWS) != LIVE_SAME_ROWS:
        return ("as recorded at its training, on its own holdout (it cannot score the candidate's rows: its "
                "features or classes differ)")
    comparison = live.get("comparison")
    if not comparison:
        return "on the same holdout"
    if comparison.get("overlap") == "unknown":
        return (f"on the same {comparison['compared_rows']} holdout rows (overlap unknown: v{live['version']} was "
                "trained before training-row fingerprints were recorded)")
    excluded = comparison.get("excluded_seen_by_live") or 0
    if not excluded:
        return (f"on the same holdout (all {comparison['holdout_rows']} rows: none was in the live model's training "
                "data)")
    return (f"on the {comparison['compared_rows']} holdout rows it did not train on ({excluded} of "
            f"{comparison['holdout_rows']} excluded as seen by live)")


def _not_judged_check(name: str, threshold: Any, live: dict[str, Any]) -> dict[str, Any]:
    """The comparison with the live model when it cannot be made fairly (too few unseen rows): reported with the
    reason, status "not_judged", and not a reason to reject (the canary compares the two on live traffic)."""
    reason = (live.get("comparison") or {}).get("reason", "")
    return {**_check(name, None, threshold, True, f"vs live v{live['version']}: not judged: {reason}"),
            "status": NOT_JUDGED}


NOT_JUDGED = "not_judged"


def _comparison_facts(live: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The decision's `live_comparison` record and the notes it adds (overlap unknown, not judged, DeLong)."""
    if live is None or not live.get("comparison"):
        return None, []
    comparison = dict(live["comparison"])
    notes = []
    if not comparison.get("judged", True):
        notes.append(f"the comparison with live v{live['version']} was not judged: {comparison.get('reason')}")
    elif comparison.get("overlap") == "unknown":
        notes.append(f"comparison with live v{live['version']}: {comparison.get('note')}")
    return comparison, notes


def class_set_check(candidate: list[Label], live: list[Label] | None, live_version: int,
                    declared: tuple[Label, ...] | None) -> dict[str, Any] | None:
    """A multiclass candidate against the live model's classes: passes when both name the same classes (in the
    target's own terms, `same_label`), or when the classes change to exactly the family's declared `classes` (a
    deliberate change). Otherwise it fails: promoting it would change the classes the API answers under its
    clients (a class dropped from the data, or renamed "E" -> "e"). None without a live model."""
    if live is None:
        return None

    def missing(names: list[Label], among: list[Label] | tuple[Label, ...]) -> list[str]:
        return [label_text(c) for c in names if not any(same_label(c, other) for other in among)]

    dropped, added = missing(live, candidate), missing(candidate, live)
    if not dropped and not added:
        return _check("classes_vs_live", "unchanged", f"v{live_version}'s classes", True,
                      f"classes as live v{live_version}'s: {[label_text(c) for c in candidate]}")
    change = "; ".join(part for part in (f"dropped {dropped}" if dropped else "",
                                         f"added {added}" if added else "") if part)
    on_purpose = declared is not None and not missing(candidate, declared) and not missing(list(declared),
                                                                                             candidate)
    if on_purpose:
        return _check("classes_vs_live", "changed as declared", "the family's classes", True,
                      f"classes change from live v{live_version}'s ({change}) to the family's declared classes "
                      f"{[label_text(c) for c in candidate]}: the API's classes change on promotion")
    return _check("classes_vs_live", "changed", f"v{live_version}'s classes", False,
                  f"the candidate's classes {[label_text(c) for c in candidate]} differ from live v{live_version}'s "
                  f"{[label_text(c) for c in live]} ({change}): promoting it would change the classes the API "
                  "answers under its clients. If the change is intended, declare the new class list in the "
                  "family's `classes`; otherwise fix the data set")


def gate_decision(policy: GatePolicy, metrics: dict[str, float], fairness: dict[str, Any],
                  parity_result: dict[str, Any], live: dict[str, Any] | None, *,
                  trivial: dict[str, Any] | None = None, leakage: list[str] | None = None,
                  threshold: float | None = None) -> dict[str, Any]:
    """Every check with its figure, threshold and verdict; passed only if all pass. Without a live model the
    gate uses absolute thresholds only.

    `metrics` are holdout figures with labels at the family's `threshold` (p1 >= threshold); `trivial` is
    `trivial_model_comparison` (the candidate must beat the model predicting the training prior by
    `policy.min_lift_over_trivial`); `leakage` holds `leakage_warnings`, reported under `warnings` and never a
    reason to reject. A family without a sensitive attribute (fairness {"checked": False}) gets no fairness
    check, and the decision says so under `notes`."""
    checks: list[dict[str, Any]] = []

    def check(name: str, value: Any, threshold: Any, ok: bool, detail: str) -> None:
        checks.append(_check(name, value, threshold, ok, detail))

    check("onnx_parity", parity_result.get("max_abs_diff"), policy.parity_tolerance, parity_result["ok"],
          f"ONNX vs sklearn max |dp| {parity_result.get('max_abs_diff')}, "
          f"{parity_result.get('label_mismatches')} label mismatches")
    auc = metrics["auc"]
    check("min_auc", auc, policy.min_auc, auc >= policy.min_auc, f"holdout AUC {auc:.4f} vs minimum {policy.min_auc}")
    at = "" if threshold is None else f" at threshold {threshold:g}"
    check("min_accuracy", metrics["accuracy"], policy.min_accuracy, metrics["accuracy"] >= policy.min_accuracy,
          f"holdout accuracy{at} {metrics['accuracy']:.4f} vs minimum {policy.min_accuracy}")
    if trivial is not None:
        lift = trivial["lift"]
        check("lift_over_trivial_model", lift, policy.min_lift_over_trivial, lift >= policy.min_lift_over_trivial,
              f"{trivial['metric']}{at} {trivial['candidate']:.4f} vs {trivial['trivial']:.4f} for the trivial "
              f"model (always predicting the training prior {trivial['training_prior']:.4f}): lift {lift:+.4f}, "
              f"required {policy.min_lift_over_trivial:+.4f}")
    notes = fairness_notes(fairness)
    checks.extend(fairness_checks(policy, fairness))
    comparison, comparison_notes = _comparison_facts(live)
    if live is not None and comparison is not None and not comparison.get("judged", True):
        checks.append(_not_judged_check("auc_vs_live", policy.min_auc_margin, live))
    elif live is not None:
        live_auc = live["auc"]
        # The candidate's AUC on the rows the live model was scored on (the unseen ones), else its holdout AUC.
        own = live.get("candidate_auc", auc)
        margin = own - live_auc
        delong = (comparison or {}).get("delong")
        tested = f"; DeLong p = {delong['p_value']:.4g} (reported, not decisive)" if delong else ""
        check("auc_vs_live", round(margin, 6), policy.min_auc_margin, margin >= policy.min_auc_margin,
              f"AUC {own:.4f} vs live v{live['version']} {live_auc:.4f} {live_basis_text(live)} "
              f"(margin {margin:+.4f}, required {policy.min_auc_margin:+.4f}{tested})")
        floor = policy.min_live_auc_on_new_data
        recorded = live.get("recorded_auc")
        if floor is not None and live.get("basis", LIVE_SAME_ROWS) == LIVE_SAME_ROWS and recorded is not None \
                and recorded >= floor + 0.1:
            check("labels_agree_with_live", round(live_auc, 6), floor, live_auc >= floor,
                  f"the live model v{live['version']} scores AUC {live_auc:.4f} on this data's holdout against "
                  f"{recorded:.4f} on its own: "
                  + ("the new labels agree with it" if live_auc >= floor else
                     f"below {floor:g}, the new labels disagree with it wholesale (inverted or recoded labels, a "
                     "changed positive_label?); a canary cannot see an inverted model on balanced classes. Check "
                     "the data set's target, or set gate.min_live_auc_on_new_data to null to accept it"))
    failed = [c for c in checks if not c["passed"]]
    return {
        "passed": not failed,
        "compared_with_live_version": live["version"] if live else None,
        "live_basis": live.get("basis", LIVE_SAME_ROWS) if live else None,
        "live_comparison": comparison,
        "threshold": threshold,
        "checks": checks,
        "reasons": [c["detail"] for c in failed] or ["all checks passed"],
        "warnings": list(leakage or []),
        "notes": notes + comparison_notes,
    }


# ---- regression and multiclass families ---------------------------------------------------------------------


def regression_parity(onnx_predictions: np.ndarray, sklearn_predictions: np.ndarray, scale: float,
                      tolerance: float) -> dict[str, Any]:
    """Does the served regression reproduce the trained one, on the target's scale? max_abs_diff is the largest
    |onnx - sklearn| in the target's units; max_rel_diff the same divided by `scale` (the training target's
    standard deviation; 1 when it is 0). Passes when max_rel_diff <= tolerance (the family's
    gate.parity_tolerance), so the tolerance means the same on a loss rate in [0, 1] and on an amount in euros."""
    onnx_predictions = np.asarray(onnx_predictions, dtype=np.float64).ravel()
    sklearn_predictions = np.asarray(sklearn_predictions, dtype=np.float64).ravel()
    if onnx_predictions.shape != sklearn_predictions.shape:
        return {"ok": False, "max_abs_diff": None, "max_rel_diff": None,
                "reason": f"shape {onnx_predictions.shape} != {sklearn_predictions.shape}"}
    scale = scale if scale and scale > 0 else 1.0
    gap = float(np.max(np.abs(onnx_predictions - sklearn_predictions), initial=0.0))
    relative = gap / scale
    return {"ok": bool(relative <= tolerance), "max_abs_diff": gap, "max_rel_diff": relative, "scale": scale,
            "tolerance": tolerance}


def task_metrics(task: str, y: np.ndarray, output: np.ndarray) -> dict[str, Any]:
    """Holdout metrics of a regression (output: predictions) or multiclass model (output: probabilities [n, k])."""
    return regression_metrics(y, output) if task == REGRESSION else multiclass_metrics(y, output)


def _lift(metric: str, candidate: float, trivial: float) -> float:
    """How much better the candidate is than the trivial model: the difference for higher-is-better metrics,
    the relative reduction (trivial - candidate) / trivial for errors and log loss (a skill score)."""
    if metric in LOWER_IS_BETTER:
        return (trivial - candidate) / trivial if trivial > 0 else (0.0 if candidate == trivial else -1.0)
    return candidate - trivial


def task_trivial_comparison(task: str, metric: str, y: np.ndarray, candidate: dict[str, Any], *,
                            class_prior: list[float] | None = None,
                            target_mean: float | None = None) -> dict[str, Any]:
    """The candidate against the trivial model on the primary metric: for a regression, predicting the training
    target's mean for every row; for a multiclass model, the training class prior as every row's probabilities
    (macro AUC 0.5; the majority class as the prediction). `candidate` is the candidate's task_metrics. The lift
    is the difference for higher-is-better metrics (r2, macro_auc, accuracy, macro_f1) and the relative
    reduction for rmse, mae and log_loss (1 - candidate / trivial: 0.1 means 10% smaller error). Rounded to 6
    digits."""
    if task == REGRESSION:
        mean = float(np.mean(y)) if target_mean is None else float(target_mean)
        trivial_metrics = regression_metrics(y, np.full(np.shape(y), mean))
        model = {"trivial_prediction": round(mean, 6)}
    else:
        prior = np.asarray(class_prior, dtype=np.float64)
        trivial_metrics = multiclass_metrics(y, np.tile(prior, (np.size(y), 1)))
        model = {"training_prior": [round(float(p), 6) for p in prior]}
    value, trivial = float(candidate[metric]), float(trivial_metrics[metric])
    return {"metric": metric, "candidate": round(value, 6), "trivial": round(trivial, 6),
            "lift": round(_lift(metric, value, trivial), 6), **model}


def task_leakage_warnings(policy: GatePolicy, task: str, metrics: dict[str, Any]) -> list[str]:
    """Signs of target leakage (warnings only): a multiclass macro AUC, or a regression R^2, of at least
    `policy.leakage_auc` (the same near-perfect threshold, read as R^2 for a regression)."""
    name, label = ("r2", "R^2") if task == REGRESSION else ("macro_auc", "macro AUC")
    value = metrics.get(name)
    if value is None or value != value or value < policy.leakage_auc:
        return []
    return [f"possible target leakage: holdout {label} {value:.4f} >= {policy.leakage_auc}; check for features "
            "derived from the target or recorded after the outcome"]


def _regression_fairness_checks(policy: GatePolicy, fairness: dict[str, Any]) -> list[dict[str, Any]]:
    if not fairness.get("checked"):
        return []
    spread, mae = fairness["mean_prediction_spread"], fairness["mae_spread"]
    return [
        _check("mean_prediction_spread", spread, policy.max_mean_prediction_spread,
               spread <= policy.max_mean_prediction_spread,
               f"group mean predictions spread {spread:.4f} target sd vs maximum {policy.max_mean_prediction_spread}"),
        _check("mae_spread", mae, policy.max_mae_spread, mae <= policy.max_mae_spread,
               f"group mean absolute errors spread {mae:.4f} target sd vs maximum {policy.max_mae_spread}"),
    ]


def task_gate_decision(policy: GatePolicy, task: str, metrics: dict[str, Any], fairness: dict[str, Any],
                       parity_result: dict[str, Any], live: dict[str, Any] | None, *,
                       trivial: dict[str, Any], leakage: list[str] | None = None,
                       classes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The gate of a regression or multiclass candidate; the same shape as `gate_decision`'s (checks with
    figure, threshold and verdict; passed only if all pass), plus `primary_metric`.

    Checks: ONNX parity; multiclass, the macro AUC against `min_auc` and the accuracy against `min_accuracy`;
    the lift over the trivial model on the primary metric (`task_trivial_comparison`) against
    `min_lift_over_trivial`; fairness (regression: the group spreads against max_mean_prediction_spread and
    max_mae_spread; multiclass: parity on the favourable class as for binary families); with a live model, the
    primary metric against the live model's on the same holdout (or its recorded figure, said so, when it cannot
    score these rows: `live["basis"]`): the candidate must be better by `policy.margin_for(metric)` in the
    metric's direction (lower for rmse, mae, log_loss); multiclass, `classes`: the `class_set_check` against the
    live model's classes."""
    checks: list[dict[str, Any]] = []
    metric = policy.metric_for(task)
    lower = metric in LOWER_IS_BETTER
    if task == REGRESSION:
        detail = (f"ONNX vs sklearn max |d| {parity_result.get('max_abs_diff')} in target units, "
                  f"{parity_result.get('max_rel_diff')} of the target sd")
        checks.append(_check("onnx_parity", parity_result.get("max_rel_diff"), policy.parity_tolerance,
                             parity_result["ok"], detail))
    else:
        checks.append(_check("onnx_parity", parity_result.get("max_abs_diff"), policy.parity_tolerance,
                             parity_result["ok"], f"ONNX vs sklearn max |dp| {parity_result.get('max_abs_diff')}, "
                             f"{parity_result.get('label_mismatches')} label mismatches"))
        auc = metrics["macro_auc"]
        checks.append(_check("min_auc", auc, policy.min_auc, auc >= policy.min_auc,
                             f"holdout macro one-vs-rest AUC {auc:.4f} vs minimum {policy.min_auc}"))
        checks.append(_check("min_accuracy", metrics["accuracy"], policy.min_accuracy,
                             metrics["accuracy"] >= policy.min_accuracy,
                             f"holdout accuracy {metrics['accuracy']:.4f} vs minimum {policy.min_accuracy}"))
    lift = trivial["lift"]
    what = "the training mean" if task == REGRESSION else "the training class prior"
    how = "relative reduction" if lower else "lift"
    checks.append(_check("lift_over_trivial_model", lift, policy.min_lift_over_trivial,
                         lift >= policy.min_lift_over_trivial,
                         f"{metric} {trivial['candidate']:.4g} vs {trivial['trivial']:.4g} for the trivial model "
                         f"(always predicting {what}): {how} {lift:+.4f}, required "
                         f"{policy.min_lift_over_trivial:+.4f}"))
    if classes is not None:
        checks.append(classes)
    notes = fairness_notes(fairness)
    checks.extend(_regression_fairness_checks(policy, fairness) if task == REGRESSION else
                  fairness_checks(policy, fairness))
    value = float(metrics[metric])
    required = policy.margin_for(metric)
    primary: dict[str, Any] = {"name": metric, "direction": "lower" if lower else "higher", "candidate": value,
                               "required_margin": required}
    comparison, comparison_notes = _comparison_facts(live)
    if live is not None and comparison is not None and not comparison.get("judged", True):
        primary["live"] = None
        checks.append(_not_judged_check(f"{metric}_vs_live", required, live))
    elif live is not None and live.get(metric) is not None:
        live_value = float(live[metric])
        # The candidate's figure on the rows the live model was scored on (the unseen ones), else its own.
        value = float((live.get("candidate") or {}).get(metric, value))
        margin = live_value - value if lower else value - live_value
        primary.update({"live": live_value, "margin": round(margin, 6)})
        if live.get("candidate"):
            primary["candidate_on_compared_rows"] = value
        direction = "lower" if lower else "higher"
        checks.append(_check(f"{metric}_vs_live", round(margin, 6), required, margin >= required,
                             f"{metric} {value:.4g} vs live v{live['version']} {live_value:.4g} "
                             f"{live_basis_text(live)} ({direction} is better; margin {margin:+.4g}, required "
                             f"{required:+.4g})"))
    failed = [c for c in checks if not c["passed"]]
    return {
        "passed": not failed,
        "task": task,
        "primary_metric": primary,
        "compared_with_live_version": live["version"] if live else None,
        "live_basis": live.get("basis", LIVE_SAME_ROWS) if live else None,
        "live_comparison": comparison,
        "threshold": None,
        "checks": checks,
        "reasons": [c["detail"] for c in failed] or ["all checks passed"],
        "warnings": list(leakage or []),
        "notes": notes + comparison_notes,
    }
