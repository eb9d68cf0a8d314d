"""The shared scoring tier on moto: one service answers several families from the registry's routing, splits a
canary by request id, follows a rollback after its routing TTL, evicts models under a bounded cache while their
decision records keep being written per family, answers 503 without internals for a missing or altered artifact,
and its EMF figures feed the canary check's metrics adapter."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from functools import cache

import boto3
import orjson
import pytest
from mlops.core.settings import Env, ScoringSettings, SharedScoringSettings
from mlops.data import synthetic
from mlops.data.datasets import parse_csv
from mlops.registry.store import CANARY, LIVE
from mlops.rollout.routers import EmfCanaryMetrics
from mlops.serving import decisions
from mlops.serving.api import ScoringService
from mlops.serving.metrics import cloudwatch_sink
from mlops.serving.shared import SharedScoringService
from mlops.training.fit import build_estimator, to_onnx_bytes

from mlops_local.apigw import proxy_event

from .conftest import BUCKET, TABLE


@cache
def onnx_model(algorithm: str, seed: int) -> bytes:
    family = synthetic.credit_risk_family(algorithm=algorithm)
    data = parse_csv(synthetic.credit_risk_csv(1500, seed), family)
    estimator, params = build_estimator(family, seed)
    estimator.fit(data.X, data.y)
    return to_onnx_bytes(estimator, family, params)


def register(ctx, family: str, data: bytes, status: str) -> int:
    ref = ctx.artifacts.put(data, "model/onnx", {"family": family})
    version = ctx.registry.allocate_version(family, {"artifact_sha256": ref.sha256}, "test").version
    ctx.registry.transition(family, version, status, "test", f"test: {status}")
    return version


def add_family(ctx, name: str, **overrides) -> None:
    ctx.registry.put_family(synthetic.credit_risk_family(name=name, capture_sample_rate=1.0, **overrides),
                            scoring_function="shared")


def service(ttl: float = 0.0, cache_mib: int = 512, sink=None) -> tuple[SharedScoringService, list]:
    documents: list = []
    from mlops.registry.store import ModelRegistry

    settings = SharedScoringSettings.model_validate({
        Env.ARTIFACT_BUCKET: BUCKET, Env.REGISTRY_TABLE: TABLE, Env.ROUTING_TTL_SECONDS: str(ttl),
        Env.MODEL_CACHE_MIB: str(cache_mib), Env.FUNCTION_VERSION: "3", Env.CAPTURE_FLUSH_RECORDS: "10",
        Env.DECISION_FLUSH_RECORDS: "10"})
    svc = SharedScoringService(settings, ModelRegistry(TABLE))
    svc.metrics.sink = sink or documents.extend
    svc.metrics.flush_seconds = 0.0
    return svc, documents


def post(svc, family: str, request_id: str, rows: int = 1, headers: dict | None = None) -> dict:
    records = synthetic.to_instances(synthetic.credit_risk_columns(rows, 3), synthetic.credit_risk_family())
    event = proxy_event("POST", f"/models/{family}/predict", json.dumps({"instances": records}), headers)
    event["requestContext"]["requestId"] = request_id
    return svc.handle(event, "lambda-id")


@pytest.fixture(autouse=True)
def _clean_writers():
    decisions._writers.clear()


def test_one_service_answers_every_shared_family_with_its_live_model(platform):
    add_family(platform, "fam-a")
    add_family(platform, "fam-b", algorithm="hist_gradient_boosting")
    register(platform, "fam-a", onnx_model("logistic_regression", 1), LIVE)
    register(platform, "fam-b", onnx_model("hist_gradient_boosting", 2), LIVE)
    svc, documents = service()
    for family in ("fam-a", "fam-b"):
        response = post(svc, family, f"{family}-1")
        body = json.loads(response["body"])
        assert response["statusCode"] == 200 and body["model"] == family and body["version"] == 1
        assert response["headers"]["X-Model-Version"] == "1"
    assert {(d["Family"], d["ModelVersion"], d["FunctionVersion"]) for d in documents} == {
        ("fam-a", "1", "3"), ("fam-b", "1", "3")}
    assert len(svc.cache) == 2 and svc.cache.footprint("fam-b", 1) >= len(onnx_model("hist_gradient_boosting", 2))
    described = json.loads(svc.handle(proxy_event("GET", "/models/fam-a"), "id")["body"])
    assert described["live_version"] == 1 and described["served_version"] == 1


def test_canary_weight_splits_by_request_id_and_a_rollback_is_served_after_the_ttl(platform):
    add_family(platform, "fam-c")
    register(platform, "fam-c", onnx_model("logistic_regression", 1), LIVE)
    canary = register(platform, "fam-c", onnx_model("logistic_regression", 4), CANARY)
    platform.registry.set_canary_weight("fam-c", canary, 50)
    svc, _ = service(ttl=0.0)
    versions = [json.loads(post(svc, "fam-c", f"req-{i}")["body"])["version"] for i in range(60)]
    assert set(versions) == {1, 2}
    again = [json.loads(post(svc, "fam-c", f"req-{i}")["body"])["version"] for i in range(60)]
    assert again == versions, "the same request id gets the same version"
    platform.registry.transition("fam-c", canary, "rolled_back", "test", "canary rolled back")
    assert {json.loads(post(svc, "fam-c", f"req-{i}")["body"])["version"] for i in range(60)} == {1}


def test_decision_records_and_captures_stay_per_family_across_evictions(platform):
    for name in ("fam-d", "fam-e"):
        add_family(platform, name)
        register(platform, name, onnx_model("logistic_regression", 1), LIVE)
    svc, _ = service(cache_mib=16)
    svc.cache.capacity = 1  # every load evicts the other model
    for i in range(6):
        for name in ("fam-d", "fam-e"):
            assert post(svc, name, f"{name}-{i}")["statusCode"] == 200
    assert svc.cache.stats.evictions >= 10 and len(svc.cache) == 1
    assert decisions.flush_all(10)
    from mlops.serving.capture import flush_all

    assert flush_all(10)
    s3 = boto3.client("s3")
    for name in ("fam-d", "fam-e"):
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"decisions/family={name}/")["Contents"]]
        ids = {orjson.loads(line)["request_id"] for key in keys
               for line in gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()).splitlines()}
        assert ids == {f"{name}-{i}" for i in range(6)}, "no decision lost to an eviction"
        captured = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"captures/family={name}/version=1/")
        assert captured.get("KeyCount", 0) >= 1


def test_missing_or_altered_artifact_is_503_naming_the_model_not_the_bucket(platform):
    add_family(platform, "fam-f")
    version = register(platform, "fam-f", onnx_model("logistic_regression", 1), LIVE)
    sha = platform.registry.get_version("fam-f", version).artifact_sha256
    boto3.client("s3").put_object(Bucket=BUCKET, Key=f"models/sha256/{sha}", Body=b"altered")
    svc, documents = service()
    response = post(svc, "fam-f", "r1")
    assert response["statusCode"] == 503 and "integrity check" in response["body"]
    assert documents[-1]["Errors"] == 1, "a 503 of the tier counts as an error of that version"
    boto3.client("s3").delete_object(Bucket=BUCKET, Key=f"models/sha256/{sha}")
    response = post(svc, "fam-f", "r2")
    assert response["statusCode"] == 503 and BUCKET not in response["body"] and sha not in response["body"]
    assert "fam-f v1 is unavailable" in response["body"]

    dedicated = ScoringService(ScoringSettings.model_validate({
        Env.ARTIFACT_BUCKET: BUCKET, Env.REGISTRY_TABLE: TABLE, Env.MODEL_FAMILY: "fam-f",
        Env.MODEL_VERSION: str(version), Env.MODEL_SHA256: sha}))
    event = proxy_event("POST", "/models/fam-f/predict", json.dumps(
        {"instances": synthetic.to_instances(synthetic.credit_risk_columns(1, 3), synthetic.credit_risk_family())}))
    answer = dedicated.handle(event, "r3")
    assert answer["statusCode"] == 503 and BUCKET not in answer["body"] and "models/sha256" not in answer["body"]


def test_unknown_dedicated_and_modelless_families(platform):
    add_family(platform, "fam-g")
    add_family(platform, "own-fn", serving="dedicated")
    svc, _ = service()
    assert post(svc, "nobody", "r")["statusCode"] == 404
    assert post(svc, "Bad Name!", "r")["statusCode"] == 404
    assert post(svc, "own-fn", "r")["statusCode"] == 404
    response = post(svc, "fam-g", "r")
    assert response["statusCode"] == 503 and "no live model yet" in response["body"]


def test_client_errors_are_4xx_and_not_counted_as_errors(platform):
    add_family(platform, "fam-h")
    register(platform, "fam-h", onnx_model("logistic_regression", 1), LIVE)
    svc, documents = service()
    event = proxy_event("POST", "/models/fam-h/predict", json.dumps({"instances": [{"age": "x"}]}))
    assert svc.handle(event, "r")["statusCode"] == 400
    gzipped = proxy_event("POST", "/models/fam-h/predict", "{}", {"Content-Encoding": "gzip"})
    assert svc.handle(gzipped, "r")["statusCode"] == 415
    assert [d["Errors"] for d in documents] == [0, 0]


def test_emf_figures_put_to_cloudwatch_are_what_the_canary_check_reads(platform):
    add_family(platform, "fam-i")
    register(platform, "fam-i", onnx_model("logistic_regression", 1), LIVE)
    svc, _ = service(sink=cloudwatch_sink)
    start = datetime.now(UTC) - timedelta(seconds=5)
    for i in range(12):
        post(svc, "fam-i", f"r{i}")
    svc.metrics.observe("fam-i", 1, 9.0, error=True)
    figures = EmfCanaryMetrics("MLOpsPlatform").traffic("fam-i", "1", start, datetime.now(UTC) + timedelta(seconds=5))
    assert figures.invocations == 13 and figures.errors == 1 and figures.p99_ms is not None
    by_code = EmfCanaryMetrics("MLOpsPlatform").by_family("3", start, datetime.now(UTC) + timedelta(seconds=5))
    assert by_code["fam-i"].invocations == 13
