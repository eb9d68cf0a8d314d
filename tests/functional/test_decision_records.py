"""The audit trail on moto: the real scoring service writes a decision record for every request while captures
stay sampled, a request id is found by listing and reading only the objects whose key filter may hold it, and
the audit reconstructs decision, version, what was live then, lineage, rollout and explanation (also through the
management route's handler, functions/audit/handler.py)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
import uuid
from pathlib import Path
from types import SimpleNamespace

import boto3
import numpy as np
import orjson
import pytest
from mlops.core.errors import DecisionNotFoundError
from mlops.core.settings import Env, ScoringSettings
from mlops.data import synthetic
from mlops.registry.store import CANARY, LIVE
from mlops.serving import capture, decisions
from mlops.serving.api import ScoringService
from mlops.serving.audit import Auditor
from mlops.serving.capture_columns import decode as decode_captures
from mlops.serving.decisions import BatchKey, DecisionStore
from mlops.training import steps

from mlops_local.apigw import proxy_event

from .conftest import BUCKET, TABLE

ROOT = Path(__file__).resolve().parents[2]
FAMILY = "credit-risk"


def _upload(key: str, body: bytes) -> dict:
    response = boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    return {"bucket": BUCKET, "key": key, "version_id": response["VersionId"]}


def _register(ctx, seed: int, status: str) -> tuple[int, str]:
    """Train, evaluate and register a version through the pipeline steps, then move it to `status`."""
    data = synthetic.credit_risk_csv(2000, seed)
    event = {"family": FAMILY, "dataset": _upload(f"datasets/{FAMILY}/{seed}.csv", data)}
    event["train"] = steps.train_step(ctx, event)
    event["evaluation"] = steps.evaluate_step(ctx, event)
    version = steps.register_step(ctx, event, run_id=f"{FAMILY}-run-{seed}")["version"]
    ctx.registry.transition(FAMILY, version, status, "test", f"test: {status}")
    return version, event["train"]["artifact"]["sha256"]


def _service(version: int, sha256: str, sample_rate: float, never_capture: str = "") -> ScoringService:
    return ScoringService(ScoringSettings.model_validate({
        Env.ARTIFACT_BUCKET: BUCKET, Env.REGISTRY_TABLE: TABLE, Env.MODEL_FAMILY: FAMILY,
        Env.MODEL_VERSION: str(version), Env.MODEL_SHA256: sha256, Env.CAPTURE_SAMPLE_RATE: str(sample_rate),
        Env.NEVER_CAPTURE: never_capture, Env.CAPTURE_FLUSH_RECORDS: "25", Env.DECISION_FLUSH_RECORDS: "64",
        Env.FUNCTION_VERSION: str(version + 10)}))


def _score(service: ScoringService, body: dict, request_id: str) -> dict:
    event = proxy_event("POST", f"/models/{FAMILY}/predict", json.dumps(body))
    event["requestContext"]["requestId"] = request_id
    response = service.handle(event, "lambda-id")
    assert response["statusCode"] == 200, response["body"]
    return json.loads(response["body"])


def _request_ids(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def _stored(prefix: str) -> list[dict]:
    s3 = boto3.client("s3")
    lines = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
            if obj["Key"].endswith(".cap"):  # a capture batch, columnar: one dict per record
                part = decode_captures(body)
                lines += [{"request_id": str(r), "index": int(i)} for r, i in zip(part.request_id, part.index,
                                                                                  strict=True)]
                continue
            text = gzip.decompress(body) if obj["Key"].endswith(".gz") else body
            lines += [orjson.loads(line) for line in text.splitlines() if line]
    return lines


@pytest.fixture()
def live(platform):
    decisions._writers.clear()  # logs earlier tests left behind belong to their (reset) buckets, not this one
    return _register(platform, 5, LIVE)


def test_every_request_leaves_a_decision_record_while_captures_stay_sampled_at_10_percent(platform, live):
    version, sha256 = live
    service = _service(version, sha256, sample_rate=0.1)
    records = synthetic.to_instances(synthetic.credit_risk_columns(400, 8), synthetic.credit_risk_family())
    answered = {}
    for i, request_id in enumerate(_request_ids(300, 1)):
        answered[request_id] = _score(service, {"instances": records[i:i + 1 + i % 3]}, request_id)
    assert capture.flush_all(10) and decisions.flush_all(10)

    lines = _stored(decisions.family_prefix(FAMILY))
    assert sorted(line["request_id"] for line in lines) == sorted(answered)  # 100%, each once
    for line in lines:
        body = answered[line["request_id"]]
        assert line["predictions"] == body["predictions"]
        assert line["probabilities"] == [p[1] for p in body["probabilities"]]
        assert (line["version"], line["function_version"], line["model_sha256"]) == (version, str(version + 10),
                                                                                   sha256)
    rows = _stored(capture.version_prefix(FAMILY, version))
    # Captures sample records one by one; a decision keeps its request's inputs when the first record was sampled.
    captured = {row["request_id"] for row in rows if row["index"] == 0}
    with_inputs = {line["request_id"] for line in lines if line["inputs_captured"]}
    assert with_inputs == captured and 10 <= len(captured) <= 60  # Binomial(300, 0.1): the sample, nothing more
    assert 25 <= len(rows) <= 100  # Binomial(600 records, 0.1)
    for line in lines:
        if line["inputs_captured"]:
            assert len(line["inputs"]) == line["records"] and set(line["inputs"][0]) == set(records[0])


def test_a_request_id_is_found_by_reading_only_objects_whose_key_filter_matches(platform, live):
    version, sha256 = live
    service = _service(version, sha256, sample_rate=0.0)
    record = synthetic.to_instances(synthetic.credit_risk_columns(1, 3), synthetic.credit_risk_family())
    ids = _request_ids(640, 2)
    for request_id in ids:
        _score(service, {"instances": record}, request_id)
    assert decisions.flush_all(10)
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="decisions/")["Contents"]]
    assert len(keys) == 10  # 640 requests in objects of 64
    store = DecisionStore(BUCKET)
    for wanted in (ids[0], ids[333], ids[-1]):
        found = store.find(wanted)
        assert found.line["request_id"] == wanted and found.line["family"] == FAMILY
        # The object that holds it, plus any whose filter answers a false positive (1% each).
        assert store.listed <= 10 and 1 <= store.read <= 2
    unknown = "not-a-real-request"
    with pytest.raises(DecisionNotFoundError, match=rf"no decision record holds request id '{unknown}'"):
        store.find(unknown)
    assert store.listed == 10 and store.read == sum(BatchKey.parse(k).may_hold(unknown) for k in keys) <= 1


def test_audit_reconstructs_decision_version_live_then_lineage_rollout_and_recomputed_explanation(platform, live):
    version, sha256 = live
    record = synthetic.to_instances(synthetic.credit_risk_columns(2, 4), synthetic.credit_risk_family())
    captured = _score(_service(version, sha256, 1.0), {"instances": record, "explain": True, "top": 3}, "req-captured")
    canary, canary_sha = _register(platform, 6, CANARY)
    stored = _score(_service(canary, canary_sha, 0.0), {"instances": record, "explain": True}, "req-stored")
    plain = _score(_service(canary, canary_sha, 0.0), {"instances": record}, "req-plain")
    assert decisions.flush_all(10)
    auditor = Auditor(BUCKET, platform.registry)

    report = auditor.audit("req-captured")
    assert report["decision"]["version"] == version and report["decision"]["inputs_captured"]
    assert [r["prediction"] for r in report["decision"]["records"]] == captured["predictions"]
    assert report["at_decision"] == {"live_version": version, "served_version": version,
                                     "served_version_status": "live", "served_by": "live"}
    lineage = report["lineage"]
    assert lineage["dataset"]["key"] == f"datasets/{FAMILY}/5.csv" and lineage["dataset"]["version_id"]
    assert lineage["dataset"]["rows"] == 2000 and len(lineage["dataset"]["sha256"]) == 64
    assert lineage["code"]["git_revision"] and "dirty" in lineage["code"]
    assert lineage["seed"] == 42 and lineage["hyperparameters"] and lineage["metrics"]["auc"] > 0.6
    assert [f["feature"] for f in lineage["feature_importance"]][0] in synthetic.credit_risk_family().feature_names
    assert all(c["threshold"] is not None for c in report["gate"]["checks"]) and report["gate"]["passed"]
    assert [(e["from_status"], e["to_status"]) for e in report["rollout"] if e["version"] == version][:2] == [
        ("", "candidate"), ("candidate", "live")]
    explanation = report["explanation"]
    assert explanation["source"] == "recomputed" and explanation["prediction_reproduced"]
    for ours, answered in zip(explanation["records"], captured["explanations"], strict=True):
        assert ours["contributions"] == answered["contributions"] and ours["base_value"] == answered["base_value"]
        assert ours["reasons"][:3] == answered["reasons"]

    report = auditor.audit("req-stored", family=FAMILY)
    assert report["at_decision"]["served_by"] == "canary" and report["at_decision"]["live_version"] == version
    assert report["explanation"]["source"] == "stored"
    assert [e["reasons"] for e in report["explanation"]["records"]] == [e["reasons"] for e in stored["explanations"]]
    report = auditor.audit("req-plain")
    assert report["explanation"]["source"] == "unavailable" and "not captured" in report["explanation"]["note"]
    assert [r["prediction"] for r in report["decision"]["records"]] == plain["predictions"]


def test_never_captured_inputs_make_the_audit_fall_back_to_stored_reasons_and_say_why(platform, live):
    version, sha256 = live
    record = synthetic.to_instances(synthetic.credit_risk_columns(1, 4), synthetic.credit_risk_family())
    _score(_service(version, sha256, 1.0, never_capture="income"), {"instances": record, "explain": True}, "r-pii")
    assert decisions.flush_all(10)
    report = Auditor(BUCKET, platform.registry).audit("r-pii")
    assert report["decision"]["records"][0]["inputs"].keys() == set(record[0]) - {"income"}
    assert report["explanation"]["source"] == "stored"
    assert "missing features ['income']" in report["explanation"]["note"] and "never-captured" in \
        report["explanation"]["note"]
    assert all("value" not in r for r in report["explanation"]["records"][0]["reasons"] if r["feature"] == "income")


def _audit_handler():
    spec = importlib.util.spec_from_file_location("audit_handler", ROOT / "functions" / "audit" / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_management_route_answers_the_audit_404_for_unknown_ids_and_400_for_malformed_input(platform, live,
                                                                                              monkeypatch):
    version, sha256 = live
    record = synthetic.to_instances(synthetic.credit_risk_columns(1, 4), synthetic.credit_risk_family())
    _score(_service(version, sha256, 1.0), {"instances": record}, "route-1")
    assert decisions.flush_all(10)
    monkeypatch.setenv(Env.ARTIFACT_BUCKET, BUCKET)
    monkeypatch.setenv(Env.REGISTRY_TABLE, TABLE)
    handler = _audit_handler()
    context = SimpleNamespace(aws_request_id="audit-call")

    def get(request_id: str, query: dict | None = None) -> tuple[int, dict]:
        event = proxy_event("GET", "/audit/x")
        event.update({"resource": "/audit/{request_id}", "pathParameters": {"request_id": request_id},
                      "queryStringParameters": query})
        response = handler.lambda_handler(event, context)
        return response["statusCode"], json.loads(response["body"])

    status, body = get("route-1", {"family": FAMILY, "at": "2020-01-01"})
    assert status == 200 and body["decision"]["version"] == version
    assert body["explanation"]["source"] == "recomputed" and np.isfinite(body["lineage"]["metrics"]["auc"])
    status, body = get("unknown-id")
    assert status == 404 and body["error"] == "DecisionNotFoundError" and "unknown-id" in body["message"]
    status, body = get("a b")
    assert status == 400 and "is not a request id" in body["message"]
    status, body = get("route-1", {"at": "yesterday"})
    assert status == 400 and "ISO 8601" in body["message"]
