"""Canary divergence against scipy: Fisher's exact test, chi-square for more classes, Cohen's h against its
textbook formula, and the verdict on tiny samples, constant predictions and huge samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlops.core.schemas import CanaryPolicy
from mlops.stats.canary import cohens_h, fisher_exact, judged_steps, prediction_divergence
from mlops.stats.distributions import psi
from scipy import stats as scipy_stats

SETTINGS = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
small = st.integers(0, 40)
large = st.integers(0, 60_000)


def _labels(negatives: int, positives: int) -> np.ndarray:
    return np.repeat(np.array([0, 1], dtype=np.int64), [negatives, positives])


@SETTINGS
@given(table=st.one_of(st.tuples(small, small, small, small), st.tuples(large, large, large, large),
                       st.tuples(large, small, small, large), st.tuples(small, large, large, small)))
def test_fisher_exact_equals_scipy(table):
    counts = np.array(table).reshape(2, 2)
    reference = scipy_stats.fisher_exact(counts).pvalue
    assert fisher_exact(counts) == pytest.approx(reference, rel=1e-9, abs=1e-300)


def test_fisher_exact_on_the_reported_rollback_is_not_significant_where_psi_was_large():
    # The same artifact, 25 canary rows without a positive against 225 live rows with 12: PSI read 0.337.
    live, canary = np.array([213, 12]), np.array([25, 0])
    assert psi(live, canary) == pytest.approx(0.3372, abs=1e-4)
    p_value = fisher_exact(np.vstack([live, canary]))
    assert p_value == pytest.approx(scipy_stats.fisher_exact([[213, 12], [25, 0]]).pvalue, rel=1e-9)
    assert p_value == pytest.approx(0.6159, abs=1e-4)


@pytest.mark.parametrize("table", [[[0, 0], [0, 0]], [[5, 0], [7, 0]], [[0, 0], [3, 4]], [[9, 9], [0, 0]]])
def test_fisher_exact_with_an_empty_row_or_column_is_one(table):
    assert fisher_exact(table) == 1.0 == scipy_stats.fisher_exact(table).pvalue


@pytest.mark.parametrize(("table", "problem"), [
    ([[1, 2, 3], [4, 5, 6]], "2 x 2"), ([[1, -2], [3, 4]], "non-negative whole"),
    ([[1.5, 2], [3, 4]], "non-negative whole"), ([[np.nan, 2], [3, 4]], "non-negative whole"),
    ([[np.inf, 2], [3, 4]], "non-negative whole")])
def test_fisher_exact_refuses_what_is_not_a_table_of_counts(table, problem):
    with pytest.raises(ValueError, match=problem):
        fisher_exact(table)


@SETTINGS
@given(a=st.integers(0, 10_000), b=st.integers(0, 10_000), c=st.integers(0, 10_000), d=st.integers(0, 10_000))
def test_cohens_h_for_two_classes_is_the_textbook_arcsine_difference(a, b, c, d):
    if a + b == 0 or c + d == 0:
        with pytest.raises(ValueError, match="at least one prediction"):
            cohens_h([a, b], [c, d])
        return
    p, q = b / (a + b), d / (c + d)
    textbook = abs(2 * math.asin(math.sqrt(q)) - 2 * math.asin(math.sqrt(p)))
    assert cohens_h([a, b], [c, d]) == pytest.approx(textbook, rel=1e-9, abs=1e-12)


@SETTINGS
@given(live=st.lists(st.integers(0, 5_000), min_size=3, max_size=6), data=st.data())
def test_cohens_h_for_k_classes_is_twice_the_bhattacharyya_angle(live, data):
    canary = data.draw(st.lists(st.integers(0, 5_000), min_size=len(live), max_size=len(live)))
    if sum(live) == 0 or sum(canary) == 0:
        return
    p, q = np.array(live) / sum(live), np.array(canary) / sum(canary)
    angle = 2 * math.acos(min(1.0, float(np.sum(np.sqrt(p * q)))))
    h = cohens_h(live, canary)
    # arccos loses digits near 1 (h ~ 0): compare there at its own precision, sqrt(machine epsilon).
    assert h == pytest.approx(angle, abs=1e-7)
    assert 0.0 <= h <= math.pi and h == pytest.approx(cohens_h(canary, live), abs=1e-15)


def test_cohens_h_is_zero_for_the_same_shares_and_pi_for_disjoint_classes():
    assert cohens_h([90, 10], [9, 1]) == 0.0
    assert cohens_h([10, 0], [0, 7]) == pytest.approx(math.pi)


def test_three_classes_use_the_chi_square_test_of_scipy():
    live, canary = [400, 300, 300], [60, 80, 60]
    result = prediction_divergence(np.repeat([0, 1, 2], live), np.repeat([0, 1, 2], canary), CanaryPolicy())
    reference = scipy_stats.chi2_contingency(np.array([live, canary]), correction=False)
    assert result["test"] == "chi_square" and result["p_value"] == pytest.approx(reference.pvalue, rel=1e-7)


def test_the_reported_false_rollback_is_now_healthy():
    result = prediction_divergence(_labels(213, 12), _labels(25, 0), CanaryPolicy())
    assert result["status"] == "checked" and result["diverged"] is False
    assert result["p_value"] > 0.5 and result["test"] == "fisher_exact"
    assert result["positive_rate"] == {"canary": 0.0, "live": pytest.approx(12 / 225)}


def test_a_silent_label_flip_diverges_even_at_the_minimum_count():
    # At 10% canary weight and min_requests 20: 20 canary rows against 180 live ones, positive rate 7% -> 90%.
    result = prediction_divergence(_labels(167, 13), _labels(2, 18), CanaryPolicy())
    assert result["diverged"] is True and result["p_value"] < 1e-10 and result["cohens_h"] > 1.5
    assert "Cohen's h" in result["summary"] and "Fisher's exact" in result["summary"]


def test_a_significant_but_small_shift_is_not_divergence():
    # 50,000 rows a side: 30% vs 32% positive is highly significant, and a better model may well do it.
    result = prediction_divergence(_labels(35_000, 15_000), _labels(34_000, 16_000), CanaryPolicy())
    assert result["p_value"] < 1e-9 and result["cohens_h"] < 0.1 and result["diverged"] is False


def test_a_large_but_insignificant_shift_on_tiny_samples_is_not_divergence():
    result = prediction_divergence(_labels(16, 4), _labels(1, 1), CanaryPolicy(min_requests=2))
    assert result["cohens_h"] >= 0.5 and result["p_value"] > 0.05 and result["diverged"] is False


def test_constant_predictions_on_both_sides_do_not_diverge():
    result = prediction_divergence(np.zeros(500, np.int64), np.zeros(40, np.int64), CanaryPolicy())
    assert result["p_value"] == 1.0 and result["cohens_h"] == 0.0 and result["diverged"] is False


@pytest.mark.parametrize(("live", "canary"), [(100, 19), (19, 100), (0, 0)])
def test_below_min_requests_on_either_side_is_insufficient_data(live, canary):
    result = prediction_divergence(np.zeros(live, np.int64), np.ones(canary, np.int64), CanaryPolicy(min_requests=20))
    assert result["status"] == "insufficient_data" and result["diverged"] is None
    assert "20 needed" in result["summary"]


def test_predictions_that_are_not_class_indices_are_refused():
    with pytest.raises(ValueError, match="class indices"):
        prediction_divergence(np.array([0.2, 0.7]), np.array([0, 1]), CanaryPolicy(min_requests=1))
    with pytest.raises(ValueError, match="class indices"):
        prediction_divergence(np.array([0, 1]), np.array([-1, 1]), CanaryPolicy(min_requests=1))


@pytest.mark.parametrize(("steps", "expected"), [((10, 50, 100), 2), ((50, 100), 1), ((1, 5, 25, 50, 100), 4)])
def test_each_judged_step_tests_at_its_share_of_the_rollout_p_value(steps, expected):
    policy = CanaryPolicy(steps=steps, divergence_pvalue=0.02)
    assert judged_steps(policy) == expected
    result = prediction_divergence(_labels(50, 50), _labels(50, 50), policy)
    assert result["alpha"] == pytest.approx(0.02 / expected)


@SETTINGS
@given(negatives=st.integers(0, 2_000), positives=st.integers(0, 2_000), scale=st.integers(1, 20))
def test_the_same_class_shares_never_diverge_whatever_the_sample_sizes(negatives, positives, scale):
    if negatives + positives == 0:
        return
    result = prediction_divergence(_labels(negatives * scale, positives * scale), _labels(negatives, positives),
                                   CanaryPolicy(min_requests=1))
    assert result["cohens_h"] == pytest.approx(0.0, abs=1e-12) and result["diverged"] is False


@SETTINGS
@given(n_live=st.integers(20, 400), n_canary=st.integers(20, 60), rate=st.floats(0.0, 1.0), seed=st.integers(0, 99))
def test_tiny_samples_diverge_only_when_the_test_is_significant_and_the_effect_large(n_live, n_canary, rate, seed):
    rng = np.random.default_rng(seed)
    live, canary = (rng.random(n_live) < rate).astype(np.int64), (rng.random(n_canary) < rate).astype(np.int64)
    policy = CanaryPolicy()
    result = prediction_divergence(live, canary, policy)
    counts = np.vstack([np.bincount(live, minlength=2), np.bincount(canary, minlength=2)])
    reference_p = scipy_stats.fisher_exact(counts).pvalue
    reference_h = abs(2 * math.asin(math.sqrt(counts[1, 1] / n_canary))
                      - 2 * math.asin(math.sqrt(counts[0, 1] / n_live)))
    expected = bool(reference_p < policy.divergence_pvalue / 2 and reference_h >= policy.divergence_min_cohens_h)
    assert result["diverged"] is expected


def test_a_canary_of_one_step_at_100_percent_is_refused():
    # At 100% the live version serves nothing, so the canary could only be rolled back for want of traffic.
    with pytest.raises(ValueError, match="at least one step below 100"):
        CanaryPolicy(steps=(100,))
    assert CanaryPolicy(steps=(50, 100)).steps == (50, 100)


@pytest.mark.parametrize(("psi_limit", "h"), [(0.25, 0.5), (0.09, 0.3), (100.0, math.pi)])
def test_a_stored_family_with_the_retired_prediction_psi_reads_as_the_equivalent_effect_size(psi_limit, h):
    from mlops.data.synthetic import credit_risk_family

    stored = credit_risk_family().model_dump(mode="json")
    stored["canary"] = {k: v for k, v in stored["canary"].items() if k != "divergence_min_cohens_h"}
    stored["canary"]["max_prediction_psi"] = psi_limit
    family = type(credit_risk_family()).model_validate(stored)
    assert family.canary.divergence_min_cohens_h == pytest.approx(h)
    assert "max_prediction_psi" not in family.model_dump()["canary"]


@pytest.mark.parametrize(("fields", "problem"), [
    ({"max_prediction_psi": 0.25, "divergence_min_cohens_h": 0.4}, "retired"),
    ({"max_prediction_psi": -1}, "positive number"), ({"max_prediction_psi": "high"}, "positive number")])
def test_the_retired_prediction_psi_is_refused_beside_its_successor_or_when_not_a_positive_number(fields, problem):
    with pytest.raises(ValueError, match=problem):
        CanaryPolicy.model_validate(fields)
