"""Pipeline control steps (lock, register, canary start/check/step, promote, rollback, finish, failure), and the
failure handling of executions that ended outside the definition's Catch (EventBridge status-change events)."""

from __future__ import annotations

from typing import Any

from mlops.core.settings import RolloutSettings, load_settings
from mlops.pipeline.status_change import handle_status_change, is_status_change
from mlops.rollout.control import RolloutContext, create_rollout_context, run_action

_context: RolloutContext | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _context
    _context = _context or create_rollout_context(load_settings(RolloutSettings))
    if is_status_change(event):
        return handle_status_change(_context, event)
    return run_action(_context, event["action"], event["state"], event["run_id"])
