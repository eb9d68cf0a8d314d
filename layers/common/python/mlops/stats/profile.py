"""Baseline profiles written at training time: what the training data and its predictions looked like.

Computed from the float64 training values (never a float32 cast: 0.7 and float32(0.7) fall on different sides
of a bin edge at 0.7), with the binning drift checks use (`stats.bin_index`). Format 2 (`PROFILE_FORMAT`); the
drift check reports the features of an older profile as not checked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops.core.schemas import ModelFamily
from mlops.stats.distributions import bin_counts, ecdf_summary

PROFILE_FORMAT = 2
PSI_BINS = 10
# Distinct values kept exactly (discrete features: KS is then exact); more distinct values are summarised by
# this many quantiles (KS bounded within about 1/(KS_POINTS + 1)).
KS_POINTS = 999
PREDICTION_EDGES = np.linspace(0.0, 1.0, 21)[1:-1]
# Predicted probabilities are binned after rounding to 6 decimals: the baseline's come from the trained estimator
# in float64, the served ones from the ONNX graph in float32 (7 significant digits), and a forest's 0.15 must
# land in the same bin from either.
PREDICTION_DECIMALS = 6


def _float64(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype != np.float64:
        raise TypeError(f"{what}: profiles are computed from float64 values, got {values.dtype} (a float32 cast "
                        "moves values such as 0.7 across bin edges)")
    return values


def numeric_profile(values: np.ndarray) -> dict[str, Any]:
    """Profile of one numeric feature. values: (n,) float64, NaN = missing (counted, left out of the statistics).

    Keeps the ECDF summary for KS (`stats.ecdf_summary`: every distinct value with exact counts when there are at
    most KS_POINTS of them, else KS_POINTS quantiles with exact counts), and PSI decile edges chosen among those
    points (inverted-CDF deciles: actual values) with the count per bin, so a drift check bins each current value
    once. Raises TypeError for a non-float64 array, ValueError for infinite values."""
    values = _float64(values, "numeric_profile")
    present = values[~np.isnan(values)]
    if not np.isfinite(present).all():
        raise ValueError(f"numeric_profile: {int(np.isinf(present).sum())} infinite values; a profile needs finite "
                         "numbers (NaN for missing)")
    profile: dict[str, Any] = {"kind": "numeric", "n": int(present.size), "missing": int(values.size - present.size)}
    if present.size == 0:
        return profile
    points, at_or_below, below, exact = ecdf_summary(present, KS_POINTS)
    deciles = np.quantile(present, np.arange(1, PSI_BINS) / PSI_BINS, method="inverted_cdf")
    edges = np.unique(deciles)
    return {
        **profile,
        "psi_edges": edges.tolist(),
        "psi_counts": bin_counts(present, edges).tolist(),
        "ecdf_points": points.tolist(),
        "ecdf_at_or_below": at_or_below.tolist(),
        "ecdf_below": below.tolist(),
        "ecdf_exact": bool(exact),
        "mean": float(present.mean()),
        "std": float(present.std()),
        "min": float(present.min()),
        "max": float(present.max()),
    }


def category_counts(codes: np.ndarray, levels: int) -> tuple[np.ndarray, int]:
    """Counts per category index 0..levels-1 of float64 codes (NaN = missing), and the number missing.
    Raises ValueError for a code that is not an integer in 0..levels-1."""
    codes = np.asarray(codes, dtype=np.float64)
    present = codes[~np.isnan(codes)]
    bad = (present < 0) | (present > levels - 1) | (present != np.floor(present))
    if bad.any():
        raise ValueError(f"category codes must be integers in 0..{levels - 1} (NaN for missing); got "
                         f"{present[bad][:5].tolist()}")
    return np.bincount(present.astype(np.int64), minlength=levels), int(codes.size - present.size)


def categorical_profile(codes: np.ndarray, categories: tuple[str, ...]) -> dict[str, Any]:
    """Profile of one categorical feature. codes: (n,) float64 category indices, k = len(categories) for "other"
    (an undeclared category), NaN = missing. `counts` has k + 1 entries: one per category, then "other"."""
    codes = _float64(codes, "categorical_profile")
    counts, missing = category_counts(codes, len(categories) + 1)
    return {"kind": "categorical", "n": int(counts.sum()), "missing": missing, "categories": list(categories),
            "counts": counts.tolist()}


def prediction_counts(positive_probability: np.ndarray) -> np.ndarray:
    """Counts of predicted probabilities per PREDICTION_EDGES bin (right-closed), after rounding to
    PREDICTION_DECIMALS decimals; the one binning of predictions for profiles, drift and canary checks."""
    p = np.round(np.asarray(positive_probability, dtype=np.float64), PREDICTION_DECIMALS)
    return bin_counts(p, PREDICTION_EDGES)


def prediction_profile(positive_probability: np.ndarray) -> dict[str, Any]:
    """Distribution of the positive-class probability: (n,) float64, no NaN."""
    p = np.asarray(positive_probability, dtype=np.float64)
    return {"kind": "prediction", "n": int(p.size), "psi_edges": PREDICTION_EDGES.tolist(),
            "psi_counts": prediction_counts(p).tolist(), "mean": float(p.mean()) if p.size else None}


def baseline_profile(family: ModelFamily, X: np.ndarray, positive_probability: np.ndarray) -> dict[str, Any]:
    """Per numeric feature the PSI bins and the ECDF summary, per categorical feature the category counts (k + 1
    with "other"), missing values counted per feature, and the distribution of predicted probabilities.

    X: (rows, features) float64 in schema order (NaN = missing, category index, k = "other"), the training rows;
    positive_probability: (rows,) the trained estimator's positive-class probability on them. Raises TypeError
    for a non-float64 X, ValueError for a shape that does not match the family or invalid values."""
    X = _float64(X, "baseline_profile")
    if X.ndim != 2 or X.shape[1] != len(family.features):
        raise ValueError(f"baseline_profile: X has shape {X.shape}, expected (rows, {len(family.features)}) for "
                         f"family {family.name!r}")
    features: dict[str, Any] = {}
    for j, feature in enumerate(family.features):
        column = np.ascontiguousarray(X[:, j])
        if feature.kind == "categorical":
            features[feature.name] = categorical_profile(column, feature.categories)
        else:
            features[feature.name] = numeric_profile(column)
    return {"format": PROFILE_FORMAT, "family": family.name, "rows": int(X.shape[0]), "features": features,
            "prediction": prediction_profile(positive_probability)}
