"""Regression and multiclass holdout metrics equal scikit-learn's on any input (hypothesis), and the listed
edge cases: constant targets, a class never predicted, tiny and huge values, float32 probabilities."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from mlops.stats.metrics import multiclass_metrics, regression_metrics
from sklearn import metrics as skm

FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def regression_case(draw):
    n = draw(st.integers(1, 60))
    y = draw(arrays(np.float64, n, elements=FINITE))
    p = draw(arrays(np.float64, n, elements=FINITE))
    return y, p


@settings(max_examples=200, deadline=None)
@given(regression_case())
def test_regression_metrics_equal_scikit_learn(case):
    y, p = case
    ours = regression_metrics(y, p)
    assert ours["rmse"] == pytest.approx(skm.root_mean_squared_error(y, p), rel=1e-9, abs=1e-9)
    assert ours["mae"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-9, abs=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one row: r2_score warns that R^2 is not well-defined
        expected_r2 = skm.r2_score(y, p) if y.size > 1 else (1.0 if np.all(y == p) else 0.0)
    assert ours["r2"] == pytest.approx(expected_r2, rel=1e-7, abs=1e-7)
    assert ours["mean_error"] == pytest.approx(float(np.mean(p - y)), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("y", "p", "r2"), [
    ([3.0, 3.0, 3.0], [3.0, 3.0, 3.0], 1.0),   # constant target predicted exactly: r2_score's force_finite 1.0
    ([3.0, 3.0, 3.0], [3.0, 2.0, 3.0], 0.0),   # constant target missed: 0.0, never -inf
    ([1.0, 2.0, 3.0], [2.0, 2.0, 2.0], 0.0),   # the mean for every row
    ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], -3.0),  # worse than the mean
])
def test_regression_r2_edge_cases_match_scikit_learn(y, p, r2):
    assert regression_metrics(np.array(y), np.array(p))["r2"] == r2 == skm.r2_score(y, p)


def test_regression_metrics_keep_precision_on_a_large_target():
    y = 1e9 + np.array([0.0, 1.0, 2.0, 3.0])
    p = y + np.array([0.5, -0.5, 0.5, -0.5])
    figures = regression_metrics(y, p)
    assert figures["rmse"] == 0.5 and figures["mae"] == 0.5 and figures["r2"] == pytest.approx(0.8)


@pytest.mark.parametrize(("y", "p", "message"), [
    ([], [], "non-empty"),
    ([1.0, 2.0], [1.0], r"shape \(2,\)"),
    ([1.0, np.nan], [1.0, 2.0], "NaN or infinite"),
    ([1.0, 2.0], [1.0, np.inf], "NaN or infinite"),
])
def test_regression_metrics_refuse_bad_input_naming_the_problem(y, p, message):
    with pytest.raises(ValueError, match=message):
        regression_metrics(np.array(y, dtype=np.float64), np.array(p, dtype=np.float64))


@st.composite
def multiclass_case(draw):
    k = draw(st.integers(3, 6))
    n = draw(st.integers(k, 80))
    # Every class in y (a stratified holdout holds each), the rest drawn freely.
    y = np.concatenate([np.arange(k), draw(arrays(np.int64, n - k, elements=st.integers(0, k - 1)))])
    raw = draw(arrays(np.float64, (n, k), elements=st.floats(0.0, 1.0)))
    raw = raw + draw(st.sampled_from([1e-12, 1e-3, 0.5]))
    proba = raw / raw.sum(axis=1, keepdims=True)
    return y, proba, k


@settings(max_examples=200, deadline=None)
@given(multiclass_case())
def test_multiclass_metrics_equal_scikit_learn(case):
    y, proba, k = case
    ours = multiclass_metrics(y, proba)
    labels = list(range(k))
    predicted = np.argmax(proba, axis=1)
    assert ours["macro_auc"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels), abs=1e-12)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted), abs=1e-12)
    assert ours["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, predicted), abs=1e-12)
    assert ours["macro_f1"] == pytest.approx(skm.f1_score(y, predicted, average="macro", zero_division=0), abs=1e-12)
    assert ours["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=labels), rel=1e-12)
    assert sum(ours["class_rates"]) == pytest.approx(1.0)


def test_multiclass_log_loss_clips_float32_probabilities_as_scikit_learn_does():
    y = np.array([0, 1, 2, 2])
    proba = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]], dtype=np.float32)
    ours = multiclass_metrics(y, proba)["log_loss"]
    assert ours == pytest.approx(skm.log_loss(y, proba, labels=[0, 1, 2]), rel=1e-6)
    assert ours == pytest.approx((-np.log(np.finfo(np.float32).eps) - np.log(0.5)) / 4, rel=1e-6)


def test_multiclass_macro_auc_is_nan_when_a_class_is_absent_as_in_scikit_learn():
    y = np.array([0, 1, 0, 1])
    proba = np.full((4, 3), 1 / 3)
    assert np.isnan(multiclass_metrics(y, proba)["macro_auc"])
    with pytest.warns(skm._ranking.UndefinedMetricWarning):
        assert np.isnan(skm.roc_auc_score(y, proba, multi_class="ovr", labels=[0, 1, 2]))


def test_multiclass_macro_f1_counts_a_class_that_is_never_predicted_as_zero():
    y = np.array([0, 1, 2, 2, 1, 0])
    proba = np.tile([0.5, 0.3, 0.2], (6, 1))  # always class 0
    ours = multiclass_metrics(y, proba)
    assert ours["macro_f1"] == pytest.approx(skm.f1_score(y, np.zeros(6, int), average="macro", zero_division=0))
    assert ours["macro_f1"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert ours["class_rates"] == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(("y", "proba", "message"), [
    ([0, 1, 3], np.full((3, 3), 1 / 3), r"0\.\.2"),
    ([0, 1, 2], np.full((3, 1), 1.0), "k >= 2"),
    ([0, 1, 2], np.full((2, 3), 1 / 3), "3 rows"),
    ([0, 1, 2], np.array([[0.5, 0.5, 0.0], [0.1, 0.2, 1.2], [0.3, 0.3, 0.4]]), r"\[0, 1\]"),
    ([0, 1, 2], np.array([[0.5, 0.5, np.nan], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]]), "NaN"),
])
def test_multiclass_metrics_refuse_bad_input_naming_the_problem(y, proba, message):
    with pytest.raises(ValueError, match=message):
        multiclass_metrics(np.array(y), proba)
