"""`mlops local serve`: moto in server mode with the platform inside, and the scoring API on 127.0.0.1.

Requests become real API Gateway proxy events and go to the family's scoring function through its `live`
alias (weights honoured). AWS clients (boto3, the AWS CLI, `mlops upload`) can use the printed endpoint:
uploading a CSV to s3://<bucket>/datasets/<family>/ runs the real pipeline. The server records its endpoints in
`.mlops/local-serve.json` in the folder it was started from, where the CLI looks for a running server. Before
starting anything it takes the folder's lock (`.mlops/local-serve.lock`), so a second server in the same folder
is refused even while the first is still starting.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlops.data import synthetic

from .apigw import proxy_event
from .runtime import LocalPlatform

MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
BUILTIN_FAMILY = "credit-risk"
SERVER_FILE = Path(".mlops") / "local-serve.json"
# Held (flock) by the running server for its whole life; the kernel releases it when the process ends, however it
# ends, so a record left by a dead server, or naming a pid the system has since given to another program, never
# blocks a start. The file itself stays: removing it would let two servers lock two different files.
LOCK_FILE = Path(".mlops") / "local-serve.lock"
# A client that stops sending in the middle of a request (a short body, a stalled upload) frees its thread after
# this long, with a 400; an idle keep-alive connection is closed after it.
READ_TIMEOUT_SECONDS = 10.0
# After refusing a request without reading its body, the server reads and discards what the client still sends
# (at most this long and this much) before closing, so that the client sees the answer instead of a reset.
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * MAX_BODY


def serve_family() -> Any:
    """The built-in credit-risk family, seeded with a first model at start (time compressed: 5 s bake windows)."""
    return synthetic.credit_risk_family(
        name=BUILTIN_FAMILY, capture_sample_rate=1.0,
        canary={"steps": [10, 50, 100], "bake_seconds": 5, "min_requests": 20, "lock_poll_seconds": 2},
    )


class ScoringFront(BaseHTTPRequestHandler):
    """API Gateway's part locally: routes, the payload limit, proxy events, the function's answer as the response.

    Requests whose length cannot be trusted (missing or malformed Content-Length, a chunked body, a body over
    the limit, a body shorter than announced) are answered and the connection is closed: what follows on that
    connection cannot be told apart from a next request.
    """

    platform: LocalPlatform
    protocol_version = "HTTP/1.1"
    server_version = "mlops-local"
    timeout: float | None = READ_TIMEOUT_SECONDS  # applied to the socket by StreamRequestHandler.setup

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
        raw = self._read_body()
        if raw is None:
            return
        path = urlsplit(self.path).path.rstrip("/") or "/"
        parts = path.strip("/").split("/")
        if parts[0] == "console":  # the local console's pages (mlops_local/console.py)
            from .console import for_local

            return self._send(*for_local(self.platform).handle(method, self.path))
        if parts[0] == "families" and len(parts) <= 2:  # the management routes (IAM-authorized when deployed)
            return self._manage(method, path, raw)
        if parts[0] == "audit":  # GET /audit/{request_id} (IAM-authorized when deployed)
            return self._audit(method, parts)
        if not (parts[0] == "models" and (len(parts) == 2 or (len(parts) == 3 and parts[2] in ("predict",
                                                                                            "openapi.json")))):
            return self._error(404, "NotFound", f"no route {method} {path}; use POST /models/<name>/predict, "
                                                "GET /models/<name>, GET /models/<name>/openapi.json, "
                                                "GET /families, GET|PUT|DELETE /families/<name>, "
                                                "GET /audit/<request_id> or GET /console")
        name = parts[1]
        # A name without a function of its own goes to the shared tier, which knows every family registered since
        # the start (and answers 404 for the others), as API Gateway's /models/{name} routes do.
        if name not in self.platform.scoring_functions and not getattr(self.platform, "shared_scoring_function", ""):
            return self._error(404, "UnknownFamilyError", f"model family {name!r} is not deployed")
        expected = "POST" if len(parts) == 3 and parts[2] == "predict" else "GET"
        if method != expected:
            return self._error(405, "MethodNotAllowed", f"use {expected} on {path}", {"Allow": expected})
        try:
            body, is_b64 = raw.decode("utf-8"), False
        except UnicodeDecodeError:
            body, is_b64 = base64.b64encode(raw).decode(), True
        headers = {k: v for k, v in self.headers.items()}
        event = proxy_event(method, path, body if raw else None, headers, is_b64, self.client_address[0])
        try:
            response, _ = self.platform.invoke_scoring(name, event)
        except Exception as exc:  # the local runtime itself failed: API Gateway answers 502 in that case
            print(f"scoring front: invoking {name} failed: {exc!r}", file=sys.stderr, flush=True)
            return self._error(502, "BadGateway", f"the local runtime failed: {type(exc).__name__}")
        self._send(int(response.get("statusCode", 502)), response.get("body", ""), response.get("headers") or {})

    def _manage(self, method: str, path: str, raw: bytes) -> None:
        """The management routes: what API Gateway does with a signed request (the caller's identity is the local
        user running the server; the signature is not checked locally), then the management function answers."""
        from urllib.parse import parse_qsl

        from .apigw import management_event
        from .runtime import local_actor

        try:
            body, is_b64 = raw.decode("utf-8"), False
        except UnicodeDecodeError:
            body, is_b64 = base64.b64encode(raw).decode(), True
        query = dict(parse_qsl(urlsplit(self.path).query))
        event = management_event(method, path, query, body if raw else None, dict(self.headers.items()), is_b64,
                                 local_actor(), self.client_address[0])
        try:
            response = self.platform.invoke_management(event)
        except Exception as exc:  # the local runtime itself failed: API Gateway answers 502 in that case
            print(f"management front: {method} {path} failed: {exc!r}", file=sys.stderr, flush=True)
            return self._send(502, {"error": "BadGateway",
                                    "message": f"the local runtime failed: {type(exc).__name__}"})
        self._send(int(response.get("statusCode", 502)), response.get("body", ""), response.get("headers") or {})

    def _audit(self, method: str, parts: list[str]) -> None:
        """GET /audit/{request_id}[?family=&at=]: the audit function answers, as deployed (same bodies, same
        errors: 404 for an unknown id, 400 for a malformed one)."""
        from urllib.parse import parse_qsl, unquote

        from .apigw import audit_event
        from .runtime import local_actor

        if len(parts) != 2 or not parts[1]:
            return self._error(404, "NotFound", "no route: use GET /audit/<request_id>[?family=NAME&at=TIME]")
        if method != "GET":
            return self._error(405, "MethodNotAllowed", f"use GET on /audit/{parts[1]}", {"Allow": "GET"})
        query = dict(parse_qsl(urlsplit(self.path).query))
        event = audit_event(unquote(parts[1]), query, dict(self.headers.items()), local_actor(),
                            self.client_address[0])
        try:
            response = self.platform.invoke_audit(event)
        except Exception as exc:  # the local runtime itself failed: API Gateway answers 502 in that case
            print(f"audit front: GET /audit/{parts[1]} failed: {exc!r}", file=sys.stderr, flush=True)
            return self._error(502, "BadGateway", f"the local runtime failed: {type(exc).__name__}")
        self._send(int(response.get("statusCode", 502)), response.get("body", ""), response.get("headers") or {})

    def _read_body(self) -> bytes | None:
        """The request body, or None when the request was refused (answered, connection closing)."""
        if self.headers.get("Transfer-Encoding") is not None:
            return self._refuse(411, "LengthRequired", "chunked request bodies are not supported; send Content-Length")
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return b""
        text = values[0].strip()
        if len(set(values)) > 1 or not (text.isascii() and text.isdigit()):
            shown = ", ".join(v[:40] for v in values[:3])
            return self._refuse(400, "BadRequest", f"Content-Length must be one non-negative integer, got {shown!r}")
        length = int(text)
        if length > MAX_BODY:
            return self._refuse(413, "PayloadTooLarge", f"body of {length} bytes is over the {MAX_BODY} byte limit")
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            return self._refuse(400, "BadRequest", f"the body stopped before its Content-Length of {length} bytes "
                                                   f"(nothing received for {self.timeout:g} s)", linger=False)
        if len(raw) < length:
            return self._refuse(400, "BadRequest", f"the body ended after {len(raw)} of its Content-Length of "
                                                   f"{length} bytes", linger=False)
        return raw

    def _refuse(self, status: int, error: str, message: str, linger: bool = True) -> None:
        self.close_connection = True
        self._error(status, error, message, {"Connection": "close"})
        if linger:
            self._discard_unread()
        return None

    def _error(self, status: int, error: str, message: str, headers: dict[str, str] | None = None) -> None:
        """An answer of the front itself, shaped like the scoring function's errors: {error, message,
        request_id} with the same id in X-Request-Id, so every answer can be quoted in a bug report."""
        request_id = str(uuid.uuid4())
        self._send(status, {"error": error, "message": message, "request_id": request_id},
                   {**(headers or {}), "X-Request-Id": request_id})

    def _discard_unread(self) -> None:
        """Lingering close: stop sending, then read what the client still sends, so closing does not reset the
        connection before the client has read the answer."""
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            received = 0
            while received < LINGER_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.connection.settimeout(min(remaining, 0.5))
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                received += len(chunk)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        sent = {k.lower() for k in (headers or {})}
        for key, value in (headers or {}).items():
            if key.lower() not in ("content-length", "connection"):
                self.send_header(key, value)
        if "content-type" not in sent:
            self.send_header("Content-Type", "application/json")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class ScoringServer(ThreadingHTTPServer):
    """The front's listening socket: one thread per connection, a listen backlog for bursts of clients (the
    stdlib's 5 reset connections under 16 concurrent clients)."""

    request_queue_size = 128
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away before its answer was written (BrokenPipeError, ConnectionResetError) is
        routine: it gave up waiting or was stopped. Only other errors are printed, with their traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def bind_front(platform: LocalPlatform, port: int = 0, read_timeout: float = READ_TIMEOUT_SECONDS) -> ScoringServer:
    """The scoring front for `platform` bound to 127.0.0.1:`port` (0 = any free port), not yet serving.
    `read_timeout` (seconds): how long a connection may send nothing before it is answered and closed."""
    handler = type("BoundScoringFront", (ScoringFront,), {"platform": platform, "timeout": read_timeout})
    return ScoringServer(("127.0.0.1", port), handler)


