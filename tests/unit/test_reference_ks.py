"""Two-sample KS against the baseline's ECDF summary, checked against scipy.stats.ks_2samp: exact when the
baseline has few distinct values (ties, integers, constants), provably bounded otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlops.stats import distributions
from mlops.stats.profile import KS_POINTS, numeric_profile
from scipy import stats as scipy_stats

SETTINGS = settings(max_examples=120, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def ks_of(base: np.ndarray, current: np.ndarray) -> distributions.KsResult:
    p = numeric_profile(base)
    return distributions.numeric_shift(np.asarray(p["ecdf_points"]), np.asarray(p["ecdf_at_or_below"]),
                               np.asarray(p["ecdf_below"]), p["n"], np.asarray(p["psi_edges"]),
                               np.asarray(p["psi_counts"]), current).ks


def test_shift_between_the_support_points_of_a_discrete_baseline_is_caught_exactly():
    # Baseline integers 0..5; traffic moves each positive value down by U(0,1), between the support points.
    rng = np.random.default_rng(0)
    base = np.minimum(rng.poisson(1.0, 10_000), 5).astype(np.float64)
    x = np.minimum(rng.poisson(1.0, 10_000), 5).astype(np.float64)
    current = np.where(x > 0, x - rng.random(10_000), x)
    reference = scipy_stats.ks_2samp(base, current)
    ks = ks_of(base, current)
    assert ks.statistic == pytest.approx(reference.statistic, abs=1e-12) and ks.statistic > 0.35  # was 0.005
    assert ks.upper_bound == ks.statistic and ks.p_value < 1e-100


@SETTINGS
@given(support=st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=64), min_size=1, max_size=12, unique=True),
       sizes=st.tuples(st.integers(1, 3_000), st.integers(1, 3_000)), seed=st.integers(0, 2**32 - 1),
       jitter=st.booleans())
def test_discrete_baseline_gives_scipys_statistic_exactly(support, sizes, seed, jitter):
    rng = np.random.default_rng(seed)
    support = np.asarray(support)
    base = rng.choice(support, sizes[0])
    current = rng.choice(support, sizes[1]) + (rng.normal(0, 1, sizes[1]) if jitter else 0.0)
    ks = ks_of(base, current)
    reference = scipy_stats.ks_2samp(base, current).statistic
    assert ks.statistic == pytest.approx(reference, abs=1e-12)
    assert ks.upper_bound == pytest.approx(ks.statistic, abs=1e-12)


@SETTINGS
@given(shift=st.floats(-1.0, 1.0), scale=st.floats(0.5, 2.0), seed=st.integers(0, 2**32 - 1),
       rows=st.sampled_from([1_200, 5_000, 40_000]), ties=st.booleans())
def test_continuous_baseline_brackets_scipys_statistic_within_the_documented_bound(shift, scale, seed, rows, ties):
    rng = np.random.default_rng(seed)
    base = rng.lognormal(0, 1, rows)
    current = rng.lognormal(shift, scale, 2_000)
    if ties:  # a zero-inflated feature: heavy ties inside a continuous one
        base[: rows // 3] = 0.0
        current[: 500] = 0.0
    ks = ks_of(base, current)
    reference = scipy_stats.ks_2samp(base, current).statistic
    assert ks.statistic - 1e-12 <= reference <= ks.upper_bound + 1e-12
    # the bound: about one quantile step (1/(KS_POINTS+1)) plus one baseline value
    assert ks.upper_bound - ks.statistic <= 1 / (KS_POINTS + 1) + 2 / rows + 1e-12


def test_constant_baseline_and_traffic_give_zero_and_any_other_value_is_a_full_shift():
    assert ks_of(np.full(1_000, 0.7), np.full(500, 0.7)) == distributions.KsResult(0.0, 0.0, 1.0)
    one_ulp_up = np.full(500, np.nextafter(0.7, 1.0))
    assert ks_of(np.full(1_000, 0.7), one_ulp_up).statistic == 1.0
    assert scipy_stats.ks_2samp(np.full(1_000, 0.7), one_ulp_up).statistic == 1.0


def test_nan_is_dropped_and_infinities_sit_beyond_every_value():
    rng = np.random.default_rng(1)
    base = rng.normal(size=3_000)
    current = np.concatenate([rng.normal(size=900), [np.inf] * 50, [-np.inf] * 50, [np.nan] * 40])
    ks = ks_of(base, current)
    finite = current[~np.isnan(current)]
    reference = scipy_stats.ks_2samp(base, finite).statistic
    assert ks.statistic <= reference <= ks.upper_bound


@pytest.mark.parametrize("sizes", [(1, 1), (1, 5), (7, 3), (2, 2_000)])
def test_tiny_samples_match_scipy(sizes):
    rng = np.random.default_rng(sum(sizes))
    base, current = rng.integers(0, 4, sizes[0]).astype(float), rng.integers(0, 4, sizes[1]).astype(float)
    assert ks_of(base, current).statistic == pytest.approx(scipy_stats.ks_2samp(base, current).statistic, abs=1e-12)


@pytest.mark.parametrize("x", [0.2, 0.5, 0.8, 1.0, 1.36, 2.0, 3.0])
def test_kolmogorov_sf_matches_scipy(x):
    assert distributions.kolmogorov_sf(x) == pytest.approx(scipy_stats.kstwobign.sf(x), abs=1e-9)


@pytest.mark.parametrize(("n", "m"), [(500, 2_000), (2_000, 100_000), (5_000, 5_000), (20_000, 100_000)])
@pytest.mark.parametrize("d", [0.02, 0.05, 0.1])
def test_ks_p_value_agrees_with_scipys_asymptotic_two_sample_p_value(n, m, d):
    # The documented tolerance (docs/statistics.md): within 5% relative or 1e-4 absolute, for n, m >= 500.
    en = n * m / (n + m)
    reference = float(scipy_stats.kstwo.sf(d, np.round(en)))
    assert distributions.ks_p_value(d, n, m) == pytest.approx(reference, rel=0.05, abs=1e-4)


def test_ecdf_counts_count_values_at_and_below_each_point_in_one_pass():
    points = np.array([0.1, 0.7, 2.0])
    values = np.array([0.7, 0.7, 0.69999, 0.70001, -np.inf, np.inf, np.nan, 0.1, 2.0, 5.0])
    at_or_below, below, missing = distributions.ecdf_counts(points, values)
    finite = values[~np.isnan(values)]
    assert at_or_below.tolist() == [int((finite <= p).sum()) for p in points]
    assert below.tolist() == [int((finite < p).sum()) for p in points] and missing == 1


def test_ks_without_current_values_raises_instead_of_reading_as_no_shift():
    p = numeric_profile(np.arange(100.0))
    with pytest.raises(ValueError, match="both sides"):
        distributions.numeric_shift(np.asarray(p["ecdf_points"]), np.asarray(p["ecdf_at_or_below"]),
                            np.asarray(p["ecdf_below"]), p["n"], np.asarray(p["psi_edges"]),
                            np.asarray(p["psi_counts"]), np.full(10, np.nan))
