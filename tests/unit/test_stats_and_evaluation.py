"""Statistics and gate logic checked against scipy and scikit-learn reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
from mlops.core.schemas import GatePolicy
from mlops.stats import distributions
from mlops.training.evaluation import fairness_metrics, gate_decision, parity, roc_auc
from scipy import stats as scipy_stats
from sklearn.metrics import roc_auc_score


def test_psi_is_zero_for_same_distribution_and_large_for_shift():
    rng = np.random.default_rng(1)
    base = rng.normal(size=50_000)
    edges = np.quantile(base, np.linspace(0, 1, 11)[1:-1])
    counts = distributions.bin_counts(base, edges)
    assert distributions.psi(counts, distributions.bin_counts(rng.normal(size=50_000), edges)) < 0.01
    assert distributions.psi(counts, distributions.bin_counts(rng.normal(1.0, 1, size=50_000), edges)) > 0.5


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 1000)
    score = np.round(rng.random(1000) + 0.3 * y, 2)
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score))


def test_fairness_figures_on_known_groups():
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    groups = np.array(["a", "a", "a", "b", "b", "b", "a", "b"])
    result = fairness_metrics(y, labels, groups, favorable=0, min_group_size=1)  # groups of 4 rows, measured
    assert result["demographic_parity_difference"] == pytest.approx(0.75)
    assert result["equal_opportunity_difference"] == pytest.approx(1.0)


def test_parity_failure_fails_the_gate_with_reason():
    proba = np.array([[0.2, 0.8], [0.7, 0.3]])
    bad = parity(proba + [[0.01, -0.01], [0, 0]], np.array([1, 0]), proba, np.array([1, 0]), 1e-5)
    decision = gate_decision(GatePolicy(), {"auc": 0.9, "accuracy": 0.9},
                             {"demographic_parity_difference": 0.0, "equal_opportunity_difference": 0.0}, bad, None)
    assert not decision["passed"] and "ONNX vs sklearn" in decision["reasons"][0]


def test_gate_compares_with_live_model_only_when_one_exists():
    fair = {"demographic_parity_difference": 0.01, "equal_opportunity_difference": 0.01}
    ok_parity = {"ok": True, "max_abs_diff": 0.0, "label_mismatches": 0}
    first = gate_decision(GatePolicy(), {"auc": 0.7, "accuracy": 0.8}, fair, ok_parity, None)
    assert first["passed"] and all(c["check"] != "auc_vs_live" for c in first["checks"])
    worse = gate_decision(GatePolicy(min_auc_margin=0.0), {"auc": 0.7, "accuracy": 0.8}, fair, ok_parity,
                          {"version": 3, "auc": 0.75})
    assert not worse["passed"] and "live v3" in worse["reasons"][0]


def shift_against(base, current):
    from mlops.stats.profile import numeric_profile

    p = numeric_profile(base)
    return distributions.numeric_shift(np.asarray(p["ecdf_points"]), np.asarray(p["ecdf_at_or_below"]),
                               np.asarray(p["ecdf_below"]), p["n"], np.asarray(p["psi_edges"]),
                               np.asarray(p["psi_counts"]), current)


def test_ks_against_a_discrete_baseline_is_exact_without_false_alarms():
    rng = np.random.default_rng(3)
    base = rng.poisson(0.9, 50_000).astype(float)
    same = shift_against(base, rng.poisson(0.9, 2_000).astype(float)).ks
    assert same.statistic < 0.05 and same.p_value > 0.01
    shifted = rng.poisson(2.0, 2_000).astype(float)
    ks = shift_against(base, shifted).ks
    assert ks.statistic == pytest.approx(scipy_stats.ks_2samp(base, shifted).statistic, abs=1e-12)
    assert ks.p_value < 1e-10


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_one_pass_psi_and_ks_equal_the_separately_binned_figures(shift):
    from mlops.stats.profile import numeric_profile

    rng = np.random.default_rng(5)
    for base, current in ((rng.lognormal(10, 0.5, 50_000), rng.lognormal(10 + shift, 0.5, 60_000)),
                          (rng.poisson(0.9, 50_000).astype(float), rng.poisson(0.9 + shift, 60_000).astype(float))):
        profile = numeric_profile(base)
        edges, counts = np.asarray(profile["psi_edges"]), np.asarray(profile["psi_counts"])
        points = np.asarray(profile["ecdf_points"])
        one_pass = shift_against(base, current)
        direct = distributions.psi(counts, distributions.bin_counts(current, edges))
        assert one_pass.psi == pytest.approx(direct, abs=1e-12)
        at_or_below = np.searchsorted(np.sort(current), points, side="right")
        below = np.searchsorted(np.sort(current), points, side="left")
        separate = distributions.ks_against_ecdf(points, np.asarray(profile["ecdf_at_or_below"]),
                                         np.asarray(profile["ecdf_below"]), profile["n"], at_or_below, below,
                                         current.size)
        assert one_pass.ks == separate


@pytest.mark.parametrize("kind", ["lognormal", "discrete", "outliers", "constant"])
def test_lookup_table_binning_equals_binary_search(kind):
    rng = np.random.default_rng(9)
    base = {"lognormal": rng.lognormal(0, 1.5, 100_000), "discrete": rng.poisson(2, 100_000).astype(float),
            "outliers": np.append(rng.normal(size=99_990), [1e9] * 10), "constant": np.full(100_000, 3.0)}[kind]
    grid = np.quantile(base, np.arange(1, 1000) / 1000)
    values = np.concatenate([rng.choice(base, 200_000), [-1e12, 1e12, grid[0], grid[-1]]])
    assert np.array_equal(distributions.bin_index(grid, values), np.searchsorted(grid, values, side="left"))


def test_huge_sample_with_a_trivial_shift_is_significant_but_not_drift():
    """The effect-size floors decide: the KS and chi-square p-values are tiny, the shifts are not."""
    from mlops.core.schemas import DriftPolicy
    from mlops.data.synthetic import credit_risk_family
    from mlops.monitoring.drift import compare_with_baseline
    from mlops.stats.profile import baseline_profile

    family = credit_risk_family(features=[{"name": "x", "kind": "numeric"},
                                          {"name": "c", "kind": "categorical", "categories": ["a", "b", "c"]}])
    rng = np.random.default_rng(12)
    base = np.column_stack([rng.normal(size=100_000), rng.choice(3, 100_000, p=[0.5, 0.3, 0.2])])
    profile = baseline_profile(family, base, rng.random(100_000))
    n = 400_000
    columns = {"x": rng.normal(0.03, 1.0, n), "c": rng.choice(3, n, p=[0.48, 0.31, 0.21])}
    report = compare_with_baseline(family, profile, columns, rng.random(n), DriftPolicy())
    x, c = report["features"]["x"], report["features"]["c"]
    assert x["ks_p_value"] < 0.01 and x["ks_statistic"] < 0.1 and x["psi"] < 0.2
    assert c["p_value"] < 0.01 and c["cramers_v"] < 0.1
    assert report["verdict"] == "no_drift" and report["drifted_features"] == []
    strict = compare_with_baseline(family, profile, columns, rng.random(n),
                                   DriftPolicy(ks_min_statistic=0.001, chi2_min_cramers_v=0.001))
    assert strict["verdict"] == "drift", "without the floors the same data would raise drift"
