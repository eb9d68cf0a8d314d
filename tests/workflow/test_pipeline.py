"""The whole loop on the deployed state machine definition: gate, canary, promotion, rollback, failures."""

from __future__ import annotations

import json

import pytest
from mlops.core import aws
from mlops.data import synthetic
from mlops.pipeline.trigger import execution_name

from .conftest import TIERS, alias_state, entered_states, live_model, run_upload, serving_state


@pytest.mark.parametrize("tier", TIERS)
def test_first_model_goes_live_on_absolute_gate_and_lineage_answers_the_audit_question(platform, new_family, tier):
    family = new_family(serving=tier)
    output, described = run_upload(platform, family.name, "v1.csv", synthetic.credit_risk_csv(3000, 1))
    assert output == {"outcome": "promoted", "family": family.name, "version": 1}
    record = platform.registry.get_family(family.name)
    assert record.live_version == 1 and record.rollout_holder is None
    v1 = platform.registry.get_version(family.name, 1)
    lineage = v1.lineage
    assert lineage["dataset"]["key"] == f"datasets/{family.name}/v1.csv" and lineage["dataset"]["version_id"]
    assert lineage["dataset"]["rows"] == 3000 and len(lineage["dataset"]["sha256"]) == 64
    assert lineage["code"]["package_version"] and lineage["algorithm"] == "logistic_regression"
    assert lineage["gate"]["passed"] and lineage["gate"]["compared_with_live_version"] is None
    assert {"demographic_parity_difference", "equal_opportunity_difference"} <= set(lineage["fairness"])
    assert lineage["parity"]["max_abs_diff"] <= 1e-5
    assert serving_state(platform, family) == (1, {})
    if tier == "dedicated":
        assert alias_state(platform, family) == (v1.function_version, {})
    else:
        assert not v1.function_version, "the shared tier publishes no function version per model"
    assert "CanaryStart" not in entered_states(described["executionArn"])


@pytest.mark.parametrize("tier", TIERS)
def test_better_model_is_canaried_step_by_step_then_promoted(platform, new_family, traffic, tier):
    family = new_family(serving=tier)
    output, _ = run_upload(platform, family.name, "v1.csv", synthetic.credit_risk_csv(800, 11, label_noise=0.35))
    generator = traffic(family).start()
    output, described = run_upload(platform, family.name, "v2.csv", synthetic.credit_risk_csv(12000, 12))
    generator.stop()
    assert output["outcome"] == "promoted", described
    states = entered_states(described["executionArn"])
    assert states.count("CanaryCheck") >= 2 and states.count("CanaryStepUp") == 1 and "Promote" in states
    record = platform.registry.get_family(family.name)
    assert (record.live_version, record.canary_version, record.canary_weight) == (2, 0, 0)
    assert platform.registry.get_version(family.name, 1).status == "retired"
    assert serving_state(platform, family) == (2, {})
    assert generator.by_version["2"] > 0, "the canary answered part of the traffic"
    history = [(e.version, e.to_status) for e in platform.registry.history(family.name).items]
    assert (2, "canary") in history and (1, "retired") in history and (2, "live") in history


def test_degraded_candidate_is_rejected_at_the_gate_and_never_gets_traffic(platform, new_family):
    family = new_family()
    live_model(platform, family)
    before = serving_state(platform, family)
    output, described = run_upload(platform, family.name, "noise.csv",
                                   synthetic.credit_risk_csv(4000, 13, label_noise=0.9))
    assert output["outcome"] == "gated_out"
    v2 = platform.registry.get_version(family.name, 2)
    assert v2.status == "rejected" and "AUC" in v2.status_reason and not v2.function_version
    assert serving_state(platform, family) == before
    assert "CanaryStart" not in entered_states(described["executionArn"])


@pytest.mark.parametrize("tier", TIERS)
def test_canary_that_misbehaves_on_live_traffic_is_rolled_back_automatically(platform, new_family, traffic, tier):
    # The gate's label check off: inverted labels must reach the canary (tests/functional/test_gate_label_agreement.py
    # covers the gate's own catch).
    family = new_family(serving=tier, gate={"min_live_auc_on_new_data": None})
    live_model(platform, family)
    before = serving_state(platform, family)
    generator = traffic(family).start()
    output, described = run_upload(platform, family.name, "flipped.csv",
                                   synthetic.credit_risk_csv(6000, 14, flip_labels=True))
    generator.stop()
    assert output["outcome"] == "rolled_back", described
    v2 = platform.registry.get_version(family.name, 2)
    assert v2.lineage["gate"]["passed"] and v2.status == "rolled_back"
    assert "diverge" in v2.status_reason
    assert serving_state(platform, family) == before == (1, {})
    assert platform.registry.get_family(family.name).live_version == 1
    states = entered_states(described["executionArn"])
    # Rolled back at the first window with enough traffic to judge, before any step up (on a loaded machine the
    # first 1 s window may wait for traffic: counting checks made this test fail under load).
    assert "CanaryStepUp" not in states, "a diverging canary must be rolled back before it gets more traffic"


