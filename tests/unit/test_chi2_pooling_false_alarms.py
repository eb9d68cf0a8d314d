"""Sparse categories are pooled on the contingency table's column totals, so a small baseline with many rare
categories does not false-alarm (fresh-user pass on issue 11: 7-10% alarms on same-distribution traffic)."""

from __future__ import annotations

import numpy as np
import pytest
from mlops.core.schemas import DriftPolicy
from mlops.data.synthetic import credit_risk_family
from mlops.monitoring.drift import compare_with_baseline
from mlops.stats import distributions
from mlops.stats.profile import baseline_profile
from scipy import stats as scipy_stats

from tests.unit.test_verdicts_monte_carlo import assert_p_value_agrees, reference_p_value

# 5 categories at 10% and 50 at 1%: with 640 baseline rows every rare category expects 6.4 baseline values, at
# the old pooling limit, so the baseline's noise alone decided which cells escaped pooling.
MANY_LEVELS = np.array([0.1] * 5 + [0.01] * 50)
TRIALS = 1_000
ALPHA = 0.01
# Binomial(1000, p) alarms: at the nominal 1% rate the count stays far below 30 (over 6 standard deviations above
# 10); the old baseline-judged pooling (5-8%, 58% with the baseline smaller than the traffic) never gets down to it.
# Seeded, so the figures are reproducible; the bound holds for any seed.
MAX_ALARMS = 30


def draw_counts(rng: np.random.Generator, rows: int, shares: np.ndarray = MANY_LEVELS) -> np.ndarray:
    return np.bincount(rng.choice(shares.size, rows, p=shares / shares.sum()), minlength=shares.size)


@pytest.mark.parametrize(("baseline_rows", "traffic_rows"), [(640, 500), (300, 2_000)])
def test_pooled_chi_square_false_alarm_rate_on_many_rare_categories_stays_near_alpha(baseline_rows, traffic_rows):
    rng = np.random.default_rng(20_240_611)
    alarms = reference_alarms = 0
    for _ in range(TRIALS):
        baseline, traffic = draw_counts(rng, baseline_rows), draw_counts(rng, traffic_rows)
        alarms += distributions.pooled_chi_square(baseline, traffic)[1] < ALPHA
        table = np.vstack([baseline, traffic])
        reference_alarms += scipy_stats.chi2_contingency(table[:, table.sum(axis=0) > 0],
                                                         correction=False).pvalue < ALPHA
    assert alarms <= MAX_ALARMS, (alarms, reference_alarms)
    assert reference_alarms <= MAX_ALARMS  # the simulation itself is a null case


def test_drift_check_of_a_55_level_categorical_with_a_640_row_baseline_rarely_alarms_on_unchanged_traffic():
    family = credit_risk_family(features=[{"name": "x", "kind": "categorical",
                                           "categories": [f"c{i}" for i in range(MANY_LEVELS.size)]}])
    rng = np.random.default_rng(11)
    alarms = 0
    for _ in range(TRIALS):
        baseline = rng.choice(MANY_LEVELS.size, 640, p=MANY_LEVELS / MANY_LEVELS.sum()).astype(np.float64)
        profile = baseline_profile(family, baseline.reshape(-1, 1), rng.random(640))
        traffic = rng.choice(MANY_LEVELS.size, 500, p=MANY_LEVELS / MANY_LEVELS.sum()).astype(np.float64)
        report = compare_with_baseline(family, profile, {"x": traffic}, rng.random(500), DriftPolicy())
        alarms += report["verdict"] == "drift"
    assert alarms <= MAX_ALARMS


def test_a_category_the_baseline_fills_but_the_table_expects_too_little_of_is_pooled():
    # Baseline 100 rows (the smaller side), traffic 900: the expected baseline count of a category is
    # 100 * column total / 1000, below 5 for the last three (3.8, 3.7, 4.5) although each holds >= 5 baseline values.
    baseline, traffic = np.array([40, 40, 8, 7, 5]), np.array([400, 400, 30, 30, 40])
    stat, p_value, tested = distributions.pooled_chi_square(baseline, traffic)
    reference = scipy_stats.chi2_contingency(np.array([[40, 40, 20], [400, 400, 100]]), correction=False)
    assert tested == 3
    assert stat == pytest.approx(reference.statistic, rel=1e-9)
    assert_p_value_agrees(p_value, reference_p_value(baseline, traffic, [[0], [1], [2, 3, 4]]))


def test_a_sparse_pool_joins_the_category_with_the_smallest_column_total():
    # Rows 1000 and 112: a column total below 5 * 1112 / 112 = 49.6 is sparse. The pool [10; 2] is still sparse and
    # joins column 3 (total 90), the smallest remaining, though column 2 holds fewer baseline values (60 < 70).
    baseline, traffic = np.array([600, 260, 60, 70, 6, 4]), np.array([30, 20, 40, 20, 2, 0])
    stat, p_value, tested = distributions.pooled_chi_square(baseline, traffic)
    reference = scipy_stats.chi2_contingency(np.array([[600, 260, 60, 80], [30, 20, 40, 22]]), correction=False)
    assert tested == 4
    assert stat == pytest.approx(reference.statistic, rel=1e-9)
    assert_p_value_agrees(p_value, reference_p_value(baseline, traffic, [[0], [1], [2], [3, 4, 5]]))
