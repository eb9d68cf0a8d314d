"""The family management routes on moto through functions/families/handler.py, with API Gateway's events (IAM
identity): register, update, list, show with history, retire, and every bad request answered with a 4xx naming the
problem (never a 500)."""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mlops.core.settings import Env
from mlops.data.synthetic import credit_risk_family
from mlops.rollout.control import LOCK_TTL_SECONDS

from .conftest import BUCKET, TABLE

ROOT = Path(__file__).resolve().parents[2]
PUT_EVENT = json.loads((ROOT / "tests" / "events" / "apigw_family_put.json").read_text())
ALICE = PUT_EVENT["requestContext"]["identity"]["userArn"]
BOB = "arn:aws:iam::123456789012:user/bob"


@pytest.fixture()
def call(platform, monkeypatch):
    monkeypatch.setenv(Env.ARTIFACT_BUCKET, BUCKET)
    monkeypatch.setenv(Env.REGISTRY_TABLE, TABLE)
    spec = importlib.util.spec_from_file_location("families_handler", ROOT / "functions" / "families" / "handler.py")
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)

    def invoke(method: str, name: str | None = None, body: Any = None, query: dict | None = None,
               principal: str = ALICE, raw: str | None = None) -> tuple[int, dict]:
        event = copy.deepcopy(PUT_EVENT)
        event["httpMethod"] = event["requestContext"]["httpMethod"] = method
        event["resource"] = event["requestContext"]["resourcePath"] = "/families/{name}" if name else "/families"
        event["path"] = f"/families/{name}" if name else "/families"
        event["pathParameters"] = {"name": name} if name else None
        event["queryStringParameters"] = query
        event["requestContext"]["identity"]["userArn"] = principal
        event["body"] = raw if raw is not None else (None if body is None else json.dumps(body))
        response = handler.lambda_handler(event, SimpleNamespace(aws_request_id="lambda-request"))
        assert response["headers"]["Content-Type"] == "application/json"
        return response["statusCode"], json.loads(response["body"])

    return invoke


def _declaration(name: str = "loans", **changes: Any) -> dict:
    return credit_risk_family(name=name, **changes).model_dump(mode="json")


def test_the_recorded_put_event_registers_the_family_as_its_caller(call, platform):
    status, body = call("PUT", "loans", raw=PUT_EVENT["body"])
    assert status == 201 and body["change"] == "created"
    assert body["family"]["config_version"] == 1 and body["family"]["status"] == "active"
    record = platform.registry.get_family("loans")
    assert record.changed_by == ALICE and record.change_reason == "first declaration of the loans family"
    assert [f.name for f in record.family.features] == ["age", "income"]


def test_update_show_and_history_name_who_changed_what_and_why(call):
    assert call("PUT", "loans", {"family": _declaration(), "reason": "first"})[0] == 201
    status, body = call("PUT", "loans", {"family": _declaration(threshold=0.4), "reason": "fewer misses"},
                        principal=BOB)
    assert status == 200 and body["change"] == "updated" and body["declaration"]["threshold"] == 0.4
    status, body = call("PUT", "loans", {"family": _declaration(threshold=0.4), "reason": "again"})
    assert status == 200 and body["change"] == "unchanged" and body["family"]["config_version"] == 2
    status, shown = call("GET", "loans", query={"history": "5"})
    assert status == 200 and shown["declaration"]["threshold"] == 0.4
    assert [(c["config_version"], c["change"], c["actor"], c["reason"]) for c in shown["history"]] == [
        (2, "updated", BOB, "fewer misses"), (1, "created", ALICE, "first")]


def test_list_merges_shards_in_name_order_with_pages_and_a_status_filter(call):
    for name in ("zeta", "alpha", "mid-one", "beta"):
        call("PUT", name, {"family": _declaration(name), "reason": "bulk"})
    call("DELETE", "beta", {"reason": "unused"})
    status, page = call("GET", query={"limit": "2"})
    assert status == 200 and [f["name"] for f in page["families"]] == ["alpha", "beta"]
    status, rest = call("GET", query={"limit": "10", "next_token": page["next_token"]})
    assert [f["name"] for f in rest["families"]] == ["credit-risk", "mid-one", "zeta"] and rest["next_token"] is None
    status, retired = call("GET", query={"status": "retired"})
    assert [f["name"] for f in retired["families"]] == ["beta"] and retired["families"][0]["status"] == "retired"


def test_retire_records_the_reason_and_refuses_while_a_rollout_runs(call, platform):
    assert platform.registry.acquire_rollout("credit-risk", "exec-1", LOCK_TTL_SECONDS)
    status, body = call("DELETE", "credit-risk", {"reason": "replaced by loans"})
    assert status == 409 and body["error"] == "RolloutInProgressError" and "exec-1" in body["message"]
    platform.registry.release_rollout("credit-risk", "exec-1")
    status, body = call("DELETE", "credit-risk", {"reason": "replaced by loans"}, principal=BOB)
    assert status == 200 and body["change"] == "retired" and body["family"]["status"] == "retired"
    assert platform.registry.get_family("credit-risk").changed_by == BOB


