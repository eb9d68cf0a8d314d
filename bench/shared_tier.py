"""Shared scoring tier figures (`make bench`, section "shared"), measured in the same run:

- warm handler overhead beyond the onnxruntime call, the real functions/score_shared/handler.py next to the real
  functions/score/handler.py (the dedicated tier) on the same model and request, alternating blocks; and the same
  for a family with a canary (the request-id hash decides each request);
- the first call of an uncached HistGradientBoosting model: fetch from S3 (moto, in process), sha256, session and
  warm-up, with its breakdown;
- memory with 100 cached models (logistic regression and HGB): the cache's measured footprints and the process's
  resident set growth;
- eviction under a bounded cache: 100 HGB models, requests drawn with Zipf-like popularity, a budget holding a
  fraction of them: hit rate, evictions, latency of hits and misses.
Figures only: no assertion on timings anywhere in the test suite.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench-bucket"


def _handler_module(source: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_{source}_{time.perf_counter_ns()}",
                                                  ROOT / "functions" / source / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _null_figures(tier: str) -> Any:
    from mlops.serving.metrics import ServingMetrics

    return ServingMetrics("Bench", "1", tier, sink=lambda documents: None)


class FakeRegistry:
    """What the shared tier reads from the registry: routing items and each version's artifact hash."""

    def __init__(self) -> None:
        self.routes: dict[str, dict[str, Any]] = {}
        self.versions: dict[tuple[str, int], str] = {}

    def add(self, family: str, sha256: str, version: int = 1, canary: int = 0, weight: float = 0) -> None:
        self.routes[family] = {"live_version": version, "canary_version": canary, "canary_weight": weight,
                               "config": {"serving": "shared", "capture_sample_rate": 0.0, "never_capture": []}}
        self.versions[(family, version)] = sha256
        if canary:
            self.versions[(family, canary)] = sha256

    def get_routing(self, family: str) -> dict[str, Any] | None:
        return self.routes.get(family)

    def get_version(self, family: str, version: int) -> Any:
        return SimpleNamespace(artifact_sha256=self.versions[(family, version)])


def shared_service(registry: FakeRegistry, cache_mib: int = 512, ttl: float = 300.0) -> Any:
    from mlops.core.settings import Env, SharedScoringSettings
    from mlops.serving.shared import SharedScoringService

    settings = SharedScoringSettings.model_validate({
        Env.ARTIFACT_BUCKET: BUCKET, Env.REGISTRY_TABLE: "bench-table", Env.ROUTING_TTL_SECONDS: str(ttl),
        Env.MODEL_CACHE_MIB: str(cache_mib), Env.FUNCTION_VERSION: "1"})
    service = SharedScoringService(settings, registry, metrics=_null_figures("shared"))
    load = service.load
    service.cache._load = lambda family, version: _no_decision_writes(load(family, version))
    return service


def _no_decision_writes(served: Any) -> Any:
    served.decisions._put = lambda key, body: None  # the S3 write (a writer thread's network call) is not measured
    return served


def run(row: Callable[..., None], quick: bool, fitted: Callable[..., Any], scoring_handler: Callable[..., Any],
        time_onnxruntime_calls: Callable[..., None]) -> None:
    import os

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # one "model loaded" line per load otherwise
    overhead(row, quick, fitted, scoring_handler, time_onnxruntime_calls)
    with _moto_s3():
        first_call(row, quick, fitted)
        memory(row, quick, fitted)
        eviction(row, quick, fitted)


