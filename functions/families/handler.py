"""Management API: GET /families, GET|PUT|DELETE /families/{name} (IAM-authorized): families registered, updated and
retired at run time, every change versioned with the caller's principal, time and reason (mlops.rollout.families)."""

from __future__ import annotations

from typing import Any

from mlops.core.settings import FamiliesSettings, load_settings
from mlops.registry.store import ModelRegistry
from mlops.rollout.families import FamilyManager, handle_request

_manager: FamilyManager | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _manager
    if _manager is None:
        _manager = FamilyManager(ModelRegistry(load_settings(FamiliesSettings).registry_table))
    return handle_request(_manager, event, context.aws_request_id)
