"""Pipeline step Evaluate: the ONNX artifact itself on the holdout -> metrics, parity, fairness, gate decision."""

from __future__ import annotations

from typing import Any

from mlops.core.settings import EvaluateSettings, load_settings
from mlops.training.steps import PipelineContext, evaluate_step

_context: PipelineContext | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _context
    if _context is None:
        settings = load_settings(EvaluateSettings)
        _context = PipelineContext.create(settings.artifact_bucket, settings.registry_table)
    return evaluate_step(_context, event)
