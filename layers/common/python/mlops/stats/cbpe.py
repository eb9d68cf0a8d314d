"""Confidence-based performance estimation (CBPE) of a binary classifier before its labels arrive.

If the model's positive-class probabilities are calibrated, each decision is a Bernoulli draw with that probability,
so the confusion matrix the labels will show has an expectation computable now: NannyML's CBPE
(nannyml.readthedocs.io, "Confidence-based Performance Estimation", binary classification). Valid only when the
model is calibrated (mlops.stats.calibration checks it on the holdout at training time) and the relation between inputs
and outcome has not changed since training (concept drift is invisible to it: only labels reveal it). Binary
classification only; multiclass and regression families get realised metrics once labels arrive, no estimate.

numpy only. Checked against a hand-computed case and against the realised metrics of simulated labels in
tests/unit/test_reference_performance.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops.stats.metrics import _scores


def _probabilities(p: Any) -> np.ndarray:
    p = np.asarray(p)
    if p.ndim != 1:
        raise ValueError(f"probabilities must be one-dimensional (positive class), got shape {p.shape}")
    p = _scores(p, p.size, "probabilities").astype(np.float64)
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    return p


def expected_confusion(p: Any, threshold: float) -> dict[str, float]:
    """The expected confusion matrix of decisions at `threshold` (positive when p >= threshold, as scoring
    decides) if each outcome is Bernoulli(p): a positive decision adds p to TP and 1 - p to FP, a negative one p
    to FN and 1 - p to TN (NannyML CBPE). p: (n,) positive-class probabilities in [0, 1]. Returns {"tp", "fp",
    "fn", "tn"} as floats (expected counts, summing to n). Raises ValueError for shapes, NaN or values outside
    [0, 1], or a threshold outside (0, 1)."""
    p = _probabilities(p)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    positive = p >= threshold
    return {"tp": float(p[positive].sum()), "fp": float((1 - p[positive]).sum()),
            "fn": float(p[~positive].sum()), "tn": float((1 - p[~positive]).sum())}


def expected_roc_auc(p: Any) -> float:
    """The ROC AUC of the expected ROC curve: rows sorted by probability, highest first, the expected true and
    false positives at each distinct probability t are sum(p_i) and sum(1 - p_i) over p_i >= t, normalised by
    their totals, and the area is the trapezoid from (0, 0) to (1, 1) (NannyML CBPE, "estimate_roc_auc"). Tied
    probabilities share one point (as sklearn.metrics.roc_curve does for tied scores), so the figure does not
    depend on the order of ties; for distinct probabilities it equals NannyML's. Equivalently
    sum_j (1 - p_j) (sum_{i: p_i > p_j} p_i + 1/2 sum_{i: p_i = p_j} p_i) / (sum p x sum (1 - p)).

    p: (n,) positive-class probabilities in [0, 1]. NaN when every p is 0 or every p is 1 (no expected positive or
    negative). Raises ValueError as `expected_confusion`."""
    p = _probabilities(p)
    positives, negatives = float(p.sum()), float((1 - p).sum())
    if positives <= 0 or negatives <= 0:
        return float("nan")
    order = np.argsort(-p, kind="mergesort")
    scores = p[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]  # last row of each tie group
    tps = np.r_[0.0, np.cumsum(scores)[last]]
    fps = np.r_[0.0, np.cumsum(1 - scores)[last]]
    return float(np.trapezoid(tps / tps[-1], fps / fps[-1]))


def estimate_binary(p: Any, threshold: float) -> dict[str, Any]:
    """CBPE of a binary classifier on a set of decisions: the expected confusion matrix at `threshold` and, from
    it, accuracy (tp + tn) / n, precision tp / (tp + fp), recall tp / (tp + fn), F1 2 tp / (2 tp + fp + fn)
    (0 when a denominator is 0, as metrics.label_metrics), the expected positive rate of the truth (sum p / n),
    and the expected ROC AUC (`expected_roc_auc`). p: (n,) positive-class probabilities as served. Returns
    {"accuracy", "precision", "recall", "f1", "auc", "expected_positive_rate", "rows", "confusion"}; figures are
    NaN for an empty p. The estimate is a ratio of expected counts, not the expectation of the ratio: on n rows
    it differs from the mean realised figure by O(1/n) (docs/performance.md)."""
    p = _probabilities(p)
    n = int(p.size)
    if n == 0:
        nan = float("nan")
        return {"accuracy": nan, "precision": nan, "recall": nan, "f1": nan, "auc": nan,
                "expected_positive_rate": nan, "rows": 0, "confusion": None}
    c = expected_confusion(p, threshold)
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    return {
        "accuracy": (tp + tn) / n,
        "precision": tp / (tp + fp) if tp + fp > 0 else 0.0,
        "recall": tp / (tp + fn) if tp + fn > 0 else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else 0.0,
        "auc": expected_roc_auc(p),
        "expected_positive_rate": float(p.mean()),
        "rows": n,
        "confusion": c,
    }
