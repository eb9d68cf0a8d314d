"""Decision ids (mlops.serving.decision_ids) through the real scoring service: one per record in the response and the
decision record, the client's own `id` echoed and never scored, malformed ids refused with a 400 naming them,
and the OpenAPI documents declaring both."""

from __future__ import annotations

import gzip
import json
from typing import Any

import orjson
import pytest
from mlops.core.errors import ValidationError
from mlops.core.settings import Env, ScoringSettings
from mlops.data import synthetic
from mlops.data.datasets import parse_dataset
from mlops.serving.api import ScoringService
from mlops.serving.decision_ids import decision_ids, names, split_client_ids
from mlops.serving.decisions import DecisionLog
from mlops.serving.openapi import family_openapi
from mlops.serving.scoring import ScoringModel
from mlops.training.fit import train

from mlops_local.apigw import proxy_event

FAMILY = "ids-test"


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    family = synthetic.credit_risk_family(name=FAMILY)
    data = parse_dataset(synthetic.credit_risk_csv(400, 3), family, "ids.csv")
    return train(family, data.X, data.y, seed=1, classes=data.classes).onnx_bytes


class Service:
    """The scoring service with a bound model; decision lines collected in memory."""

    def __init__(self, onnx_bytes: bytes) -> None:
        self.service = ScoringService(ScoringSettings.model_validate({
            Env.ARTIFACT_BUCKET: "unit-bucket", Env.REGISTRY_TABLE: "unit-table", Env.MODEL_FAMILY: FAMILY,
            Env.MODEL_VERSION: "2", Env.MODEL_SHA256: "c" * 64, Env.CAPTURE_SAMPLE_RATE: "0"}))
        model = self.service.model = ScoringModel(onnx_bytes)
        self.objects: list[bytes] = []
        self.service.decisions = DecisionLog("unit-bucket", FAMILY, 2, function_version="1", model_sha256="c" * 64,
                                             classes=model.classes, threshold=model.threshold,
                                             put=lambda key, body: self.objects.append(body))

    def post(self, body: Any, request_id: str = "req-1") -> tuple[int, dict[str, Any]]:
        event = proxy_event("POST", f"/models/{FAMILY}/predict", json.dumps(body))
        event["requestContext"]["requestId"] = request_id
        response = self.service.handle(event, request_id)
        return response["statusCode"], json.loads(response["body"])

    def lines(self) -> list[dict[str, Any]]:
        assert self.service.decisions.flush(5)
        return [orjson.loads(line) for body in self.objects for line in gzip.decompress(body).splitlines()]


def _records(count: int) -> list[dict[str, Any]]:
    family = synthetic.credit_risk_family(name=FAMILY)
    return synthetic.to_instances(synthetic.credit_risk_columns(count, 9), family)


def test_one_record_is_named_by_the_request_id_and_a_batch_by_request_id_and_index(onnx_bytes):
    service = Service(onnx_bytes)
    status, single = service.post({"instances": _records(1)}, "r-single")
    assert status == 200 and single["decision_ids"] == ["r-single"]
    status, batch = service.post({"instances": _records(3)}, "r-batch")
    assert status == 200 and batch["decision_ids"] == ["r-batch:0", "r-batch:1", "r-batch:2"]
    lines = service.lines()
    assert [line["request_id"] for line in lines] == ["r-single", "r-batch"]
    assert all("ids" not in line for line in lines)  # derivable: nothing more is stored


def test_client_ids_are_echoed_stored_and_never_scored(onnx_bytes):
    service = Service(onnx_bytes)
    records = _records(4)
    _, plain = service.post({"instances": records}, "r-plain")
    named = [{**r, "id": client} for r, client in zip(records, ["loan/2025/1", 42, None, "app-9"], strict=True)]
    del named[2]["id"]  # a record without an id in the same batch keeps the request-id name
    status, body = service.post({"instances": named}, "r-named")
    assert status == 200, body
    assert body["decision_ids"] == ["loan/2025/1", "42", "r-named:2", "app-9"]
    assert body["probabilities"] == plain["probabilities"] and body["predictions"] == plain["predictions"]
    assert named[0]["id"] == "loan/2025/1"  # the caller's records are left intact
    line = service.lines()[-1]
    assert line["ids"] == ["loan/2025/1", "42", None, "app-9"]
    assert dict(names(line))["loan/2025/1"] == 0 and dict(names(line))["r-named:2"] == 2
    assert "42" in dict(names(line)) and "r-named" not in dict(names(line))


def test_a_single_record_with_its_own_id_is_named_by_it(onnx_bytes):
    service = Service(onnx_bytes)
    status, body = service.post({"instances": [{**_records(1)[0], "id": "A-1"}]}, "r-one")
    assert status == 200 and body["decision_ids"] == ["A-1"]
    line = service.lines()[-1]
    assert sorted(names(line)) == [("A-1", 0), ("r-one", 0), ("r-one:0", 0)]


@pytest.mark.parametrize(("value", "named"), [
    (True, "got a boolean"), (None, "got null"), (1.5, "got float"), ("has space", "letters, digits"),
    ("x" * 129, "1 to 128"), ("line\n", "letters, digits"), (2**64, "got float"), ({"a": 1}, "got dict")])
def test_malformed_client_ids_are_refused_with_a_400_naming_the_instance(onnx_bytes, value, named):
    service = Service(onnx_bytes)
    records = _records(2)
    records[1]["id"] = value
    status, body = service.post({"instances": records})
    assert status == 400 and body["error"] == "ValidationError"
    assert "instances[1].id" in body["message"] and named in body["message"]


def test_a_feature_named_id_is_a_feature_not_a_client_id():
    records = [{"id": 3.0, "x": 1.0}]
    assert split_client_ids(records, frozenset({"id", "x"})) == (records, None)
    stripped, ids = split_client_ids([{"id": "a", "x": 1.0}], frozenset({"x"}))
    assert stripped == [{"x": 1.0}] and ids == ["a"]


def test_decision_ids_fill_records_without_a_client_id():
    assert decision_ids("r", 1) == ["r"] and decision_ids("r", 1, [None]) == ["r"]
    assert decision_ids("r", 2, ["a", None]) == ["a", "r:1"]
    assert decision_ids("r", 2) == ["r:0", "r:1"]
    with pytest.raises(ValidationError):
        split_client_ids([{"id": ""}], frozenset({"x"}))
    with pytest.raises(ValidationError, match="64-bit"):  # JSON parsers read larger integers as floats
        split_client_ids([{"id": -2**63 - 1}], frozenset({"x"}))
    assert split_client_ids([{"id": -2**63}], frozenset({"x"}))[1] == [str(-2**63)]


def test_openapi_documents_declare_the_optional_id_and_the_decision_ids():
    from openapi_spec_validator import validate

    family = synthetic.credit_risk_family(name=FAMILY)
    document = family_openapi(family, [0, 1])
    validate(document)
    schemas = document["components"]["schemas"]
    record = next(v for k, v in schemas.items() if k.endswith("Record"))
    assert "id" in record["properties"] and "id" not in record["required"]
    assert "decision_ids" in schemas["PredictResponse"]["required"]

