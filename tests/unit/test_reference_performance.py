"""Reference checks of the performance statistics: the expected calibration error against scikit-learn's
calibration_curve, the calibration check on models that are and are not calibrated, and CBPE (mlops.stats.cbpe) against
a hand-computed case, NannyML's published algorithm, a brute-force pairwise formula and the realised metrics of labels
drawn from the probabilities (scikit-learn's accuracy, precision, recall and ROC AUC)."""

from __future__ import annotations

import numpy as np
import pytest
from mlops.stats.calibration import (
    CALIBRATED,
    INSUFFICIENT,
    MISCALIBRATED,
    calibration_check,
    consistency_p_value,
    expected_calibration_error,
)
from mlops.stats.cbpe import estimate_binary, expected_confusion, expected_roc_auc
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, auc, precision_score, recall_score, roc_auc_score


def _sklearn_ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE from calibration_curve's per-bin figures, weighted by the bin counts (sklearn's own binning)."""
    prob_true, prob_pred = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=bins)
    counts = counts[counts > 0]
    return float(np.sum(counts / y.size * np.abs(prob_true - prob_pred)))


@pytest.mark.parametrize("seed", range(6))
def test_ece_equals_the_figure_from_sklearn_calibration_curve(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 5000))
    p = rng.beta(0.7 + seed, 2.0, n)
    p[: n // 10] = np.round(p[: n // 10], 1)  # values on the bin edges, 0 and 1 included
    y = (rng.random(n) < np.clip(p * rng.uniform(0.6, 1.4), 0, 1)).astype(int)
    ours = expected_calibration_error(y, p)
    assert ours["ece"] == pytest.approx(_sklearn_ece(y, p), abs=1e-12)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert ours["mce"] == pytest.approx(float(np.max(np.abs(prob_true - prob_pred))), abs=1e-12)


def test_ece_hand_computed_case():
    # bins (0, 0.1], (0.1, 0.2] ... : 0.05 and 0.1 share the first bin, 0.85 and 0.9 the ninth
    y = np.array([0, 1, 1, 1])
    p = np.array([0.05, 0.1, 0.85, 0.9])
    # first bin: observed 1/2, mean 0.075 -> 0.425; ninth: observed 1, mean 0.875 -> 0.125; weights 1/2 each
    assert expected_calibration_error(y, p)["ece"] == pytest.approx(0.5 * 0.425 + 0.5 * 0.125)
    assert expected_calibration_error(y, p)["mce"] == pytest.approx(0.425)


def test_ece_refuses_bad_input_with_the_problem_named():
    with pytest.raises(ValueError, match="lie in"):
        expected_calibration_error([0, 1], [0.5, 1.5])
    with pytest.raises(ValueError, match="class indices"):
        expected_calibration_error([0, 2], [0.5, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        expected_calibration_error([0, 1], [0.5, np.nan])


def test_consistency_p_value_is_about_uniform_for_calibrated_draws_and_tiny_for_a_distorted_model():
    rng = np.random.default_rng(7)
    p_values = []
    for _ in range(40):
        p = rng.beta(2, 5, 800)
        y = (rng.random(p.size) < p).astype(int)
        p_values.append(consistency_p_value(p, expected_calibration_error(y, p)["ece"], resamples=200,
                                            seed=int(rng.integers(1 << 30)))[0])
    assert 0.3 < float(np.mean(p_values)) < 0.7  # uniform under calibration: mean 0.5
    p = rng.beta(2, 5, 800)
    y = (rng.random(p.size) < p).astype(int)
    distorted = np.clip(p * 1.8, 0, 1)
    value, null_mean = consistency_p_value(distorted, expected_calibration_error(y, distorted)["ece"])
    assert value < 0.01 and null_mean < expected_calibration_error(y, distorted)["ece"]


def _logistic_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    logit = -1.4 + X @ np.array([1.2, -0.8, 0.5])
    return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def test_calibration_check_trusts_logistic_regression_and_flags_a_class_weighted_one():
    X, y = _logistic_data(6000, 1)
    Xh, yh = _logistic_data(3000, 2)
    plain = LogisticRegression().fit(X, y).predict_proba(Xh)[:, 1]
    weighted = LogisticRegression(class_weight="balanced").fit(X, y).predict_proba(Xh)[:, 1]
    ok = calibration_check(yh, plain, max_error=0.05, p_value=0.01)
    bad = calibration_check(yh, weighted, max_error=0.05, p_value=0.01)
    assert ok["status"] == CALIBRATED and ok["trusted"] and ok["ece"] < 0.05, ok
    assert bad["status"] == MISCALIBRATED and not bad["trusted"] and bad["ece"] > 0.1, bad
    assert "expected calibration error" in bad["reason"] and bad["p_value"] < 0.01
    small = calibration_check(yh[:50], plain[:50], max_error=0.05, p_value=0.01)
    assert small["status"] == INSUFFICIENT and not small["trusted"]


def test_calibration_check_keeps_trust_when_a_large_ece_is_binning_noise():
    rng = np.random.default_rng(3)
    p = rng.beta(2, 5, 120)
    y = (rng.random(p.size) < p).astype(int)
    result = calibration_check(y, p, max_error=0.01, p_value=0.01)  # 120 rows: ECE ~0.08 from noise alone
    assert result["ece"] > 0.01 and result["status"] == CALIBRATED, result
    assert "binning noise" in result["reason"]


# ---- CBPE ------------------------------------------------------------------------------------------------------

def test_cbpe_hand_computed_case():
    p = np.array([0.9, 0.6, 0.2, 0.2])
    confusion = expected_confusion(p, 0.5)
    assert confusion == pytest.approx({"tp": 1.5, "fp": 0.5, "fn": 0.4, "tn": 1.6})
    estimate = estimate_binary(p, 0.5)
    assert estimate["accuracy"] == pytest.approx(3.1 / 4)
    assert estimate["precision"] == pytest.approx(0.75) and estimate["recall"] == pytest.approx(1.5 / 1.9)
    assert estimate["f1"] == pytest.approx(3.0 / (3.0 + 0.5 + 0.4))
    # Expected ROC: (0, 0), (0.1/2.1, 0.9/1.9), (0.5/2.1, 1.5/1.9), (1, 1) with the tied 0.2s as one step:
    # area = 0.045 + 0.48 + 2.72 = 3.245 (in units of P x N = 1.9 x 2.1)
    assert estimate["auc"] == pytest.approx(3.245 / (1.9 * 2.1))


def _pairwise_expected_auc(p: np.ndarray) -> float:
    """sum_j (1 - p_j) (sum_{i: p_i > p_j} p_i + 1/2 sum_{i: p_i = p_j} p_i) / (sum p x sum (1 - p)), O(n^2)."""
    higher = (p[:, None] > p[None, :]) * p[:, None]
    tied = (p[:, None] == p[None, :]) * p[:, None]
    return float(((1 - p) * (higher.sum(axis=0) + 0.5 * tied.sum(axis=0))).sum() / (p.sum() * (1 - p).sum()))


def _nannyml_expected_auc(p: np.ndarray) -> float:
    """NannyML's estimate_roc_auc as its documentation describes it: sort by score, highest first; cumulative
    calibrated probabilities are the expected true positives, cumulative 1 - p the false positives; (0, 0) first;
    sklearn's trapezoid `auc`."""
    ordered = np.sort(p)[::-1]
    tps = np.r_[0, np.cumsum(ordered)]
    fps = np.r_[0, np.cumsum(1 - ordered)]
    return float(auc(fps / fps[-1], tps / tps[-1]))


