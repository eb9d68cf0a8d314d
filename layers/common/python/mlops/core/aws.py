"""Lazily created, process-wide boto3 clients (never at import time, so moto applies and warm starts reuse them)."""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    """A cached boto3 client; endpoint and region come from the standard AWS_* environment variables."""
    found = _clients.get(service)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(service)
        if found is None:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"mode": "standard", "max_attempts": 4},
                connect_timeout=3,
                read_timeout=30,
                tcp_keepalive=True,
            )
            found = boto3.session.Session().client(service, config=config)
            _clients[service] = found
        return found


def reset_clients() -> None:
    """Forget cached clients (tests switch endpoints and credentials)."""
    with _lock:
        _clients.clear()


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "ServiceUnavailable",
        "InternalServerError",
        "InternalError",
        "TooManyRequestsException",
        "ResourceConflictException",
    }
)


def is_transient(exc: BaseException) -> bool:
    return error_code(exc) in TRANSIENT_CODES
