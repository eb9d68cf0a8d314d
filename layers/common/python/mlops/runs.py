"""Run records: what happened to every upload and pipeline execution (docs/registry.md), the outcome metric,
duplicate content, and the failure handling of executions that ended outside the definition's own Catch."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

from . import aws, codeversion
from .observability import MetricsPublisher, logger
from .registry import MAX_REASON_CHARS, RUN_STARTED, ModelRegistry

if TYPE_CHECKING:
    from .artifacts import StoredObject
    from .pipeline import PipelineContext
    from .rollout import RolloutContext
    from .schemas import ModelFamily

STARTED = RUN_STARTED
REJECTED, DUPLICATE, REFUSED, FAILED = "rejected", "duplicate", "refused", "failed"
GATED_OUT, ROLLED_BACK, PROMOTED = "gated_out", "rolled_back", "promoted"
# Outcomes that judge the content itself: the same bytes, configuration and code would be judged the same way.
# A rollback judges live traffic at the time (not enough requests, a latency spike), so it may be retried.
CONTENT_VERDICTS = (PROMOTED, GATED_OUT)
FAILURE_STATUSES = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
METRIC = "RolloutOutcome"
# Metric dimension for uploads naming no registered family: unbounded names must not become metric streams.
UNKNOWN_FAMILY = "(unknown)"
NO_FAMILY = "-"
STATUS_CHANGE = "Step Functions Execution Status Change"


class RunLog:
    """Writes run records and publishes `RolloutOutcome` (dimensions Family+Outcome, and Outcome alone for the
    platform-wide alarm) exactly once per recorded outcome."""

    def __init__(self, registry: ModelRegistry, publisher: MetricsPublisher) -> None:
        self.registry = registry
        self.publisher = publisher

    def started(self, family: str, run_id: str, *, dataset: dict[str, Any] | None, trigger: dict[str, Any],
                execution_arn: str | None) -> bool:
        created = self.registry.start_run(family, run_id, dataset=dataset, trigger=trigger,
                                          execution_arn=execution_arn)
        if created:
            self.count(family, STARTED)
        return created

    def ended(self, family: str, run_id: str, outcome: str, *, step: str, reason: str,
              detail: dict[str, Any] | None = None, known_family: bool = True, only_if_open: bool = False,
              **fields: Any) -> bool:
        """Record a final outcome; `fields` go to `ModelRegistry.record_run` (dataset, steps, version,
        started_at). Returns False when `only_if_open` found the outcome already recorded."""
        written = self.registry.record_run(family, run_id, outcome, detail, step=step, reason=reason,
                                           only_if_open=only_if_open, **fields)
        if written:
            self.count(family if known_family else UNKNOWN_FAMILY, outcome)
        return written

    def count(self, family: str, outcome: str) -> None:
        self.publisher.put(METRIC, 1, {"Family": family, "Outcome": outcome})
        self.publisher.put(METRIC, 1, {"Outcome": outcome})


# ---- run ids and execution histories ---------------------------------------------------------------------

_RUN_SUFFIX = re.compile(r"^(?P<family>.+?)-(?:drift-\d+|code-[0-9a-f]{24}|[0-9a-f]{32})$")


def family_prefix_of_run(run_id: str) -> str | None:
    """The family name a run id starts with (execution names are `<family[:40]>-<digest>`); None if the id
    has no recognisable shape. A 40-character answer may be a truncated name."""
    match = _RUN_SUFFIX.match(run_id)
    return match.group("family") if match else None


def execution_arn(state_machine_arn: str, run_id: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{run_id}"


def read_history(arn: str, client: Any | None = None) -> list[dict[str, Any]]:
    """Every event of an execution's history, oldest first, without state inputs and outputs."""
    sfn = client or aws.client("stepfunctions")
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000, "includeExecutionData": False}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events += page.get("events", [])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def _iso(at: Any) -> str:
    if isinstance(at, datetime):
        return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(at)


