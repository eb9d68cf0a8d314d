"""PSI and the binning behind it, against references: numpy.searchsorted for bins, scipy's relative entropy for the
PSI formula, scipy's chi-square test for the PSI bins' significance; and drift reports on numeric features with
missing data."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from mlops.core.schemas import DriftPolicy
from mlops.data.synthetic import credit_risk_family
from mlops.monitoring.drift import compare_with_baseline
from mlops.stats import distributions
from mlops.stats.profile import baseline_profile, numeric_profile
from scipy import special
from scipy import stats as scipy_stats

SETTINGS = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SPECIAL = [0.0, -0.0, 0.7, 0.1, 3e15, -3e15, 1e17, -1e17, 9.3e18, 1e308, -1e308, np.inf, -np.inf, np.nan, 5e-324]


def reference_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI = KL(a || e) + KL(e || a) over shares floored at 1e-4 (scipy.special.rel_entr)."""
    pe = np.clip(expected / expected.sum(), distributions.PSI_EPSILON, None)
    pa = np.clip(actual / actual.sum(), distributions.PSI_EPSILON, None)
    return float(np.sum(special.rel_entr(pa, pe) + special.rel_entr(pe, pa)))


def shift_of(base: np.ndarray, current: np.ndarray) -> distributions.NumericShift:
    p = numeric_profile(base)
    return distributions.numeric_shift(np.asarray(p["ecdf_points"]), np.asarray(p["ecdf_at_or_below"]),
                               np.asarray(p["ecdf_below"]), p["n"], np.asarray(p["psi_edges"]),
                               np.asarray(p["psi_counts"]), current)


def one_feature_report(base: np.ndarray, current: np.ndarray, **policy) -> dict:
    family = credit_risk_family(features=[{"name": "x", "kind": "numeric"}])
    profile = baseline_profile(family, base.reshape(-1, 1), np.full(base.size, 0.5))
    return compare_with_baseline(family, profile, {"x": current}, np.full(current.size, 0.5), DriftPolicy(**policy))


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
edge_arrays = arrays(np.float64, st.integers(2, 60), elements=st.one_of(finite, st.sampled_from(SPECIAL[:-4])))


@SETTINGS
@given(edges=edge_arrays, repeats=st.integers(1, 3),
       extra=arrays(np.float64, st.integers(0, 200), elements=st.one_of(finite, st.sampled_from(SPECIAL))))
def test_bin_index_lookup_table_is_identical_to_searchsorted_for_every_input(edges, extra, repeats):
    edges = np.sort(edges)
    # values equal to every edge, one ulp either side, the special values and arbitrary floats
    with np.errstate(over="ignore"):
        above, below = np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)
    values = np.concatenate([np.repeat(edges, repeats), above, below, np.asarray(SPECIAL), extra])
    expected = np.searchsorted(edges, values, side="left")
    with mock.patch.object(distributions, "LUT_MIN_VALUES", 1), \
            mock.patch.object(distributions, "LUT_MAX_STEPS", 10_000):
        assert np.array_equal(distributions.bin_index(edges, values), expected)
        distinct = np.unique(edges)
        located = distributions._locate(distinct, values)
        if np.isfinite(distinct).all() and distinct.size >= 2:
            assert located is not None, "the table path must be the one under test"
            assert np.array_equal(located, np.searchsorted(distinct, values, side="left"))


def test_bin_index_large_input_with_tenths_edges_and_huge_values_equals_searchsorted():
    rng = np.random.default_rng(0)
    edges = np.arange(1, 10) / 10
    values = np.concatenate([np.round(rng.random(200_000), 1), [0.7] * 10, SPECIAL, rng.normal(0, 1e17, 1000)])
    index = distributions.bin_index(edges, values)
    assert np.array_equal(index, np.searchsorted(edges, values, side="left"))
    assert index[np.isnan(values)].tolist() == [edges.size], "NaN goes past every edge, never into a middle bin"
    assert np.all(index[values == 0.7] == 6), "a value equal to an edge belongs to the bin that edge closes"


def test_bin_counts_refuses_nan_instead_of_binning_it():
    with pytest.raises(ValueError, match="NaN"):
        distributions.bin_counts(np.array([0.1, np.nan]), np.array([0.5]))


@SETTINGS
@given(expected=arrays(np.int64, st.integers(1, 12), elements=st.integers(0, 10_000)),
       actual_seed=st.integers(0, 2**32 - 1))
def test_psi_equals_the_symmetric_relative_entropy_over_floored_shares(expected, actual_seed):
    actual = np.random.default_rng(actual_seed).integers(0, 1000, expected.size)
    if expected.sum() == 0 or actual.sum() == 0:
        assert distributions.psi(expected, actual) == 0.0
        return
    assert distributions.psi(expected, actual) == pytest.approx(reference_psi(expected, actual), rel=1e-12, abs=1e-15)


def test_psi_refuses_counts_over_different_bins():
    with pytest.raises(ValueError, match="same bins"):
        distributions.psi(np.array([1, 2]), np.array([1, 2, 3]))


def test_constant_feature_on_identical_traffic_gives_psi_zero_and_ks_zero():
    shift = shift_of(np.full(20_000, 0.7), np.full(5_000, 0.7))
    assert shift.psi == 0.0 and shift.ks.statistic == 0.0 and shift.ks.p_value == 1.0