@pytest.mark.parametrize("seed", range(5))
def test_expected_auc_equals_nannyml_for_distinct_scores_and_the_pairwise_formula_with_ties(seed):
    rng = np.random.default_rng(seed)
    p = rng.beta(1 + seed, 3, 400)
    assert expected_roc_auc(p) == pytest.approx(_nannyml_expected_auc(p), abs=1e-12)
    tied = np.round(p, 1)  # many ties: the grouped curve, independent of the order of ties
    assert expected_roc_auc(tied) == pytest.approx(_pairwise_expected_auc(tied), abs=1e-12)
    assert expected_roc_auc(tied[rng.permutation(tied.size)]) == pytest.approx(expected_roc_auc(tied), abs=1e-15)


def test_cbpe_matches_realised_metrics_of_labels_drawn_from_calibrated_probabilities():
    rng = np.random.default_rng(11)
    errors = {"accuracy": [], "precision": [], "recall": [], "auc": []}
    for _ in range(60):
        p = rng.beta(2, 5, 2000)
        y = (rng.random(p.size) < p).astype(int)
        estimate = estimate_binary(p, 0.35)
        decided = (p >= 0.35).astype(int)
        realised = {"accuracy": accuracy_score(y, decided), "precision": precision_score(y, decided),
                    "recall": recall_score(y, decided), "auc": roc_auc_score(y, p)}
        for name in errors:
            errors[name].append(estimate[name] - realised[name])
    for name, values in errors.items():
        values = np.asarray(values)
        # unbiased (the mean error within 4 standard errors of 0) and close (each within about 0.04 at 2,000 rows)
        assert abs(values.mean()) < 4 * values.std() / np.sqrt(values.size) + 2e-3, (name, values.mean())
        assert np.abs(values).max() < 0.05, (name, np.abs(values).max())


def test_cbpe_is_wrong_for_a_miscalibrated_model_which_is_why_it_is_flagged():
    rng = np.random.default_rng(12)
    truth = rng.beta(2, 5, 20_000)
    y = (rng.random(truth.size) < truth).astype(int)
    served = truth ** 0.3  # the same ranking (the same realised AUC), inflated probabilities
    estimate = estimate_binary(served, 0.5)
    decided = (served >= 0.5).astype(int)
    assert estimate["accuracy"] - accuracy_score(y, decided) > 0.2
    assert estimate["precision"] - precision_score(y, decided) > 0.2
    assert abs(estimate["auc"] - roc_auc_score(y, served)) > 0.04


def test_cbpe_refuses_bad_input_and_answers_nan_when_undefined():
    with pytest.raises(ValueError, match="threshold"):
        expected_confusion([0.5], 1.0)
    with pytest.raises(ValueError, match="one-dimensional"):
        estimate_binary(np.zeros((2, 2)), 0.5)
    assert np.isnan(expected_roc_auc([1.0, 1.0])) and estimate_binary([], 0.5)["rows"] == 0
