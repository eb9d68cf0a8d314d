"""Regression and multiclass monitoring figures (mlops.stats.tasks) against references: canary divergence against
scipy's ks_2samp and chi2_contingency, regression fairness against a pandas group-by, prediction drift on
identical and shifted predictions, and the prediction grid that makes float32 and float64 predictions agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from mlops.core.schemas import CanaryPolicy, DriftPolicy
from mlops.stats.tasks import (
    canary_divergence,
    prediction_drift,
    prediction_profile,
    prediction_quantum,
    quantize,
    regression_fairness,
)
from scipy import stats as scipy_stats

POLICY = CanaryPolicy(min_requests=20)


@settings(max_examples=150, deadline=None)
@given(arrays(np.float64, st.integers(20, 200), elements=st.floats(-1e3, 1e3)),
       arrays(np.float64, st.integers(20, 200), elements=st.floats(-1e3, 1e3)))
def test_regression_canary_ks_statistic_equals_scipy(live, canary):
    result = canary_divergence("regression", live, canary, POLICY)
    reference = scipy_stats.ks_2samp(live, canary)
    assert result.judged and result.figures["ks_statistic"] == pytest.approx(reference.statistic, abs=1e-6)


def test_regression_canary_p_value_agrees_with_scipys_asymptotic_value():
    rng = np.random.default_rng(3)
    live, canary = rng.normal(0, 1, 2_000), rng.normal(0.1, 1, 600)
    result = canary_divergence("regression", live, canary, POLICY)
    reference = scipy_stats.ks_2samp(live, canary, method="asymp")
    assert result.figures["ks_p_value"] == pytest.approx(reference.pvalue, rel=0.05, abs=1e-4)


def test_regression_canary_diverges_only_when_significant_and_large():
    rng = np.random.default_rng(1)
    live = rng.beta(2, 6, 400)
    shifted = canary_divergence("regression", live, 1 - rng.beta(2, 6, 60), POLICY)  # an inverted target
    assert shifted.diverged and shifted.figures["ks_statistic"] > 0.8 and "KS D" in shifted.reason
    # Significant but small (huge samples): no rollback; large but not significant (tiny samples): no rollback.
    small = canary_divergence("regression", rng.normal(0, 1, 50_000), rng.normal(0.05, 1, 50_000), POLICY)
    assert small.figures["ks_p_value"] < 0.01 and not small.diverged
    few = canary_divergence("regression", rng.normal(0, 1, 20), rng.normal(0.5, 1, 20), POLICY)
    assert few.judged and not few.diverged


def test_canary_divergence_waits_below_the_minimum_counts():
    result = canary_divergence("regression", np.zeros(100), np.ones(19), POLICY)
    assert not result.judged and not result.diverged and result.figures["canary_predictions"] == 19


def test_multiclass_canary_chi_square_equals_scipy_when_nothing_is_pooled():
    live = np.repeat([0, 1, 2, 3], [300, 250, 200, 150])
    canary = np.repeat([0, 1, 2, 3], [20, 30, 40, 30])
    result = canary_divergence("multiclass_classification", live, canary, POLICY)
    table = np.array([np.bincount(live), np.bincount(canary)])
    _, p_value, _, _ = scipy_stats.chi2_contingency(table, correction=False)
    assert result.figures["chi2_p_value"] == pytest.approx(p_value, rel=1e-9)
    assert result.figures["classes_tested"] == 4
    shares = table / table.sum(axis=1, keepdims=True)
    expected_v = np.sqrt(0.5 * np.sum((shares[0] - shares[1]) ** 2 / (shares[0] + shares[1])))
    assert result.figures["cramers_v_equal_weight"] == pytest.approx(expected_v, abs=1e-6)


def test_multiclass_canary_flags_reversed_classes_and_not_an_identical_model():
    rng = np.random.default_rng(2)
    shares = [0.4, 0.3, 0.2, 0.1]
    live = rng.choice(4, 500, p=shares)
    reversed_ = canary_divergence("multiclass_classification", live, 3 - rng.choice(4, 60, p=shares), POLICY)
    assert reversed_.diverged and "Cramér's V" in reversed_.reason
    rollbacks = sum(canary_divergence("multiclass_classification", rng.choice(4, 500, p=shares),
                                      rng.choice(4, 60, p=shares), POLICY).diverged for _ in range(200))
    assert rollbacks <= 4, "an identical model must rarely be rolled back (p-value 0.01 and an effect floor)"


def test_identical_regression_models_are_rarely_rolled_back():
    rng = np.random.default_rng(4)
    rollbacks = sum(canary_divergence("regression", rng.gamma(2, 1, 400), rng.gamma(2, 1, 25), POLICY).diverged
                    for _ in range(200))
    assert rollbacks <= 4


def test_regression_fairness_equals_a_pandas_group_by_and_leaves_small_groups_out():
    rng = np.random.default_rng(5)
    groups = np.array(["F"] * 200 + ["M"] * 150 + ["X"] * 10)
    y = rng.normal(10, 2, groups.size)
    predictions = y + rng.normal(0, 1, groups.size) + np.where(groups == "M", 0.5, 0.0)
    result = regression_fairness(y, predictions, groups, min_group_size=30)
    frame = pd.DataFrame({"g": groups, "y": y, "p": predictions, "e": np.abs(y - predictions)})
    by = frame.groupby("g").agg(mean_prediction=("p", "mean"), mae=("e", "mean"))
    qualifying = by.loc[["F", "M"]]
    scale = y.std()
    assert result["checked"] and result["excluded_groups"] == {"X": 10}
    assert result["mean_prediction_spread"] == pytest.approx(np.ptp(qualifying["mean_prediction"]) / scale, abs=1e-6)
    assert result["mae_spread"] == pytest.approx(np.ptp(qualifying["mae"]) / scale, abs=1e-6)
    assert result["groups"]["X"]["rows"] == 10 and result["groups"]["M"]["mae"] == pytest.approx(by.loc["M", "mae"])


def test_regression_fairness_with_fewer_than_two_qualifying_groups_is_not_checked_rather_than_zero():
    y = np.arange(100, dtype=float)
    result = regression_fairness(y, y, np.array(["F"] * 95 + ["M"] * 5), min_group_size=30)
    assert result["checked"] is False and "1 group(s)" in result["reason"]
    assert "mean_prediction_spread" not in result
    constant = regression_fairness(y, y, np.array(["F"] * 100))
    assert constant["checked"] is False


def test_regression_fairness_caps_the_reported_groups():
    groups = np.array([f"g{i}" for i in range(20_000)])
    result = regression_fairness(np.zeros(groups.size), np.zeros(groups.size), groups)
    assert len(result["groups"]) == 50 and result["groups_total"] == 20_000 and len(result["excluded_groups"]) == 50


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-9, 1e12))
def test_prediction_grid_step_lies_between_1e_4_and_1e_3_target_sd(std):
    # Within float64 rounding: for std a hair below a power of ten, std * 1e-4 rounds to that power / 1e4 while
    # std * 1e-3 stays below power / 1e3, and no power of ten lies strictly between the two rounded products.
    quantum = prediction_quantum(std)
    assert std * 1e-4 * (1 - 1e-12) < quantum <= std * 1e-3 * (1 + 1e-12)


@pytest.mark.parametrize("std", [1e-3, 0.1, 4.3, 9.9e6, 1e9])
@pytest.mark.parametrize("center", [0.0, -5e4, 1e9])
def test_float32_sums_and_float64_predictions_of_the_same_model_share_the_grid(std, center):
    """The served graph's predictions carry float32 sums around the training mean; the baseline's are float64.
    On the grid they agree except where a value sits within float32 rounding of a grid midpoint: rare."""
    rng = np.random.default_rng(7)
    values = center + std * rng.normal(size=20_000)
    served = center + (values - center).astype(np.float32).astype(np.float64)
    quantum = prediction_quantum(std)
    assert np.mean(quantize(values, quantum) != quantize(served, quantum)) <= 0.002


def test_prediction_drift_on_the_same_predictions_is_quiet_and_on_shifted_ones_drifts():
    rng = np.random.default_rng(6)
    policy = DriftPolicy(min_samples=300)
    baseline = prediction_profile("regression", rng.beta(2, 6, 5_000), target_std=0.15)
    same = prediction_drift("regression", baseline, rng.beta(2, 6, 800), policy)
    assert same["status"] == "checked" and same["drifted"] is False
    shifted = prediction_drift("regression", baseline, rng.beta(3, 5, 800), policy)
    assert shifted["drifted"] is True and shifted["psi"] > 0.2 and shifted["ks_statistic"] > 0.1
    few = prediction_drift("regression", baseline, rng.beta(2, 6, 100), policy)
    assert few["status"] == "insufficient_data" and few["drifted"] is None
    classes = ("A", "B", "C")
    grades = prediction_profile("multiclass_classification", rng.choice(3, 5_000, p=[0.5, 0.3, 0.2]),
                                classes=classes)
    assert sum(grades["counts"]) == 5_000 and grades["classes"] == list(classes)
    moved = prediction_drift("multiclass_classification", grades, rng.choice(3, 800, p=[0.2, 0.3, 0.5]), policy)
    assert moved["kind"] == "categorical" and moved["drifted"] is True
    quiet = prediction_drift("multiclass_classification", grades, rng.choice(3, 800, p=[0.5, 0.3, 0.2]), policy)
    assert quiet["drifted"] is False


def test_prediction_drift_of_a_profile_without_the_task_is_not_checked_and_binary_is_left_to_the_drift_report():
    old_profile = {"kind": "prediction", "n": 10, "psi_edges": [0.5], "psi_counts": [5, 5]}
    result = prediction_drift("regression", old_profile, np.zeros(1_000), DriftPolicy())
    assert result["status"] == "not_checked" and result["drifted"] is None
    assert prediction_drift("binary_classification", old_profile, np.zeros(1_000), DriftPolicy()) is None