def overhead(row: Callable[..., None], quick: bool, fitted: Callable[..., Any], scoring_handler: Callable[..., Any],
             time_onnxruntime_calls: Callable[..., None]) -> None:
    from mlops.data import synthetic
    from mlops.registry.artifacts import sha256_hex
    from mlops.serving.api import ServedModel

    from mlops_local.apigw import proxy_event

    family, _, onnx_bytes, _ = fitted("logistic_regression", 5000)
    dedicated_module, dedicated = scoring_handler(onnx_bytes, family)
    dedicated.figures = _null_figures("dedicated")
    registry = FakeRegistry()
    sha = sha256_hex(onnx_bytes)
    registry.add(family.name, sha)
    registry.add("with-canary", sha, version=1, canary=2, weight=10)
    service = shared_service(registry)
    shared_module = _handler_module("score_shared")
    shared_module._service = service

    def served(name: str, version: int) -> Any:
        return _no_decision_writes(ServedModel(onnx_bytes, bucket=BUCKET, family=name, version=version,
                                               sha256=sha, sample_rate=0.0, never_capture=frozenset(),
                                               function_version="1", memory_arena=False))

    service.cache._load = served
    records = synthetic.to_instances(synthetic.credit_risk_columns(50, 3), family)
    body = json.dumps({"instances": records[:1]})
    context = SimpleNamespace(aws_request_id="bench")
    run_ns: list[int] = []
    time_onnxruntime_calls(dedicated.model, run_ns)
    for name, version in ((family.name, 1), ("with-canary", 1), ("with-canary", 2)):
        time_onnxruntime_calls(service.cache.get(name, version).model, run_ns)

    def measure(module: Any, path: str, count: int, request_ids: bool = False) -> np.ndarray:
        event = proxy_event("POST", path, body)
        totals = []
        run_ns.clear()
        gc.disable()
        for i in range(count):
            if request_ids:  # a canary: each request id decides its version
                event["requestContext"]["requestId"] = f"request-{i:08d}"
            started = time.perf_counter_ns()
            response = module.lambda_handler(event, context)
            totals.append(time.perf_counter_ns() - started)
        gc.enable()
        assert response["statusCode"] == 200, response
        return (np.asarray(totals) - np.asarray(run_ns))[count // 10:]

    reps = 2_000 if quick else 20_000
    sides: dict[str, list[np.ndarray]] = {"dedicated": [], "shared": [], "canary": []}
    for _ in range(2 if quick else 10):  # alternating blocks: a slow spell of the machine lands on every side
        sides["dedicated"].append(measure(dedicated_module, f"/models/{family.name}/predict", reps // 10))
        sides["shared"].append(measure(shared_module, f"/models/{family.name}/predict", reps // 10))
        sides["canary"].append(measure(shared_module, "/models/with-canary/predict", reps // 10, True))
    p50 = {side: float(np.percentile(np.concatenate(blocks), 50)) / 1000 for side, blocks in sides.items()}
    p99 = {side: float(np.percentile(np.concatenate(blocks), 99)) / 1000 for side, blocks in sides.items()}
    row("dedicated tier: handler overhead beyond session.run, p50", p50["dedicated"], "us", "stated", None,
        p99=round(p99["dedicated"], 2), note="same run as the shared rows")
    gap = p50["shared"] - p50["dedicated"]
    row("shared tier: handler overhead beyond session.run, p50", p50["shared"], "us", "<= dedicated + 2",
        gap <= 2, p99=round(p99["shared"], 2), over_dedicated_us=round(gap, 2),
        adds="routing lookup (TTL check), model cache lookup (LRU move), EMF aggregation")
    row("shared tier, family with a 10% canary: overhead p50", p50["canary"], "us", "stated", None,
        p99=round(p99["canary"], 2), over_dedicated_us=round(p50["canary"] - p50["dedicated"], 2),
        adds="BLAKE2b of the request id")


class _moto_s3:
    """An in-process moto S3 with the bench bucket (what the first-call figures fetch from)."""

    def __enter__(self) -> Any:
        from mlops.core import aws
        from moto import mock_aws

        self.mock = mock_aws(config={"core": {"reset_boto3_session": True}})
        self.mock.start()
        aws.reset_clients()
        aws.client("s3").create_bucket(Bucket=BUCKET)
        return self

    def __exit__(self, *exc: object) -> None:
        from mlops.core import aws

        self.mock.stop()
        aws.reset_clients()


def _store(onnx_bytes: bytes) -> str:
    from mlops.registry.artifacts import ArtifactStore

    return ArtifactStore(BUCKET).put(onnx_bytes, "model/onnx").sha256


def first_call(row: Callable[..., None], quick: bool, fitted: Callable[..., Any]) -> None:
    from mlops.registry.artifacts import ArtifactStore
    from mlops.serving.api import ServedModel

    from mlops_local.apigw import proxy_event

    family, _, onnx_bytes, _ = fitted("hist_gradient_boosting")
    sha = _store(onnx_bytes)
    from mlops.data import synthetic

    body = json.dumps({"instances": synthetic.to_instances(synthetic.credit_risk_columns(1, 3), family)})
    store = ArtifactStore(BUCKET)
    ArtifactStore(BUCKET).get_model(sha, legacy=False)  # the S3 client and its connection, as a warm sandbox has
    totals, fetches, loads = [], [], []
    for i in range(5 if quick else 30):
        registry = FakeRegistry()
        registry.add(family.name, sha)
        service = shared_service(registry)
        event = proxy_event("POST", f"/models/{family.name}/predict", body)
        started = time.perf_counter()
        response = service.handle(event, f"first-{i}")
        totals.append((time.perf_counter() - started) * 1000)
        assert response["statusCode"] == 200, response
        service.cache.get(family.name, 1).close()
        started = time.perf_counter()
        data = store.get_model(sha, legacy=False)
        fetches.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        ServedModel(data, bucket=BUCKET, family=family.name, version=1, sha256=sha, sample_rate=0.0,
                    never_capture=frozenset(), function_version="1", memory_arena=False).close()
        loads.append((time.perf_counter() - started) * 1000)
    total = float(np.median(totals))
    row("shared tier: first call of an uncached HGB model (fetch, hash, session, warm-up), p50", total, "ms",
        "<= 50", total <= 50, breakdown={"fetch+sha256 (moto S3, in process)": round(float(np.median(fetches)), 2),
                                         "session+warm-up+writers": round(float(np.median(loads)), 2)},
        artifact_kib=round(len(onnx_bytes) / 1024, 1), p99=round(float(np.percentile(totals, 99)), 2))


def _resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        import os

        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory(row: Callable[..., None], quick: bool, fitted: Callable[..., Any]) -> None:
    count = 20 if quick else 100
    for algorithm in ("logistic_regression", "hist_gradient_boosting"):
        family, _, onnx_bytes, _ = fitted(algorithm)
        sha = _store(onnx_bytes)
        registry = FakeRegistry()
        for i in range(count):
            registry.add(f"fam-{i:03d}", sha)
        service = shared_service(registry, cache_mib=4096)
        gc.collect()
        before = _resident_mib()
        for i in range(count):
            _no_decision_writes(service.cache.get(f"fam-{i:03d}", 1))
        gc.collect()
        grown = _resident_mib() - before
        measured = service.cache.bytes / 2**20
        short = {"logistic_regression": "LR", "hist_gradient_boosting": "HGB"}[algorithm]
        row(f"shared tier: memory with {count} cached {short} models (cache's measured footprints)", measured, "MiB",
            "stated", None, per_model_mib=round(measured / count, 3), resident_set_growth_mib=round(grown, 1),
            artifact_kib=round(len(onnx_bytes) / 1024, 1))
        for key in service.cache.keys():
            service.cache.get(*key).close()


def eviction(row: Callable[..., None], quick: bool, fitted: Callable[..., Any]) -> None:
    from mlops.data import synthetic

    from mlops_local.apigw import proxy_event

    family, _, onnx_bytes, _ = fitted("hist_gradient_boosting")
    sha = _store(onnx_bytes)
    models = 30 if quick else 100
    registry = FakeRegistry()
    for i in range(models):
        registry.add(f"fam-{i:03d}", sha)
    probe = shared_service(registry, cache_mib=4096)
    probe.cache.get("fam-000", 1).close()
    footprint = probe.cache.footprint("fam-000", 1)
    budget_models = models // 4
    service = shared_service(registry, cache_mib=16)
    service.cache.capacity = budget_models * footprint  # a quarter of the models fit
    body = json.dumps({"instances": synthetic.to_instances(synthetic.credit_risk_columns(1, 3), family)})
    rng = np.random.default_rng(7)
    weights = 1.0 / np.arange(1, models + 1)  # Zipf-like popularity: a few families get most requests
    picks = rng.choice(models, size=300 if quick else 3000, p=weights / weights.sum())
    hits, misses = [], []
    for i, pick in enumerate(picks):
        name = f"fam-{pick:03d}"
        cached = (name, 1) in service.cache._entries
        event = proxy_event("POST", f"/models/{name}/predict", body)
        started = time.perf_counter()
        response = service.handle(event, f"r{i}")
        (hits if cached else misses).append((time.perf_counter() - started) * 1000)
        assert response["statusCode"] == 200, response
    rate = len(hits) / len(picks)
    row(f"shared tier: eviction, {models} HGB models, budget {budget_models} first-load footprints, Zipf "
        "traffic: hit rate",
        rate * 100, "%", "stated", None, requests=len(picks), evictions=service.cache.stats.evictions,
        held=len(service.cache), budget_mib=round(service.cache.capacity / 2**20, 2),
        hit_p50_ms=round(float(np.median(hits)), 3), miss_p50_ms=round(float(np.median(misses)), 2))
    for key in service.cache.keys():
        service.cache.get(*key).close()
