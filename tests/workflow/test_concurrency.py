"""Concurrent promote and rollback on one family: exactly one wins and the alias agrees with the registry."""

from __future__ import annotations

import threading

import pytest
from mlops.core import aws
from mlops.core.errors import PlatformError
from mlops.core.settings import Env, RolloutSettings
from mlops.data import synthetic
from mlops.rollout.control import create_rollout_context, promote, rollback

from .conftest import TIERS, alias_state, live_model, serving_state


@pytest.mark.parametrize("tier", TIERS)
def test_concurrent_promote_and_rollback_leave_registry_and_alias_consistent(platform, new_family, tier):
    from mlops.rollout.control import canary_start
    from mlops.training.steps import evaluate_step, register_step, train_step

    attempt = TIERS.index(tier)
    family = new_family(gate={"min_auc_margin": -0.5}, serving=tier)
    live_model(platform, family)
    settings = RolloutSettings.model_validate({Env.ARTIFACT_BUCKET: platform.bucket, Env.REGISTRY_TABLE: platform.table,
                                               Env.STATE_MACHINE_ARN: platform.state_machine_arn})
    ctx = create_rollout_context(settings)
    # Outside datasets/ (no trigger): the steps are driven by hand up to the racing pair.
    put = aws.client("s3").put_object(Bucket=platform.bucket, Key=f"manual/{family.name}.csv",
                                      Body=synthetic.credit_risk_csv(2000, 60 + attempt))
    ref = {"bucket": platform.bucket, "key": f"manual/{family.name}.csv", "version_id": put["VersionId"]}
    state = {"family": family.name, "dataset": ref}
    state["train"] = train_step(ctx.pipeline, state)
    state["evaluation"] = evaluate_step(ctx.pipeline, state)
    state["registration"] = register_step(ctx.pipeline, state, f"race-{attempt}")
    if not state["registration"]["gate_passed"]:
        pytest.skip("candidate rejected")
    state["canary"] = canary_start(ctx, state, f"race-{attempt}")
    state["check"] = {"reasons": ["racing rollback"]}

    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def run(name, action):
        barrier.wait()
        try:
            action(ctx, state, f"race-{attempt}")
            outcomes[name] = "won"
        except PlatformError as exc:
            outcomes[name] = f"lost: {exc.code}"

    threads = [threading.Thread(target=run, args=("promote", promote)),
               threading.Thread(target=run, args=("rollback", rollback))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v == "won" for v in outcomes.values()) == [False, True], outcomes
    record = platform.registry.get_family(family.name)
    candidate = platform.registry.get_version(family.name, state["registration"]["version"])
    live = platform.registry.get_version(family.name, record.live_version)
    assert record.canary_version == 0
    assert serving_state(platform, family) == (live.version, {}), "traffic goes to exactly the registry's live"
    if family.serving == "dedicated":
        assert alias_state(platform, family) == (live.function_version, {}), "the alias serves the registry's live"
    assert candidate.status == ("live" if outcomes["promote"] == "won" else "rolled_back")
