"""Pipeline step Train: data set -> scikit-learn model -> ONNX artifact, holdout and baseline profile."""

from __future__ import annotations

from typing import Any

from mlops.pipeline import PipelineContext, train_step
from mlops.settings import TrainSettings, load_settings

_context: PipelineContext | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _context
    if _context is None:
        settings = load_settings(TrainSettings)
        _context = PipelineContext.create(settings.artifact_bucket, settings.registry_table, settings.git_revision)
    return train_step(_context, event)
