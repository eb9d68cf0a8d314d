"""Small, tested patches for gaps in moto that the platform's local runs depend on.

- DynamoDB: moto evaluates a condition and applies the write in separate steps without a lock, so two threads
  can both pass `latest_version = :prev`. Real DynamoDB applies each write and transaction atomically; one
  lock around moto's write and read paths restores that guarantee locally.
- DynamoDB: moto snapshots every table a TransactWriteItems names with a deep copy (to roll back on failure),
  so each registry transaction costs time in proportion to the whole table (50x slower with 10k versions). The
  shim snapshots only the items the transaction names and restores those on failure: same all-or-nothing
  outcome, cost independent of the table's size, as in DynamoDB.
- CloudWatch: GetMetricStatistics ignores ExtendedStatistics (p99); added from the stored data points.
- Lambda: no Docker means no invocation; LocalLambdaRuntime runs the real handlers in-process.
- S3: moto's backend reloads its URL module (`importlib.reload`, reading the file from disk) twice on every
  request, so that a change of MOTO_S3_CUSTOM_ENDPOINTS is seen; profiled, that was a third of the CPU of each
  GetObject in a canary check of the demo. The shim reloads it only when that variable changes.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import random
import threading
import time
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

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



class _TableCopyDuringTransaction:
    """Stands in for the `copy` module inside moto's DynamoDB backend: while an item-level snapshot is in force,
    moto's table snapshot is a reference (the shim restores the named items instead); otherwise a real copy."""

    def __init__(self) -> None:
        self.item_snapshot_active = False

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        if self.item_snapshot_active and isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


_COPY_SHIM = _TableCopyDuringTransaction()


