"""Every outcome visible, on the real state machine: uploads the trigger refuses, identical content, step timings,
and executions that end outside the definition's Catch reaching the failure handling (EventBridge, emulated by
the local runtime with the event AWS sends)."""

from __future__ import annotations

import time

import pytest
from mlops.core import aws
from mlops.data import synthetic
from mlops.pipeline.trigger import execution_name
from mlops.rollout import control

from .conftest import entered_states, live_model, run_upload, serving_state


def _run_of_upload(platform, family: str, filename: str, data: bytes) -> tuple[dict, dict]:
    before = {e["executionArn"] for e in platform.executions()}
    ref = platform.upload_dataset(family, filename, data)
    started = [e for e in platform.executions() if e["executionArn"] not in before]
    run_id = execution_name(family, platform.bucket, ref["key"], ref["version_id"])
    return ref, {"run_id": run_id, "executions": started}


def test_unknown_family_and_parquet_uploads_leave_rejected_runs_and_no_execution(platform, new_family):
    family = new_family()
    _, unknown = _run_of_upload(platform, "no-such-family", "a.csv", b"x,y\n1,2\n")
    _, parquet = _run_of_upload(platform, family.name, "data.parquet", b"PAR1....PAR1")
    assert unknown["executions"] == [] and parquet["executions"] == []
    run = platform.registry.get_run("no-such-family", unknown["run_id"])
    assert run["outcome"] == "rejected" and "unknown model family 'no-such-family'" in run["reason"]
    run = platform.registry.get_run(family.name, parquet["run_id"])
    assert run["outcome"] == "rejected" and "unsupported file type 'data.parquet'" in run["reason"]
    assert run["step"] == "Trigger" and run["dataset"]["key"] == f"datasets/{family.name}/data.parquet"


def test_a_promoted_run_records_its_deciding_step_version_dataset_and_step_timings(platform, new_family):
    family = new_family()
    output, described = run_upload(platform, family.name, "v1.csv", synthetic.credit_risk_csv(1500, 2))
    assert output["outcome"] == "promoted", described
    run = platform.registry.get_run(family.name, described["name"])
    assert (run["outcome"], run["version"], run["step"]) == ("promoted", 1, "GoLiveFirstModel")
    assert run["reason"] == "v1 is live" and run["execution_arn"] == described["executionArn"]
    assert len(run["dataset"]["sha256"]) == 64 and run["dataset"]["version_id"]
    assert run["started_at"] <= run["ended_at"]
    steps = {s["step"]: s for s in run["steps"]}
    assert {"AcquireRolloutLock", "Train", "Evaluate", "Register", "GoLiveFirstModel"} <= set(steps)
    assert steps["Train"]["seconds"] > 0 and steps["Train"]["visits"] == 1


def test_identical_reupload_starts_no_rollout_and_is_recorded_as_a_duplicate(platform, new_family):
    family = new_family()
    data = synthetic.credit_risk_csv(1500, 21)
    first, _ = run_upload(platform, family.name, "monday.csv", data)
    assert first["outcome"] == "promoted"
    before = platform.registry.get_family(family.name)

    output, described = run_upload(platform, family.name, "tuesday.csv", data)

    assert described["status"] == "SUCCEEDED" and output["outcome"] == "duplicate"
    states = entered_states(described["executionArn"])
    assert "Duplicate" in states and not {"Evaluate", "Register", "CanaryStart"} & set(states)
    after = platform.registry.get_family(family.name)
    assert after.latest_version == before.latest_version == 1 and after.rollout_holder is None
    run = platform.registry.get_run(family.name, described["name"])
    earlier = run["detail"]["duplicate_of"]
    assert run["outcome"] == "duplicate" and run["step"] == "PlanTraining" and "AcquireRolloutLock" not in states
    assert earlier["outcome"] == "promoted" and earlier["version"] == 1
    assert platform.registry.get_run(family.name, earlier["run_id"])["dataset"]["key"].endswith("monday.csv")
    assert "already promoted" in run["reason"]