def test_ten_duplicate_s3_events_start_one_execution(platform, new_family):
    family = new_family()
    before = len(platform.executions())
    ref = platform.upload_dataset(family.name, "dup file.csv", synthetic.credit_risk_csv(500, 3))
    template = json.loads(open("tests/events/s3_object_created.json").read())
    record = template["Records"][0]
    record["s3"]["bucket"]["name"] = platform.bucket
    record["s3"]["object"].update({"key": f"datasets/{family.name}/dup+file.csv", "versionId": ref["version_id"]})
    for _ in range(10):
        response = aws.client("lambda").invoke(FunctionName=platform.function_names["trigger"],
                                               Payload=json.dumps(template).encode())
        outcome = json.loads(response["Payload"].read())["outcomes"][0]
        assert outcome["started"] is False and "duplicate" in outcome["reason"]
        assert outcome["key"] == f"datasets/{family.name}/dup file.csv"
    executions = platform.executions()
    assert len(executions) == before + 1
    assert execution_name(family.name, platform.bucket, ref["key"], ref["version_id"]) in {
        e["name"] for e in executions}
    platform.drain_executions()


def test_unknown_family_and_unsupported_file_are_rejected_without_an_execution(platform, new_family):
    family = new_family()
    before = len(platform.executions())
    platform.upload_dataset("no-such-family", "a.csv", b"x,y\n1,2\n")
    platform.upload_dataset(family.name, "notes.txt", b"not a data set")
    assert len(platform.executions()) == before


def test_bad_data_sets_fail_fast_with_reason_and_register_nothing(platform, new_family):
    family = new_family()
    good = synthetic.credit_risk_csv(200, 1)
    header, rows = good.split(b"\n", 1)
    cases = {
        "missing-target.csv": (header.replace(b",default", b",outcome") + b"\n" + rows, "'default' (target)"),
        "wrong-types.csv": (header + b"\n" + b"\n".join([b"x,1,0.2,3,0,1,4,north,F,0"] * 60), "is not a number"),
        "empty.csv": (b"", "empty"),
        "header-only.csv": (header + b"\n", "no data rows"),
        "constant-target.csv": (header + b"\n" + b"\n".join([b"30,1,0.2,3,0,1,4,north,F,1"] * 60), "constant"),
        "duplicated-header.csv": (header.replace(b"income", b"age") + b"\n" + rows, "repeats columns"),
        "utf16.csv": (b"\xff\xfe" + good, "UTF-16 text; save it as UTF-8"),
        "latin1.csv": (good.replace(b"north", b"n\xf6rth"), "not UTF-8 text (invalid byte 0xf6 at line"),
    }
    for filename, (data, reason) in cases.items():
        output, described = run_upload(platform, family.name, filename, data)
        assert described["status"] == "FAILED"
        states = entered_states(described["executionArn"])
        assert "Evaluate" not in states and "Register" not in states
        run = platform.registry.get_run(family.name, described["name"])
        assert run["outcome"] == "failed" and run["detail"]["error"] == "DataSetError"
        assert reason in run["detail"]["message"]
    record = platform.registry.get_family(family.name)
    assert record.latest_version == 0 and record.rollout_holder is None, "no half-registered version"


def test_data_set_over_the_size_limit_is_rejected_by_the_trigger_with_a_recorded_reason(platform, new_family):
    family = new_family(max_dataset_bytes=20_000)
    before = len(platform.executions())
    ref = platform.upload_dataset(family.name, "big.csv", synthetic.credit_risk_csv(2000, 5))
    assert len(platform.executions()) == before, "no execution for an oversize data set"
    run = platform.registry.get_run(family.name, execution_name(family.name, platform.bucket, ref["key"],
                                                                ref["version_id"]))
    assert run["outcome"] == "rejected" and "over the family's limit of 20000" in run["detail"]["reason"]
    assert platform.registry.get_family(family.name).latest_version == 0


