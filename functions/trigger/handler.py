"""S3 upload under datasets/<model-name>/ -> one pipeline execution per object version, and a run record for every
object (started or rejected); also the operator's entry point to roll out new scoring code ({"rollout_code": ...})."""

from __future__ import annotations

from typing import Any

from mlops.core.observability import MetricsPublisher
from mlops.core.settings import TriggerSettings, load_settings
from mlops.pipeline.trigger import handle_event
from mlops.registry.runs import RunArchive, RunLog
from mlops.registry.store import ModelRegistry

_settings: TriggerSettings | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _settings
    _settings = _settings or load_settings(TriggerSettings)
    registry = ModelRegistry(_settings.registry_table)
    return handle_event(event, registry, _settings.state_machine_arn,
                        RunLog(registry, MetricsPublisher(_settings.metrics_namespace),
                               RunArchive(_settings.artifact_bucket)))
