"""Curve data for a model card, computed at evaluation time from the holdout (numpy only, small enough for state).

`curve_data(y, p, threshold)` is called by the Evaluate step on the ONNX artifact's holdout probabilities; the
dict travels through Step Functions state (256 KB limit) into the version's lineage under `curves`, and the
model card draws its ROC curve, calibration curve, score distribution and confusion matrix from it. About 6 KB
as JSON whatever the holdout size (at most 200 ROC points, 10 calibration bins, 2 x 20 score bins).
"""

from __future__ import annotations

from typing import Any

import numpy as np

CURVES_FORMAT = 1
MAX_ROC_POINTS = 200
CALIBRATION_BINS = 10
SCORE_BINS = 20
DECIMALS = 6


def _validate(y: Any, p: Any, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    p = np.asarray(p)
    if y.ndim != 1:
        raise ValueError(f"curve_data: y must be one-dimensional class indices, got shape {y.shape}")
    if y.size == 0:
        raise ValueError("curve_data: y is empty; curves need at least one holdout row")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"curve_data: y must hold class indices 0 (negative) and 1 (positive); got "
                         f"{np.unique(y)[:5].tolist()}")
    if p.shape != y.shape:
        raise ValueError(f"curve_data: p must have shape {y.shape} like y (positive-class probabilities), got "
                         f"{p.shape}")
    if not np.issubdtype(p.dtype, np.number) or np.issubdtype(p.dtype, np.complexfloating):
        raise ValueError(f"curve_data: p must be real numbers, got dtype {p.dtype}")
    p = p.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(p) | (p < 0) | (p > 1))
    if bad.size:
        raise ValueError(f"curve_data: p must be probabilities in [0, 1]; {bad.size} values are not (first at rows "
                         f"{bad[:5].tolist()})")
    if not isinstance(threshold, int | float) or not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"curve_data: threshold must lie in (0, 1), got {threshold!r}")
    return y.astype(np.int64), p


def _round(values: np.ndarray) -> list[float]:
    return [round(float(v), DECIMALS) for v in values]


def _roc_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive counts at every distinct score, highest first, from (0, 0) at threshold +inf."""
    order = np.argsort(-p, kind="mergesort")
    scores, truth = p[order], y[order]
    last_of_score = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tps = np.r_[0, np.cumsum(truth)[last_of_score]]
    fps = np.r_[0, (last_of_score + 1) - tps[1:]]
    return fps, tps, np.r_[np.inf, scores[last_of_score]]


def roc_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full ROC curve: false and true positive rates at every distinct score, highest first, starting at
    (0, 0) with threshold +inf; the thresholds are the scores at or above which a row is labelled positive.
    Equals sklearn.metrics.roc_curve(y, p, drop_intermediate=False). Needs both classes in y."""
    fps, tps, thresholds = _roc_counts(y, p)
    return fps / fps[-1], tps / tps[-1], thresholds


def downsample_curve(fps: np.ndarray, tps: np.ndarray, limit: int = MAX_ROC_POINTS) -> np.ndarray:
    """Indices of at most `limit` ROC points, from false/true positive counts: first the points on a straight
    segment between their neighbours are dropped (exactly as sklearn.metrics.roc_curve's drop_intermediate), then,
    above the limit, points are kept spread evenly along the curve's length (first and last always), so the
    drawn curve departs from the full one by at most about 1/limit of its length."""
    keep = np.ones(fps.size, dtype=bool)
    if fps.size > 3:  # as scikit-learn: the rule applies to the points after the (0, 0) start
        keep[2:-1] = np.logical_or(np.diff(fps[1:], 2) != 0, np.diff(tps[1:], 2) != 0)
    index = np.flatnonzero(keep)
    if index.size <= limit:
        return index
    fpr, tpr = fps[index] / fps[-1], tps[index] / tps[-1]
    length = np.r_[0.0, np.cumsum(np.hypot(np.diff(fpr), np.diff(tpr)))]
    targets = np.linspace(0.0, length[-1], limit)
    chosen = np.unique(np.searchsorted(length, targets, side="left").clip(0, index.size - 1))
    chosen[0], chosen[-1] = 0, index.size - 1
    return index[np.unique(chosen)]


