"""Scoring figures by family and model version: per-request latency and errors, aggregated in the sandbox and
written as CloudWatch embedded metric format (EMF) documents.

Why EMF and not PutMetricData: a document is a log line (no API call on the hot path, no per-request cost), and
CloudWatch extracts the metrics from the function's log group
(docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
Why not powertools' Metrics: it keeps one dimension set per instance and its import alone costs the cold start
more than this module; the format is small and tested here (tests/unit/test_shared_scoring_units.py).

One document per (family, model version) per flush: `Latency` as an array of up to 100 values (so CloudWatch
computes percentiles; its SampleCount is the request count) and `Errors` (answers the service could not give:
unexpected exceptions and 5xx), dimensions Tier (shared or dedicated: both tiers' functions write them), Family,
ModelVersion and FunctionVersion (the code version that answered). The canary check of a shared-tier model reads
Family and ModelVersion across function versions; a code rollout of the shared function reads its function
version across families; the tier alarms group by Family (a Metrics Insights query per tier).

Cost: a metric exists (and is billed) only for the hours it receives data; an idle family publishes nothing.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import orjson

DIMENSIONS = ("Tier", "Family", "ModelVersion", "FunctionVersion")
LATENCY, ERRORS = "Latency", "Errors"
MAX_VALUES = 100  # EMF: at most 100 values per metric in one document
Sink = Callable[[list[dict[str, Any]]], None]
_all: weakref.WeakSet[ServingMetrics] = weakref.WeakSet()


class ServingMetrics:
    """Aggregates figures per (family, model version) and hands them to `sink` as EMF documents when a key has
    MAX_VALUES latencies or the oldest figure is `flush_seconds` old (checked on each `observe`), and on `flush`
    (SIGTERM: mlops.serving.decisions.on_shutdown). Hot path: a dict lookup and two appends (well under 1 us)."""

    def __init__(self, namespace: str, function_version: str, tier: str, sink: Sink | None = None,
                 flush_seconds: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self.namespace = namespace
        self.function_version = function_version or "$LATEST"
        self.tier = tier
        self.sink = sink or stdout_sink
        self.flush_seconds = flush_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, int], list] = {}
        self._first_at = 0.0
        self.documents_written = 0
        _all.add(self)

    def observe(self, family: str, version: int, latency_ms: float, error: bool = False) -> None:
        """One answered request of `family` model `version`: its latency (ms) and whether it failed."""
        now = self._clock()
        with self._lock:
            if not self._buckets:
                self._first_at = now
            bucket = self._buckets.get((family, version))
            if bucket is None:
                bucket = self._buckets[(family, version)] = [[], 0]
            bucket[0].append(latency_ms)
            if error:
                bucket[1] += 1
            due = len(bucket[0]) >= MAX_VALUES or now - self._first_at >= self.flush_seconds
        if due:
            self.flush()

    def flush(self) -> int:
        """Hand every buffered figure to the sink now; returns the number of documents."""
        with self._lock:
            buckets, self._buckets = self._buckets, {}
            first = self._first_at
        if not buckets:
            return 0
        documents = [self.document(family, version, latencies, errors, first)
                     for (family, version), (latencies, errors) in buckets.items()]
        self.documents_written += len(documents)
        self.sink(documents)
        return len(documents)

    def document(self, family: str, version: int, latencies: list[float], errors: int,
                 at: float) -> dict[str, Any]:
        """The EMF document of one (family, version): `at` (epoch seconds) is its timestamp."""
        return {
            "_aws": {"Timestamp": int(at * 1000), "CloudWatchMetrics": [{
                "Namespace": self.namespace, "Dimensions": [list(DIMENSIONS)],
                "Metrics": [{"Name": LATENCY, "Unit": "Milliseconds"}, {"Name": ERRORS, "Unit": "Count"}]}]},
            "Tier": self.tier, "Family": family, "ModelVersion": str(version),
            "FunctionVersion": self.function_version, LATENCY: [round(v, 3) for v in latencies], ERRORS: errors,
        }


def stdout_sink(documents: list[dict[str, Any]]) -> None:
    """Lambda: one JSON line per document on stdout, which goes to the function's log group."""
    sys.stdout.write("".join(orjson.dumps(d).decode() + "\n" for d in documents))
    sys.stdout.flush()


def cloudwatch_sink(documents: list[dict[str, Any]]) -> None:
    """What CloudWatch does with the documents, done with PutMetricData (the local runtime: moto does not read
    EMF from logs). Values arrays map onto PutMetricData's Values."""
    from datetime import UTC, datetime

    from mlops.core import aws

    for document in documents:
        (declaration,) = document["_aws"]["CloudWatchMetrics"]
        dimensions = [{"Name": name, "Value": document[name]} for name in declaration["Dimensions"][0]]
        at = datetime.fromtimestamp(document["_aws"]["Timestamp"] / 1000, UTC)
        data = []
        for metric in declaration["Metrics"]:
            value = document[metric["Name"]]
            datum = {"MetricName": metric["Name"], "Dimensions": dimensions, "Unit": metric["Unit"], "Timestamp": at}
            if isinstance(value, list):
                datum["Values"] = [float(v) for v in value]
            else:
                datum["Value"] = float(value)
            data.append(datum)
        aws.client("cloudwatch").put_metric_data(Namespace=declaration["Namespace"], MetricData=data)


SINKS: dict[str, Sink] = {"stdout": stdout_sink, "cloudwatch": cloudwatch_sink}
# PutMetricData (the local runtime) is written at once: its canary checks read figures seconds after traffic.
LOCAL_FLUSH_SECONDS = {"cloudwatch": 0.0}


def flush_all() -> None:
    """Flush every live aggregator in this process (sandbox shutdown, local runs, tests)."""
    for metrics in list(_all):
        try:
            metrics.flush()
        except Exception:  # noqa: BLE001 - a lost figure must not stop the shutdown flush of decisions
            continue