@pytest.mark.parametrize(("method", "name", "body", "raw", "query", "status", "error", "message"), [
    ("PUT", "loans", None, "{not json", None, 400, "ValidationError", "not JSON"),
    ("PUT", "loans", [1, 2], None, None, 400, "ValidationError", "JSON object"),
    ("PUT", "loans", {"family": _declaration()}, None, None, 400, "ValidationError", "`reason` is required"),
    ("PUT", "loans", {"reason": "x"}, None, None, 400, "ValidationError", "needs `family`"),
    ("PUT", "loans", {"family": _declaration("other"), "reason": "x"}, None, None, 400, "ValidationError",
     "declaration is named 'other'"),
    ("PUT", "loans", {"family": {**_declaration(), "threshold": 2}, "reason": "x"}, None, None, 400,
     "ValidationError", "threshold: Input should be less than 1"),
    ("PUT", "loans", {"family": {**_declaration(), "features": [{"name": "age", "kind": "text"}]}, "reason": "x"},
     None, None, 400, "ValidationError", "features[0].kind"),
    ("PUT", "Bad_Name", {"family": _declaration(), "reason": "x"}, None, None, 400, "ValidationError", "must match"),
    ("PUT", "loans", {"family": _declaration(), "reason": "x", "expected_config_version": "1"}, None, None, 400,
     "ValidationError", "non-negative integer"),
    ("PUT", "credit-risk", {"family": _declaration("credit-risk"), "reason": "x", "expected_config_version": 0},
     None, None, 409, "ConcurrencyConflictError", "config version 1, not 0"),
    ("PUT", "loans", None, "x" * (300 * 1024), None, 413, "PayloadTooLarge", "at most 262144"),
    ("PUT", "loans", {"family": _declaration(), "reason": "ok\u001b[2J\r\nStatus: retired"}, None, None, 400,
     "ValidationError", "control characters (U+000A, U+000D, U+001B)"),
    ("PUT", "loans", {"family": _declaration(), "reason": "r" * 2001}, None, None, 400, "ValidationError",
     "the reason is 2001 characters; at most 2000"),
    ("GET", "nope", None, None, None, 404, "UnknownFamilyError", "'nope' is not registered"),
    ("DELETE", "nope", {"reason": "x"}, None, None, 404, "UnknownFamilyError", "not registered"),
    ("DELETE", "credit-risk", {}, None, None, 400, "ValidationError", "`reason` is required"),
    ("GET", None, None, None, {"limit": "0"}, 400, "ValidationError", "'limit' must be an integer from 1"),
    ("GET", None, None, None, {"next_token": "garbage"}, 400, "ValidationError", "next_token"),
    ("GET", None, None, None, {"status": "deleted"}, 400, "ValidationError", "status must be one of"),
    ("POST", None, {}, None, None, 405, "MethodNotAllowed", "use GET on /families"),
    ("PATCH", "loans", {}, None, None, 405, "MethodNotAllowed", "GET, PUT, DELETE"),
])
def test_bad_requests_get_a_4xx_naming_the_problem(call, method, name, body, raw, query, status, error, message):
    got_status, got = call(method, name, body, query=query, raw=raw)
    assert (got_status, got["error"]) == (status, error), got
    assert message in got["message"] and got["request_id"] == PUT_EVENT["requestContext"]["requestId"]


def test_a_base64_body_is_decoded(platform):
    from mlops.registry.store import ModelRegistry
    from mlops.rollout.families import FamilyManager, handle_request

    event_body = base64.b64encode(json.dumps({"family": _declaration(), "reason": "b64"}).encode()).decode()
    event = copy.deepcopy(PUT_EVENT)
    event.update({"body": event_body, "isBase64Encoded": True})
    response = handle_request(FamilyManager(ModelRegistry(TABLE)), event, "r")
    assert response["statusCode"] == 201
    assert platform.registry.get_family("loans").change_reason == "b64"


@pytest.mark.parametrize(("header", "value", "message"), [
    ("Content-Encoding", "gzip", "Content-Encoding 'gzip' is not supported"),
    ("Content-Type", "application/json; charset=utf-16", "charset 'utf-16' is not supported"),
    ("Content-Type", "text/plain", "must be application/json"),
])
def test_management_bodies_get_the_scoring_routes_415s(platform, header, value, message):
    from mlops.registry.store import ModelRegistry
    from mlops.rollout.families import FamilyManager, handle_request

    event = copy.deepcopy(PUT_EVENT)
    event["body"] = json.dumps({"family": _declaration(), "reason": "x"})
    event["headers"] = {**(event.get("headers") or {}), header: value}
    response = handle_request(FamilyManager(ModelRegistry(TABLE)), event, "r")
    assert response["statusCode"] == 415 and message in json.loads(response["body"])["message"]
