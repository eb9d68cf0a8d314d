"""A canary rolled back because too little traffic reached it to judge it can still be promoted by an operator
(`mlops promote FAMILY VERSION --reason`), recorded with who and why; one rolled back for what it did on live
traffic cannot (fresh-user pass on issue 17)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from mlops.data import synthetic
from mlops.registry.store import ROLLBACK_INSUFFICIENT_TRAFFIC

from mlops_local.cli import cli

from .conftest import live_model, run_upload, serving_state


def mlops(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_a_canary_rolled_back_for_lack_of_traffic_is_promoted_by_an_operator_with_who_and_why(
        platform, new_family, monkeypatch):
    # No scoring traffic at all: the canary waits one window, then is rolled back for lack of evidence.
    family = new_family(canary={"max_idle_windows": 0, "min_requests": 50})
    live_model(platform, family)
    output, _ = run_upload(platform, family.name, "v2.csv", synthetic.credit_risk_csv(3000, 6))
    assert output["outcome"] == "rolled_back", output
    v2 = platform.registry.get_version(family.name, 2)
    assert v2.status == "rolled_back" and v2.lineage["canary_result"]["cause"] == ROLLBACK_INSUFFICIENT_TRAFFIC

    from mlops_local import client

    monkeypatch.setattr(client, "stack_outputs", lambda session, name: {
        "ArtifactBucket": platform.bucket, "RegistryTable": platform.table,
        "PipelineStateMachine": platform.state_machine_arn, "ScoringApiUrl": "https://api.example/prod/"})
    result = mlops("promote", family.name, "2", "--reason", "traffic was paused during the rollout", "--json",
                   "--stack", "mlops-test")
    assert result.exit_code == 0, result.output
    promoted = json.loads(result.stdout)
    assert promoted["after_insufficient_traffic"] is True and promoted["previous_live_version"] == 1
    record = platform.registry.get_family(family.name)
    assert (record.live_version, platform.registry.get_version(family.name, 1).status) == (2, "retired")
    assert serving_state(platform, family) == (2, {})
    event = max(platform.registry.history(family.name).items, key=lambda e: (e.at, e.to_status == "live"))
    assert (event.version, event.from_status, event.to_status) == (2, "rolled_back", "live")
    assert event.reason == ("promoted by an operator after its canary was rolled back for too little traffic: "
                            "traffic was paused during the rollout")
    assert event.actor.startswith("cli:")

