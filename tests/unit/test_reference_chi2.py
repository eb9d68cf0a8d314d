"""Chi-square and Cramér's V against scipy, and the categorical side of drift checks: unseen, vanished and
"other" categories, missing values, and features that were never captured."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from mlops.core.schemas import DriftPolicy
from mlops.data.synthetic import credit_risk_family
from mlops.monitoring.drift import captured_columns, compare_with_baseline
from mlops.stats import distributions
from mlops.stats.profile import baseline_profile, categorical_profile
from scipy import stats as scipy_stats
from scipy.stats.contingency import association

from tests.unit.test_verdicts_monte_carlo import assert_p_value_agrees, reference_p_value

SETTINGS = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
CATEGORIES = ["a", "b", "c", "d"]
counts = arrays(np.int64, 6, elements=st.integers(0, 5_000))


@SETTINGS
@given(expected=counts, actual=counts, width=st.integers(2, 6))
def test_chi_square_and_cramers_v_match_scipy(expected, actual, width):
    expected, actual = expected[:width], actual[:width]
    table = np.vstack([expected, actual])
    table = table[:, table.sum(axis=0) > 0]
    stat, p_value, v = distributions.chi_square_against_frequencies(expected, actual)
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        assert (stat, p_value, v) == (0.0, 1.0, 0.0)
        return
    reference = scipy_stats.chi2_contingency(table, correction=False)
    assert stat == pytest.approx(reference.statistic, rel=1e-9, abs=1e-9)
    assert p_value == pytest.approx(reference.pvalue, rel=1e-7, abs=1e-300)
    assert v == pytest.approx(association(table, method="cramer", correction=False), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("stat", "dof"), [(0.5, 1), (3.84, 1), (10.0, 4), (50.0, 4), (2.0, 7), (300.0, 20)])
def test_chi2_sf_matches_scipy(stat, dof):
    assert distributions.chi2_sf(stat, dof) == pytest.approx(scipy_stats.chi2.sf(stat, dof), rel=1e-7, abs=1e-300)


@SETTINGS
@given(expected=counts, actual=counts)
def test_equal_weight_cramers_v_is_scipys_v_of_the_table_rescaled_to_equal_rows(expected, actual):
    v = distributions.equal_weight_cramers_v(expected, actual)
    if expected.sum() == 0 or actual.sum() == 0:
        assert v == 0.0
        return
    table = np.vstack([expected / expected.sum(), actual / actual.sum()]) * 1_000_000
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        assert v == 0.0
        return
    reference = np.sqrt(scipy_stats.chi2_contingency(table, correction=False).statistic / table.sum())
    assert v == pytest.approx(reference, rel=1e-9, abs=1e-12)


def test_classic_cramers_v_shrinks_with_the_baseline_and_the_equal_weight_one_does_not():
    before, after = np.array([0.5, 0.3, 0.2]), np.array([0.3, 0.3, 0.4])
    classic = [distributions.chi_square_against_frequencies(before * rows, after * 500)[2]
               for rows in (500, 50_000, 5_000_000)]
    assert classic[0] > 0.2 > 0.1 > classic[1] > classic[2], classic
    equal_rows = (np.vstack([before, after]) * 1000).round().astype(int)
    reference = round(association(equal_rows, method="cramer", correction=False), 9)
    equal_weight = {round(distributions.equal_weight_cramers_v(before * rows, after * 500), 9)
                    for rows in (500, 50_000)}
    assert equal_weight == {reference}


def test_pooled_chi_square_equals_scipy_on_the_pooled_table():
    expected, actual = np.array([600, 300, 80, 15, 5]), np.array([50, 40, 8, 1, 1])
    # rows 1000 and 100: a category is sparse below a column total of 5 * 1100 / 100 = 55 -> pool 16 + 6 = 22,
    # itself sparse, joins the remaining category with the smallest column total (88)
    stat, p_value, tested = distributions.pooled_chi_square(expected, actual)
    reference = scipy_stats.chi2_contingency(np.array([[600, 300, 100], [50, 40, 10]]), correction=False)
    assert tested == 3 and stat == pytest.approx(reference.statistic)
    # A pooled (sparse) table's p-value is the Monte Carlo one (tests/unit/test_verdicts_monte_carlo.py).
    assert_p_value_agrees(p_value, reference_p_value(expected, actual, [[0], [1], [2, 3, 4]]))
    plain = distributions.chi_square_against_frequencies(np.array([600, 300, 100]), np.array([50, 40, 60]))
    assert distributions.pooled_chi_square(np.array([600, 300, 100]), np.array([50, 40, 60]))[:2] == plain[:2]


def family_with(**overrides):
    features = [{"name": "c", "kind": "categorical", "categories": CATEGORIES, "unknown": "other",
                 "missing": "most_frequent"}, {"name": "x", "kind": "numeric"}]
    return credit_risk_family(features=features, **overrides)


def report_for(base_codes: np.ndarray, current_codes: np.ndarray, **overrides) -> dict:
    family = family_with(**overrides)
    rng = np.random.default_rng(0)
    X = np.column_stack([base_codes, rng.normal(size=base_codes.size)])
    profile = baseline_profile(family, X, np.full(base_codes.size, 0.5))
    columns = {"c": current_codes, "x": rng.normal(size=current_codes.size)}
    return compare_with_baseline(family, profile, columns, np.full(current_codes.size, 0.5), DriftPolicy())


def test_other_index_is_its_own_category_in_profiles_and_checks():
    rng = np.random.default_rng(1)
    base = rng.choice(5, 5_000, p=[0.3, 0.3, 0.2, 0.1, 0.1]).astype(float)  # index 4 = "other"
    profile = categorical_profile(base, tuple(CATEGORIES))
    assert len(profile["counts"]) == 5 and profile["counts"][4] == int((base == 4).sum())
    same = report_for(base, rng.choice(5, 2_000, p=[0.3, 0.3, 0.2, 0.1, 0.1]).astype(float))["features"]["c"]
    assert same["drifted"] is False and same["unseen_categories"] == [] == same["vanished_categories"]
    flood = report_for(base, rng.choice(5, 2_000, p=[0.15, 0.15, 0.1, 0.05, 0.55]).astype(float))["features"]["c"]
    assert flood["drifted"] is True and flood["cramers_v_equal_weight"] > 0.3


def test_unseen_category_in_traffic_is_drift_and_named():
    rng = np.random.default_rng(2)
    base = rng.choice(3, 5_000).astype(float)  # "d" and "other" never seen in training
    current = np.concatenate([rng.choice(3, 1_400), np.full(600, 3)]).astype(float)
    report = report_for(base, current)
    feature = report["features"]["c"]
    assert feature["unseen_categories"] == ["d"] and feature["drifted"] is True and report["verdict"] == "drift"


def test_vanished_category_is_named_and_a_large_loss_is_drift():
    rng = np.random.default_rng(3)
    base = rng.choice(4, 5_000, p=[0.4, 0.3, 0.2, 0.1]).astype(float)
    small = rng.choice(3, 2_000, p=[0.45, 0.33, 0.22]).astype(float)  # "d" (10%) gone
    feature = report_for(base, small)["features"]["c"]
    assert feature["vanished_categories"] == ["d"] and feature["drifted"] is True
    reference = scipy_stats.chi2_contingency(np.vstack([np.bincount(base.astype(int), minlength=4),
                                                        np.bincount(small.astype(int), minlength=4)]),
                                             correction=False)
    assert feature["p_value"] == pytest.approx(reference.pvalue, rel=1e-6, abs=1e-300)


def test_categorical_missing_values_are_dropped_counted_and_tested_as_a_rate():
    rng = np.random.default_rng(4)
    base = rng.choice(4, 5_000).astype(float)
    current = rng.choice(4, 2_000).astype(float)
    current[:100] = np.nan
    feature = report_for(base, current)["features"]["c"]
    assert feature["rows"] == 1_900 and feature["missing"] == 100 and feature["drifted"] is False
    current[:1_000] = np.nan
    feature = report_for(base, current)["features"]["c"]
    assert feature["drifted"] is True and any(r.startswith("missing rate 50.0%") for r in feature["drift_reasons"])


def test_feature_that_is_never_captured_is_not_checked_with_the_reason_not_stable():
    family = family_with(never_capture=["x"])
    rng = np.random.default_rng(5)
    X = np.column_stack([rng.choice(4, 3_000).astype(float), rng.normal(size=3_000)])
    profile = baseline_profile(family, X, np.full(3_000, 0.5))
    records = [SimpleNamespace(inputs={"c": CATEGORIES[i % 4]}, probabilities=[0.4, 0.6]) for i in range(800)]
    columns, predictions = captured_columns(family, records)
    assert set(columns) == {"c"} and predictions.size == 800
    report = compare_with_baseline(family, profile, columns, predictions, DriftPolicy())
    x = report["features"]["x"]
    assert x == {"kind": "numeric", "status": "not_checked", "drifted": None,
                 "reason": "listed in never_capture: its values are not captured"}
    assert report["unchecked_features"] == {"x": x["reason"]} and report["verdict"] == "no_drift"


def test_a_feature_absent_from_every_record_is_not_checked_and_nothing_checked_is_no_verdict_of_stability():
    family = family_with()
    rng = np.random.default_rng(6)
    X = np.column_stack([rng.choice(4, 3_000).astype(float), rng.normal(size=3_000)])
    profile = baseline_profile(family, X, np.full(3_000, 0.5))
    records = [SimpleNamespace(inputs={}, probabilities=[0.5, 0.5]) for _ in range(800)]
    columns, predictions = captured_columns(family, records)
    report = compare_with_baseline(family, profile, columns, predictions, DriftPolicy())
    assert columns == {} and report["verdict"] == "not_checked" and report["drifted_features"] == []
    assert {f["reason"] for f in report["features"].values()} == {"absent from every captured record"}


def test_captured_columns_encode_like_the_data_set_parser():
    family = family_with()
    records = [SimpleNamespace(inputs={"c": "b", "x": 1}, probabilities=[0.9, 0.1]),
               SimpleNamespace(inputs={"c": "zebra", "x": None}, probabilities=[0.2, 0.8]),
               SimpleNamespace(inputs={"c": None, "x": 0.7}, probabilities=[0.5, 0.5]),
               SimpleNamespace(inputs={"x": 2.5}, probabilities=[0.5, 0.5])]
    columns, predictions = captured_columns(family, records)
    assert columns["c"].tolist()[:2] == [1.0, 4.0] and np.isnan(columns["c"][2:]).all()
    assert columns["x"][0] == 1.0 and np.isnan(columns["x"][1]) and columns["x"][2] == 0.7
    assert predictions.tolist() == [0.1, 0.8, 0.5, 0.5] and columns["x"].dtype == np.float64


def test_profile_from_an_older_format_is_not_checked_rather_than_compared_wrongly():
    family = family_with()
    old = {"family": family.name, "rows": 10, "features": {"c": {"kind": "categorical", "n": 10,
                                                                 "categories": CATEGORIES, "counts": [4, 3, 2, 1]}},
           "prediction": {"psi_counts": [1] * 20}}
    report = compare_with_baseline(family, old, {"c": np.zeros(600), "x": np.zeros(600)}, np.full(600, 0.5),
                                   DriftPolicy())
    assert report["verdict"] == "not_checked" and all("format 1" in r for r in report["unchecked_features"].values())