def test_second_upload_waits_for_the_running_rollout_and_none_is_lost(platform, new_family, traffic):
    family = new_family()
    live_model(platform, family)
    generator = traffic(family).start()
    before = {e["executionArn"] for e in platform.executions()}
    platform.upload_dataset(family.name, "a.csv", synthetic.credit_risk_csv(3000, 31))
    platform.upload_dataset(family.name, "b.csv", synthetic.credit_risk_csv(3000, 32))
    started = sorted((e for e in platform.executions() if e["executionArn"] not in before),
                     key=lambda e: e["startDate"])
    assert len(started) == 2
    results = [platform.wait_for(e["executionArn"], 180) for e in started]
    generator.stop()
    assert all(r["status"] == "SUCCEEDED" for r in results), [
        platform.registry.get_run(family.name, r["name"]) for r in results]
    waited = [e for e in started if "WaitForRolloutLock" in entered_states(e["executionArn"])]
    assert len(waited) == 1, [(e["name"], entered_states(e["executionArn"])) for e in started]
    # The first run releases the lock in its Finish* state (before its execution ends): the second may train
    # from the moment that state was entered, not before.
    first = next(e for e in started if e is not waited[0])
    first_events = aws.client("stepfunctions").get_execution_history(executionArn=first["executionArn"])["events"]
    released_from = next(e["timestamp"] for e in first_events
                         if e.get("stateEnteredEventDetails", {}).get("name", "").startswith("Finish"))
    events = aws.client("stepfunctions").get_execution_history(executionArn=waited[0]["executionArn"])["events"]
    train_started = next(e["timestamp"] for e in events
                         if e.get("stateEnteredEventDetails", {}).get("name") == "Train")
    assert train_started >= released_from, "the second rollout trained while the first still held the family"
    record = platform.registry.get_family(family.name)
    assert record.latest_version == 3 and record.rollout_holder is None and record.canary_version == 0


def test_rollout_is_refused_and_recorded_when_the_family_stays_busy(platform, new_family, traffic):
    family = new_family(canary={"lock_max_wait_seconds": 0})
    live_model(platform, family)
    generator = traffic(family).start()
    before = {e["executionArn"] for e in platform.executions()}
    platform.upload_dataset(family.name, "a.csv", synthetic.credit_risk_csv(3000, 41))
    platform.upload_dataset(family.name, "b.csv", synthetic.credit_risk_csv(3000, 42))
    started = [e for e in platform.executions() if e["executionArn"] not in before]
    results = {e["name"]: platform.wait_for(e["executionArn"], 180) for e in started}
    generator.stop()
    refused = [name for name, r in results.items() if r["status"] == "FAILED"]
    assert len(refused) == 1
    run = platform.registry.get_run(family.name, refused[0])
    assert run["outcome"] == "refused" and "lock" in run["detail"]["reason"]


def test_scoring_code_change_is_rolled_out_as_a_canary_of_the_same_model(platform, new_family, traffic):
    family = new_family(serving="dedicated")
    live_model(platform, family)
    v1 = platform.registry.get_version(family.name, 1)
    fn = platform.scoring_functions[family.name]
    lam = aws.client("lambda")
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("handler.py", "# new scoring code\n")
    lam.update_function_code(FunctionName=fn, ZipFile=buffer.getvalue())  # what a `cdk deploy` does to $LATEST
    assert alias_state(platform, family)[0] == v1.function_version, "a deploy alone changes no traffic"
    new_code = lam.get_function_configuration(FunctionName=fn)["CodeSha256"]

    generator = traffic(family).start()
    response = lam.invoke(FunctionName=platform.function_names["trigger"],
                          Payload=json.dumps({"rollout_code": family.name}).encode())
    outcome = json.loads(response["Payload"].read())["outcomes"][0]
    assert outcome["started"] is True
    described = platform.wait_for(outcome["execution_arn"], 120)
    generator.stop()
    assert json.loads(described["output"])["outcome"] == "promoted"
    assert "CanaryStart" in entered_states(described["executionArn"])
    v2 = platform.registry.get_version(family.name, 2)
    assert v2.artifact_sha256 == v1.artifact_sha256, "same data version and seed: the same model"
    primary, _ = alias_state(platform, family)
    assert primary == v2.function_version != v1.function_version
    assert lam.get_function_configuration(FunctionName=fn, Qualifier=primary)["CodeSha256"] == new_code