@pytest.mark.parametrize("rows", [20_000, 100_000])  # 100k: the bucket-table path bins the traffic
def test_one_decimal_feature_on_same_distribution_traffic_gives_psi_near_zero(rows):
    rng = np.random.default_rng(1)
    base = np.round(rng.integers(1, 10, rows) / 10, 1)
    assert shift_of(base, base.copy()).psi == 0.0
    current = np.round(rng.integers(1, 10, rows) / 10, 1)
    shift = shift_of(base, current)
    expected = reference_psi(np.asarray(numeric_profile(base)["psi_counts"]),
                             np.bincount(np.searchsorted(np.asarray(numeric_profile(base)["psi_edges"]), current),
                                         minlength=len(numeric_profile(base)["psi_edges"]) + 1))
    assert shift.psi == pytest.approx(expected, rel=1e-12) and shift.psi < 0.005  # was 2.42 (0.85 at 100k)
    report = one_feature_report(base, current)
    assert report["verdict"] == "no_drift" and report["features"]["x"]["drifted"] is False


def test_profile_refuses_float32_values():
    with pytest.raises(TypeError, match="float64"):
        numeric_profile(np.full(10, 0.7, dtype=np.float32))
    family = credit_risk_family(features=[{"name": "x", "kind": "numeric"}])
    with pytest.raises(TypeError, match="float64"):
        baseline_profile(family, np.zeros((10, 1), dtype=np.float32), np.zeros(10))


def test_huge_values_in_traffic_are_binned_past_the_top_edge_and_read_as_drift():
    rng = np.random.default_rng(2)
    base = rng.normal(size=100_000)
    current = rng.normal(0.3, 1.0, 100_000)
    current[:10_000] = 1e17
    profile = numeric_profile(base)
    edges, counts = np.asarray(profile["psi_edges"]), np.asarray(profile["psi_counts"])
    expected = reference_psi(counts, np.bincount(np.searchsorted(edges, current), minlength=edges.size + 1))
    shift = shift_of(base, current)
    assert shift.psi == pytest.approx(expected, rel=1e-12) and shift.psi > 0.2
    d = scipy_stats.ks_2samp(base, current).statistic
    assert shift.ks.statistic <= d <= shift.ks.upper_bound and d > 0.16
    assert one_feature_report(base, current)["verdict"] == "drift"


def test_psi_bins_significance_equals_scipy_chi_square_on_the_same_bins():
    rng = np.random.default_rng(3)
    base, current = rng.lognormal(0, 1, 5_000), rng.lognormal(0.1, 1, 800)
    profile = numeric_profile(base)
    edges, counts = np.asarray(profile["psi_edges"]), np.asarray(profile["psi_counts"])
    table = np.vstack([counts, distributions.bin_counts(current, edges)])
    reference = scipy_stats.chi2_contingency(table, correction=False)
    assert shift_of(base, current).psi_p_value == pytest.approx(reference.pvalue, rel=1e-9)


def test_nan_in_traffic_is_dropped_and_counted_not_binned():
    rng = np.random.default_rng(4)
    base = rng.normal(size=5_000)
    current = rng.normal(size=2_000)
    with_nan = np.concatenate([current, np.full(300, np.nan)])
    clean, dirty = shift_of(base, current), shift_of(base, with_nan)
    assert (dirty.psi, dirty.ks.statistic, dirty.rows, dirty.missing) == (clean.psi, clean.ks.statistic, 2_000, 300)
    feature = one_feature_report(base, with_nan)["features"]["x"]
    assert feature["rows"] == 2_000 and feature["missing"] == 300
    assert feature["missing_rate"] == pytest.approx(300 / 2300, abs=1e-6)


def test_missing_rate_jump_is_drift_even_when_the_values_look_the_same():
    rng = np.random.default_rng(5)
    base = rng.normal(size=5_000)
    current = np.concatenate([rng.normal(size=1_400), np.full(600, np.nan)])
    feature = one_feature_report(base, current)["features"]["x"]
    assert feature["drifted"] is True and feature["baseline_missing_rate"] == 0.0
    assert [r for r in feature["drift_reasons"] if r.startswith("missing rate 30.0%")]


def test_all_missing_traffic_is_reported_not_read_as_stability():
    rng = np.random.default_rng(6)
    feature = one_feature_report(rng.normal(size=5_000), np.full(1_000, np.nan))["features"]["x"]
    assert feature["drifted"] is True and "psi" not in feature and "only the missing rate" in feature["reason"]


def test_feature_missing_in_training_and_traffic_alike_is_not_drift():
    rng = np.random.default_rng(7)
    base = np.where(rng.random(5_000) < 0.2, np.nan, rng.normal(size=5_000))
    current = np.where(rng.random(2_000) < 0.2, np.nan, rng.normal(size=2_000))
    feature = one_feature_report(base, current)["features"]["x"]
    assert feature["status"] == "checked" and feature["drifted"] is False
    assert feature["missing_p_value"] > 0.01 and feature["baseline_missing_rate"] == pytest.approx(0.2, abs=0.02)


def test_small_sample_is_insufficient_data_with_no_figures_that_read_as_stability():
    report = one_feature_report(np.random.default_rng(8).normal(size=5_000), np.zeros(100))
    feature = report["features"]["x"]
    assert report["verdict"] == "insufficient_data" and feature["status"] == "insufficient_data"
    assert feature["drifted"] is None and "psi" not in feature and "ks_p_value" not in feature


def test_no_prediction_psi_below_min_samples():
    """Fresh-user pass (LOW): one captured row gave a prediction PSI of 8.6 beside an insufficient_data verdict."""
    base = np.random.default_rng(3).normal(size=2_000)
    few = one_feature_report(base, base[:1])
    assert few["verdict"] == "insufficient_data" and few["prediction_psi"] is None
    enough = one_feature_report(base, base[:600])
    assert enough["prediction_psi"] is not None
