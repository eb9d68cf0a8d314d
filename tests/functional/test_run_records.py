"""Run records on moto: every upload under datasets/ leaves one (started or rejected with the reason), outcomes
are counted once, identical content is recognised, and a status-change event runs the failure handling once."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from mlops.core.observability import MetricsPublisher
from mlops.data import synthetic
from mlops.pipeline import status_change
from mlops.pipeline.trigger import execution_name, handle_event
from mlops.registry import runs
from mlops.registry.artifacts import StoredObject
from mlops.registry.store import ModelRegistry
from mlops.rollout import history
from mlops.rollout.control import AliasState, RolloutContext

from .conftest import BUCKET, TABLE

EVENTS = Path(__file__).resolve().parents[1] / "events"
FAMILY = "credit-risk"
NAMESPACE = "MLOpsPlatform"


def _s3_event(key: str, size: int, version: str = "v-1") -> dict:
    event = json.loads((EVENTS / "s3_object_created.json").read_text())
    obj = event["Records"][0]["s3"]["object"]
    event["Records"][0]["s3"]["bucket"]["name"] = BUCKET
    obj.update({"key": key, "size": size, "versionId": version, "eTag": "abc"})
    return event


def _outcome_count(outcome: str, family: str) -> float:
    points = boto3.client("cloudwatch").get_metric_statistics(
        Namespace=NAMESPACE, MetricName=runs.METRIC,
        Dimensions=[{"Name": "Family", "Value": family}, {"Name": "Outcome", "Value": outcome}],
        StartTime=datetime.now(UTC) - timedelta(hours=1), EndTime=datetime.now(UTC) + timedelta(minutes=5),
        Period=3600, Statistics=["Sum"])["Datapoints"]
    return sum(p["Sum"] for p in points)


def _platform_wide_metric(outcome: str) -> bool:
    """The Outcome-only metric the platform-wide alarm watches exists (exactly that one dimension)."""
    listed = boto3.client("cloudwatch").list_metrics(Namespace=NAMESPACE, MetricName=runs.METRIC)["Metrics"]
    return any(m["Dimensions"] == [{"Name": "Outcome", "Value": outcome}] for m in listed)


@pytest.fixture()
def run_log(platform):
    return runs.RunLog(platform.registry, MetricsPublisher(NAMESPACE))


@pytest.fixture()
def state_machine(platform) -> str:
    """A state machine that moto never executes (the trigger only starts executions)."""
    role = "arn:aws:iam::123456789012:role/states"
    return boto3.client("stepfunctions").create_state_machine(
        name="pipeline", roleArn=role, definition=json.dumps({"StartAt": "S", "States": {"S": {"Type": "Pass",
                                                                                              "End": True}}})
    )["stateMachineArn"]


# ---- the registry's run records -----------------------------------------------------------------------------


def test_started_run_is_created_once_and_a_final_outcome_keeps_its_start(platform):
    registry = platform.registry
    assert registry.start_run(FAMILY, "r-1", dataset={"key": "datasets/credit-risk/a.csv"}, trigger={"source": "s3"})
    first = registry.get_run(FAMILY, "r-1")
    assert not registry.start_run(FAMILY, "r-1", dataset={"key": "other"}, trigger={"source": "s3"})
    assert registry.get_run(FAMILY, "r-1")["dataset"] == {"key": "datasets/credit-risk/a.csv"}
    assert registry.record_run(FAMILY, "r-1", "gated_out", {"gate_reasons": ["AUC 0.6 under 0.7"]}, step="Gate",
                               reason="gate: AUC 0.6 under 0.7", version=3)
    run = registry.get_run(FAMILY, "r-1")
    assert (run["outcome"], run["step"], run["version"], run["started_at"]) == ("gated_out", "Gate", 3,
                                                                               first["started_at"])
    assert run["ended_at"] >= run["started_at"] and run["detail"]["gate_reasons"] == ["AUC 0.6 under 0.7"]


def test_only_if_open_never_overwrites_a_final_outcome(platform):
    registry = platform.registry
    registry.start_run(FAMILY, "r-2", trigger={"source": "s3"})
    assert registry.record_run(FAMILY, "r-2", "failed", step="Train", reason="DataSetError", only_if_open=True)
    assert not registry.record_run(FAMILY, "r-2", "failed", step="Gate", reason="later", only_if_open=True)
    assert registry.get_run(FAMILY, "r-2")["step"] == "Train"


def test_unknown_outcome_is_refused(platform):
    from mlops.core.errors import ValidationError

    with pytest.raises(ValidationError, match="unknown run outcome 'rejected_dataset'"):
        platform.registry.record_run(FAMILY, "r-3", "rejected_dataset")


def test_registration_of_a_started_run_adds_the_version_and_keeps_it_in_progress(platform):
    registry = platform.registry
    registry.start_run(FAMILY, "exec-7", trigger={"source": "s3"})
    version = registry.allocate_version(FAMILY, {"tag": "x"}, actor="t", run_id="exec-7")
    again = registry.allocate_version(FAMILY, {"tag": "x"}, actor="t", run_id="exec-7")
    assert version.version == again.version == 1
    run = registry.get_run(FAMILY, "exec-7")
    assert run["version"] == 1 and run["outcome"] == "started"


def test_runs_list_newest_first_per_family_and_across_families_and_months(platform):
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    clock = {"t": now - timedelta(days=40)}
    registry = ModelRegistry(TABLE, clock=lambda: clock["t"])
    registry.record_run(FAMILY, "old", "promoted", step="Promote", reason="v1 is live")
    for i, family in enumerate(["credit-risk", "fraud", "credit-risk"]):
        clock["t"] = now + timedelta(minutes=i)
        registry.record_run(family, f"new-{i}", "failed", step="Train", reason="x")
    assert [r["run_id"] for r in registry.list_runs(FAMILY)] == ["new-2", "new-0", "old"]
    assert [r["run_id"] for r in registry.list_runs(months=1)] == ["new-2", "new-1", "new-0"]
    assert [r["run_id"] for r in registry.list_runs(months=2)] == ["new-2", "new-1", "new-0", "old"]
    assert [r["run_id"] for r in registry.list_runs(limit=2)] == ["new-2", "new-1"]
    assert registry.list_runs("fraud")[0]["family"] == "fraud"


# ---- the trigger: every object leaves a record ------------------------------------------------------------


@pytest.mark.parametrize(("key", "family", "reason"), [
    ("datasets/credt-risk/a.csv", "credt-risk", "unknown model family 'credt-risk'; did you mean 'credit-risk'?"),
    ("datasets/credit-risk/a.parquet", FAMILY, "unsupported file type 'a.parquet'"),
    ("datasets/a.csv", runs.NO_FAMILY, "names no model family"),
])
def test_trigger_records_a_rejected_upload_with_the_reason_and_counts_it(platform, run_log, key, family, reason):
    dimension = family if family == FAMILY else runs.UNKNOWN_FAMILY
    before = _outcome_count("rejected", dimension)
    outcome = handle_event(_s3_event(key, 100), platform.registry, "arn:aws:states:us-east-1:123:stateMachine:p",
                           run_log)["outcomes"][0]
    assert outcome["started"] is False and reason in outcome["reason"]
    run = platform.registry.get_run(family, execution_name(family, BUCKET, key, "v-1"))
    assert run["outcome"] == "rejected" and run["step"] == "Trigger" and reason in run["reason"]
    assert run["dataset"]["key"] == key and run["dataset"]["version_id"] == "v-1" and run["ended_at"]
    assert _outcome_count("rejected", dimension) == before + 1 and _platform_wide_metric("rejected")
    assert platform.registry.list_runs(family)[0]["run_id"] == run["run_id"]


def test_trigger_rejects_an_object_over_the_family_limit(platform, run_log):
    family = synthetic.credit_risk_family(max_dataset_bytes=1000)
    platform.registry.put_family(family, scoring_function="fn")
    key = f"datasets/{FAMILY}/big.csv"
    handle_event(_s3_event(key, 5000), platform.registry, "arn:aws:states:us-east-1:123:stateMachine:p", run_log)
    run = platform.registry.get_run(FAMILY, execution_name(FAMILY, BUCKET, key, "v-1"))
    assert run["outcome"] == "rejected" and "5000 bytes is over the family's limit of 1000" in run["reason"]


def test_trigger_records_a_started_run_once_whatever_the_redelivery(platform, run_log, state_machine):
    key = f"datasets/{FAMILY}/good.csv"
    before = _outcome_count("started", FAMILY)
    first = handle_event(_s3_event(key, 100), platform.registry, state_machine, run_log)["outcomes"][0]
    again = handle_event(_s3_event(key, 100), platform.registry, state_machine, run_log)["outcomes"][0]
    # StartExecution with the same name and input answers like the first call; the run is counted once.
    assert first["started"] is True and again["execution_arn"] == first["execution_arn"]
    run = platform.registry.get_run(FAMILY, first["execution"])
    assert run["outcome"] == "started" and run["execution_arn"] == first["execution_arn"]
    assert run["trigger"] == {"source": "s3"} and run["dataset"]["key"] == key
    assert _outcome_count("started", FAMILY) == before + 1


def test_folder_markers_are_not_data_sets(platform, run_log):
    outcome = handle_event(_s3_event(f"datasets/{FAMILY}/", 0), platform.registry, "arn:x", run_log)["outcomes"][0]
    assert "folder marker" in outcome["reason"] and platform.registry.list_runs(FAMILY) == []


# ---- duplicate content --------------------------------------------------------------------------------------


def _stored(data: bytes = b"a,b\n1,2\n", key: str = "datasets/credit-risk/a.csv") -> StoredObject:
    from mlops.registry.artifacts import sha256_hex

    return StoredObject(bucket=BUCKET, key=key, version_id="v", etag='"e"', sha256=sha256_hex(data), data=data)


def test_fingerprint_changes_with_content_configuration_and_code():
    family = synthetic.credit_risk_family()
    base = runs.content_fingerprint("a" * 64, family, "0.1.0+abc")
    assert base == runs.content_fingerprint("a" * 64, synthetic.credit_risk_family(), "0.1.0+abc")
    assert base != runs.content_fingerprint("b" * 64, family, "0.1.0+abc")
    assert base != runs.content_fingerprint("a" * 64, family, "0.1.0+def")
    assert base != runs.content_fingerprint("a" * 64, synthetic.credit_risk_family(seed=8), "0.1.0+abc")


@pytest.mark.parametrize(("earlier", "source", "duplicate"), [
    ("promoted", "s3", True), ("gated_out", "s3", True), ("rolled_back", "s3", False), ("failed", "s3", False),
    (None, "s3", False), ("promoted", "drift", False), ("promoted", "code", False),
])
def test_check_duplicate_names_the_earlier_verdict_only_for_uploads(platform, earlier, source, duplicate):
    family = platform.registry.get_family(FAMILY).family
    stored = _stored()
    fingerprint = runs.content_fingerprint(stored.sha256, family, runs.code_version(platform.git_revision))
    if earlier:
        platform.registry.record_content_verdict(FAMILY, fingerprint, "run-1", earlier, 4)
    found = runs.check_duplicate(platform, family, stored, {"run_id": "run-2", "trigger": {"source": source}})
    assert (found is not None) == duplicate
    if duplicate:
        assert found["duplicate_of"]["run_id"] == "run-1" and found["duplicate_of"]["version"] == 4
        assert "already promoted" in runs.duplicate_reason({**found["duplicate_of"], "outcome": "promoted"})
    recorded = platform.registry.get_run(FAMILY, "run-2")
    assert recorded["fingerprint"] == fingerprint and recorded["dataset"]["sha256"] == stored.sha256


# ---- executions ending outside the definition's Catch --------------------------------------------------------


class _Router:
    def __init__(self) -> None:
        self.routes: list[tuple] = []

    def current(self, function):
        return AliasState(primary="1", canary=None, weight=0.0)

    def publish_bound(self, function, family, model_version, sha256):
        return "2"

    def route(self, function, primary, canary=None, weight=0.0):
        self.routes.append((function, primary, canary, weight))


@pytest.fixture()
def control(platform):
    return RolloutContext(pipeline=platform, router=_Router(), metrics=None, captures=None,
                          publisher=MetricsPublisher(NAMESPACE), is_execution_running=lambda run: True)


def _status_event(run_id: str, payload: dict | None, status: str = "FAILED") -> dict:
    event = json.loads((EVENTS / "sfn_execution_status_change.json").read_text())
    detail = event["detail"]
    detail["executionArn"] = detail["executionArn"].replace("EXECUTION", run_id)
    detail.update({"name": run_id, "status": status, "input": json.dumps(payload) if payload is not None else None})
    return event


def test_status_change_runs_the_failure_handling_once(platform, control):
    registry = platform.registry
    registry.start_run(FAMILY, "exec-9", trigger={"source": "s3"})
    assert registry.acquire_rollout(FAMILY, "exec-9", 3600)
    registry.allocate_version(FAMILY, {"tag": "x"}, actor="t", run_id="exec-9")
    before = _outcome_count("failed", FAMILY)
    event = _status_event("exec-9", {"family": FAMILY, "dataset": {"key": "datasets/credit-risk/a.csv"}})
    assert status_change.is_status_change(event)

    result = status_change.handle_status_change(control, event)

    assert result["handled"] is True and "v1 rejected" in result["actions"]
    run = registry.get_run(FAMILY, "exec-9")
    assert run["outcome"] == "failed" and "States.DataLimitExceeded" in run["reason"]
    assert run["detail"]["status"] == "FAILED" and "maximum number of bytes" in run["detail"]["message"]
    assert registry.get_family(FAMILY).rollout_holder is None, "lock released"
    assert registry.get_version(FAMILY, 1).status == "rejected", "no candidate left behind"
    again = status_change.handle_status_change(control, copy.deepcopy(event))
    assert again == {"handled": False, "reason": "run already recorded as failed"}
    assert _outcome_count("failed", FAMILY) == before + 1


def test_status_change_of_a_run_waiting_for_the_lock_leaves_the_holders_canary_alone(platform, control):
    registry = platform.registry
    assert registry.acquire_rollout(FAMILY, "holder", 3600)
    event = _status_event("waiter", {"family": FAMILY}, status="TIMED_OUT")
    event["detail"].update({"error": None, "cause": None})

    result = status_change.handle_status_change(control, event)

    assert result["handled"] is True and control.router.routes == []
    assert registry.get_family(FAMILY).rollout_holder == "holder"
    run = registry.get_run(FAMILY, "waiter")
    assert run["outcome"] == "failed" and "timed out" in run["reason"] and run["detail"]["status"] == "TIMED_OUT"


def test_status_change_reads_an_input_eventbridge_left_out(platform, control, state_machine):
    payload = {"family": FAMILY, "dataset": {"key": "k"}}
    arn = boto3.client("stepfunctions").start_execution(stateMachineArn=state_machine, name="big-input",
                                                        input=json.dumps(payload))["executionArn"]
    event = _status_event("big-input", None, status="ABORTED")
    event["detail"].update({"executionArn": arn, "inputDetails": {"included": False}})
    assert status_change.handle_status_change(control, event)["handled"] is True
    assert platform.registry.get_run(FAMILY, "big-input")["detail"]["dataset"] == {"key": "k"}


def test_succeeded_and_unrelated_events_are_ignored(platform, control):
    assert not status_change.is_status_change({"source": "aws.s3", "detail-type": "Object Created"})
    result = status_change.handle_status_change(control, _status_event("ok", {"family": FAMILY}, status="SUCCEEDED"))
    assert result["handled"] is False and platform.registry.get_run(FAMILY, "ok") is None


# ---- execution histories -----------------------------------------------------------------------------------


def test_history_gives_visits_step_timings_and_the_failing_step():
    t0 = datetime(2026, 11, 30, 12, tzinfo=UTC)

    def at(seconds):
        return t0 + timedelta(seconds=seconds)

    events = [
        {"timestamp": at(0), "type": "ExecutionStarted"},
        {"timestamp": at(0), "type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "Train"}},
        {"timestamp": at(1), "type": "TaskFailed", "taskFailedEventDetails": {"error": "TransientError",
                                                                              "cause": "throttled"}},
        {"timestamp": at(4), "type": "TaskStateExited", "stateExitedEventDetails": {"name": "Train"}},
        {"timestamp": at(4), "type": "WaitStateEntered", "stateEnteredEventDetails": {"name": "Bake"}},
        {"timestamp": at(6), "type": "WaitStateExited", "stateExitedEventDetails": {"name": "Bake"}},
        {"timestamp": at(6), "type": "WaitStateEntered", "stateEnteredEventDetails": {"name": "Bake"}},
        {"timestamp": at(9), "type": "WaitStateExited", "stateExitedEventDetails": {"name": "Bake"}},
        {"timestamp": at(9), "type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "HandleFailure"}},
    ]
    visits = history.state_visits(events)
    assert [(v["state"], v["seconds"]) for v in visits] == [("Train", 4.0), ("Bake", 2.0), ("Bake", 3.0),
                                                           ("HandleFailure", None)]
    assert visits[0]["error"] == "TransientError" and visits[0]["cause"] == "throttled"
    steps = history.step_timings(visits)
    assert [(s["step"], s["seconds"], s["visits"]) for s in steps] == [("Train", 4.0, 1), ("Bake", 5.0, 2),
                                                                      ("HandleFailure", 0.0, 1)]
    assert history.last_step(visits, before="HandleFailure") == "Bake"
    assert history.last_step(visits) == "HandleFailure" and history.last_step(visits, skip_current=True) == "Bake"


@pytest.mark.parametrize(("error", "expected"), [
    ({"Error": "DataSetError", "Cause": json.dumps({"errorMessage": "no data rows", "errorType": "DataSetError"})},
     ("DataSetError", "no data rows")),
    ({"Error": "States.Runtime", "Cause": "Invalid path '$.x'"}, ("States.Runtime", "Invalid path '$.x'")),
    ({}, ("unknown", "")),
])
def test_error_message_reads_lambda_and_states_errors(error, expected):
    assert history.error_message(error) == expected


@pytest.mark.parametrize(("run_id", "family"), [
    ("credit-risk-0123456789abcdef0123456789abcdef", "credit-risk"),
    ("credit-risk-drift-1764500000000", "credit-risk"),
    ("credit-risk-code-0123456789abcdef01234567", "credit-risk"),
    ("--0123456789abcdef0123456789abcdef", "-"),
    ("not-a-run", None),
])
def test_family_is_read_from_a_run_id(run_id, family):
    assert runs.family_prefix_of_run(run_id) == family
