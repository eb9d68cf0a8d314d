"""Pipeline control steps: lock, register, canary start/check/step, promote, rollback, finish, failure."""

from __future__ import annotations

from typing import Any

from mlops.rollout import RolloutContext, create_rollout_context, run_action
from mlops.settings import RolloutSettings, load_settings

_context: RolloutContext | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _context
    _context = _context or create_rollout_context(load_settings(RolloutSettings))
    return run_action(_context, event["action"], event["state"], event["run_id"])
