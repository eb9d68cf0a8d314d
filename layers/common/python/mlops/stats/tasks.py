"""Regression and multiclass figures beside the binary ones: the profile's prediction distribution, prediction
drift, canary divergence and fairness per task. docs/statistics.md ("Regression and multiclass families") has
every formula, its reference and the thresholds.

numpy only, like the drift and control functions that import it. What each task's captures carry: the predicted
class index in `label` and the class probabilities (classifiers); the predicted value in `label` and no
probabilities (regression).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlops.core.schemas import BINARY, MULTICLASS, REGRESSION, CanaryPolicy, DriftPolicy, ModelFamily
from mlops.stats.canary import judged_steps
from mlops.stats.distributions import (
    ecdf_counts,
    ecdf_summary,
    equal_weight_cramers_v,
    ks_against_ecdf,
    numeric_shift,
    pooled_chi_square,
    psi,
)
from mlops.stats.profile import numeric_profile

# Regression predictions are compared on a grid of this fraction of the training target's standard deviation:
# the baseline comes from the trained estimator in float64, the served values from the ONNX graph (float32
# sums around the mean, within the parity tolerance of 1e-5 sd), and the same prediction must land in the same
# bin from either side: a grid step of at least 1e-4 sd makes a crossing rare (measured 0.025% at most).
PREDICTION_RESOLUTION = 1e-3
# A canary check reads at most this many captured predictions per version (the newest): enough for any test,
# bounded for the function's memory.
CANARY_CAPTURED_ROWS = 50_000
# Per-group figures kept in the pipeline state and the lineage (the largest groups); the count says how many.
MAX_GROUPS_REPORTED = 50
DEFAULT_MIN_GROUP_SIZE = 30


# ---- the profile's prediction distribution -----------------------------------------------------------------


def prediction_quantum(target_std: float | None) -> float:
    """The grid regression predictions are rounded to before profiling and comparing: the power of ten at or
    below PREDICTION_RESOLUTION x the target's standard deviation (1e-12 when the deviation is 0 or unknown)."""
    if not target_std or not math.isfinite(target_std) or target_std <= 0:
        return 1e-12
    step = target_std * PREDICTION_RESOLUTION
    quantum = 10.0 ** math.floor(math.log10(step))
    # log10 rounds up just below a power of ten (log10(999999999.999998) == 9.0): step down once then.
    return quantum / 10.0 if quantum > step else quantum


def quantize(values: np.ndarray, quantum: float) -> np.ndarray:
    """float64 values rounded to multiples of `quantum` (NaN stays NaN)."""
    values = np.asarray(values, dtype=np.float64)
    return np.round(values / quantum) * quantum


def prediction_profile(task: str, predictions: np.ndarray, *, classes: tuple[Any, ...] = (),
                       target_std: float | None = None) -> dict[str, Any]:
    """The baseline profile's `prediction` entry for a regression or multiclass model.

    Regression: predictions (n,) float64 on the target's scale, rounded to `prediction_quantum(target_std)`;
    profiled like a numeric feature (`profile.numeric_profile`: PSI decile edges and counts, ECDF summary), plus
    `quantum`. Multiclass: predictions (n,) the predicted class indices; `counts` per class in class order.
    Both carry kind "prediction" and the task. Raises ValueError for another task."""
    if task == REGRESSION:
        quantum = prediction_quantum(target_std)
        values = quantize(np.asarray(predictions, dtype=np.float64).ravel(), quantum)
        return {**numeric_profile(values), "kind": "prediction", "task": REGRESSION, "quantum": quantum}
    if task == MULTICLASS:
        labels = np.asarray(predictions, dtype=np.int64).ravel()
        counts = np.bincount(labels, minlength=len(classes))
        return {"kind": "prediction", "task": MULTICLASS, "n": int(labels.size), "classes": list(classes),
                "counts": counts.tolist()}
    raise ValueError(f"prediction_profile covers regression and multiclass families, not {task!r}")


