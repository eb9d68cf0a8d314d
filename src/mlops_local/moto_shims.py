"""Small, tested patches for gaps in moto that the platform's local runs depend on.

- DynamoDB: moto evaluates a condition and applies the write in separate steps without a lock, so two threads
  can both pass `latest_version = :prev`. Real DynamoDB applies each write and transaction atomically; one
  lock around moto's write and read paths restores that guarantee locally.
"""

from __future__ import annotations

import functools
import threading

_DYNAMODB_LOCK = threading.RLock()
_DYNAMODB_METHODS = (
    "put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item", "get_item", "query",
    "scan", "transact_get_items", "batch_get_item", "execute_statement", "execute_transaction",
)
_patched: set[str] = set()


def _serialised(method):  # type: ignore[no-untyped-def]
    @functools.wraps(method)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        with _DYNAMODB_LOCK:
            return method(*args, **kwargs)

    wrapper.__mlops_serialised__ = True  # type: ignore[attr-defined]
    return wrapper


def make_dynamodb_atomic() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name in _DYNAMODB_METHODS:
        method = getattr(DynamoDBBackend, name, None)
        if method is None or getattr(method, "__mlops_serialised__", False):
            continue
        setattr(DynamoDBBackend, name, _serialised(method))
        _patched.add(name)


def install_all() -> None:
    make_dynamodb_atomic()
