"""An ended run is shown as ended: `runs show` never lists the terminal Fail state as running, and
`upload --follow` on a run that fails between two polls shows every state it went through, not only the first
(fresh-user pass on issue 15)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from mlops.rollout.history import state_visits
from rich.console import Console

from mlops_local.commands.runs import follow_run, print_story

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
RUN_ID = "loans-0123456789abcdef"
ARN = f"arn:aws:states:us-east-1:123456789012:execution:pipeline:{RUN_ID}"


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def failed_history() -> list[dict]:
    """A run whose Train failed (caught), handled, and ended in the Fail state PipelineFailed."""
    return [
        {"timestamp": _at(0), "type": "ExecutionStarted"},
        {"timestamp": _at(0.1), "type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "PlanTraining"}},
        {"timestamp": _at(0.5), "type": "TaskStateExited", "stateExitedEventDetails": {"name": "PlanTraining"}},
        {"timestamp": _at(0.6), "type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "Train"}},
        {"timestamp": _at(1.5), "type": "LambdaFunctionFailed", "lambdaFunctionFailedEventDetails": {
            "error": "DataSetError", "cause": "target 'lgd': 1 row beyond the 32-bit float range"}},
        {"timestamp": _at(1.6), "type": "TaskStateExited", "stateExitedEventDetails": {"name": "Train"}},
        {"timestamp": _at(1.7), "type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "HandleFailure"}},
        {"timestamp": _at(2.0), "type": "TaskStateExited", "stateExitedEventDetails": {"name": "HandleFailure"}},
        {"timestamp": _at(2.1), "type": "FailStateEntered", "stateEnteredEventDetails": {"name": "PipelineFailed"}},
        {"timestamp": _at(2.2), "type": "ExecutionFailed", "executionFailedEventDetails": {
            "error": "DataSetError", "cause": "failed at Train"}},
    ]


def _text(renderable_printer) -> str:
    console = Console(file=io.StringIO(), width=160, force_terminal=False, color_system=None)
    renderable_printer(console)
    return console.file.getvalue()


def test_the_terminal_fail_state_is_closed_by_the_executions_end():
    visits = state_visits(failed_history())
    assert [v["state"] for v in visits] == ["PlanTraining", "Train", "HandleFailure", "PipelineFailed"]
    assert all(v["exited_at"] is not None for v in visits)
    assert visits[-1]["seconds"] == 0.1 and visits[-1]["error"] == "DataSetError"
    running = state_visits(failed_history()[:5])
    assert running[-1]["state"] == "Train" and running[-1]["exited_at"] is None  # still in progress


def test_runs_show_lists_no_state_of_an_ended_run_as_running():
    story = {"run": {"run_id": RUN_ID, "family": "loans", "outcome": "failed", "step": "Train",
                     "reason": "DataSetError: ..."}, "states": state_visits(failed_history()), "version": None}
    text = _text(lambda console: print_story(console, story))
    assert "PipelineFailed" in text and "running" not in text


class _Registry:
    """The run record: started on no poll, failed at once (the execution failed before the first poll)."""

    def get_run(self, family, run_id):
        return {"family": family, "run_id": run_id, "outcome": "failed", "execution_arn": ARN, "step": "Train"}


class _StepFunctions:
    def __init__(self) -> None:
        self.calls = 0

    def get_execution_history(self, **kwargs):
        self.calls += 1
        return {"events": failed_history()}

    def describe_execution(self, executionArn):
        return {"status": "FAILED"}


def test_follow_of_a_run_that_failed_before_the_first_poll_shows_every_state():
    sfn = _StepFunctions()
    platform = SimpleNamespace(registry=_Registry(), client=lambda name: sfn)

    def follow(console):
        run = follow_run(platform, "loans", RUN_ID, timeout=5, poll=0.01, console=console)
        assert run["outcome"] == "failed"

    text = _text(follow)
    assert sfn.calls == 1
    for state in ("PlanTraining", "Train", "HandleFailure", "PipelineFailed"):
        assert state in text, text