class StartError(RuntimeError):
    """The platform started but is not usable (the seed model did not go live)."""


def start(port: int = 8080, seed_model: bool = True, families: Sequence[Any] = ()) -> tuple[LocalPlatform,
                                                                                            ScoringServer]:
    """The platform with the built-in family (seeded with a live model) and `families` (no model until data is
    uploaded for them), and the scoring front serving in a background thread. Raises OSError when the port is
    taken (nothing started), StartError (everything stopped again) when the seed model does not go live."""
    platform = LocalPlatform([serve_family(), *families], server=True)
    httpd = bind_front(platform, port)
    try:
        platform.start()
        if seed_model:
            platform.upload_dataset(BUILTIN_FAMILY, "seed.csv", synthetic.credit_risk_csv(5000, 21))
            platform.drain_executions(timeout=120)
            if not platform.registry.get_family(BUILTIN_FAMILY).live_version:
                from .demo import run_record

                run = run_record(platform, BUILTIN_FAMILY) or {}
                platform.stop()
                raise StartError(f"the seed model of {BUILTIN_FAMILY} did not go live: {run.get('outcome', 'no run')}"
                                 f"{' at ' + str(run['step']) if run.get('step') else ''}"
                                 f"{': ' + str(run['reason']) if run.get('reason') else ''}")
    except BaseException:
        httpd.server_close()
        raise
    threading.Thread(target=httpd.serve_forever, name="scoring-front", daemon=True).start()
    return platform, httpd


