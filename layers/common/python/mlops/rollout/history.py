"""Execution histories of pipeline runs (Step Functions GetExecutionHistory): the states a run visited, their
timings, the step it stopped in and the failure it ended with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from mlops.core import aws
from mlops.core.observability import logger
from mlops.registry.store import MAX_REASON_CHARS
from mlops.training.engines import sagemaker_failure_message


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


# The events that end an execution. A Fail or Succeed state has no StateExited event: the execution's end closes it.
EXECUTION_END_EVENTS = frozenset({"ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"})


def state_visits(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each state entered, in order: {state, entered_at, exited_at, seconds, error, cause}. `exited_at` is None
    for the state in progress; the execution's end (EXECUTION_END_EVENTS) closes the state it ended in (a Fail
    state such as PipelineFailed is never "running" once the run is over); `error`/`cause` come from the last
    failure event inside the visit (a retried failure shows even when the state then succeeded)."""
    visits: list[dict[str, Any]] = []
    for event in events:
        at = event.get("timestamp")
        if event.get("type") in EXECUTION_END_EVENTS and visits and visits[-1]["exited_at"] is None:
            visits[-1]["exited_at"] = at
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
