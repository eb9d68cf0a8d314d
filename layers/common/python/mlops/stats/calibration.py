"""Calibration of a binary classifier's probabilities: the expected calibration error and the training-time check
that decides whether the confidence-based performance estimate (mlops.stats.cbpe) can be trusted (docs/performance.md).

numpy only (the evaluate and performance functions carry no scikit-learn). Checked against scikit-learn's
calibration_curve in tests/unit/test_reference_performance.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops.stats.metrics import _binary_truth, _scores

BINS = 10  # equal-width bins on [0, 1]: the model card's reliability diagram (reports.curves.calibration_bins)
RESAMPLES = 1000  # consistency resampling draws (Broecker & Smith 2007)
MIN_ROWS = 100  # fewer holdout rows: calibration is not established, the estimate is not trusted
CALIBRATED, MISCALIBRATED, INSUFFICIENT = "calibrated", "miscalibrated", "insufficient_data"


def _bin_index(p: np.ndarray, bins: int) -> np.ndarray:
    """Bin b holds edges[b] < p <= edges[b + 1] (the first bin also p = 0), as reports.curves.calibration_bins
    and sklearn.calibration.calibration_curve(strategy="uniform")."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.searchsorted(edges[1:-1], p)


def _ece(ids: np.ndarray, p_sums: np.ndarray, y: np.ndarray, bins: int) -> float:
    """sum_b |positives_b - sum p_b| / n = sum_b (n_b / n) |o_b - e_b|."""
    positives = np.bincount(ids, weights=y, minlength=bins)
    return float(np.abs(positives - p_sums).sum() / max(1, ids.size))


def expected_calibration_error(y: Any, p: Any, bins: int = BINS) -> dict[str, Any]:
    """The expected and maximum calibration error of positive-class probabilities against the truth.

    y: (n,) class indices, 0 negative, 1 positive; p: (n,) positive-class probabilities in [0, 1] (any float
    dtype, computed in float64); bins: the number of equal-width bins on [0, 1], bin b holding edges[b] < p <=
    edges[b + 1] (the first also p = 0).

    ECE = sum over bins of (n_b / n) |o_b - e_b|, o_b the observed fraction of positives and e_b the mean
    probability in bin b (Naeini, Cooper & Hauskrecht 2015, "Obtaining well calibrated probabilities using
    Bayesian binning", AAAI, eq. ECE; Guo, Pleiss, Sun & Weinberger 2017, "On calibration of modern neural
    networks", ICML, section 2). Guo et al. bin the top-label confidence max(p, 1 - p); a binary model here is
    binned on the positive-class probability, the reliability diagram the model card draws. MCE = the largest
    |o_b - e_b| over non-empty bins. Returns {"ece", "mce", "bins", "rows"} (unrounded; "ece" and "mce" are NaN
    for an empty y). Raises ValueError for labels other than 0/1, shapes, NaN or probabilities outside [0, 1]."""
    y = _binary_truth(y)
    p = _scores(p, y.size, "probabilities").astype(np.float64)
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if y.size == 0:
        return {"ece": float("nan"), "mce": float("nan"), "bins": bins, "rows": 0}
    ids = _bin_index(p, bins)
    counts = np.bincount(ids, minlength=bins)
    p_sums = np.bincount(ids, weights=p, minlength=bins)
    positives = np.bincount(ids, weights=y, minlength=bins)
    filled = counts > 0
    gaps = np.abs(positives[filled] - p_sums[filled]) / counts[filled]
    return {"ece": _ece(ids, p_sums, y, bins), "mce": float(gaps.max()), "bins": bins,
            "rows": int(y.size)}


def consistency_p_value(p: np.ndarray, ece: float, bins: int = BINS, resamples: int = RESAMPLES,
                        seed: int = 0) -> tuple[float, float]:
    """How surprising `ece` is for a perfectly calibrated model with these probabilities: draw y* ~ Bernoulli(p)
    `resamples` times, compute each ECE* on the same bins, and return (p-value, mean ECE*), the p-value being
    (1 + #{ECE* >= ece}) / (resamples + 1) (consistency resampling: Broecker & Smith 2007, "Increasing the
    reliability of reliability diagrams", Weather and Forecasting 22). The mean ECE* is the error a calibrated
    model shows on this many rows from binning noise alone. Deterministic for a given seed."""
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return 1.0, float("nan")
    rng = np.random.default_rng(seed)
    ids = _bin_index(p, bins)
    p_sums = np.bincount(ids, weights=p, minlength=bins)
    draws = np.empty(resamples)
    for r in range(resamples):
        draws[r] = _ece(ids, p_sums, (rng.random(p.size) < p).astype(np.float64), bins)
    return float((1 + np.count_nonzero(draws >= ece - 1e-12)) / (resamples + 1)), float(draws.mean())


def calibration_check(y: Any, p: Any, *, max_error: float, p_value: float, bins: int = BINS,
                      seed: int = 0) -> dict[str, Any]:
    """Is a binary model calibrated on its holdout, so that its probabilities may stand for the truth (CBPE)?

    y, p: the holdout's class indices and positive-class probabilities, as `expected_calibration_error`;
    max_error: the family's performance.max_calibration_error; p_value: its performance.calibration_pvalue.
    status "miscalibrated" when the ECE is above `max_error` AND the consistency test rejects calibration
    (p < `p_value`: an error that large is not binning noise on this many rows); "insufficient_data" below
    MIN_ROWS holdout rows; otherwise "calibrated". Significance and size both, as the drift tests: a small
    holdout's noisy ECE does not flag a calibrated model, a large holdout's tiny but significant error does not
    either. `trusted` is True only for "calibrated". Returns the ECE figures, the test, the thresholds, the
    status, `trusted` and `reason` (a sentence)."""
    figures = expected_calibration_error(y, p, bins)
    rows, ece = figures["rows"], figures["ece"]
    result: dict[str, Any] = {**figures, "max_error": max_error, "alpha": p_value, "min_rows": MIN_ROWS,
                              "method": f"{bins} equal-width bins of the positive-class probability; consistency "
                                        f"resampling, {RESAMPLES} draws"}
    if rows < MIN_ROWS:
        return {**result, "status": INSUFFICIENT, "trusted": False, "p_value": None, "null_ece_mean": None,
                "reason": f"{rows} holdout rows; at least {MIN_ROWS} are needed to establish calibration"}
    test_p, null_mean = consistency_p_value(np.asarray(p, dtype=np.float64), ece, bins, seed=seed)
    result.update({"p_value": test_p, "null_ece_mean": null_mean})
    if ece > max_error and test_p < p_value:
        return {**result, "status": MISCALIBRATED, "trusted": False,
                "reason": f"expected calibration error {ece:.4f} > {max_error} on {rows} holdout rows (a calibrated "
                          f"model shows {null_mean:.4f} on average; p {test_p:.2g} < {p_value}): the probabilities "
                          "do not stand for the observed rates"}
    why = (f"expected calibration error {ece:.4f} <= {max_error}" if ece <= max_error else
           f"expected calibration error {ece:.4f} > {max_error} but within binning noise on {rows} rows "
           f"(p {test_p:.2g} >= {p_value})")
    return {**result, "status": CALIBRATED, "trusted": True, "reason": f"{why} on {rows} holdout rows"}
