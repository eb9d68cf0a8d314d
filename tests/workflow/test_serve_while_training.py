"""`mlops local serve` keeps scoring while the pipeline trains in-process, and a client that gives up is routine."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import urllib.request
from typing import Any

import pytest
from mlops.data import synthetic

from mlops_local import serve

from .conftest import live_model

RECORD = {"age": 35, "income": 52000, "debt_ratio": 0.31, "credit_history_years": 9.5, "late_payments": 1,
          "employment_years": 4.0, "open_credit_lines": 5, "region": "south"}
# Only a safety bound so a regression fails instead of hanging: the assertions are on the order of events.
NEVER = 120.0


def test_scoring_answers_while_the_train_step_is_still_running(platform, new_family, monkeypatch):
    # Given a family with a live model and a second upload whose Train step is held until the test releases it
    family = new_family()
    live_model(platform, family)
    import mlops.training.steps as steps

    original = steps.train_step
    events: list[str] = []
    training, release = threading.Event(), threading.Event()

    def held_train_step(ctx: Any, event: dict[str, Any]) -> dict[str, Any]:
        events.append("train started")
        training.set()
        release.wait(NEVER)
        events.append("train released")
        return original(ctx, event)

    monkeypatch.setattr(steps, "train_step", held_train_step)
    httpd = serve.bind_front(platform)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    before = {e["executionArn"] for e in platform.executions()}
    try:
        platform.upload_dataset(family.name, "second.csv", synthetic.credit_risk_csv(1500, 77))
        assert training.wait(NEVER), "the upload did not reach the Train step"
        answered: list[int] = []

        def score() -> None:
            request = urllib.request.Request(f"http://127.0.0.1:{httpd.server_address[1]}/models/{family.name}"
                                             "/predict", data=json.dumps({"instances": [RECORD]}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=NEVER) as response:
                answered.append(response.status)
            events.append("scored")

        # When a client scores while the train handler is still inside its step
        client = threading.Thread(target=score, daemon=True)
        client.start()
        client.join(NEVER)
        # Then the answer came before the training run was let go (it never is until the test says so)
        assert answered == [200] and events == ["train started", "scored"], events
    finally:
        release.set()
        started = [e for e in platform.executions() if e["executionArn"] not in before]
        for execution in started:
            platform.wait_for(execution["executionArn"], NEVER)
        httpd.shutdown()
        httpd.server_close()
    assert events == ["train started", "scored", "train released"]


class HeldPlatform:
    """Answers a large body once the test says the client is gone."""

    scoring_functions = {"fam": "mlops-local-score-fam"}
    shared_scoring_function = ""

    def __init__(self) -> None:
        self.called, self.release = threading.Event(), threading.Event()

    def invoke_scoring(self, family: str, event: dict[str, Any]) -> tuple[dict[str, Any], str]:
        self.called.set()
        self.release.wait(NEVER)
        return {"statusCode": 200, "headers": {}, "body": json.dumps({"pad": "x" * 4_000_000})}, "1"


def _request_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "process_request_thread" in t.name]


def test_a_client_that_disconnects_before_its_answer_prints_no_traceback(capsys):
    platform = HeldPlatform()
    httpd = serve.bind_front(platform)  # type: ignore[arg-type]
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        body = b'{"instances": []}'
        client = socket.create_connection(httpd.server_address[:2], timeout=NEVER)
        client.sendall(b"POST /models/fam/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert platform.called.wait(NEVER)
        # The client gives up: closed with a reset, as a killed process or a client timeout does
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        platform.release.set()
        deadline = time.monotonic() + NEVER
        while _request_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _request_threads(), "the request thread did not end"
    finally:
        platform.release.set()
        httpd.shutdown()
        httpd.server_close()
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err


def test_other_errors_of_a_request_are_still_printed(capsys):
    httpd = serve.bind_front(HeldPlatform())  # type: ignore[arg-type]
    try:
        try:
            raise ValueError("a real defect")
        except ValueError:
            httpd.handle_error(None, ("127.0.0.1", 1))
    finally:
        httpd.server_close()
    assert "ValueError: a real defect" in capsys.readouterr().err


@pytest.mark.parametrize("error", [BrokenPipeError, ConnectionResetError, ConnectionAbortedError])
def test_connection_errors_of_a_request_are_not_printed(capsys, error):
    httpd = serve.bind_front(HeldPlatform())  # type: ignore[arg-type]
    try:
        try:
            raise error("client gone")
        except error:
            httpd.handle_error(None, ("127.0.0.1", 1))
    finally:
        httpd.server_close()
    assert capsys.readouterr().err == ""
