"""DeLong's test of two correlated AUCs (mlops.stats.metrics.delong_test) against the definitional computation of
DeLong, DeLong & Clarke-Pearson (1988) (the structural components from every positive-negative pair), against a
paired bootstrap of the AUC difference, and its p-values under the null."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mlops.stats.metrics import delong_test, roc_auc
from sklearn.metrics import roc_auc_score


def _definitional(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """DeLong 1988 section 2 literally: psi(X, Y) = 1 if X > Y, 1/2 if equal, 0 otherwise, over every
    positive-negative pair; V10(X_i), V01(Y_j) the row and column means; S10, S01 their covariances."""
    def components(score):
        x, z = score[y == 1][:, None], score[y == 0][None, :]
        psi = (x > z) + 0.5 * (x == z)
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)

    (auc_a, v10_a, v01_a), (auc_b, v10_b, v01_b) = components(a), components(b)
    m, n = v10_a.size, v01_a.size
    s10, s01 = np.cov(np.vstack([v10_a, v10_b])), np.cov(np.vstack([v01_a, v01_b]))
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    z = (auc_a - auc_b) / math.sqrt(variance)
    return z, math.erfc(abs(z) / math.sqrt(2))


def _paired(seed: int, rows: int = 400, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype(np.int64)
    signal = y + rng.normal(0, 1.2, rows)
    a = signal + rng.normal(0, 0.5, rows)
    b = signal + rng.normal(0, 0.9, rows)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    return y, a, b


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, False)])
def test_delong_equals_the_definitional_computation(seed, ties):
    y, a, b = _paired(seed, ties=ties)
    result = delong_test(y, a, b)
    z, p = _definitional(y, a, b)
    assert result["auc_a"] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert result["auc_b"] == pytest.approx(roc_auc(y, b), abs=1e-12)
    assert result["z"] == pytest.approx(z, rel=1e-9)
    assert result["p_value"] == pytest.approx(p, rel=1e-9)


def test_delong_standard_error_agrees_with_a_paired_bootstrap():
    y, a, b = _paired(3, rows=600)
    rng = np.random.default_rng(11)
    differences = []
    for _ in range(1000):
        rows = rng.integers(0, y.size, y.size)
        if 0 < y[rows].sum() < y.size:
            differences.append(roc_auc(y[rows], a[rows]) - roc_auc(y[rows], b[rows]))
    assert delong_test(y, a, b)["standard_error"] == pytest.approx(np.std(differences, ddof=1), rel=0.1)


def test_delong_p_values_are_about_uniform_when_the_models_are_equally_good():
    rejections = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        y = (rng.random(300) < 0.4).astype(np.int64)
        signal = y + rng.normal(0, 1.0, 300)
        rejections += delong_test(y, signal + rng.normal(0, 0.7, 300), signal + rng.normal(0, 0.7, 300))[
            "p_value"] < 0.05
    assert 5 <= rejections <= 27  # 5% of 300 = 15; binomial 99.9% band


def test_delong_identical_scores_and_bad_input():
    y, a, _ = _paired(4)
    same = delong_test(y, a, a)
    assert same["difference"] == 0.0 and same["p_value"] == 1.0
    with pytest.raises(ValueError, match="at least 2 rows of each class"):
        delong_test(np.array([1, 0, 0]), np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.2, 0.1]))
    with pytest.raises(ValueError, match="NaN"):
        delong_test(y, np.where(np.arange(y.size) == 0, np.nan, a), a)
