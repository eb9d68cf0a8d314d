"""The scoring path under faults and attacks: throttled dependencies, tampered artifacts, capture exclusions."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from mlops.core import aws
from mlops.core.observability import MetricsPublisher
from mlops.core.settings import Env, ScoringSettings
from mlops.data import synthetic
from mlops.data.datasets import parse_csv
from mlops.serving import capture
from mlops.serving.api import ScoringService
from mlops.serving.capture_columns import decode
from mlops.training.fit import train

from mlops_local.apigw import proxy_event

from .conftest import BUCKET, TABLE

ROOT = Path(__file__).resolve().parents[2]
RECORD = {"age": 35, "income": 52000, "debt_ratio": 0.31, "credit_history_years": 9.5, "late_payments": 1,
          "employment_years": 4.0, "open_credit_lines": 5, "region": "south"}


@pytest.fixture()
def stored_model(platform):
    family = synthetic.credit_risk_family()
    data = parse_csv(synthetic.credit_risk_csv(800, 2), family)
    return platform.artifacts.put(train(family, data.X, data.y).onnx_bytes, "model/onnx")


def _service(ref, sample_rate=1.0, never_capture="") -> ScoringService:
    settings = ScoringSettings.model_validate({
        Env.ARTIFACT_BUCKET: BUCKET, Env.REGISTRY_TABLE: TABLE, Env.MODEL_FAMILY: "credit-risk",
        Env.MODEL_VERSION: "3", Env.MODEL_SHA256: ref.sha256, Env.CAPTURE_SAMPLE_RATE: str(sample_rate),
        Env.NEVER_CAPTURE: never_capture, Env.CAPTURE_FLUSH_RECORDS: "1"})
    return ScoringService(settings, MetricsPublisher("MLOpsPlatform"))


def _predict(service, body):
    response = service.handle(proxy_event("POST", "/models/credit-risk/predict", json.dumps(body)), "req-1")
    return response["statusCode"], json.loads(response["body"])


class _Throttled:
    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, name)
        return fail


def test_warm_function_keeps_scoring_while_s3_and_dynamodb_throttle(platform, stored_model, monkeypatch):
    service = _service(stored_model)
    assert _predict(service, {"instances": [RECORD]})[0] == 200  # cold start: model loaded
    monkeypatch.setattr(aws, "client", lambda service_name: _Throttled())
    for _ in range(50):
        status, body = _predict(service, {"instances": [RECORD]})
        assert status == 200 and body["version"] == 3
    response = service.handle(proxy_event("GET", "/models/credit-risk"), "req-2")
    assert response["statusCode"] == 503 and "registry is unavailable" in response["body"]
    capture.flush_all(timeout=5)
    assert service.capture.failures >= 1, "capture writes failed in the background, requests did not"


def test_tampered_artifact_is_refused_before_loading_and_raises_the_alarm_metric(platform, stored_model):
    boto3.client("s3").put_object(Bucket=BUCKET, Key=stored_model.key, Body=b"\x08\x07not-the-model")
    status, body = _predict(_service(stored_model), {"instances": [RECORD]})
    assert status == 503 and "integrity check" in body["message"]
    metrics = boto3.client("cloudwatch").list_metrics(Namespace="MLOpsPlatform",
                                                      MetricName="ArtifactIntegrityFailures")["Metrics"]
    assert metrics and metrics[0]["Dimensions"] == [{"Name": "Family", "Value": "credit-risk"}]


def test_captures_drop_never_capture_fields_and_key_by_family_version_time(platform, stored_model):
    service = _service(stored_model, never_capture="income,age")
    status, body = _predict(service, {"instances": [RECORD, RECORD]})
    assert status == 200
    assert capture.flush_all(timeout=5)
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="captures/")["Contents"]]
    assert len(keys) == 1
    assert re.match(r"captures/family=credit-risk/version=3/date=\d{4}-\d\d-\d\d/hour=\d\d/\d{13}-\w+\.cap$",
                    keys[0])
    stored = decode(boto3.client("s3").get_object(Bucket=BUCKET, Key=keys[0])["Body"].read())
    rows = list(stored.records())
    assert len(rows) == 2 and rows[0].request_id == body["request_id"] and list(stored.index) == [0, 1]
    assert "income" not in rows[0].inputs and "age" not in rows[0].inputs and rows[0].inputs["region"] == \
        RECORD["region"]


def test_scoring_logs_no_request_data(platform, stored_model, capsys):
    service = _service(stored_model, sample_rate=0.0)
    _predict(service, {"instances": [{**RECORD, "income": 98765.4321}]})
    _predict(service, {"instances": [{**RECORD, "income": "98765.4321"}]})
    out = capsys.readouterr()
    assert "98765" not in out.out and "98765" not in out.err


# Every module of the serving package, the artifact store it reads models through, and the scoring handler.
SERVING = ROOT / "layers/common/python/mlops/serving"
SERVING_MODULES = [*sorted(str(p.relative_to(ROOT)) for p in SERVING.glob("*.py")),
                   "layers/common/python/mlops/registry/artifacts.py", "functions/score/handler.py"]


def test_serving_path_never_unpickles():
    for module in SERVING_MODULES:
        source = (ROOT / module).read_text()
        assert not re.search(r"\b(pickle|joblib|cloudpickle|dill)\b|allow_pickle\s*=\s*True", source), module
    holdout_loader = (ROOT / "layers/common/python/mlops/training/steps.py").read_text()
    assert "allow_pickle=False" in holdout_loader


SECRET_PATTERNS = [re.compile(p) for p in (
    r"AKIA[0-9A-Z]{16}", r"ASIA[0-9A-Z]{16}", r"-----BEGIN (RSA |EC |OPENSSH )?PRIVATE KEY-----",
    r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}", r"xox[baprs]-[0-9A-Za-z-]{10,}",
)]


def test_no_secrets_in_code_or_config():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert files, "not a git checkout"
    leaks = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.suffix in {".png", ".zip", ".onnx"}:
            continue
        text = path.read_text(errors="ignore")
        leaks += [f"{name}: {p.pattern}" for p in SECRET_PATTERNS if p.search(text)]
    assert leaks == []
