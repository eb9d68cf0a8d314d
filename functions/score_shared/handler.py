"""Shared scoring tier (API Gateway REST proxy): every shared-tier family at /models/{name}/..., each request routed
to the family's live or canary model version by the registry (mlops.serving.shared)."""

from __future__ import annotations

from typing import Any

from mlops.core.settings import Env, SharedScoringSettings, environ, load_settings
from mlops.serving.decisions import flush_on_shutdown
from mlops.serving.shared import SharedScoringService, create_service

_service: SharedScoringService | None = None
# Init phase: SIGTERM before the sandbox is reclaimed writes buffered decision records, captures and metrics.
flush_on_shutdown(environ().get(Env.RUNTIME_API))


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _service
    if _service is None:
        _service = create_service(load_settings(SharedScoringSettings))
    return _service.handle(event, context.aws_request_id)
