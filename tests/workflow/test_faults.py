"""Faults inside the pipeline: transient errors are retried; a permanent failure leaves traffic healthy."""

from __future__ import annotations

import pytest
from mlops import aws, rollout, synthetic
from mlops.errors import TransientError

from .conftest import live_model, run_upload


@pytest.fixture()
def fail_action(monkeypatch):
    """Replace one control action with a failing one (the handlers share the library module in-process)."""
    def install(action: str, error: Exception, times: int | None = None):
        original = rollout.ACTIONS[action]
        calls = {"n": 0}

        def failing(*args, **kwargs):
            calls["n"] += 1
            if times is None or calls["n"] <= times:
                raise error
            return original(*args, **kwargs)

        monkeypatch.setitem(rollout.ACTIONS, action, failing)
        return calls

    return install


def _alias(platform, family):
    alias = aws.client("lambda").get_alias(FunctionName=platform.scoring_functions[family.name], Name="live")
    return alias["FunctionVersion"], (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}


def test_transient_error_is_retried_and_the_rollout_completes(platform, new_family, fail_action):
    family = new_family()
    calls = fail_action("register", TransientError("DynamoDB throttled"), times=1)
    output, described = run_upload(platform, family.name, "v1.csv", synthetic.credit_risk_csv(2000, 3))
    assert output["outcome"] == "promoted" and calls["n"] == 2


def test_permanent_failure_during_canary_restores_live_traffic_and_registry(platform, new_family, traffic,
                                                                              fail_action):
    family = new_family(gate={"min_auc_margin": -0.5})
    live_model(platform, family)
    before = _alias(platform, family)
    fail_action("canary_check", RuntimeError("metrics backend broken"))
    generator = traffic(family).start()
    output, described = run_upload(platform, family.name, "v2.csv", synthetic.credit_risk_csv(3000, 8))
    generator.stop()
    assert described["status"] == "FAILED"
    assert _alias(platform, family) == before, "traffic must be back on the live version only"
    record = platform.registry.get_family(family.name)
    assert (record.live_version, record.canary_version, record.rollout_holder) == (1, 0, None)
    v2 = platform.registry.get_version(family.name, 2)
    assert v2.status == "rolled_back" and "pipeline failure" in v2.status_reason
    run = platform.registry.get_run(family.name, described["name"])
    assert run["outcome"] == "failed" and "metrics backend broken" in run["detail"]["message"]
