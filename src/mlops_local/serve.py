"""`mlops local serve`: moto in server mode with the platform inside, and the scoring API on 127.0.0.1.

Requests become real API Gateway proxy events and go to the family's scoring function through its `live`
alias (weights honoured). AWS clients (boto3, the AWS CLI) can use the printed endpoint: uploading a CSV to
s3://<bucket>/datasets/<family>/ runs the real pipeline.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from mlops import synthetic

from .apigw import proxy_event
from .runtime import LocalPlatform

MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit


def serve_family() -> Any:
    return synthetic.credit_risk_family(
        capture_sample_rate=1.0,
        canary={"steps": [10, 50, 100], "bake_seconds": 5, "min_requests": 20, "lock_poll_seconds": 2},
    )


class ScoringFront(BaseHTTPRequestHandler):
    platform: LocalPlatform
    protocol_version = "HTTP/1.1"
    server_version = "mlops-local"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def __getattr__(self, name: str) -> Any:
        # Any other method (PATCH, HEAD, TRACE, QUERY, ...) gets the API's JSON 405, not the stdlib's HTML 501.
        if name.startswith("do_"):
            return lambda: self._dispatch(name[3:])
        raise AttributeError(name)

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        parts = path.strip("/").split("/")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._send(413, {"error": "PayloadTooLarge", "message": f"body over {MAX_BODY} bytes"})
        raw = self.rfile.read(length) if length else b""
        if not (parts[0] == "models" and (len(parts) == 2 or (len(parts) == 3 and parts[2] == "predict"))):
            return self._send(404, {"error": "NotFound",
                                    "message": f"no route {method} {path}; use POST /models/<name>/predict "
                                               "or GET /models/<name>"})
        name = parts[1]
        if name not in self.platform.scoring_functions:
            return self._send(404, {"error": "UnknownFamilyError", "message": f"model family {name!r} is not deployed"})
        expected = "POST" if len(parts) == 3 else "GET"
        if method != expected:
            return self._send(405, {"error": "MethodNotAllowed", "message": f"use {expected} on {path}"},
                              {"Allow": expected})
        try:
            body, is_b64 = raw.decode("utf-8"), False
        except UnicodeDecodeError:
            body, is_b64 = base64.b64encode(raw).decode(), True
        headers = {k: v for k, v in self.headers.items()}
        event = proxy_event(method, path, body if raw else None, headers, is_b64, self.client_address[0])
        response, _ = self.platform.invoke_scoring(name, event)
        self._send(int(response.get("statusCode", 502)), response.get("body", ""), response.get("headers") or {})

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        sent = {k.lower() for k in (headers or {})}
        for key, value in (headers or {}).items():
            if key.lower() not in ("content-length", "connection"):
                self.send_header(key, value)
        if "content-type" not in sent:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def start(port: int = 8080, seed_model: bool = True) -> tuple[LocalPlatform, ThreadingHTTPServer]:
    platform = LocalPlatform([serve_family()], server=True).start()
    if seed_model:
        platform.upload_dataset("credit-risk", "seed.csv", synthetic.credit_risk_csv(5000, 21))
        platform.drain_executions(timeout=120)
        if not platform.registry.get_family("credit-risk").live_version:
            raise RuntimeError("the seed model did not go live; see the registry run record")
    handler = type("BoundScoringFront", (ScoringFront,), {"platform": platform})
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="scoring-front", daemon=True).start()
    return platform, httpd


def main(port: int = 8080, as_json: bool = False) -> int:
    # Everything the platform logs goes to stderr, so stdout carries only the endpoints (first line with --json).
    with contextlib.redirect_stdout(sys.stderr):
        platform, httpd = start(port)
    info = {"api_url": f"http://127.0.0.1:{httpd.server_address[1]}", "aws_endpoint_url": platform.endpoint_url,
            "bucket": platform.bucket, "registry_table": platform.table,
            "state_machine_arn": platform.state_machine_arn, "families": sorted(platform.scoring_functions)}
    if as_json:
        print(json.dumps(info), flush=True)
    else:
        print(f"Scoring API     {info['api_url']}  (POST /models/credit-risk/predict, GET /models/credit-risk)")
        print(f"AWS endpoint    {info['aws_endpoint_url']}  (fake credentials: testing/testing, us-east-1)")
        print(f"Artifact bucket {info['bucket']}  (upload CSVs to s3://{info['bucket']}/datasets/credit-risk/)")
        print("Ctrl-C to stop.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    httpd.shutdown()
    platform.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