def state_visits(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each state entered, in order: {state, entered_at, exited_at, seconds, error, cause}. `exited_at` is None
    for the state in progress; `error`/`cause` come from the last failure event inside the visit (a retried
    failure shows even when the state then succeeded)."""
    visits: list[dict[str, Any]] = []
    for event in events:
        at = event.get("timestamp")
        if "stateEnteredEventDetails" in event:
            visits.append({"state": event["stateEnteredEventDetails"]["name"], "entered_at": at, "exited_at": None,
                           "seconds": None, "error": None, "cause": None})
        elif "stateExitedEventDetails" in event and visits:
            visits[-1]["exited_at"] = at
        elif visits:
            details = next((v for k, v in event.items() if k.endswith("FailedEventDetails")
                            or k.endswith("TimedOutEventDetails")), None)
            if isinstance(details, dict) and (details.get("error") or details.get("cause")):
                visits[-1]["error"] = details.get("error")
                visits[-1]["cause"] = str(details.get("cause") or "")[:MAX_REASON_CHARS]
    for visit in visits:
        if isinstance(visit["entered_at"], datetime) and isinstance(visit["exited_at"], datetime):
            visit["seconds"] = round((visit["exited_at"] - visit["entered_at"]).total_seconds(), 3)
        visit["entered_at"] = _iso(visit["entered_at"])
        visit["exited_at"] = _iso(visit["exited_at"]) if visit["exited_at"] is not None else None
    return visits


def step_timings(visits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per state, in order of first entry: first entered, last exited, total seconds, number of visits (a
    canary's Bake/CanaryCheck loop is one line with its count)."""
    steps: dict[str, dict[str, Any]] = {}
    for visit in visits:
        step = steps.setdefault(visit["state"], {"step": visit["state"], "started_at": visit["entered_at"],
                                                 "ended_at": None, "seconds": 0.0, "visits": 0})
        step["visits"] += 1
        step["ended_at"] = visit["exited_at"]
        step["seconds"] = round(step["seconds"] + (visit["seconds"] or 0.0), 3)
    return list(steps.values())


def last_step(visits: list[dict[str, Any]], before: str | None = None, skip_current: bool = False) -> str:
    """The state that was running when the run stopped: the last one entered; with `before` (the failure
    handler), the last one entered before it; with `skip_current`, the one before the state now running."""
    names = [v["state"] for v in visits]
    if before and before in names:
        names = names[:len(names) - names[::-1].index(before) - 1]
    elif skip_current:
        names = names[:-1]
    return names[-1] if names else ""


def error_message(error: dict[str, Any]) -> tuple[str, str]:
    """(error name, message) from a Catch's `{"Error", "Cause"}`; a Lambda error's Cause is JSON whose
    `errorMessage` is the message."""
    name = str(error.get("Error") or "unknown")
    cause = str(error.get("Cause") or "")
    try:
        parsed = orjson.loads(cause) if cause.startswith("{") else None
    except orjson.JSONDecodeError:
        parsed = None
    message = str(parsed.get("errorMessage", cause)) if isinstance(parsed, dict) else cause
    if isinstance(parsed, dict) and "TrainingJobStatus" in parsed:  # a .sync training job's DescribeTrainingJob
        from .engines import sagemaker_failure_message

        message = sagemaker_failure_message(parsed)
    return name, message[:MAX_REASON_CHARS]


def history_summary(state_machine_arn: str, run_id: str, before: str | None = None,
                    skip_current: bool = False) -> dict[str, Any]:
    """{started_at, steps, step, failure} of a run from its execution history: `step` as in `last_step`,
    `failure` the {"Error", "Cause"} its last visit of that step ended with (None if it did not fail). Empty
    when the history cannot be read: the failure handling must go on without it."""
    if not state_machine_arn:
        return {}
    try:
        events = read_history(execution_arn(state_machine_arn, run_id))
    except Exception as exc:
        logger().warning("execution history not read", extra={"run": run_id, "error": str(exc)})
        return {}
    visits = state_visits(events)
    started = _iso(events[0]["timestamp"]) if events and "timestamp" in events[0] else None
    step = last_step(visits, before, skip_current)
    visit = next((v for v in reversed(visits) if v["state"] == step), None)
    failure = {"Error": visit["error"], "Cause": visit["cause"]} if visit and visit["error"] else None
    return {"started_at": started, "steps": step_timings(visits), "step": step, "failure": failure}


# ---- duplicate content ---------------------------------------------------------------------------------------


def family_config_sha256(family: ModelFamily) -> str:
    """sha256 of the family's canonical JSON (keys sorted, compact): any declared change gives a new hash."""
    return hashlib.sha256(orjson.dumps(family.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


def code_version(git_revision: str = "") -> str:
    """The training code: library version and git revision (as recorded in lineage)."""
    return f"{codeversion.package_version()}+{git_revision or codeversion.git_revision() or 'unknown'}"


def content_fingerprint(dataset_sha256: str, family: ModelFamily, code: str) -> str:
    """Identity of a training run's inputs: the data set bytes, the family configuration and the code."""
    return hashlib.sha256(f"{dataset_sha256}\n{family_config_sha256(family)}\n{code}".encode()).hexdigest()


def judges_duplicates(event: dict[str, Any]) -> bool:
    """Whether a run can be a duplicate: uploads can; drift retrains and code rollouts re-run content on purpose."""
    return (event.get("trigger") or {}).get("source", "s3") == "s3"


def check_duplicate(ctx: PipelineContext, family: ModelFamily, stored: StoredObject,
                    event: dict[str, Any]) -> dict[str, Any] | None:
    """Called by PlanTraining (before the rollout lock) and again by the Train step once the data set is read
    (content judged while this run waited for the lock). Records the data set's sha256 and the content
    fingerprint on the run; returns `{"duplicate_of": {...}}` (the state machine's Choice ends the run as
    `duplicate`) when an upload repeats content an earlier run already promoted or gated out, else None.
    Drift retrains and code rollouts re-run the same content on purpose and are never duplicates."""
    run_id = str(event.get("run_id") or "")
    fingerprint = content_fingerprint(stored.sha256, family, code_version(ctx.git_revision))
    dataset = {"bucket": stored.bucket, "key": stored.key, "version_id": stored.version_id,
               "etag": stored.etag.strip('"'), "sha256": stored.sha256, "size": stored.size}
    if run_id:
        ctx.registry.annotate_run(family.name, run_id, dataset=dataset, fingerprint=fingerprint)
    if not judges_duplicates(event):
        return None
    earlier = ctx.registry.content_verdict(family.name, fingerprint)
    if earlier is None or earlier["run_id"] == run_id or earlier["outcome"] not in CONTENT_VERDICTS:
        return None
    return {"duplicate_of": {**earlier, "sha256": stored.sha256, "fingerprint": fingerprint}}


def duplicate_reason(duplicate_of: dict[str, Any]) -> str:
    version = f" (v{duplicate_of['version']})" if duplicate_of.get("version") else ""
    return (f"identical content (sha256 {str(duplicate_of.get('sha256', ''))[:12]}..., same family configuration "
            f"and code) was already {duplicate_of.get('outcome')} by run {duplicate_of.get('run_id')}{version}; "
            "no new rollout")


# ---- executions that ended outside the definition's Catch (EventBridge) --------------------------------------


def is_status_change(event: Any) -> bool:
    return isinstance(event, dict) and event.get("source") == "aws.states" and \
        event.get("detail-type") == STATUS_CHANGE


def parse_status_change(event: dict[str, Any]) -> Any:
    """The event as powertools' EventBridge model with the Step Functions detail (DescribeExecution's fields);
    raises pydantic.ValidationError naming the missing field."""
    return _status_change_model().model_validate(event)


@lru_cache(maxsize=1)
def _status_change_model() -> Any:
    from aws_lambda_powertools.utilities.parser.models.event_bridge import EventBridgeModel
    from pydantic import BaseModel, ConfigDict

    class ExecutionStatusDetail(BaseModel):
        model_config = ConfigDict(extra="ignore")
        executionArn: str
        stateMachineArn: str
        name: str
        status: str
        startDate: int | None = None
        stopDate: int | None = None
        input: str | None = None
        inputDetails: dict[str, Any] | None = None
        error: str | None = None
        cause: str | None = None

    class ExecutionStatusChange(EventBridgeModel):
        detail: ExecutionStatusDetail

    return ExecutionStatusChange


_STATUS_REASON = {
    "TIMED_OUT": "the execution timed out (the state machine's TimeoutSeconds or a state's timeout)",
    "ABORTED": "the execution was stopped (StopExecution by an operator or a deployment)",
}


def handle_status_change(ctx: RolloutContext, event: dict[str, Any]) -> dict[str, Any]:
    """An execution of the pipeline ended FAILED, TIMED_OUT or ABORTED. When the definition's own failure
    handling already recorded the run (HandleFailure, a refusal), nothing is done; otherwise the same failure
    handling runs now: traffic back on the live version, a half-done candidate rejected, the lock released,
    the run recorded as failed with the step and the reason. Safe to receive more than once."""
    from .rollout import handle_failure

    change = parse_status_change(event)
    detail = change.detail
    if detail.status not in FAILURE_STATUSES:
        return {"handled": False, "reason": f"status {detail.status} needs no failure handling"}
    raw_input = detail.input if (detail.inputDetails or {}).get("included", True) and detail.input else None
    if raw_input is None:  # EventBridge leaves out inputs over 248 KiB; DescribeExecution has it
        raw_input = aws.client("stepfunctions").describe_execution(executionArn=detail.executionArn)["input"]
    try:
        execution_input = orjson.loads(raw_input)
    except orjson.JSONDecodeError:
        execution_input = {}
    family = execution_input.get("family") if isinstance(execution_input, dict) else None
    if not family:
        logger().error("failed execution names no family", extra={"execution": detail.executionArn})
        return {"handled": False, "reason": "the execution input names no family"}
    run = ctx.registry.get_run(family, detail.name)
    if run and run.get("outcome") != STARTED:
        return {"handled": False, "reason": f"run already recorded as {run['outcome']}"}
    error = {"Error": detail.error or f"States.{detail.status}",
             "Cause": detail.cause or _STATUS_REASON.get(detail.status, f"execution ended {detail.status}")}
    state = {**execution_input, "error": error}
    if run and run.get("version"):
        state["registration"] = {"version": run["version"]}
    result = handle_failure(ctx, state, detail.name, status=detail.status)
    return {"handled": True, **result}
