"""The local scoring front's own answers (no route, unknown family, wrong method, refused bodies) carry a
request id like the scoring function's errors (fresh-user pass on issue 10)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from mlops_local import serve

from .test_serve_front import EchoPlatform, exchange, request, responses

pytestmark = pytest.mark.xdist_group("own-processes")


@pytest.fixture()
def front(monkeypatch: pytest.MonkeyPatch) -> Iterator[serve.ScoringServer]:
    monkeypatch.setattr(serve, "LINGER_SECONDS", 0.5)
    httpd = serve.bind_front(EchoPlatform(), read_timeout=0.5)  # type: ignore[arg-type]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(("raw", "status", "error"), [
    (request("/v1/families/fam/predict", headers="Content-Length: 0\r\nConnection: close\r\n"), 404, "NotFound"),
    (request("/models/nope/predict", headers="Content-Length: 0\r\nConnection: close\r\n"), 404,
     "UnknownFamilyError"),
    (request("/models/fam/predict", method="GET", headers="Connection: close\r\n"), 405, "MethodNotAllowed"),
    (request("/models/fam/predict", headers="Transfer-Encoding: chunked\r\n"), 411, "LengthRequired"),
])
def test_the_fronts_own_errors_carry_a_request_id_in_the_body_and_the_header(front, raw, status, error):
    ((answered, headers, body),) = responses(exchange(front, raw))
    assert (answered, body["error"]) == (status, error) and body["message"]
    assert len(body["request_id"]) == 36 and headers["x-request-id"] == body["request_id"]
