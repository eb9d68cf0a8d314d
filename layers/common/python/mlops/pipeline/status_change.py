"""Executions of the pipeline that ended FAILED, TIMED_OUT or ABORTED outside the definition's own Catch: the
Step Functions status-change event (EventBridge) runs the same failure handling as the definition's HandleFailure."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from mlops.core import aws
from mlops.core.observability import logger
from mlops.registry.runs import FAILURE_STATUSES, STARTED, STATUS_CHANGE
from mlops.rollout.control import RolloutContext, handle_failure


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
