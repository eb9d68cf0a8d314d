"""Fresh-user pass (MED): turning on `auto_retrain` retrained a byte-identical model and canaried it. On the real
state machine definition with the real handlers:
1. a declaration change that is not training-relevant (drift, canary) starts no retrain on the live model's data set,
   and the drift report says why;
2. a run whose trained ONNX artifact is an existing version's ends `unchanged` (nothing registered, no canary,
   lock released), naming that version, whatever started it;
3. a canary rolled back for too little traffic leaves its data set usable (no verdict), and the next drift check
   says what would happen instead of "a model trained on it was later rolled back"."""

from __future__ import annotations

import boto3
from click.testing import CliRunner
from mlops.core.observability import MetricsPublisher
from mlops.pipeline.trigger import pipeline_input, start_pipeline
from mlops.registry.runs import RunLog
from mlops.registry.store import ROLLBACK_INSUFFICIENT_TRAFFIC

from mlops_local.cli import cli
from mlops_local.client import Platform
from mlops_local.console import Console

from .conftest import entered_states, live_model


def _check(platform, family) -> dict:
    platform.flush_captures()
    reports = [r for r in platform.run_drift_check()["reports"] if r["family"] == family.name]
    assert len(reports) == 1
    return reports[0]


def _first_csv(platform, family) -> dict:
    dataset = platform.registry.get_version(family.name, 1).lineage["dataset"]
    return {k: dataset[k] for k in ("bucket", "key", "version_id", "etag")}


def test_turning_on_auto_retrain_and_changing_the_canary_starts_no_retrain_of_the_live_model(
        platform, new_family, traffic):
    family = new_family()  # auto_retrain off
    live_model(platform, family)
    # `mlops families apply FILE` with only drift.auto_retrain and canary settings changed.
    changed = family.model_copy(update={
        "drift": family.drift.model_copy(update={"auto_retrain": True}),
        "canary": family.canary.model_copy(update={"max_idle_windows": 0, "min_requests": 50})})
    platform.add_family(changed, reason="turn on auto_retrain")
    traffic(family).send(100, "drifted")
    report = _check(platform, family)
    assert report["verdict"] == "drift"
    retrain = report["retrain"]
    assert retrain["started"] is False, retrain
    assert ("no data set newer than live v1's is usable, and no training-relevant part of the declaration changed "
            "since it was trained (config version 1 -> 2, changed: canary, drift; none training-relevant): a retrain "
            "would reproduce v1") in retrain["reason"]
    assert not [e for e in platform.executions() if e["name"].startswith(f"{family.name}-drift-")]
    assert platform.registry.get_family(family.name).latest_version == 1
    # The drift check's record says the same (`mlops drift show`).
    recorded = platform.registry.drift_records(family.name, limit=1)[0]["report"]["retrain"]
    assert recorded["reason"] == retrain["reason"]


def test_a_run_that_trains_the_live_models_artifact_again_ends_unchanged_without_registering_it(
        platform, new_family, stack):
    family = new_family()
    live_model(platform, family)
    record = platform.registry.get_family(family.name)
    # Defence in depth: a retrain started on the live model's own data set under the same declaration.
    started = start_pipeline(platform.state_machine_arn, f"{family.name}-drift-1",
                             pipeline_input(record, _first_csv(platform, family), "drift"),
                             RunLog(platform.registry, MetricsPublisher("MLOpsPlatform")))
    described = platform.wait_for(started["execution_arn"], 120)
    assert described["status"] == "SUCCEEDED", described
    states = entered_states(described["executionArn"])
    assert {"Train", "SameModel?", "FinishUnchanged", "Unchanged"} <= set(states)
    assert not {"Evaluate", "Register", "CanaryStart", "GoLiveFirstModel"} & set(states)
    after = platform.registry.get_family(family.name)
    assert (after.latest_version, after.live_version, after.canary_version) == (1, 1, 0)
    assert after.rollout_holder is None
    run = platform.registry.get_run(family.name, described["name"])
    live_sha = platform.registry.get_version(family.name, 1).artifact_sha256
    assert (run["outcome"], run["step"], run.get("version")) == ("unchanged", "Train", None)
    assert run["detail"]["identical_to"] == {"version": 1, "status": "live", "artifact_sha256": live_sha}
    assert run["reason"].startswith(f"the trained model is byte-identical to v1, live (ONNX artifact sha256 "
                                    f"{live_sha[:12]}...)")
    # The data set records that it reproduces v1 under this declaration: the next retrain passes it over.
    dataset = _first_csv(platform, family)
    trained = platform.registry.versions_trained_on(family.name, dataset["key"], dataset.get("version_id"))
    assert [(t["version"], t["reproduced"]) for t in trained] == [(1, False), (1, True)], trained
    shown = CliRunner().invoke(cli, ["runs", "show", described["name"], *stack], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert "unchanged" in shown.output and f"Same model as v1 (live): ONNX artifact sha256 {live_sha}" in \
        " ".join(shown.output.split())
    reader = Platform(description="test", bucket=platform.bucket, registry_table=platform.table,
                      state_machine_arn=platform.state_machine_arn, api_url="", session=boto3.Session())
    page = Console(reader).run_page(described["name"], family.name)
    assert "badge idle\">unchanged" in page and f"/families/{family.name}/versions/1\">v1</a> (live)" in page


def test_a_canary_rolled_back_for_too_little_traffic_leaves_its_data_set_usable(platform, new_family, traffic):
    # A canary that gets no traffic is rolled back after one window.
    family = new_family(drift={"auto_retrain": True}, canary={"max_idle_windows": 0, "min_requests": 50},
                        gate={"min_auc_margin": -0.5})
    live_model(platform, family)
    # A training-relevant change: the drift retrain on the live model's data set trains a different model.
    platform.add_family(family.model_copy(update={"hyperparameters": {"C": 0.5}}), reason="more regularisation")
    generator = traffic(family)
    generator.send(100, "drifted")
    report = _check(platform, family)
    retrain = report["retrain"]
    assert retrain["started"] is True, retrain
    described = platform.wait_for(retrain["execution_arn"], 120)
    run = platform.registry.get_run(family.name, described["name"])
    assert run["outcome"] == "rolled_back", run["reason"]
    assert run["detail"]["canary_cause"] == ROLLBACK_INSUFFICIENT_TRAFFIC
    v2 = platform.registry.get_version(family.name, 2)
    assert v2.lineage["canary_result"]["cause"] == ROLLBACK_INSUFFICIENT_TRAFFIC
    dataset = _first_csv(platform, family)
    # No verdict: the data set is not marked unusable; the registry only remembers that v2 was trained on it.
    assert platform.registry.dataset_unusable(family.name, dataset["key"], dataset["version_id"]) is None
    assert platform.registry.dataset_unjudged(family.name, dataset["key"], dataset["version_id"])["version"] == 2

    generator.send(100, "drifted")
    again = _check(platform, family)["retrain"]
    assert again["started"] is False
    assert "later rolled back" not in again["reason"]
    assert ("v2 was trained on it and no training-relevant part of the declaration changed since (config version 2, "
            "unchanged): a retrain would reproduce v2, whose canary was rolled back for too little traffic") \
        in again["reason"]
    assert f"mlops promote {family.name} 2 --reason" in again["reason"]
