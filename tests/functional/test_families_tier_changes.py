"""The serving tier is a deployment decision: the management API refuses a run-time family declared dedicated
(no deployment created its function) and a tier change of a deployed dedicated family, naming what to do."""

from __future__ import annotations

import pytest
from mlops.core.errors import ValidationError
from mlops.data.synthetic import credit_risk_family
from mlops.rollout.families import FamilyManager


def _body(**overrides):
    return {"family": credit_risk_family(name="tiered", **overrides).model_dump(mode="json"), "reason": "test"}


def test_a_run_time_family_declared_dedicated_is_refused_and_told_to_use_cdk_json(platform):
    manager = FamilyManager(platform.registry)
    with pytest.raises(ValidationError, match="only a deployment creates: declare it in cdk.json"):
        manager.apply("tiered", _body(serving="dedicated"), actor="arn:aws:iam::1:user/a")
    assert manager.apply("tiered", _body(), actor="arn:aws:iam::1:user/a")["change"] == "created"
    with pytest.raises(ValidationError, match="serving: dedicated needs"):
        manager.apply("tiered", _body(serving="dedicated"), actor="arn:aws:iam::1:user/a")


def test_a_deployed_dedicated_family_keeps_its_tier_at_run_time(platform):
    platform.registry.seed_family(credit_risk_family(name="tiered", serving="dedicated"), "score-tiered",
                                  actor="cloudformation:stack")
    manager = FamilyManager(platform.registry)
    with pytest.raises(ValidationError, match="change its serving tier in cdk.json and deploy"):
        manager.apply("tiered", _body(serving="shared"), actor="arn:aws:iam::1:user/a")
    changed = manager.apply("tiered", _body(serving="dedicated", threshold=0.4), actor="arn:aws:iam::1:user/a")
    assert changed["change"] == "updated"
