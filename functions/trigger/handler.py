"""S3 upload under datasets/<model-name>/ -> one pipeline execution per object version; also the operator's
entry point to roll out new scoring code ({"rollout_code": "<family>"})."""

from __future__ import annotations

from typing import Any

from mlops.registry import ModelRegistry
from mlops.settings import TriggerSettings, load_settings
from mlops.trigger import handle_event

_settings: TriggerSettings | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _settings
    _settings = _settings or load_settings(TriggerSettings)
    return handle_event(event, ModelRegistry(_settings.registry_table), _settings.state_machine_arn)