def check_families(families: Sequence[Any]) -> None:
    """Raise ValueError when two families share a name or one takes the built-in family's name."""
    seen: set[str] = set()
    for family in families:
        if family.name == BUILTIN_FAMILY:
            raise ValueError(f"family name {BUILTIN_FAMILY!r} is taken by the built-in family; rename yours")
        if family.name in seen:
            raise ValueError(f"family {family.name!r} is declared twice")
        seen.add(family.name)


class FolderTaken(Exception):
    """Another process holds the folder's server lock; `pid` is the one it recorded (None while it starts)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid


def claim_folder(folder: Path) -> int:
    """Take `folder`'s server lock (an exclusive, non-blocking flock on `LOCK_FILE`, created if needed) and write
    this process's pid in it. Returns the open descriptor: the lock lasts as long as it stays open (the
    server's life). Raises FolderTaken naming the holder's pid when another process holds the lock."""
    path = folder / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        recorded = os.read(descriptor, 32).decode("ascii", "replace").strip()
        os.close(descriptor)
        raise FolderTaken(int(recorded) if recorded.isdigit() else None) from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    return descriptor


def _write_server_file(path: Path, info: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(partial, path)


def _remove_server_file(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if int(json.loads(path.read_text())["pid"]) == os.getpid():
            path.unlink()


class _Stop(BaseException):
    """Raised in the main thread by SIGINT (Ctrl-C), SIGTERM or SIGHUP."""


def _raise_stop(*_: Any) -> None:
    raise _Stop


def _stop_running_executions(platform: LocalPlatform) -> None:
    """Stop pipeline executions still running (a canary may bake for minutes): a stopped server keeps nothing."""
    from mlops.core import aws

    with contextlib.suppress(Exception):
        for execution in platform.executions():
            if execution["status"] == "RUNNING":
                aws.client("stepfunctions").stop_execution(executionArn=execution["executionArn"],
                                                           cause="mlops local serve stopped")


# moto keeps everything in this process's memory and has no persistence of its own (docs/operating.md).
STATE_NOTE = ("State is in memory only: stopping this server loses the registry, models, runs, data sets and "
              "decision records. Keep your data files and family files; after a restart, `mlops local serve "
              "--family FILE` and `mlops upload DATA --family NAME` bring a family back (as new versions).")


def help_lines(info: dict[str, Any], live: dict[str, int]) -> list[str]:
    """What the server prints for people: the endpoints and every served family with its routes."""
    width = max(len(name) for name in info["families"])
    lines = [f"Scoring API     {info['api_url']}", f"Console         {info['api_url']}/console"]
    for name in info["families"]:
        state = f"live v{live[name]}" if live.get(name) else \
            f"no model yet: mlops upload DATA.csv --family {name}"
        lines.append(f"  {name:<{width}}  POST /models/{name}/predict, GET /models/{name}  ({state})")
    lines += [f"AWS endpoint    {info['aws_endpoint_url']}  (fake credentials: testing/testing, us-east-1)",
              f"Artifact bucket {info['bucket']}  (data sets go to s3://{info['bucket']}/datasets/<family>/)",
              f"Audit           GET {info['api_url']}/audit/<request_id>  (or: mlops audit REQUEST_ID)",
              f"Server file     {SERVER_FILE}  (mlops runs and mlops upload find this server through it)",
              STATE_NOTE, "Ctrl-C to stop."]
    return lines


def main(port: int = 8080, as_json: bool = False, families: Sequence[Any] = (), folder: Path | None = None) -> int:
    """Run until Ctrl-C, SIGTERM or SIGHUP. `families` are validated ModelFamily objects served beside the
    built-in one. Returns the exit code: 0; 1 when it could not start (port taken, seed model not live); 2 when
    another server runs (or is starting) from the same folder: the folder's lock is taken before anything
    starts (`claim_folder`)."""
    folder = Path.cwd() if folder is None else folder
    server_file = folder / SERVER_FILE
    try:
        lock = claim_folder(folder)
    except FolderTaken as taken:
        holder = f"mlops local serve (pid {taken.pid})" if taken.pid else "another mlops local serve"
        print(f"Error: {holder} is already running from this folder ({folder / LOCK_FILE} is locked); stop it "
              "first or start from another folder.", file=sys.stderr)
        return 2
    # Whatever record is there belongs to a server that is gone: the CLI must not find its endpoints meanwhile.
    server_file.unlink(missing_ok=True)
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and `kill -INT` must still stop the server.
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for number in stop_signals:
        signal.signal(number, _raise_stop)
    platform: LocalPlatform | None = None
    httpd: ScoringServer | None = None
    try:
        # Everything the platform logs goes to stderr, so stdout carries only the endpoints (first line with --json).
        with contextlib.redirect_stdout(sys.stderr):
            try:
                platform, httpd = start(port, families=families)
            except (StartError, OSError) as exc:
                print(f"Error: mlops local serve could not start: {exc}", file=sys.stderr)
                return 1
        info = {"api_url": f"http://127.0.0.1:{httpd.server_address[1]}", "aws_endpoint_url": platform.endpoint_url,
                "bucket": platform.bucket, "registry_table": platform.table,
                "state_machine_arn": platform.state_machine_arn, "pid": os.getpid(),
                "drift_function": platform.function_names["drift"],
                "drift_fanout": getattr(platform, "drift_fanout_state_machine_arn", ""),
                "families": [BUILTIN_FAMILY, *sorted(f.name for f in families)],
                "console_url": f"http://127.0.0.1:{httpd.server_address[1]}/console"}
        _write_server_file(server_file, info)
        if as_json:
            # The note first: a caller that stops the server as soon as it reads the endpoints has had it.
            print(STATE_NOTE, file=sys.stderr, flush=True)
            print(json.dumps(info), flush=True)
        else:
            live = {name: platform.registry.get_family(name).live_version for name in info["families"]}
            print("\n".join(help_lines(info, live)), flush=True)
        while True:
            time.sleep(3600)
    except _Stop:
        pass
    finally:
        for number in stop_signals:
            signal.signal(number, signal.SIG_IGN)
        _remove_server_file(server_file)
        if httpd is not None:
            httpd.shutdown()
        if platform is not None:
            _stop_running_executions(platform)
            platform.stop()
        os.close(lock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