def calibration_bins(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Reliability diagram data: `bins` equal-width bins on [0, 1] (as sklearn.calibration.calibration_curve
    with strategy="uniform": bin i holds edges[i] < p <= edges[i+1], the first also p = 0), and per bin the row
    count, the mean predicted probability and the observed fraction of positives (None for an empty bin)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    count = np.bincount(ids, minlength=bins)
    sums = np.bincount(ids, weights=p, minlength=bins)
    positives = np.bincount(ids, weights=y, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = sums / count
        fraction = positives / count
    def per_bin(values: np.ndarray) -> list[float | None]:
        return [round(float(v), DECIMALS) if c else None for v, c in zip(values, count, strict=True)]

    return {"strategy": "uniform", "edges": _round(edges), "count": count.astype(int).tolist(),
            "mean_predicted": per_bin(mean_predicted), "fraction_positive": per_bin(fraction)}


def curve_data(y: Any, p: Any, threshold: float) -> dict[str, Any]:
    """ROC points, calibration bins, score distribution per class and the confusion matrix of a binary classifier
    on its holdout, as a small JSON-ready dict for the model card.

    y: (n,) class indices, 0 = negative, 1 = positive; p: (n,) positive-class probabilities in [0, 1] (float32
    from the ONNX graph is fine: computed in float64); threshold: the family's decision threshold in (0, 1), a row
    is labelled positive when p >= threshold (as scoring decides).

    Returns {"format", "rows", "positives", "threshold", "roc", "calibration", "score_histogram",
    "confusion_matrix"}:
    - roc: {"fpr", "tpr", "thresholds"} lists of at most MAX_ROC_POINTS points from (0, 0) to (1, 1) (thresholds[0]
      is None for +inf), "points_total" before downsampling, "auc" (trapezoid over the full curve: the Mann-Whitney
      AUC, as sklearn.metrics.roc_auc_score), "operating_point" {"fpr", "tpr"} at the threshold; None when y holds
      a single class (the curve is undefined), with "roc_reason".
    - calibration: `calibration_bins` (10 uniform bins).
    - score_histogram: {"edges": 21 values on [0, 1], "negative": counts, "positive": counts} per class.
    - confusion_matrix: {"tp", "fp", "fn", "tn"} at the threshold.
    Values are rounded to 6 decimals. Raises ValueError naming the problem for bad shapes, labels other than 0/1,
    probabilities outside [0, 1] or NaN, an empty y, or a threshold outside (0, 1)."""
    y, p = _validate(y, p, threshold)
    threshold = float(threshold)
    positives = int(y.sum())
    labels = p >= threshold
    tp = int(np.count_nonzero(labels & (y == 1)))
    fp = int(np.count_nonzero(labels & (y == 0)))
    fn = positives - tp
    tn = int(y.size) - positives - fp
    result: dict[str, Any] = {"format": CURVES_FORMAT, "rows": int(y.size), "positives": positives,
                              "threshold": threshold}
    if 0 < positives < y.size:
        fps, tps, thresholds = _roc_counts(y, p)
        fpr, tpr = fps / fps[-1], tps / tps[-1]
        keep = downsample_curve(fps, tps)
        result["roc"] = {
            "fpr": _round(fpr[keep]), "tpr": _round(tpr[keep]),
            "thresholds": [None if not np.isfinite(t) else round(float(t), DECIMALS) for t in thresholds[keep]],
            "points_total": int(fpr.size), "auc": round(float(np.trapezoid(tpr, fpr)), DECIMALS),
            "operating_point": {"fpr": round(fp / (fp + tn), DECIMALS), "tpr": round(tp / (tp + fn), DECIMALS)},
        }
    else:
        result["roc"] = None
        result["roc_reason"] = f"the holdout holds only {'positive' if positives else 'negative'} rows"
    result["calibration"] = calibration_bins(y, p)
    edges = np.linspace(0.0, 1.0, SCORE_BINS + 1)
    ids = np.searchsorted(edges[1:-1], p)
    result["score_histogram"] = {
        "edges": _round(edges),
        "negative": np.bincount(ids[y == 0], minlength=SCORE_BINS).tolist(),
        "positive": np.bincount(ids[y == 1], minlength=SCORE_BINS).tolist(),
    }
    result["confusion_matrix"] = {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    return result
