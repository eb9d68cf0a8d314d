"""A category sent with the whitespace training trims (" south") is the declared category at scoring, in both
scoring tiers, and in the drift statistics of captures (one normalisation, mlops.core.categories); an undeclared
category scored as "other" is named in the answer's `warnings` (fresh-user pass on issues 10 and 11)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlops.core.categories import category_text
from mlops.core.observability import MetricsPublisher
from mlops.core.settings import Env, ScoringSettings, SharedScoringSettings
from mlops.data import synthetic
from mlops.data.datasets import parse_csv, parse_dataset
from mlops.monitoring.drift import captured_columns
from mlops.registry.store import LIVE, ModelRegistry
from mlops.serving import decisions
from mlops.serving.api import ScoringService
from mlops.serving.capture import CapturedRecord
from mlops.serving.openapi import response_schema
from mlops.serving.scoring import ScoringModel
from mlops.serving.shared import SharedScoringService
from mlops.training.fit import train

from mlops_local.apigw import proxy_event

from .conftest import BUCKET, TABLE

RECORD = {"age": 35, "income": 52000, "debt_ratio": 0.31, "credit_history_years": 9.5, "late_payments": 1,
          "employment_years": 4.0, "open_credit_lines": 5, "region": "south"}


def _family(name: str = "credit-risk", unknown: str = "other"):
    family = synthetic.credit_risk_family(name=name, capture_sample_rate=1.0)
    features = [f.model_copy(update={"unknown": unknown}) if f.kind == "categorical" else f
                for f in family.features]
    return family.model_copy(update={"features": tuple(features)})


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    family = _family()
    data = parse_csv(synthetic.credit_risk_csv(800, 2), family)
    return train(family, data.X, data.y).onnx_bytes


@pytest.fixture(autouse=True)
def _clean_writers():
    decisions._writers.clear()


def _predict(service, family: str, instances: list) -> tuple[int, dict]:
    event = proxy_event("POST", f"/models/{family}/predict", json.dumps({"instances": instances}))
    event["requestContext"]["requestId"] = "req-1"
    response = service.handle(event, "lambda-id")
    return response["statusCode"], json.loads(response["body"])


def test_training_trims_category_cells_with_the_shared_function():
    family = _family()
    text = synthetic.credit_risk_csv(60, 1).decode().replace(",south,", ",  south ,")
    dataset = parse_dataset(text.encode(), family, "train.csv")
    south = family.features[-1].categories.index("south")
    assert "  south " in text and (dataset.X[:, -1] == south).any()
    assert not (dataset.X[:, -1] == len(family.features[-1].categories)).any()  # nothing scored as "other"
    assert category_text("\t Male ") == "Male"


@pytest.mark.parametrize("records", [1, 20])  # one record (bound session) and the batch fast/checked paths
def test_dedicated_tier_scores_padded_category_as_the_declared_one(platform, onnx_bytes, records):
    ref = platform.artifacts.put(onnx_bytes, "model/onnx")
    settings = ScoringSettings.model_validate({
        Env.ARTIFACT_BUCKET: BUCKET, Env.REGISTRY_TABLE: TABLE, Env.MODEL_FAMILY: "credit-risk",
        Env.MODEL_VERSION: "1", Env.MODEL_SHA256: ref.sha256, Env.CAPTURE_SAMPLE_RATE: "0"})
    service = ScoringService(settings, MetricsPublisher("MLOpsPlatform"))
    status, plain = _predict(service, "credit-risk", [RECORD] * records)
    padded_status, padded = _predict(service, "credit-risk", [{**RECORD, "region": " south "}] * records)
    assert status == padded_status == 200
    assert padded["probabilities"] == plain["probabilities"]
    assert "warnings" not in padded


def test_shared_tier_scores_padded_category_as_the_declared_one_and_names_unknown_ones(platform, onnx_bytes):
    family = _family("fam-a")
    platform.registry.put_family(family, scoring_function="shared")
    ref = platform.artifacts.put(onnx_bytes, "model/onnx", {"family": "fam-a"})
    version = platform.registry.allocate_version("fam-a", {"artifact_sha256": ref.sha256}, "test").version
    platform.registry.transition("fam-a", version, LIVE, "test", "test: live")
    settings = SharedScoringSettings.model_validate({
        Env.ARTIFACT_BUCKET: BUCKET, Env.REGISTRY_TABLE: TABLE, Env.ROUTING_TTL_SECONDS: "0",
        Env.MODEL_CACHE_MIB: "512", Env.FUNCTION_VERSION: "1"})
    service = SharedScoringService(settings, ModelRegistry(TABLE))
    service.metrics.sink = [].extend
    _, plain = _predict(service, "fam-a", [RECORD])
    status, body = _predict(service, "fam-a", [{**RECORD, "region": "south "}, {**RECORD, "region": "Mars"}])
    assert status == 200
    assert body["probabilities"][0] == plain["probabilities"][0]
    assert body["probabilities"][1] != plain["probabilities"][0]
    assert body["warnings"] == [{"record": 1, "field": "region", "value": "Mars", "treated_as": "other"}]
    assert "warnings" in response_schema(family)["properties"]


def test_padded_category_is_refused_nowhere_when_unknown_categories_are_rejected(onnx_bytes):
    family = _family(unknown="reject")
    data = parse_csv(synthetic.credit_risk_csv(400, 3), family)
    model = ScoringModel(train(family, data.X, data.y).onnx_bytes)
    labels, proba = model.predict_instances([{**RECORD, "region": " south"}])
    assert proba == model.predict_instances([RECORD])[1]
    assert model.unknown_categories([{**RECORD, "region": " south"}]) == ([], 0)


def test_drift_captures_read_padded_category_as_the_declared_one():
    family = _family()
    records = [CapturedRecord(0.0, "r", {**RECORD, "region": region}, 0, [0.5, 0.5])
               for region in ("south", " south", "south  ", "Mars")]
    columns, _ = captured_columns(family, records)
    south = float(family.features[-1].categories.index("south"))
    other = float(len(family.features[-1].categories))
    np.testing.assert_array_equal(columns["region"], [south, south, south, other])


def test_unknown_category_warnings_are_capped_and_counted(onnx_bytes):
    model = ScoringModel(onnx_bytes)
    warnings, total = model.unknown_categories([{**RECORD, "region": f"r{i}"} for i in range(150)])
    assert total == 150 and len(warnings) == 100 and warnings[99]["record"] == 99
