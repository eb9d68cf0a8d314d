"""Holdout classification metrics, equal to scikit-learn's (checked in tests/unit/test_reference_metrics.py).

numpy only: the evaluation step runs without scikit-learn's import cost, and the figures are defined here once.
Formulas, references and tolerances are in docs/statistics.md.
"""

from __future__ import annotations

import numpy as np


def _binary_truth(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional class indices, got shape {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"y must hold class indices 0 (negative) and 1 (positive); got {np.unique(y)[:5].tolist()}")
    return y.astype(np.int64)


def _scores(score: np.ndarray, size: int, what: str) -> np.ndarray:
    score = np.asarray(score)
    if score.shape != (size,):
        raise ValueError(f"{what} must have shape ({size},) like y, got {score.shape}")
    if not np.issubdtype(score.dtype, np.number) or np.issubdtype(score.dtype, np.complexfloating):
        raise ValueError(f"{what} must be real numbers, got dtype {score.dtype}")
    if not np.isfinite(score).all():
        bad = np.flatnonzero(~np.isfinite(score))
        raise ValueError(f"{what} contains {bad.size} NaN or infinite values (first at rows {bad[:5].tolist()})")
    return score


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney rank statistic: (R+ - n+(n+ + 1)/2) / (n+ n-), R+ the sum of
    the positives' ranks, tied scores sharing their average rank (Hanley & McNeil 1982). Equals
    sklearn.metrics.roc_auc_score. Scores are ranked as given, never clipped: 1e-20 and 1e-15 stay apart.

    y: (n,) class indices 0/1; score: (n,) real, finite (ranked in float64; float32 scores convert exactly).
    Raises ValueError for other labels, shapes, NaN/inf scores, or a y with one class (AUC is undefined; scikit-
    learn raises as well)."""
    y = _binary_truth(y)
    score = _scores(score, y.size, "score").astype(np.float64)
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        raise ValueError("ROC AUC is undefined when y holds only one class")
    order = np.argsort(score, kind="mergesort")
    sorted_scores = score[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    ranks = np.empty(y.size, dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing their average rank (scipy.stats.rankdata's "average")."""
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def delong_test(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> dict[str, float]:
    """DeLong's test of two correlated ROC AUCs measured on the same rows (DeLong, DeLong & Clarke-Pearson 1988,
    Biometrics 44:837), with the midrank computation of the structural components (Sun & Xu 2014, IEEE SPL
    21:1389): the AUCs' covariance is S10 / m + S01 / n, S10 and S01 the 2x2 covariances (ddof 1) of the
    positives' and negatives' components, m and n the positive and negative counts; z = (auc_a - auc_b) /
    sqrt(var(auc_a - auc_b)) and the two-sided p-value 2 (1 - Phi(|z|)) = erfc(|z| / sqrt 2). Checked against
    the definitional O(m n) computation and a paired bootstrap in tests/unit/test_verdicts_delong.py.

    y: (rows,) class indices 0/1; score_a, score_b: (rows,) finite scores of the two models on the same rows.
    Returns auc_a, auc_b, difference (a - b), standard_error, z and p_value; when the difference has no
    variance (identical rankings) z is 0 and p_value 1. Raises ValueError for shapes, labels, non-finite scores
    or fewer than 2 rows of either class."""
    from math import erfc, sqrt

    y = _binary_truth(y)
    scores = [_scores(s, y.size, name).astype(np.float64) for s, name in ((score_a, "score_a"), (score_b, "score_b"))]
    positive = y == 1
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's test needs at least 2 rows of each class, got {m} positive and {n} negative")
    aucs, v10, v01 = [], [], []
    for score in scores:
        x, z = score[positive], score[~positive]
        overall = _midranks(np.concatenate([x, z]))
        auc = (overall[:m].sum() - m * (m + 1) / 2.0) / (m * n)
        aucs.append(auc)
        v10.append((overall[:m] - _midranks(x)) / n)  # per positive: share of negatives ranked below it
        v01.append(1.0 - (overall[m:] - _midranks(z)) / m)  # per negative: share of positives ranked above it
    s10, s01 = np.cov(np.vstack(v10)), np.cov(np.vstack(v01))
    variance = float((s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n)
    difference = float(aucs[0] - aucs[1])
    if variance <= 1e-300:
        return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "difference": difference, "standard_error": 0.0,
                "z": 0.0, "p_value": 1.0}
    z_value = difference / sqrt(variance)
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "difference": difference,
            "standard_error": sqrt(variance), "z": z_value, "p_value": erfc(abs(z_value) / sqrt(2.0))}


def log_loss(y: np.ndarray, p1: np.ndarray) -> float:
    """Mean negative log-likelihood of the truth under the positive-class probabilities p1, natural log.

    Clip, as scikit-learn's log_loss (>= 1.5): p1 is clipped to [eps, 1 - eps] with eps the machine epsilon of
    p1's dtype (2.22e-16 for float64, 1.19e-7 for float32, the ONNX output), so a confident miss costs at most
    -ln(eps) (36.04 for float64, 15.94 for float32) instead of infinity. Computed in float64 after the clip.
    Raises ValueError for probabilities outside [0, 1] or non-finite."""
    y = _binary_truth(y)
    p1 = _scores(p1, y.size, "probabilities")
    if p1.size and (p1.min() < 0 or p1.max() > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    dtype = p1.dtype if np.issubdtype(p1.dtype, np.floating) else np.dtype(np.float64)
    eps = np.finfo(dtype).eps
    clipped = np.clip(p1.astype(dtype), eps, dtype.type(1) - eps).astype(np.float64)
    return float(-np.mean(np.where(y == 1, np.log(clipped), np.log1p(-clipped))))


def brier(y: np.ndarray, p1: np.ndarray) -> float:
    """Brier score: mean (p1 - y)^2 (Brier 1950); equals sklearn.metrics.brier_score_loss. No clipping."""
    y = _binary_truth(y)
    p1 = _scores(p1, y.size, "probabilities").astype(np.float64)
    return float(np.mean((p1 - y) ** 2))


def confusion(y: np.ndarray, labels: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) of predicted class indices against the truth, 1 = positive."""
    y = _binary_truth(y)
    labels = _binary_truth(labels)
    if labels.shape != y.shape:
        raise ValueError(f"labels must have shape {y.shape} like y, got {labels.shape}")
    tp = int(np.count_nonzero((labels == 1) & (y == 1)))
    fp = int(np.count_nonzero((labels == 1) & (y == 0)))
    fn = int(np.count_nonzero((labels == 0) & (y == 1)))
    return tp, fp, fn, y.size - tp - fp - fn


def _ratio(numerator: int, denominator: int) -> float:
    # scikit-learn's zero_division: a ratio with no denominator is 0.0 (its default "warn" returns 0.0 too).
    return numerator / denominator if denominator else 0.0


def label_metrics(y: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, precision, recall, F1 and positive rate of class-index labels, as
    scikit-learn's accuracy_score, balanced_accuracy_score (mean recall over the classes present in y),
    precision_score, recall_score and f1_score (2 tp / (2 tp + fp + fn)) with zero_division=0."""
    tp, fp, fn, tn = confusion(y, labels)
    rows = tp + fp + fn + tn
    recalls = [tp / (tp + fn)] if tp + fn else []
    recalls += [tn / (tn + fp)] if tn + fp else []
    return {
        "accuracy": _ratio(tp + tn, rows),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "positive_rate": _ratio(tp + fp, rows),
    }


def classification_metrics(y: np.ndarray, proba: np.ndarray, *, threshold: float = 0.5) -> dict[str, float]:
    """Holdout metrics of a binary classifier at a decision threshold.

    y: (n,) class indices (0 negative, 1 positive); proba: (n, 2) probabilities in class-index order, or (n,)
    positive-class probabilities; a row is labelled positive when p1 >= threshold, as scoring decides. Returns
    auc (NaN when y holds one class), log_loss (clip: see `log_loss`), brier, accuracy, balanced_accuracy,
    precision, recall, f1, positive_rate, rows and threshold; unrounded. Raises ValueError for shapes, labels,
    probabilities outside [0, 1] or NaN, and a threshold outside (0, 1)."""
    proba = np.asarray(proba)
    p1 = proba[:, 1] if proba.ndim == 2 and proba.shape[1:] == (2,) else proba
    y = _binary_truth(y)
    p1 = _scores(p1, y.size, "probabilities")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    labels = (p1 >= threshold).astype(np.int64)
    both_classes = 0 < int(y.sum()) < y.size
    return {
        "auc": roc_auc(y, p1) if both_classes else float("nan"),
        "log_loss": log_loss(y, p1),
        "brier": brier(y, p1),
        **label_metrics(y, labels),
        "rows": int(y.size),
        "threshold": float(threshold),
    }


def regression_metrics(y: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """Holdout metrics of a regression, on the target's scale.

    y, prediction: (n,) real, finite, n >= 1. Returns, unrounded:
    - rmse: sqrt(mean((y - p)^2)), as sklearn.metrics.root_mean_squared_error;
    - mae: mean(|y - p|), as mean_absolute_error;
    - r2: 1 - SS_res / SS_tot with SS_tot = sum((y - mean(y))^2), as r2_score (force_finite): 1.0 when both sums
      are 0 (a constant target predicted exactly), 0.0 when only SS_tot is 0;
    - mean_error: mean(p - y) (bias: positive when the model over-predicts); target_mean, target_std (population),
      prediction_mean and rows.
    Computed in float64. Raises ValueError for shapes, an empty y, non-real or non-finite values."""
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"y must be a non-empty one-dimensional array of target values, got shape {y.shape}")
    y = _scores(y, y.size, "y").astype(np.float64)
    p = _scores(prediction, y.size, "predictions").astype(np.float64)
    residual = y - p
    ss_res = float(np.sum(residual ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot > 0:
        r2 = 1.0 - ss_res / ss_tot
    else:  # a constant target (always so for one row)
        # scikit-learn's rule: 1.0 when SS_res is 0 as computed (a residual whose square underflows counts as 0);
        # for one row, where scikit-learn gives no value, only an exact prediction scores 1.0.
        exact = ss_res == 0 if y.size > 1 else not residual.any()
        r2 = 1.0 if exact else 0.0
    return {
        "rmse": float(np.sqrt(ss_res / y.size)),
        "mae": float(np.mean(np.abs(residual))),
        "r2": r2,
        "mean_error": float(np.mean(-residual)),
        "target_mean": float(y.mean()),
        "target_std": float(y.std()),
        "prediction_mean": float(p.mean()),
        "rows": int(y.size),
    }


def _class_truth(y: np.ndarray, classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional class indices, got shape {y.shape}")
    if y.size and not (np.issubdtype(y.dtype, np.integer) or np.array_equal(y, np.round(y))):
        raise ValueError("y must hold integer class indices")
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"y must hold class indices 0..{classes - 1}; got {np.unique(y)[:5].tolist()}")
    return y.astype(np.int64)


def multiclass_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, object]:
    """Holdout metrics of a multiclass classifier; the predicted class is the most probable one (ties: the
    lowest index, as numpy.argmax and the ONNX graph's label).

    y: (n,) class indices 0..k-1; proba: (n, k) probabilities in class-index order, k >= 2. Returns, unrounded:
    - macro_auc: mean over the classes of the one-vs-rest ROC AUC of p[:, c] (`roc_auc`), as
      sklearn.metrics.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=range(k)); NaN when a
      class is absent from y (the AUC of that class is undefined; scikit-learn 1.9 returns NaN and warns);
    - accuracy (accuracy_score); balanced_accuracy: mean recall over the classes present in y
      (balanced_accuracy_score); macro_f1: mean F1 over the classes present in y or predicted, 0 for a class
      with no true and no predicted row (f1_score(average="macro", zero_division=0));
    - log_loss: -mean(ln p[i, y_i]) with p clipped to [eps, 1 - eps], eps the machine epsilon of proba's dtype,
      no renormalisation (log_loss(y, proba, labels=range(k)), scikit-learn >= 1.5);
    - class_rates: per class, the share of rows predicted in it; rows.
    Raises ValueError for shapes, labels outside 0..k-1, probabilities outside [0, 1] or not finite."""
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(f"probabilities must have shape (n, k) with k >= 2 classes, got {proba.shape}")
    k = proba.shape[1]
    y = _class_truth(y, k)
    if proba.shape[0] != y.size:
        raise ValueError(f"probabilities must have {y.size} rows like y, got {proba.shape[0]}")
    if not np.issubdtype(proba.dtype, np.floating):
        proba = proba.astype(np.float64)
    if not np.isfinite(proba).all():
        raise ValueError("probabilities contain NaN or infinite values")
    if proba.size and (proba.min() < 0 or proba.max() > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    predicted = np.argmax(proba, axis=1)
    present = np.bincount(y, minlength=k) > 0
    aucs = [roc_auc((y == c).astype(np.int64), proba[:, c]) for c in range(k) if 0 < np.count_nonzero(y == c) < y.size]
    macro_auc = float(np.mean(aucs)) if present.all() and len(aucs) == k else float("nan")
    recalls, f1s = [], []
    for c in range(k):
        truth, guess = y == c, predicted == c
        tp = int(np.count_nonzero(truth & guess))
        if truth.any():
            recalls.append(tp / int(truth.sum()))
        if truth.any() or guess.any():
            f1s.append(_ratio(2 * tp, int(truth.sum()) + int(guess.sum())))
    eps = np.finfo(proba.dtype).eps
    chosen = np.clip(proba[np.arange(y.size), y], eps, proba.dtype.type(1) - eps).astype(np.float64)
    return {
        "macro_auc": macro_auc,
        "accuracy": _ratio(int(np.count_nonzero(predicted == y)), int(y.size)),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "log_loss": float(-np.mean(np.log(chosen))) if y.size else float("nan"),
        "class_rates": (np.bincount(predicted, minlength=k) / max(1, y.size)).tolist(),
        "rows": int(y.size),
    }
