"""The local scoring front (`mlops local serve`'s HTTP side) on raw sockets: requests whose length cannot be
trusted are answered and their connection closed, a stalled body frees its thread, bursts of clients connect."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mlops_local import serve

# These tests start their own processes (or none) and share no embedded AWS with the workflow group: a group of
# their own lets the second test worker run them beside it.
pytestmark = pytest.mark.xdist_group("own-processes")


class EchoPlatform:
    """Stands in for LocalPlatform: one family whose function answers with what it received."""

    scoring_functions = {"fam": "mlops-local-score-fam"}

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def invoke_scoring(self, family: str, event: dict[str, Any]) -> tuple[dict[str, Any], str]:
        self.events.append(event)
        body = {"family": family, "path": event["path"], "body_length": len(event["body"] or "")}
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}, "1"


@pytest.fixture()
def front(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[serve.ScoringServer, EchoPlatform]]:
    monkeypatch.setattr(serve, "LINGER_SECONDS", 0.5)
    platform = EchoPlatform()
    # A short read timeout keeps the stalled-body tests quick; the behaviour is the same at the default.
    httpd = serve.bind_front(platform, read_timeout=0.5)  # type: ignore[arg-type]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd, platform
    httpd.shutdown()
    httpd.server_close()


def exchange(httpd: serve.ScoringServer, data: bytes, half_close: bool = False, wait: float = 5.0) -> bytes:
    """Send raw bytes, then read everything the server sends until it closes the connection."""
    with socket.create_connection(httpd.server_address[:2], timeout=wait) as client:
        client.sendall(data)
        if half_close:
            client.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    return received


def responses(raw: bytes) -> list[tuple[int, dict[str, str], dict[str, Any]]]:
    """Parse the HTTP/1.1 responses in `raw`, in order."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        found.append((int(lines[0].split()[1]), headers, json.loads(rest[:length])))
        raw = rest[length:]
    return found


def request(path: str, body: bytes = b"", headers: str = "", method: str = "POST") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode() + body


def test_front_answers_a_well_formed_request_and_keeps_the_connection(front):
    httpd, platform = front
    body = b'{"instances": []}'
    two = request("/models/fam/predict", body, f"Content-Length: {len(body)}\r\n") + \
        request("/models/fam", method="GET", headers="Connection: close\r\n")
    answers = responses(exchange(httpd, two))
    assert [a[0] for a in answers] == [200, 200]
    assert answers[0][2] == {"family": "fam", "path": "/models/fam/predict", "body_length": len(body)}
    assert len(platform.events) == 2


def test_front_closes_after_413_so_the_unread_body_is_not_parsed_as_a_second_request(front):
    httpd, platform = front
    smuggled = request("/models/fam", method="GET")
    raw = exchange(httpd, request("/models/fam/predict", smuggled,
                                  f"Content-Length: {serve.MAX_BODY + 1}\r\n"), half_close=True)
    answers = responses(raw)
    assert len(answers) == 1, raw
    status, headers, body = answers[0]
    assert status == 413 and headers["connection"] == "close" and body["error"] == "PayloadTooLarge"
    assert platform.events == []


def test_front_413_is_readable_by_a_client_that_sends_the_whole_large_body_first(front):
    httpd, _ = front
    oversized = serve.MAX_BODY + 1024
    raw = exchange(httpd, request("/models/fam/predict", b"x" * oversized, f"Content-Length: {oversized}\r\n"))
    assert [a[0] for a in responses(raw)] == [413]


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "0x10", "+2", " ", "12, 12"])
def test_front_answers_400_and_closes_on_an_unusable_content_length(front, length):
    httpd, platform = front
    raw = exchange(httpd, request("/models/fam/predict", b"{}", f"Content-Length: {length}\r\n"))
    answers = responses(raw)
    assert len(answers) == 1 and answers[0][0] == 400, raw
    assert answers[0][1]["connection"] == "close" and "Content-Length" in answers[0][2]["message"]
    assert platform.events == []


def test_front_answers_400_on_two_different_content_lengths(front):
    httpd, platform = front
    raw = exchange(httpd, request("/models/fam/predict", b"{}", "Content-Length: 2\r\nContent-Length: 40\r\n"))
    assert [a[0] for a in responses(raw)] == [400] and platform.events == []


def test_front_refuses_a_chunked_body_with_411(front):
    httpd, platform = front
    raw = exchange(httpd, request("/models/fam/predict", b"2\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked\r\n"))
    answers = responses(raw)
    assert [a[0] for a in answers] == [411] and answers[0][1]["connection"] == "close"
    assert platform.events == []


def test_front_answers_400_when_the_body_stops_short_and_the_client_waits(front):
    """The client announces 100 bytes, sends 10 and keeps the connection open: the thread must not hang."""
    httpd, platform = front
    raw = exchange(httpd, request("/models/fam/predict", b'{"instance', "Content-Length: 100\r\n"))
    answers = responses(raw)
    assert len(answers) == 1 and answers[0][0] == 400 and answers[0][1]["connection"] == "close"
    assert "Content-Length of 100" in answers[0][2]["message"]
    assert platform.events == []


def test_front_answers_400_when_the_client_closes_before_the_whole_body(front):
    httpd, platform = front
    raw = exchange(httpd, request("/models/fam/predict", b'{"instance', "Content-Length: 100\r\n"), half_close=True)
    answers = responses(raw)
    assert [a[0] for a in answers] == [400] and "after 10 of" in answers[0][2]["message"]
    assert platform.events == []


def test_front_closes_an_idle_keep_alive_connection(front):
    httpd, _ = front
    # Nothing sent at all: the server closes the connection after its read timeout instead of holding a thread.
    assert exchange(httpd, b"") == b""


def test_front_answers_502_when_the_local_runtime_itself_fails(front):
    httpd, platform = front

    def broken(family: str, event: dict[str, Any]) -> None:
        raise KeyError("moto lost the function")

    platform.invoke_scoring = broken  # type: ignore[method-assign]
    answers = responses(exchange(httpd, request("/models/fam", method="GET", headers="Connection: close\r\n")))
    assert [a[0] for a in answers] == [502] and answers[0][2]["error"] == "BadGateway"
    assert "KeyError" in answers[0][2]["message"]


def test_front_accepts_a_burst_of_clients_before_its_accept_loop_catches_up():
    """16 clients connect while the server is not accepting (a busy accept loop): the listen backlog holds them
    all (the stdlib's default of 5 left the 7th and later without an answer to their SYN, then reset)."""
    httpd = serve.bind_front(EchoPlatform())  # type: ignore[arg-type]
    clients = []
    try:
        for _ in range(16):
            client = socket.socket()
            client.settimeout(2.0)
            client.connect(httpd.server_address[:2])
            clients.append(client)
    finally:
        for client in clients:
            client.close()
        httpd.server_close()
    assert len(clients) == 16