def captured_predictions(task: str, records: Any) -> np.ndarray:
    """The predictions of captured records, (n,) float64: the positive-class probability (binary), the predicted
    class index (multiclass), the predicted value (regression). `records`: a list of CapturedRecord, or a columnar
    window (mlops.serving.capture_columns.CapturedColumns: its `label` and (n, k) `probabilities` arrays)."""
    if hasattr(records, "fields") and hasattr(records, "probabilities"):  # columns: no loop over rows
        if task != BINARY:
            return np.asarray(records.label, dtype=np.float64)
        probabilities = np.asarray(records.probabilities, dtype=np.float64)
        return probabilities[:, -1] if probabilities.ndim == 2 and probabilities.shape[1] else \
            np.full(len(records), np.nan)
    count = len(records)
    if task == BINARY:
        return np.fromiter((r.probabilities[-1] for r in records), dtype=np.float64, count=count)
    return np.fromiter((r.label for r in records), dtype=np.float64, count=count)


# ---- prediction drift ------------------------------------------------------------------------------------------


def prediction_drift(task: str, baseline: dict[str, Any], predictions: np.ndarray,
                     policy: DriftPolicy) -> dict[str, Any] | None:
    """The served predictions against the profile's prediction distribution; None for a binary family (its
    `prediction_psi` is the drift report's own).

    Regression: as a numeric feature: PSI on the baseline deciles with the chi-square test of those bins, and
    KS against the ECDF summary (`stats.numeric_shift`), both held to the numeric thresholds of the policy
    (ks_pvalue shared by the two tests, Bonferroni; psi_threshold, ks_min_statistic). Multiclass: as a
    categorical feature: chi-square of the predicted-class counts (`stats.pooled_chi_square`) with the
    equal-weight Cramér's V as the effect size (chi2_pvalue, chi2_min_cramers_v), and the PSI of the class
    shares. status: "checked", "insufficient_data" (fewer than min_samples predictions) or "not_checked" (the
    profile has no prediction distribution for this task: a model trained before it existed)."""
    if task == BINARY:
        return None
    kind = "numeric" if task == REGRESSION else "categorical"
    if baseline.get("task") != task:
        return {"kind": kind, "status": "not_checked", "drifted": None,
                "reason": "the live model's baseline profile has no prediction distribution for this task"}
    values = np.asarray(predictions, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size < policy.min_samples:
        return {"kind": kind, "status": "insufficient_data", "drifted": None, "rows": int(values.size),
                "reason": f"{values.size} captured predictions, {policy.min_samples} needed"}
    if task == REGRESSION:
        shift = numeric_shift(np.asarray(baseline["ecdf_points"]), np.asarray(baseline["ecdf_at_or_below"]),
                              np.asarray(baseline["ecdf_below"]), int(baseline["n"]),
                              np.asarray(baseline["psi_edges"]), np.asarray(baseline["psi_counts"]),
                              quantize(values, float(baseline["quantum"])))
        alpha = policy.ks_pvalue / 2
        tests = [(shift.psi_p_value, shift.psi, policy.psi_threshold, f"PSI {shift.psi:.3f} >= {policy.psi_threshold}"),
                 (shift.ks.p_value, shift.ks.statistic, policy.ks_min_statistic,
                  f"KS D {shift.ks.statistic:.3f} >= {policy.ks_min_statistic}")]
        figures = {"psi": round(shift.psi, 6), "psi_p_value": shift.psi_p_value, "ks_statistic":
                   round(shift.ks.statistic, 6), "ks_p_value": shift.ks.p_value, "mean": float(values.mean()),
                   "baseline_mean": baseline.get("mean")}
    else:
        expected = np.asarray(baseline["counts"], dtype=np.int64)
        actual = np.bincount(np.clip(values.astype(np.int64), 0, expected.size - 1), minlength=expected.size)
        _, p_value, tested = pooled_chi_square(expected, actual)
        v = equal_weight_cramers_v(expected, actual)
        alpha = policy.chi2_pvalue
        tests = [(p_value, v, policy.chi2_min_cramers_v,
                  f"predicted-class shares differ, equal-weight Cramér's V {v:.3f} >= {policy.chi2_min_cramers_v}")]
        figures = {"psi": round(psi(expected, actual), 6), "p_value": p_value, "categories_tested": tested,
                   "cramers_v_equal_weight": round(v, 6), "class_rates": (actual / values.size).round(6).tolist(),
                   "baseline_class_rates": (expected / max(1, expected.sum())).round(6).tolist()}
    reasons = [f"{text} (p {p:.2g} < {alpha:.2g})" for p, effect, floor, text in tests if p < alpha and effect >= floor]
    return {"kind": kind, "status": "checked", "rows": int(values.size), **figures, "drifted": bool(reasons),
            "drift_reasons": reasons, "alpha_per_test": alpha}


# ---- canary divergence ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Divergence:
    """Canary vs live predictions on the same traffic window. `judged` is False below the minimum counts (no
    verdict: the check waits); `diverged` means significant (p < alpha = policy.divergence_pvalue / judged steps,
    as for binary families) and large (effect over the policy's maximum). `summary` gives the figures in words,
    whatever the verdict; `subject` is what was compared ("predicted values", "predicted classes")."""

    judged: bool
    diverged: bool
    figures: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    subject: str = "predicted values"

    @property
    def reason(self) -> str:
        """Why the canary is rolled back ("" when it has not diverged)."""
        return f"{self.subject} diverge from the live version on the same traffic: {self.summary}" if self.diverged \
            else ""


def canary_divergence(task: str, live: np.ndarray, canary: np.ndarray, policy: CanaryPolicy,
                      classes: int = 0) -> Divergence:
    """Two-sample test of the canary's predictions against the live version's, with an effect size.

    Regression (live, canary: (n,) predicted values): two-sample Kolmogorov-Smirnov, D = sup|F_live - F_canary|
    exact (the live sample is summarised at every distinct value, `stats.ecdf_summary`), asymptotic p-value
    (`stats.ks_p_value`); effect size D, held to `max_prediction_ks_statistic`. Multiclass (predicted class
    indices 0..classes-1): Pearson chi-square of the 2 x k table after pooling classes the table expects
    fewer than 5 canary rows in (`stats.pooled_chi_square`); effect size the equal-weight Cramér's V
    (`stats.equal_weight_cramers_v`: the V of the same shares with equal sample sizes), held to
    `max_prediction_cramers_v`. The test's level is the binary families' (`canary.judged_steps`): alpha =
    `divergence_pvalue` / the judged steps, so `divergence_pvalue` bounds the false-rollback rate of an identical
    model over a whole rollout whatever the task. Needs at least `min_requests` predictions on each side."""
    live = np.asarray(live, dtype=np.float64)
    canary = np.asarray(canary, dtype=np.float64)
    figures: dict[str, Any] = {"canary_predictions": int(canary.size), "live_predictions": int(live.size)}
    subject = "predicted values" if task == REGRESSION else "predicted classes"
    if live.size < policy.min_requests or canary.size < policy.min_requests:
        return Divergence(False, False, {**figures, "status": "insufficient_data"},
                          f"{canary.size} canary and {live.size} live predictions; {policy.min_requests} needed on "
                          "each side to judge divergence", subject)
    alpha = policy.divergence_pvalue / judged_steps(policy)
    figures.update({"status": "checked", "alpha": round(alpha, 6)})
    if task == REGRESSION:
        points, at_or_below, below, _ = ecdf_summary(live, max_points=max(1, live.size))
        cur_le, cur_lt, _ = ecdf_counts(points, canary)
        ks = ks_against_ecdf(points, at_or_below, below, live.size, cur_le, cur_lt, canary.size)
        figures.update({"test": "ks", "ks_statistic": round(ks.statistic, 6), "ks_p_value": ks.p_value,
                        "mean": {"canary": float(canary.mean()), "live": float(live.mean())}})
        significant, large = ks.p_value < alpha, ks.statistic > policy.max_prediction_ks_statistic
        summary = (f"KS D {ks.statistic:.3f} {'over' if large else 'within'} {policy.max_prediction_ks_statistic} "
                   f"(p {ks.p_value:.2g} {'<' if significant else '>='} {alpha:.2g}; mean {canary.mean():.4g} vs "
                   f"{live.mean():.4g} on {canary.size} vs {live.size} predictions)")
        return Divergence(True, bool(significant and large), figures, summary, subject)
    k = max(classes, int(max(live.max(initial=0), canary.max(initial=0))) + 1)
    old = np.bincount(live.astype(np.int64), minlength=k)
    new = np.bincount(canary.astype(np.int64), minlength=k)
    _, p_value, tested = pooled_chi_square(old, new)
    v = equal_weight_cramers_v(old, new)
    figures.update({"test": "chi_square", "chi2_p_value": p_value, "classes_tested": tested,
                    "cramers_v_equal_weight": round(v, 6),
                    "class_rates": {"canary": (new / canary.size).round(6).tolist(),
                                    "live": (old / live.size).round(6).tolist()}})
    significant, large = p_value < alpha, v > policy.max_prediction_cramers_v
    summary = (f"equal-weight Cramér's V {v:.3f} {'over' if large else 'within'} {policy.max_prediction_cramers_v} "
               f"(chi-square p {p_value:.2g} {'<' if significant else '>='} {alpha:.2g} on {canary.size} vs "
               f"{live.size} predictions)")
    return Divergence(True, bool(significant and large), figures, summary, subject)


def captured_task_predictions(captures: Any, family: ModelFamily, version: int, since: float) -> np.ndarray:
    """The predictions one version of a regression or multiclass family captured since `since` (the newest
    CANARY_CAPTURED_ROWS at most, as for binary families), as `captured_predictions` reads them from the columnar
    window (`captures`: a `mlops.serving.capture.CaptureReader`)."""
    window = captures.columns(family.name, version, since, None, max_rows=CANARY_CAPTURED_ROWS, request_ids=False)
    return captured_predictions(family.task, window)


# ---- fairness -------------------------------------------------------------------------------------------------


def regression_fairness(y: np.ndarray, predictions: np.ndarray, groups: np.ndarray,
                        min_group_size: int = DEFAULT_MIN_GROUP_SIZE) -> dict[str, Any]:
    """Fairness of a regression across the groups of a sensitive attribute, on the holdout.

    Per group: rows, mean prediction, mean target and mean absolute error. The figures, over the groups with at
    least `min_group_size` rows, in units of the holdout target's standard deviation (population; 1 when it is
    0), so one threshold serves any target scale:
    - mean_prediction_spread = (max - min of the group mean predictions) / sd: the regression analogue of
      demographic parity (equal expected outcome);
    - mae_spread = (max - min of the group MAEs) / sd: the analogue of equal opportunity (equal error).
    Smaller groups are listed under `excluded_groups` with their sizes and left out of the figures. Fewer than
    two qualifying groups: {"checked": False, "reason": ...} (never a spread of 0 that reads as fair).
    y, predictions: (n,) float; groups: (n,) str. Per-group detail is capped at MAX_GROUPS_REPORTED groups (the
    largest; `groups_total` counts them all)."""
    y = np.asarray(y, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    groups = np.asarray(groups).astype(str)
    names, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=predictions)
    targets = np.bincount(inverse, weights=y)
    errors = np.bincount(inverse, weights=np.abs(y - predictions))
    per_group = {str(name): {"rows": int(n), "mean_prediction": float(sums[i] / n),
                             "mean_target": float(targets[i] / n), "mae": float(errors[i] / n)}
                 for i, (name, n) in enumerate(zip(names, sizes, strict=True))}
    qualifying = {g: v for g, v in per_group.items() if v["rows"] >= min_group_size}
    excluded = {g: v["rows"] for g, v in per_group.items() if v["rows"] < min_group_size}
    scale = float(y.std()) if y.size and y.std() > 0 else 1.0
    shown = dict(sorted(per_group.items(), key=lambda item: -item[1]["rows"])[:MAX_GROUPS_REPORTED])
    base = {"metric": "regression group spreads", "min_group_size": min_group_size, "scale": scale,
            "groups": shown, "groups_total": len(per_group),
            "excluded_groups": dict(sorted(excluded.items(), key=lambda item: -item[1])[:MAX_GROUPS_REPORTED])}
    if len(qualifying) < 2:
        return {"checked": False, **base,
                "reason": f"{len(qualifying)} group(s) with at least {min_group_size} holdout rows; two are needed "
                          "to compare"}
    means = [v["mean_prediction"] for v in qualifying.values()]
    maes = [v["mae"] for v in qualifying.values()]
    return {"checked": True, **base, "mean_prediction_spread": round((max(means) - min(means)) / scale, 6),
            "mae_spread": round((max(maes) - min(maes)) / scale, 6)}
