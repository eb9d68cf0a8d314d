"""The shared scoring tier: one function answers POST /models/{name}/predict (and GET /models/{name},
/models/{name}/openapi.json) for every shared-tier family.

Per request: the family's route from the registry, held a few seconds (mlops.serving.routing: live version,
canary version and weight; the canary split is deterministic per request id), the model of that version from the
cache (mlops.serving.cache: loaded from the models prefix on first use, sha256 checked, bounded by memory, least
recently used out), the same validation, scoring, capture and decision record as the dedicated tier
(mlops.serving.api), and the request's latency and outcome by family and model version as EMF
(mlops.serving.metrics). Client mistakes are 4xx answers; anything else is counted as an error of that family
and version, then propagates (Lambda counts it, API Gateway answers 502), as in the dedicated tier.
"""

from __future__ import annotations

import time
from typing import Any

from mlops.core.errors import NoLiveModelError, PlatformError, UnknownFamilyError
from mlops.core.observability import logger
from mlops.core.settings import SharedScoringSettings
from mlops.serving.api import (
    ServedModel,
    describe_response,
    error_response,
    fetch_model,
    method_not_allowed,
    openapi_response,
    parse_request,
    predict_response,
)
from mlops.serving.cache import ModelCache
from mlops.serving.metrics import LOCAL_FLUSH_SECONDS, SINKS, ServingMetrics
from mlops.serving.routing import FAMILY_NAME, SHARED, FamilyRoute, RoutingTable

_MIB = 1 << 20


class SharedScoringService:
    """One per sandbox of the shared function. `registry`: a ModelRegistry (routes, version lineage, GET routes);
    `publisher`: MetricsPublisher for integrity failures; `metrics`: the EMF aggregator."""

    def __init__(self, settings: SharedScoringSettings, registry: Any, publisher: Any | None = None,
                 metrics: ServingMetrics | None = None, routes: RoutingTable | None = None,
                 cache: ModelCache | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.publisher = publisher
        self.metrics = metrics or ServingMetrics(
            settings.metrics_namespace, settings.function_version, SHARED, SINKS[settings.metrics_sink],
            flush_seconds=LOCAL_FLUSH_SECONDS.get(settings.metrics_sink, 10.0))
        self.routes = routes or RoutingTable(registry.get_routing, settings.routing_ttl_seconds,
                                             settings.routing_max_stale_seconds, on_stale=_log_stale)
        self.cache = cache or ModelCache(settings.model_cache_mib * _MIB, self.load)

    def load(self, family: str, version: int) -> ServedModel:
        """The model of `family` `version`: its artifact hash from the registry's lineage, its bytes from the
        models prefix (hash checked), session and warm-up (ScoringModel), capture and decision writers."""
        s = self.settings
        started = time.perf_counter()
        record = self.registry.get_version(family, version)
        sha256 = record.artifact_sha256
        if not sha256:
            raise NoLiveModelError(f"model {family} v{version} has no artifact recorded; it cannot be served")
        data = fetch_model(s.artifact_bucket, family, version, sha256, self.publisher)
        route = self.routes.route(family)
        served = ServedModel(data, bucket=s.artifact_bucket, family=family, version=version, sha256=sha256,
                             sample_rate=route.capture_sample_rate, never_capture=route.never_capture,
                             function_version=s.function_version, capture_flush_records=s.capture_flush_records,
                             capture_max_age_seconds=s.capture_max_age_seconds,
                             decision_flush_records=s.decision_flush_records, memory_arena=False,
                             on_captured=lambda at: self.registry.mark_captured(family, at))
        logger().info("model loaded", extra={"family": family, "version": version, "bytes": served.artifact_bytes,
                                             "seconds": round(time.perf_counter() - started, 4)})
        return served

    def handle(self, event: dict[str, Any], request_id: str) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            context = event.get("requestContext") or {}
            request_id = context.get("requestId") or request_id
            method = event.get("httpMethod", "")
            name = (event.get("pathParameters") or {}).get("name") or ""
            resource = event.get("resource", "")
            if type(name) is not str or not FAMILY_NAME.match(name):
                raise UnknownFamilyError(f"model family {str(name)[:70]!r} is not served here")
            refused = method_not_allowed(resource, method, name, request_id)
            if refused is not None:
                return refused
            route = self.routes.route(name)
            if resource.endswith("/predict"):
                return self.predict(event, route, request_id, started)
            if resource.endswith("/openapi.json"):
                return openapi_response(self.registry, name, request_id)
            return describe_response(self.registry, name, route.live_version, request_id)
        except PlatformError as exc:
            return error_response(exc, request_id)

    def predict(self, event: dict[str, Any], route: FamilyRoute, request_id: str, started: float) -> dict[str, Any]:
        version = route.version_for(request_id)
        if not version:
            raise NoLiveModelError(f"model family {route.family!r} has no live model yet")
        family = route.family
        try:
            instances, explain = parse_request(event)
            served = self.cache.get(family, version)
            capture = served.capture
            # A changed declaration (sample rate, never-captured fields) applies to models already loaded.
            capture.sample_rate, capture.never_capture = route.capture_sample_rate, route.never_capture
            response = predict_response(served.model, family, version, instances, explain, request_id, capture,
                                        served.decisions, served.explainer)
        except PlatformError as exc:
            self.metrics.observe(family, version, (time.perf_counter() - started) * 1000, exc.http_status >= 500)
            raise
        except Exception:
            self.metrics.observe(family, version, (time.perf_counter() - started) * 1000, True)
            raise
        self.metrics.observe(family, version, (time.perf_counter() - started) * 1000)
        return response


def _log_stale(family: str, exc: Exception) -> None:
    logger().warning("registry unavailable: serving the routing state already held",
                     extra={"family": family, "error": f"{type(exc).__name__}: {exc}"[:300]})


def create_service(settings: SharedScoringSettings) -> SharedScoringService:
    """The production wiring: the registry on DynamoDB, integrity failures as metrics."""
    from mlops.core.observability import MetricsPublisher
    from mlops.registry.store import ModelRegistry

    return SharedScoringService(settings, ModelRegistry(settings.registry_table),
                                MetricsPublisher(settings.metrics_namespace))
