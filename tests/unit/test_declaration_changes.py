"""Which changes of a family's declaration are training-relevant (mlops.core.declarations): a drift or performance
retrain on a data set a model was already trained on only runs after one of them (fresh-user pass: turning on
auto_retrain retrained a byte-identical model). The classification is checked against what training really does:
policy-only changes give the same ONNX artifact from the same data, training-relevant ones a different one."""

from __future__ import annotations

import hashlib

import pytest
from mlops.core.declarations import (
    POLICY_FIELDS,
    TRAINING_FIELDS,
    TRAINING_GATE_FIELDS,
    declaration_changes,
)
from mlops.core.schemas import GatePolicy, ModelFamily
from mlops.data.datasets import parse_dataset
from mlops.data.synthetic import credit_risk_csv, credit_risk_family
from mlops.training import fit

BASE = credit_risk_family()


def _with(**changes) -> ModelFamily:
    return credit_risk_family(**changes)


def test_every_declaration_field_is_classified_exactly_once():
    # A new field of ModelFamily must be classified here, or a retrain could miss (or invent) a training change.
    assert set(TRAINING_FIELDS) | set(POLICY_FIELDS) == set(ModelFamily.model_fields)
    assert not set(TRAINING_FIELDS) & set(POLICY_FIELDS)
    assert set(TRAINING_GATE_FIELDS) <= set(GatePolicy.model_fields) and "gate" in POLICY_FIELDS


def test_turning_on_auto_retrain_and_changing_the_canary_is_not_training_relevant():
    changed = _with(drift={"auto_retrain": True}, canary={"max_idle_windows": 1, "min_requests": 50})
    changes = declaration_changes(BASE, changed)
    assert changes.training == () and changes.other == ("canary", "drift")
    assert not changes.retrains_differently
    assert changes.describe() == "changed: canary, drift; none training-relevant"


@pytest.mark.parametrize("policy", [
    {"gate": {"min_auc": 0.7}}, {"performance": {"retrain": True}}, {"capture_sample_rate": 0.5},
    {"never_capture": ("income",)}, {"serving": "dedicated"}, {"training": {"engine": "sagemaker"}},
    {"min_rows_per_class": 20}, {"max_dataset_bytes": 1024 * 1024}, {"max_unknown_share": 0.2},
])
def test_policy_and_acceptance_changes_are_not_training_relevant(policy):
    changes = declaration_changes(BASE, _with(**policy))
    assert changes.training == () and changes.other == (next(iter(policy)),)


@pytest.mark.parametrize(("change", "named"), [
    ({"hyperparameters": {"C": 0.5}}, "hyperparameters"), ({"algorithm": "random_forest"}, "algorithm"),
    ({"seed": 7}, "seed"), ({"threshold": 0.3}, "threshold"), ({"holdout_fraction": 0.3}, "holdout_fraction"),
    ({"sensitive_attribute": None}, "sensitive_attribute"), ({"missing_markers": ("NA",)}, "missing_markers"),
    ({"delimiter": ","}, "delimiter"), ({"favorable_label": 1}, "favorable_label"),
    ({"gate": {"parity_tolerance": 1e-4}}, "gate.parity_tolerance"),
])
def test_training_relevant_changes_are_named(change, named):
    changes = declaration_changes(BASE, _with(**change))
    assert changes.training == (named,) and changes.retrains_differently


def test_a_feature_change_is_training_relevant_and_other_parts_are_listed_with_it():
    features = [f.model_dump() for f in BASE.features]
    features[0] = {**features[0], "missing": "median"}
    changes = declaration_changes(BASE, _with(features=features, drift={"auto_retrain": True},
                                              gate={"min_auc": 0.7, "parity_tolerance": 1e-4}))
    assert changes.training == ("features", "gate.parity_tolerance") and changes.other == ("gate", "drift")
    assert changes.describe() == "changed: features, gate.parity_tolerance, gate, drift"


def test_the_same_declaration_is_unchanged():
    changes = declaration_changes(BASE, credit_risk_family())
    assert changes.training == changes.other == () and changes.describe() == "unchanged"


def _artifact_sha256(family: ModelFamily, data: bytes) -> str:
    dataset = parse_dataset(data, family, "train.csv")
    model = fit.train(family, dataset.X, dataset.y, classes=dataset.classes)
    return hashlib.sha256(model.onnx_bytes).hexdigest()


def test_policy_changes_train_the_same_artifact_and_training_changes_another():
    data = credit_risk_csv(600, 11)
    base = _artifact_sha256(BASE, data)
    policies = _with(drift={"auto_retrain": True, "min_samples": 100}, canary={"max_idle_windows": 1},
                     gate={"min_auc": 0.7}, performance={"retrain": True}, capture_sample_rate=0.5,
                     training={"engine": "auto"}, min_rows_per_class=12, max_unknown_share=0.1)
    assert not declaration_changes(BASE, policies).retrains_differently
    assert _artifact_sha256(policies, data) == base
    for change in ({"hyperparameters": {"C": 0.5}}, {"threshold": 0.4}, {"seed": 3}):
        changed = _with(**change)
        assert declaration_changes(BASE, changed).retrains_differently
        assert _artifact_sha256(changed, data) != base, change
