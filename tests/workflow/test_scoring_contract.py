"""The scoring API contract through the `live` alias with AWS-shaped API Gateway proxy events."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import pytest
from mlops.data import synthetic

from .conftest import live_model

EVENT = json.loads((Path(__file__).parents[1] / "events" / "apigw_predict.json").read_text())
RECORD = json.loads(EVENT["body"])["instances"][0]


@pytest.fixture(scope="module")
def served(platform):
    family = synthetic.credit_risk_family(name="contract", capture_sample_rate=0.0)
    platform.add_family(family)
    live_model(platform, family)
    return family


def _event(family, body=None, method="POST", resource="/models/{name}/predict", name=None, headers=None,
           b64=False):
    event = copy.deepcopy(EVENT)
    name = name or family.name
    event.update({"httpMethod": method, "resource": resource, "pathParameters": {"name": name},
                  "path": resource.replace("{name}", name), "isBase64Encoded": b64})
    event["body"] = body
    if headers is not None:
        event["headers"] = headers
    return event


def _call(platform, family, event):
    response, _ = platform.invoke_scoring(family.name, event)
    return response["statusCode"], json.loads(response["body"]), response["headers"]


def test_predict_returns_labels_probabilities_classes_version_and_request_id(platform, served):
    instances = synthetic.to_instances(synthetic.credit_risk_columns(3, 8), served)
    status, body, headers = _call(platform, served, _event(served, json.dumps({"instances": instances})))
    assert status == 200
    assert body["model"] == served.name and body["version"] == 1 and headers["X-Model-Version"] == "1"
    assert body["classes"] == [0, 1] and len(body["predictions"]) == 3
    assert all(abs(sum(p) - 1) < 1e-5 for p in body["probabilities"])
    assert body["request_id"] == EVENT["requestContext"]["requestId"]


def test_aws_sample_event_scores(platform, served):
    status, body, _ = _call(platform, served, _event(served, EVENT["body"]))
    assert status == 200 and body["predictions"][0] in (0, 1)


def test_describe_reports_live_model_schema_metrics_and_data_set(platform, served):
    status, body, _ = _call(platform, served, _event(served, None, "GET", "/models/{name}"))
    assert status == 200
    assert body["live_version"] == 1 and body["canary_version"] is None and body["canary_weight"] == 0
    assert [f["name"] for f in body["features"]] == served.feature_names
    assert body["metrics"]["auc"] > 0.6 and body["trained_at"]
    assert body["dataset"]["key"] == f"datasets/{served.name}/first.csv" and body["dataset"]["version_id"]


def _with(**changes):
    return [{**RECORD, **changes}]


@pytest.mark.parametrize(("body", "status", "needle"), [
    ("{not json", 400, "not valid JSON"),
    ('{"instances": [{"age": NaN}]}', 400, "not valid JSON"),
    ("[1, 2]", 400, "JSON object"),
    ('{"records": []}', 400, "lacks 'instances'"),
    ('{"instances": {}}', 400, "must be a list"),
    ('{"instances": []}', 400, "empty"),
    (json.dumps({"instances": [RECORD] * 1001}), 400, "limit is 1000"),
    (json.dumps({"instances": [1]}), 400, "instances[0] must be an object"),
    (json.dumps({"instances": [{k: v for k, v in RECORD.items() if k != "income"}]}), 400,
     "missing features ['income']"),
    (json.dumps({"instances": _with(extra=1)}), 400, "unknown features ['extra']"),
    (json.dumps({"instances": _with(age="35")}), 400, "instances[0].age must be a number"),
    (json.dumps({"instances": _with(age=True)}), 400, "a boolean"),
    (json.dumps({"instances": _with(age=None)}), 400, "null"),
    (json.dumps({"instances": _with(region="mars")}), 400, "instances[0].region must be one of"),
    (json.dumps({"instances": _with(income=1e300)}), 400, "instances[0].income must be a finite number in [0, 1e+09]"),
    (json.dumps({"instances": _with(income=10**40)}), 400, "in [0, 1e+09]"),
    (json.dumps({"instances": _with(age=-1)}), 400, "instances[0].age must be a finite number in [0, 130]"),
    (json.dumps({"instances": [RECORD], "extra": 1}), 400, "unknown fields"),
    (None, 400, "empty"),
])
def test_client_mistakes_get_400_naming_the_problem(platform, served, body, status, needle):
    code, payload, _ = _call(platform, served, _event(served, body))
    assert code == status, payload
    assert needle in payload["message"] and payload["request_id"]


def test_wrong_content_type_is_415(platform, served):
    code, payload, _ = _call(platform, served, _event(served, EVENT["body"], headers={"Content-Type": "text/csv"}))
    assert code == 415 and "Content-Type" in payload["message"]


def test_base64_body_is_decoded(platform, served):
    encoded = base64.b64encode(EVENT["body"].encode()).decode()
    code, _, _ = _call(platform, served, _event(served, encoded, b64=True))
    assert code == 200
    code, payload, _ = _call(platform, served, _event(served, "%%%", b64=True))
    assert code == 400 and "base64" in payload["message"]


def test_unknown_family_is_404(platform, served):
    code, payload, _ = _call(platform, served, _event(served, EVENT["body"], name="other-family"))
    assert code == 404 and "other-family" in payload["message"]


def test_family_without_a_live_model_is_503(platform):
    family = synthetic.credit_risk_family(name="not-yet-live")
    platform.add_family(family)
    code, payload, _ = _call(platform, family, _event(family, EVENT["body"]))
    assert code == 503 and "no live model" in payload["message"]


def test_wrong_method_is_405(platform, served):
    code, payload, headers = _call(platform, served, _event(served, None, "GET"))
    assert code == 405 and headers["Allow"] == "POST"