def test_an_identical_reupload_ends_as_a_duplicate_without_waiting_for_another_runs_canary(platform, new_family):
    # Given a promoted upload and another run baking its canary (a long window: it holds the family lock).
    family = new_family(gate={"min_auc_margin": -0.5}, canary={"bake_seconds": 60, "steps": [50, 100]})
    data = synthetic.credit_risk_csv(1500, 23)
    first, _ = run_upload(platform, family.name, "monday.csv", data)
    assert first["outcome"] == "promoted"
    _, baking = _run_of_upload(platform, family.name, "new.csv", synthetic.credit_risk_csv(1500, 24))
    arn = baking["executions"][0]["executionArn"]
    deadline = time.monotonic() + 60
    while "Bake" not in entered_states(arn):
        assert time.monotonic() < deadline, entered_states(arn)
        time.sleep(0.05)
    try:
        # When the first content is uploaded again.
        output, described = run_upload(platform, family.name, "monday-again.csv", data)
        # Then it ends as a duplicate before the lock, while the other run still holds it.
        assert output["outcome"] == "duplicate", described
        states = entered_states(described["executionArn"])
        assert "AcquireRolloutLock" not in states and "Train" not in states
        assert platform.registry.get_family(family.name).rollout_holder == baking["run_id"]
        run = platform.registry.get_run(family.name, described["name"])
        assert run["step"] == "PlanTraining" and run["detail"]["duplicate_of"]["outcome"] == "promoted"
    finally:
        aws.client("stepfunctions").stop_execution(executionArn=arn, error="Operator", cause="stopped by a test")
        platform.wait_for(arn, 60)


def test_content_that_failed_may_be_uploaded_again(platform, new_family, monkeypatch):
    from mlops.training import steps

    family = new_family()
    data = synthetic.credit_risk_csv(1500, 22)
    original = steps.fairness_metrics

    def broken(*args, **kwargs):
        raise RuntimeError("injected evaluation failure")

    monkeypatch.setattr(steps, "fairness_metrics", broken)
    _, failed = run_upload(platform, family.name, "a.csv", data)
    assert failed["status"] == "FAILED"
    assert platform.registry.get_run(family.name, failed["name"])["step"] == "Evaluate"
    monkeypatch.setattr(steps, "fairness_metrics", original)
    output, _ = run_upload(platform, family.name, "a-again.csv", data)
    assert output["outcome"] == "promoted"


@pytest.fixture()
def broken_failure_handler(monkeypatch):
    """The definition's HandleFailure state fails (its Catch then ends the execution at PipelineFailed without a
    record): the one way left for the run to be handled is the status-change event."""
    def broken(ctx, state, run_id):
        raise RuntimeError("HandleFailure crashed")

    monkeypatch.setitem(control.ACTIONS, "handle_failure", broken)


def test_failure_outside_the_catch_reaches_the_failure_handling_through_the_status_change_event(
        platform, new_family, monkeypatch, broken_failure_handler):
    # Given a run that holds the family lock and fails at Train, and a failure handler that itself fails.
    from mlops.training import fit

    family = new_family()

    def broken(*args, **kwargs):
        raise RuntimeError("injected training failure")

    monkeypatch.setattr(fit, "train", broken)
    delivered = len(platform.status_changes)

    _, described = run_upload(platform, family.name, "v1.csv", synthetic.credit_risk_csv(600, 4))

    assert described["status"] == "FAILED" and described["error"] == "PipelineFailed"
    # Then the control function got the event AWS sends, and ran the failure handling.
    event = platform.status_changes[delivered]["event"]
    assert (event["source"], event["detail-type"]) == ("aws.states", "Step Functions Execution Status Change")
    assert event["detail"]["status"] == "FAILED" and event["detail"]["name"] == described["name"]
    assert event["resources"] == [described["executionArn"]] and event["detail"]["error"] == "PipelineFailed"
    assert platform.status_changes[delivered]["result"]["handled"] is True
    assert platform.registry.get_family(family.name).rollout_holder is None, "lock released"
    run = platform.registry.get_run(family.name, described["name"])
    assert run["outcome"] == "failed" and run["step"] == "Train", run
    assert "injected training failure" in run["reason"] and run["detail"]["execution_error"] == "PipelineFailed"