def _named_items(backend: Any, transact_items: Any) -> list[tuple[Any, Any, Any]] | None:
    """(table, hash key, range key) of every item a transaction names; None when the shim should stand aside
    (malformed request, unknown table, streams) and leave moto's own validation and copy to it."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    named = []
    try:
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = backend.tables[op["TableName"]]
            if table.stream_shard is not None:
                return None
            attrs = op["Item"] if "Item" in op else op["Key"]
            range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
            named.append((table, DynamoType(attrs[table.hash_key_attr]), range_key))
    except (KeyError, TypeError, AttributeError, StopIteration):
        return None
    return named


def _restore(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    if range_key is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
        return
    partition = table.items[hash_key]
    if item is None:
        partition.pop(range_key, None)
        if not partition:
            table.items.pop(hash_key, None)
    else:
        partition[range_key] = item


def snapshot_transaction_items() -> None:
    import moto.dynamodb.models as models
    from moto.dynamodb.models import DynamoDBBackend

    original = DynamoDBBackend.transact_write_items
    if getattr(original, "__mlops_item_snapshot__", False):
        return
    models.copy = _COPY_SHIM  # type: ignore[attr-defined]

    @functools.wraps(original)
    def transact_write_items(self, transact_items):  # type: ignore[no-untyped-def]
        with _DYNAMODB_LOCK:  # every DynamoDB call is serialised, so the flag below is seen by this call only
            named = _named_items(self, transact_items)
            if named is None:
                return original(self, transact_items)
            saved = [(table, h, r, copy.deepcopy(table.get_item(h, r))) for table, h, r in named]
            _COPY_SHIM.item_snapshot_active = True
            try:
                return original(self, transact_items)
            except BaseException:
                for table, h, r, item in reversed(saved):
                    _restore(table, h, r, item)
                raise
            finally:
                _COPY_SHIM.item_snapshot_active = False

    transact_write_items.__mlops_item_snapshot__ = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items
    _patched.add("transact_write_items:item-snapshot")


# ---- CloudWatch: percentiles -------------------------------------------------------------------------------
# moto ignores ExtendedStatistics in GetMetricStatistics; the canary check asks for p99 latency.


def support_percentiles() -> None:
    import numpy as np
    from moto.cloudwatch import models as cw_models
    from moto.cloudwatch import responses as cw_responses

    if getattr(cw_responses.CloudWatchResponse.get_metric_statistics, "__mlops_patched__", False):
        return

    def extended_statistics(self):  # type: ignore[no-untyped-def]
        wanted = [s for s in self.stats if s.startswith("p")]
        values = np.asarray(self.metric_single_values_list, dtype=float)
        if not wanted or values.size == 0:
            return None
        return {p: float(np.percentile(values, float(p[1:]), method="higher")) for p in wanted}

    cw_models.Statistics.extended_statistics = property(extended_statistics)
    original = cw_responses.CloudWatchResponse.get_metric_statistics

    def get_metric_statistics(self):  # type: ignore[no-untyped-def]
        extended = self._get_param("ExtendedStatistics") or []
        read = self._get_param

        def _get_param(name, default=None):  # type: ignore[no-untyped-def]
            if name == "Statistics":
                return (read(name, default) or []) + list(extended)
            return read(name, default)

        self._get_param = _get_param
        try:
            return original(self)
        finally:
            del self._get_param

    get_metric_statistics.__mlops_patched__ = True  # type: ignore[attr-defined]
    cw_responses.CloudWatchResponse.get_metric_statistics = get_metric_statistics


# ---- Lambda: run the real handlers in-process, route aliases by weight, publish AWS/Lambda metrics ---------


class LocalLambdaRuntime:
    """Runs `functions/<name>/handler.py` for moto's Lambda functions, without Docker.

    - Every invoke path (boto3, Step Functions tasks, S3 notifications) reaches `_invoke_lambda`; it is
      replaced to import the function's handler (one module instance per function version, like separate
      sandboxes) and call it with the version's own environment.
    - moto ignores alias routing weights; `invoke` is replaced to pick the version by weight, as Lambda does.
    - Lambda publishes Invocations/Errors/Duration per executed version; the runtime puts the same metrics into
      moto's CloudWatch so the canary check reads what it would read in AWS.
    - Each function version is one sandbox: it handles one invocation at a time (its module's globals, such as a
      cached scoring service, are not shared between concurrent requests), but different functions and versions
      run concurrently, as in Lambda. A 30 s training run must not hold up scoring: one process-wide lock did
      (every scoring request waited for the train handler). The environment is a per-thread overlay
      (`function_environment`), never os.environ.
    """

    def __init__(self) -> None:
        self.handlers: dict[str, Path] = {}
        self.modules: dict[tuple[str, str], Any] = {}
        # (function, version) -> the lock of that sandbox; `_sandboxes` guards the dict and module imports.
        self.sandbox_locks: dict[tuple[str, str], threading.RLock] = {}
        self._sandboxes = threading.RLock()
        self.local = threading.local()
        self.invocations = 0

    def register(self, function_name: str, handler_file: Path) -> None:
        self.handlers[function_name] = handler_file

    def install(self) -> None:
        from moto.awslambda import models as lambda_models

        runtime = self
        if getattr(lambda_models.LambdaFunction._invoke_lambda, "__mlops_runtime__", None) is not None:
            lambda_models.LambdaFunction._invoke_lambda.__mlops_runtime__[0] = runtime
            return
        original_invoke_lambda = lambda_models.LambdaFunction._invoke_lambda
        holder = [runtime]

        def _invoke_lambda(fn, event=None):  # type: ignore[no-untyped-def]
            active = holder[0]
            if fn.function_name not in active.handlers:
                return original_invoke_lambda(fn, event)
            return active.invoke_handler(fn, event)

        _invoke_lambda.__mlops_runtime__ = holder  # type: ignore[attr-defined]
        lambda_models.LambdaFunction._invoke_lambda = _invoke_lambda

        original_backend_invoke = lambda_models.LambdaBackend.invoke

        def invoke(backend, function_name, qualifier, body, headers, response_headers):  # type: ignore[no-untyped-def]
            active = holder[0]
            qualifier = qualifier or getattr(active.local, "qualifier", None)
            alias_name, fn = active.resolve(backend, function_name, qualifier)
            if fn is None:
                return original_backend_invoke(backend, function_name, qualifier, body, headers, response_headers)
            active.local.alias = alias_name
            try:
                payload = fn.invoke(body, headers, response_headers)
            finally:
                active.local.alias = None
            response_headers["x-amz-executed-version"] = str(fn.version)
            response_headers["Content-Length"] = str(len(payload))
            return payload

        lambda_models.LambdaBackend.invoke = invoke

        # moto 5.2 reads the lowercase "qualifier" query parameter; boto3 sends "Qualifier".
        from moto.awslambda.responses import LambdaResponse

        original_response_invoke = LambdaResponse.invoke

        def response_invoke(response):  # type: ignore[no-untyped-def]
            active = holder[0]
            values = response.querystring.get("Qualifier") or [None]
            active.local.qualifier = values[0]
            try:
                return original_response_invoke(response)
            finally:
                active.local.qualifier = None

        LambdaResponse.invoke = response_invoke

    def resolve(self, backend: Any, function_name: str, qualifier: str | None) -> tuple[str | None, Any]:
        name = function_name.split(":function:")[-1]
        if ":" in name:
            name, qualifier = name.split(":", 1)
        if name not in self.handlers or not qualifier or qualifier.isdigit() or qualifier == "$LATEST":
            return None, None
        alias = backend._lambdas._get_function_aliases(name).get(qualifier)
        if alias is None:
            return None, None
        version = alias.function_version
        weights = (alias.routing_config or {}).get("AdditionalVersionWeights") or {}
        draw = random.random()
        for candidate, weight in weights.items():
            if draw < float(weight):
                version = candidate
                break
            draw -= float(weight)
        return qualifier, backend.get_function(name, version)

    def invoke_handler(self, fn: Any, event: Any) -> tuple[str, bool, str]:
        payload = json.loads(event) if isinstance(event, str | bytes) else (event or {})
        version = str(fn.version)
        alias = getattr(self.local, "alias", None)
        context = SimpleNamespace(
            function_name=fn.function_name, function_version=version, memory_limit_in_mb=fn.memory_size,
            invoked_function_arn=(f"arn:aws:lambda:{fn.region}:{fn.account_id}:function:{fn.function_name}"
                                  + (f":{alias}" if alias else "")),
            aws_request_id=str(uuid.uuid4()), log_group_name=f"/aws/lambda/{fn.function_name}",
            log_stream_name="local", get_remaining_time_in_millis=lambda: int(fn.timeout) * 1000,
        )
        from mlops.core.settings import function_environment

        function_env = {**os.environ, **(fn.environment_vars or {}), "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
                        "AWS_LAMBDA_FUNCTION_VERSION": version}
        # os.environ is never mutated (moto's interpreter threads and capture writers read it concurrently): the
        # function's environment is a per-thread overlay that the settings loader reads.
        with self.sandbox_lock(fn.function_name, version), function_environment(function_env):
            module = self._module(fn.function_name, version)  # imported inside its own sandbox's lock
            started = time.perf_counter()
            errored = False
            try:
                result = module.lambda_handler(payload, context)
                body = json.dumps(result)
            except Exception as exc:  # Lambda turns an unhandled exception into an error payload
                errored = True
                body = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__,
                                   "stackTrace": traceback.format_exception(exc)[-5:]})
            duration_ms = (time.perf_counter() - started) * 1000
        with self._sandboxes:
            self.invocations += 1
        self._publish_metrics(fn, version, alias, errored, duration_ms)
        return body, errored, ""

    def sandbox_lock(self, function_name: str, version: str) -> threading.RLock:
        """The lock held while the sandbox of `function_name` at `version` runs an invocation."""
        with self._sandboxes:
            return self.sandbox_locks.setdefault((function_name, version), threading.RLock())

    def _module(self, function_name: str, version: str) -> Any:
        key = (function_name, version)
        module = self.modules.get(key)
        if module is None:
            path = self.handlers[function_name]
            spec = importlib.util.spec_from_file_location(
                f"local_fn_{function_name.replace('-', '_')}_{version.replace('$', '')}", path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            spec.loader.exec_module(module)  # type: ignore[union-attr]
            self.modules[key] = module
        return module

    @staticmethod
    def _publish_metrics(fn: Any, version: str, alias: str | None, errored: bool, duration_ms: float) -> None:
        from moto.cloudwatch.models import cloudwatch_backends

        backend = cloudwatch_backends[fn.account_id][fn.region]
        now = datetime.now(UTC).replace(tzinfo=None)  # moto stores naive UTC timestamps
        dimension_sets = [[{"Name": "FunctionName", "Value": fn.function_name}]]
        if alias:
            dimension_sets.append([{"Name": "FunctionName", "Value": fn.function_name},
                                   {"Name": "Resource", "Value": f"{fn.function_name}:{alias}"},
                                   {"Name": "ExecutedVersion", "Value": version}])
        data = []
        for dims in dimension_sets:
            data += [
                {"MetricName": "Invocations", "Value": 1.0, "Unit": "Count", "Timestamp": now, "Dimensions": dims},
                {"MetricName": "Errors", "Value": 1.0 if errored else 0.0, "Unit": "Count", "Timestamp": now,
                 "Dimensions": dims},
                {"MetricName": "Duration", "Value": duration_ms, "Unit": "Milliseconds", "Timestamp": now,
                 "Dimensions": dims},
            ]
        backend.put_metric_data("AWS/Lambda", data)


_S3_URLS_LOCK = threading.Lock()
_S3_URLS: dict[str, Any] = {}


def cache_s3_url_module() -> None:
    """S3Backend._url_module reloads moto.s3.urls only when MOTO_S3_CUSTOM_ENDPOINTS (the one setting the module
    reads) differs from the last load, instead of on every request."""
    from moto.s3.models import S3Backend

    current = S3Backend.__dict__.get("_url_module")
    if getattr(getattr(current, "fget", None), "__mlops_cached__", False):
        return

    def _url_module(self: Any) -> Any:
        endpoints = os.environ.get("MOTO_S3_CUSTOM_ENDPOINTS", "")
        with _S3_URLS_LOCK:
            if _S3_URLS.get("endpoints") != endpoints or "module" not in _S3_URLS:
                import importlib

                import moto.s3.urls as urls

                _S3_URLS.update(endpoints=endpoints, module=importlib.reload(urls))
            return _S3_URLS["module"]

    _url_module.__mlops_cached__ = True  # type: ignore[attr-defined]
    S3Backend._url_module = property(_url_module)  # type: ignore[assignment]


def install_all() -> None:
    snapshot_transaction_items()
    make_dynamodb_atomic()
    support_percentiles()
    cache_s3_url_module()
