"""Holdout metrics equal scikit-learn's: AUC, log loss, Brier, F1, balanced accuracy, precision, recall, accuracy,
on ties, constants, tiny samples, extreme probabilities and float32 inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlops.stats.metrics import brier, classification_metrics, label_metrics, log_loss, roc_auc
from sklearn import metrics as skm

SETTINGS = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
EXTREME = [0.0, 1.0, 1e-300, 1e-20, 1e-15, 1e-12, 1 - 1e-12, 1 - 1e-16, 0.5, 0.3, 0.7]


@st.composite
def labelled_probabilities(draw, min_size: int = 2):
    n = draw(st.integers(min_size, 60))
    y = np.asarray(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.int64)
    p = np.asarray(draw(st.lists(st.one_of(st.sampled_from(EXTREME), st.floats(0, 1)), min_size=n, max_size=n)))
    return y, p


def sklearn_labels(y: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # balanced accuracy warns when y holds one class
        return {"accuracy": skm.accuracy_score(y, labels),
                "balanced_accuracy": skm.balanced_accuracy_score(y, labels) if len(np.unique(y)) > 1
                else skm.recall_score(y, labels, pos_label=int(y[0]), zero_division=0),
                "precision": skm.precision_score(y, labels, zero_division=0),
                "recall": skm.recall_score(y, labels, zero_division=0),
                "f1": skm.f1_score(y, labels, zero_division=0)}


def test_auc_ranks_tiny_probabilities_without_clipping_them_into_ties():
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([1e-20, 1e-15, 1e-18, 0.6, 0.9, 0.2])
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-15)
    assert roc_auc(y, p) == pytest.approx(8 / 9)  # was 0.778
    assert classification_metrics(y, p)["auc"] == pytest.approx(8 / 9)


@SETTINGS
@given(data=labelled_probabilities())
def test_auc_equals_scikit_learn_on_any_scores(data):
    y, p = data
    if y.min() == y.max():
        with pytest.raises(ValueError, match="one class"):
            roc_auc(y, p)
        assert np.isnan(classification_metrics(y, p)["auc"])
        return
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), rows=st.sampled_from([3, 50, 5_000]), levels=st.sampled_from([2, 5, 1000]))
def test_auc_equals_scikit_learn_with_heavy_ties_and_huge_scores(seed, rows, levels):
    rng = np.random.default_rng(seed)
    y = np.concatenate([[0, 1], rng.integers(0, 2, rows)])
    score = rng.integers(0, levels, y.size) * 1e300
    assert roc_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)


@SETTINGS
@given(data=labelled_probabilities())
def test_log_loss_and_brier_equal_scikit_learn_including_the_clip(data):
    y, p = data
    labels = [0, 1] if y.min() == y.max() else None  # scikit-learn needs to be told both classes exist
    for dtype in (np.float64, np.float32):
        q = p.astype(dtype)
        reference = skm.log_loss(y, q, labels=labels)
        assert log_loss(y, q) == pytest.approx(reference, rel=1e-6 if dtype is np.float32 else 1e-12, abs=1e-12)
    assert brier(y, p) == pytest.approx(skm.brier_score_loss(y, p, labels=[0, 1]), rel=1e-12, abs=1e-15)


def test_log_loss_clip_bounds_a_confident_miss_at_minus_ln_eps():
    y = np.array([1, 0])
    assert log_loss(y, np.array([0.0, 0.0])) == pytest.approx(-np.log(np.finfo(np.float64).eps) / 2)
    assert log_loss(y, np.array([0.0, 0.0], dtype=np.float32)) == pytest.approx(
        -np.log(np.finfo(np.float32).eps) / 2, rel=1e-6)


@SETTINGS
@given(data=labelled_probabilities(min_size=1), threshold=st.sampled_from([0.5, 0.3, 0.05, 0.95, 0.7]))
def test_label_metrics_at_a_threshold_equal_scikit_learn(data, threshold):
    y, p = data
    metrics = classification_metrics(y, p, threshold=threshold)
    labels = (p >= threshold).astype(np.int64)
    for name, reference in sklearn_labels(y, labels).items():
        assert metrics[name] == pytest.approx(reference, abs=1e-12), name
    assert metrics["positive_rate"] == pytest.approx(labels.mean())
    assert metrics["rows"] == y.size and metrics["threshold"] == threshold


def test_threshold_decides_like_scoring_p_at_or_above_threshold_is_positive():
    y = np.array([1, 0, 1, 0])
    proba = np.array([[0.7, 0.3], [0.7, 0.3], [0.2, 0.8], [0.9, 0.1]])
    assert classification_metrics(y, proba, threshold=0.3)["positive_rate"] == 0.75
    assert classification_metrics(y, proba, threshold=0.5)["positive_rate"] == 0.25
    assert classification_metrics(y, proba, threshold=0.3)["recall"] == 1.0


def test_f1_and_balanced_accuracy_on_an_imbalanced_holdout():
    y = np.array([0] * 95 + [1] * 5)
    everyone_negative = label_metrics(y, np.zeros(100, dtype=np.int64))
    assert everyone_negative["accuracy"] == 0.95 and everyone_negative["balanced_accuracy"] == 0.5
    assert everyone_negative["f1"] == 0.0 == skm.f1_score(y, np.zeros(100), zero_division=0)


@pytest.mark.parametrize(("y", "p", "problem"), [
    ([0, 1], [0.2, np.nan], "NaN or infinite"),
    ([0, 1], [0.2, np.inf], "NaN or infinite"),
    ([0, 2], [0.2, 0.4], "class indices"),
    ([0, 1, 1], [0.2, 0.4], "shape"),
    ([0, 1], [0.2, 1.5], r"\[0, 1\]"),
])
def test_bad_inputs_raise_a_clear_value_error(y, p, problem):
    with pytest.raises(ValueError, match=problem):
        classification_metrics(np.asarray(y), np.asarray(p))


def test_threshold_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="threshold"):
        classification_metrics(np.array([0, 1]), np.array([0.2, 0.8]), threshold=1.0)
