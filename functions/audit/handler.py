"""Management API: GET /audit/{request_id} (IAM-authorized) reconstructs one scored request (mlops.serving.audit)."""

from __future__ import annotations

from typing import Any

from mlops.core.settings import AuditSettings, load_settings
from mlops.registry.store import ModelRegistry
from mlops.serving.audit import Auditor, handle_request

_auditor: Auditor | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _auditor
    if _auditor is None:
        settings = load_settings(AuditSettings)
        _auditor = Auditor(settings.artifact_bucket, ModelRegistry(settings.registry_table))
    return handle_request(_auditor, event, context.aws_request_id)
