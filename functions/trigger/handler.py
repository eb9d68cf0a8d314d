"""S3 upload under datasets/<model-name>/ -> one pipeline execution per object version, and a run record for every
object (started or rejected); also the operator's entry point to roll out new scoring code ({"rollout_code": ...}
for a dedicated family, {"rollout_shared_code": true} for the shared scoring function)."""

from __future__ import annotations

from functools import partial
from typing import Any

from mlops.core.observability import MetricsPublisher
from mlops.core.settings import TriggerSettings, load_settings
from mlops.pipeline.trigger import handle_event
from mlops.registry.runs import RunArchive, RunLog
from mlops.registry.store import ModelRegistry
from mlops.rollout.code import policy_from_json, start_shared_code_rollout

_settings: TriggerSettings | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _settings
    _settings = _settings or load_settings(TriggerSettings)
    s = _settings
    registry = ModelRegistry(s.registry_table)
    shared_code = partial(start_shared_code_rollout, s.shared_scoring_function, s.code_rollout_state_machine_arn,
                          policy_from_json(s.code_canary_policy)) if s.shared_scoring_function else None
    return handle_event(event, registry, s.state_machine_arn,
                        RunLog(registry, MetricsPublisher(s.metrics_namespace), RunArchive(s.artifact_bucket)),
                        shared_code)
