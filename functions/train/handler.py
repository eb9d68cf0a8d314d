"""The train function: PlanTraining (the engine for this data set), Train on the Lambda engine (data set ->
scikit-learn model -> ONNX artifact, holdout and baseline profile) and CollectTrainingJob (the sagemaker engine's
output, stored like the Lambda engine's), chosen by the state's `action` (mlops.training.engines)."""

from __future__ import annotations

from typing import Any

from mlops.core.settings import TrainSettings, load_settings
from mlops.training.engines import run_train_function
from mlops.training.steps import PipelineContext

_settings: TrainSettings | None = None
_context: PipelineContext | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _settings, _context
    if _context is None:
        _settings = load_settings(TrainSettings)
        _context = PipelineContext.create(_settings.artifact_bucket, _settings.registry_table, _settings.git_revision)
    return run_train_function(_context, _settings, event)
