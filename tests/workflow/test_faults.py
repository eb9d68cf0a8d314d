"""Faults at every Task state: transient errors are retried with backoff; a permanent failure leaves the `live`
alias on a healthy version, the registry consistent (no candidate or canary left behind, lock released) and the
reason recorded. The outcomes are tabulated in docs/reliability.md."""

from __future__ import annotations

import pytest
from mlops.core import aws
from mlops.core.errors import TransientError
from mlops.data import synthetic
from mlops.rollout import control
from mlops.training import fit, steps

from .conftest import TIERS, alias_state, live_model, run_upload, serving_state

CONTROL_STATES = {"AcquireRolloutLock": "acquire_lock", "Register": "register", "CanaryStart": "canary_start",
                  "CanaryCheck": "canary_check", "CanaryStepUp": "canary_step", "Promote": "promote",
                  "Rollback": "rollback", "GoLiveFirstModel": "go_live_first"}


@pytest.fixture()
def inject(monkeypatch):
    """Make the code behind one Task state fail (`times` times, or always)."""
    def install(state: str, error: Exception, times: int | None = None) -> dict:
        calls = {"n": 0}

        def wrap(original):
            def failing(*args, **kwargs):
                calls["n"] += 1
                if times is None or calls["n"] <= times:
                    raise error
                return original(*args, **kwargs)
            return failing

        if state in CONTROL_STATES:
            action = CONTROL_STATES[state]
            monkeypatch.setitem(control.ACTIONS, action, wrap(control.ACTIONS[action]))
        elif state == "Train":
            monkeypatch.setattr(fit, "train", wrap(fit.train))
        elif state == "Evaluate":
            monkeypatch.setattr(steps, "fairness_metrics", wrap(steps.fairness_metrics))
        elif state == "FinishPromoted":
            monkeypatch.setitem(control.ACTIONS, "finish:promoted", wrap(control.ACTIONS["finish:promoted"]))
        else:
            raise ValueError(state)
        return calls

    return install




def assert_healthy_and_consistent(platform, family, described):
    record = platform.registry.get_family(family.name)
    assert record.canary_version == 0 and record.canary_weight == 0 and record.rollout_holder is None
    statuses = {v.version: v.status for v in platform.registry.list_versions(family.name, limit=100).items}
    assert not {"candidate", "canary"} & set(statuses.values()), statuses
    if record.live_version:
        assert serving_state(platform, family) == (record.live_version, {}), "traffic must go to the registry's live"
        if family.serving == "dedicated":
            live = platform.registry.get_version(family.name, record.live_version)
            assert alias_state(platform, family) == (live.function_version, {}), "alias must serve the registry's live"
    run = platform.registry.get_run(family.name, described["name"])
    assert run["outcome"] == "failed" and run["detail"]["message"]


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("state", ["AcquireRolloutLock", "Train", "Evaluate", "Register", "CanaryStart",
                                   "CanaryCheck", "CanaryStepUp", "Promote", "FinishPromoted"])
def test_permanent_failure_at_each_state_leaves_traffic_healthy(platform, new_family, traffic, inject, state, tier):
    steps = [10, 50, 100] if state == "CanaryStepUp" else [50, 100]
    family = new_family(gate={"min_auc_margin": -0.5}, canary={"steps": steps}, serving=tier)
    live_model(platform, family, rows=1500)
    inject(state, RuntimeError(f"injected permanent failure in {state}"))
    generator = traffic(family).start()
    _, described = run_upload(platform, family.name, "v2.csv", synthetic.credit_risk_csv(1500, 8))
    generator.stop()
    assert described["status"] == "FAILED", platform.registry.get_run(family.name, described["name"])
    assert_healthy_and_consistent(platform, family, described)
    assert f"injected permanent failure in {state}" in platform.registry.get_run(
        family.name, described["name"])["detail"]["message"]


@pytest.mark.parametrize("tier", TIERS)
def test_permanent_failure_in_rollback_still_restores_the_live_version(platform, new_family, traffic, inject, tier):
    # The gate's label check off: inverted labels must reach the canary (tests/functional/test_gate_label_agreement.py
    # covers the gate's own catch).
    family = new_family(canary={"steps": [50, 100]}, serving=tier, gate={"min_live_auc_on_new_data": None})
    live_model(platform, family, rows=1500)
    before = serving_state(platform, family)
    inject("Rollback", RuntimeError("injected permanent failure in Rollback"))
    generator = traffic(family).start()
    _, described = run_upload(platform, family.name, "flip.csv", synthetic.credit_risk_csv(4000, 9, flip_labels=True))
    generator.stop()
    assert described["status"] == "FAILED"
    assert serving_state(platform, family) == before == (1, {})
    assert_healthy_and_consistent(platform, family, described)


@pytest.mark.parametrize("tier", TIERS)
def test_permanent_failure_of_the_first_model_leaves_no_live_model_and_no_candidate(platform, new_family, inject,
                                                                                    tier):
    family = new_family(serving=tier)
    inject("GoLiveFirstModel", RuntimeError("injected permanent failure in GoLiveFirstModel"))
    _, described = run_upload(platform, family.name, "v1.csv", synthetic.credit_risk_csv(2000, 3))
    assert described["status"] == "FAILED"
    assert platform.registry.get_family(family.name).live_version == 0
    assert platform.registry.get_version(family.name, 1).status == "rejected"
    assert_healthy_and_consistent(platform, family, described)


@pytest.mark.parametrize(("state", "tier"), [
    *((state, "shared") for state in ("AcquireRolloutLock", "Train", "Evaluate", "Register", "CanaryStart",
                                      "Promote")),
    # The states whose work differs by tier (binding and routing), on the dedicated tier too.
    ("CanaryStart", "dedicated"), ("Promote", "dedicated")])
def test_transient_error_at_a_state_is_retried_and_the_rollout_completes(platform, new_family, traffic, inject,
                                                                         state, tier):
    family = new_family(gate={"min_auc_margin": -0.5}, canary={"steps": [50, 100]}, serving=tier)
    live_model(platform, family, rows=1500)
    calls = inject(state, TransientError(f"throttled in {state}"), times=1)
    generator = traffic(family).start()
    output, described = run_upload(platform, family.name, "v2.csv", synthetic.credit_risk_csv(1500, 8))
    generator.stop()
    assert output.get("outcome") == "promoted", described
    assert calls["n"] == 2
    events = aws.client("stepfunctions").get_execution_history(executionArn=described["executionArn"],
                                                               maxResults=1000)["events"]
    failed = [e for e in events if e["type"] in ("TaskFailed", "LambdaFunctionFailed")]
    assert len(failed) == 1 and "TransientError" in str(failed[0])
