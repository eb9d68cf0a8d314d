"""Baseline profiles written at training time: what the training data and its predictions looked like."""

from __future__ import annotations

from typing import Any

import numpy as np

from .schemas import ModelFamily
from .stats import bin_counts

PSI_BINS = 10
KS_QUANTILES = 999
PREDICTION_EDGES = np.linspace(0.0, 1.0, 21)[1:-1]


def numeric_profile(values: np.ndarray) -> dict[str, Any]:
    """Decile edges for PSI are taken from the 999-quantile grid used for KS, so a drift check bins each current
    value once (against the grid) and derives both statistics from that one histogram."""
    values = values.astype(np.float64)
    levels = np.arange(1, KS_QUANTILES + 1) / (KS_QUANTILES + 1)
    grid = np.quantile(values, levels)
    step = (KS_QUANTILES + 1) // PSI_BINS
    edges = np.unique(grid[step - 1::step][: PSI_BINS - 1])
    return {
        "kind": "numeric",
        "n": int(values.size),
        "psi_edges": edges.tolist(),
        "psi_counts": bin_counts(values, edges).tolist(),
        "ks_quantiles": grid.tolist(),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def categorical_profile(codes: np.ndarray, categories: tuple[str, ...]) -> dict[str, Any]:
    counts = np.bincount(codes.astype(np.int64), minlength=len(categories))[: len(categories)]
    return {"kind": "categorical", "n": int(codes.size), "categories": list(categories),
            "counts": counts.tolist()}


def prediction_profile(positive_probability: np.ndarray) -> dict[str, Any]:
    p = positive_probability.astype(np.float64)
    return {"kind": "prediction", "n": int(p.size), "psi_edges": PREDICTION_EDGES.tolist(),
            "psi_counts": bin_counts(p, PREDICTION_EDGES).tolist(), "mean": float(p.mean())}


def baseline_profile(family: ModelFamily, X: np.ndarray, positive_probability: np.ndarray) -> dict[str, Any]:
    """Per numeric feature quantile edges and bin counts (plus KS quantiles), per categorical feature category
    counts, and the distribution of predicted probabilities."""
    features: dict[str, Any] = {}
    for j, feature in enumerate(family.features):
        column = X[:, j]
        if feature.kind == "categorical":
            features[feature.name] = categorical_profile(column, feature.categories)
        else:
            features[feature.name] = numeric_profile(column)
    return {"family": family.name, "rows": int(X.shape[0]), "features": features,
            "prediction": prediction_profile(positive_probability)}
