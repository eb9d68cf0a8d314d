"""The gate with the fairness figures as the evaluate step builds them: too little data is reported, never a crash
and never a measured 0.0; a family without a sensitive attribute is gated without fairness checks, and says so."""

from __future__ import annotations

import numpy as np
from mlops.core.schemas import GatePolicy
from mlops.stats.fairness import fairness_metrics, fairness_not_checked
from mlops.training.evaluation import gate_decision

PARITY = {"ok": True, "max_abs_diff": 0.0, "label_mismatches": 0}
METRICS = {"auc": 0.8, "accuracy": 0.8}


def _holdout(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, groups.size)
    return y, np.where(rng.random(groups.size) < 0.8, y, 1 - y)


def test_constant_sensitive_attribute_passes_with_insufficient_data_noted_not_a_measured_zero():
    groups = np.array(["F"] * 400)
    y, labels = _holdout(groups)
    fairness = fairness_metrics(y, labels, groups, 0, min_group_size=30, attribute="sex")
    decision = gate_decision(GatePolicy(), METRICS, fairness, PARITY, None)
    fair = {c["check"]: c for c in decision["checks"] if "difference" in c["check"]}
    assert set(fair) == {"demographic_parity_difference", "equal_opportunity_difference"}
    assert all(c["value"] is None and c["status"] == "insufficient_data" for c in fair.values())
    assert decision["passed"] and any("insufficient data" in n for n in decision["notes"])


def test_one_tiny_group_is_left_out_of_the_gate_while_large_groups_decide():
    groups = np.array(["F"] * 300 + ["M"] * 300 + ["X"])
    y, labels = _holdout(groups)
    labels[-1] = 1 - y[-1]  # the one-row group alone would make the spread 1.0
    fairness = fairness_metrics(y, labels, groups, 0, min_group_size=30, attribute="sex")
    decision = gate_decision(GatePolicy(), METRICS, fairness, PARITY, None)
    parity_check = next(c for c in decision["checks"] if c["check"] == "demographic_parity_difference")
    assert parity_check["value"] is not None and parity_check["value"] < 0.25 and decision["passed"]


def test_family_without_sensitive_attribute_has_no_fairness_checks_and_says_so():
    fairness = fairness_not_checked("the family declares no sensitive attribute")
    decision = gate_decision(GatePolicy(), METRICS, fairness, PARITY, None)
    assert not [c for c in decision["checks"] if "difference" in c["check"]]
    assert decision["passed"] and any("fairness not checked" in n for n in decision["notes"])
