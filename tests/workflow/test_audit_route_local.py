"""`mlops local serve` answers GET /audit/{request_id} as the deployed API does: the audit function's body for a
scored request, 404 for an unknown id, 400 for a malformed one or a bad `at`, 405 for another method."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from mlops.data import synthetic
from mlops.serving.audit import Auditor

from mlops_local import serve

from .conftest import live_model


@pytest.fixture()
def front(platform) -> Iterator[str]:
    httpd = serve.bind_front(platform)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _call(url: str, body: dict | None = None, method: str | None = None) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_audit_route_answers_the_audit_of_a_scored_request_like_the_library(platform, new_family, front):
    family = new_family()
    live_model(platform, family)
    records = synthetic.to_instances(synthetic.credit_risk_columns(2, 9), family)
    status, _, scored = _call(f"{front}/models/{family.name}/predict", {"instances": records, "explain": True,
                                                                        "top": 2})
    assert status == 200, scored
    platform.flush_captures()

    status, headers, body = _call(f"{front}/audit/{scored['request_id']}?family={family.name}")

    assert status == 200, body
    assert headers["Content-Type"] == "application/json" and headers["X-Request-Id"]
    expected = Auditor(platform.bucket, platform.registry).audit(scored["request_id"], family.name)
    assert body["request_id"] == scored["request_id"] and body["decision"]["version"] == scored["version"]
    assert body == json.loads(json.dumps(expected, default=str))


def test_audit_route_errors_are_the_deployed_ones(platform, front):
    status, _, body = _call(f"{front}/audit/0b5e3f8e-0000-4000-8000-000000000000")
    assert status == 404 and body["error"] == "DecisionNotFoundError" and "0b5e3f8e" in body["message"]
    status, _, body = _call(f"{front}/audit/not%20an%20id")
    assert status == 400 and "is not a request id" in body["message"]
    status, _, body = _call(f"{front}/audit/0b5e3f8e-0000-4000-8000-000000000000?at=last%20tuesday")
    assert status == 400 and "ISO 8601" in body["message"]
    status, headers, body = _call(f"{front}/audit/0b5e3f8e-0000-4000-8000-000000000000", {}, "POST")
    assert status == 405 and headers["Allow"] == "GET"
    status, _, body = _call(f"{front}/audit")
    assert status == 404 and "/audit/<request_id>" in body["message"]