def test_a_state_without_catch_failing_is_recorded_through_the_status_change_event(platform, new_family,
                                                                                  monkeypatch):
    # RefuseRollout has no Catch: a failure there ends the execution at once.
    family = new_family(canary={"lock_max_wait_seconds": 0})
    assert platform.registry.acquire_rollout(family.name, "someone-else", 3600)

    def busy(ctx, state, run_id):
        return {"acquired": False, "attempts": 1, "holder": "someone-else"}

    def broken(ctx, state, run_id):
        raise RuntimeError("refusal could not be recorded")

    monkeypatch.setitem(control.ACTIONS, "acquire_lock", busy)
    monkeypatch.setitem(control.ACTIONS, "refuse", broken)
    _, described = run_upload(platform, family.name, "v1.csv", synthetic.credit_risk_csv(600, 6))

    assert described["status"] == "FAILED" and described["error"] == "RuntimeError"
    run = platform.registry.get_run(family.name, described["name"])
    assert run["outcome"] == "failed" and run["step"] == "RefuseRollout"
    assert "refusal could not be recorded" in run["reason"]
    assert platform.registry.get_family(family.name).rollout_holder == "someone-else", "not this run's lock"
    platform.registry.release_rollout(family.name, "someone-else")


def test_failure_handled_by_the_definition_is_recorded_once(platform, new_family, monkeypatch):
    from mlops.training import fit

    family = new_family()

    def broken(*args, **kwargs):
        raise RuntimeError("injected training failure")

    monkeypatch.setattr(fit, "train", broken)
    delivered = len(platform.status_changes)
    _, described = run_upload(platform, family.name, "v1.csv", synthetic.credit_risk_csv(600, 4))
    assert described["status"] == "FAILED" and "HandleFailure" in entered_states(described["executionArn"])
    assert platform.status_changes[delivered]["result"] == {"handled": False,
                                                            "reason": "run already recorded as failed"}
    run = platform.registry.get_run(family.name, described["name"])
    assert run["step"] == "Train" and "injected training failure" in run["reason"]


def test_aborted_rollout_is_rolled_back_and_its_lock_released(platform, new_family, traffic):
    # The execution is stopped by an operator during its first bake window (moto ends a Wait state when it
    # elapses, so the window is short).
    family = new_family(gate={"min_auc_margin": -0.5}, canary={"bake_seconds": 3, "steps": [50, 100]})
    live_model(platform, family, rows=1500)
    before = serving_state(platform, family)
    generator = traffic(family).start()
    ref, started = _run_of_upload(platform, family.name, "v2.csv", synthetic.credit_risk_csv(1500, 8))
    arn = started["executions"][0]["executionArn"]
    deadline = time.monotonic() + 60
    while "Bake" not in entered_states(arn):
        assert time.monotonic() < deadline, entered_states(arn)
        time.sleep(0.05)
    assert platform.registry.get_family(family.name).canary_version == 2
    aws.client("stepfunctions").stop_execution(executionArn=arn, error="Operator", cause="stopped by a test")
    described = platform.wait_for(arn, 60)
    generator.stop()
    assert described["status"] == "ABORTED"
    record = platform.registry.get_family(family.name)
    assert record.rollout_holder is None and record.canary_version == 0 and record.live_version == 1
    assert platform.registry.get_version(family.name, 2).status == "rolled_back"
    assert serving_state(platform, family) == before
    run = platform.registry.get_run(family.name, started["run_id"])
    assert run["outcome"] == "failed" and run["detail"]["status"] == "ABORTED" and run["step"] == "Bake"


@pytest.fixture()
def failing_control(monkeypatch):
    """The failure handling behind status-change events fails too."""
    def broken(*args, **kwargs):
        raise RuntimeError("failure handling is broken")

    monkeypatch.setattr(control, "handle_failure", broken)
    # The status-change handler bound the function when it was first imported (earlier tests of the session).
    from mlops.pipeline import status_change

    monkeypatch.setattr(status_change, "handle_failure", broken)


def test_an_event_the_failure_handling_cannot_process_lands_in_the_failed_events_queue(
        platform, new_family, monkeypatch, broken_failure_handler, failing_control):
    import json

    from mlops.training import fit

    family = new_family()

    def broken(*args, **kwargs):
        raise RuntimeError("injected training failure")

    monkeypatch.setattr(fit, "train", broken)
    _, described = run_upload(platform, family.name, "v1.csv", synthetic.credit_risk_csv(600, 5))
    assert described["status"] == "FAILED"
    messages = aws.client("sqs").receive_message(QueueUrl=platform.failed_events_queue_url,
                                                 MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"]) for m in messages]
    mine = [b for b in bodies if b["requestPayload"]["detail"]["name"] == described["name"]]
    assert mine and mine[0]["responsePayload"]["errorMessage"] == "failure handling is broken"
    assert mine[0]["requestContext"]["condition"] == "RetriesExhausted"
    assert platform.registry.get_run(family.name, described["name"])["outcome"] == "started"
    platform.registry.release_rollout(family.name, described["name"])
