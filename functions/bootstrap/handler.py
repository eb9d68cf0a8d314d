"""CloudFormation custom resource: register a model family and create its `live` alias once."""

from __future__ import annotations

from typing import Any

from mlops.core.settings import StorageSettings, load_settings
from mlops.registry.store import ModelRegistry
from mlops.rollout.bootstrap import respond


def lambda_handler(event: dict[str, Any], context: Any) -> None:
    respond(event, context, ModelRegistry(load_settings(StorageSettings).registry_table))
