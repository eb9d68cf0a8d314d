"""Scoring API (API Gateway REST proxy) for one model family; each published version serves one model."""

from __future__ import annotations

from typing import Any

from mlops.core.observability import MetricsPublisher
from mlops.core.settings import Env, ScoringSettings, environ, load_settings
from mlops.serving.api import ScoringService
from mlops.serving.decisions import flush_on_shutdown
from mlops.serving.family_status import FamilyStatus
from mlops.serving.metrics import LOCAL_FLUSH_SECONDS, SINKS, ServingMetrics

_service: ScoringService | None = None
# Init phase: SIGTERM before the sandbox is reclaimed writes the decision records still buffered.
flush_on_shutdown(environ().get(Env.RUNTIME_API))


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _service
    if _service is None:
        settings = load_settings(ScoringSettings)
        figures = ServingMetrics(settings.metrics_namespace, settings.function_version, "dedicated",
                                 SINKS[settings.metrics_sink], LOCAL_FLUSH_SECONDS.get(settings.metrics_sink, 10.0))
        _service = ScoringService(settings, MetricsPublisher(settings.metrics_namespace), figures,
                                  FamilyStatus(settings.registry_table, settings.model_family,
                                               settings.family_status_ttl_seconds))
    return _service.handle(event, context.aws_request_id)
