"""The scoring API behind API Gateway (REST, Lambda proxy): POST /models/{name}/predict, GET /models/{name} and
GET /models/{name}/openapi.json (the family's own OpenAPI document, `mlops.serving.openapi.family_openapi`).

Kept lean on purpose: no router, no validation framework on the hot path (see docs/benchmarks.md). Client
mistakes become 4xx answers whose message names the problem; unexpected faults propagate so Lambda counts
them as errors (the canary check and alarms watch those) and API Gateway answers 502.

Response contract (docs/openapi.yaml), per task: a binary family's `classes` are its original labels in the order
[negative, positive] ("good", "bad"); `probabilities` follow that order; `predictions` are original labels, the
positive one when its probability is at least the family's threshold. A multiclass family's `classes` are its
labels in sorted order, one probability per class, and the prediction is the most probable class. A regression
answers `predictions` as numbers, without `classes` or `probabilities`. A `null` value is accepted for features
whose family declares a missing-value strategy and scored exactly as training treated missing values. With
"explain": true the response adds `explanations` (mlops.serving.explanations); every answer leaves a decision record
(mlops.serving.decisions). `decision_ids` names each record for delayed labels (mlops.serving.decision_ids): the
request id for one record, `<request id>:<index>` in a batch, or the client's own `id` per instance.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from typing import Any

import orjson

from mlops.core.errors import (
    ArtifactNotFoundError,
    IntegrityError,
    NoLiveModelError,
    PlatformError,
    UnknownFamilyError,
    ValidationError,
)
from mlops.core.observability import logger
from mlops.core.settings import CAPTURE_FLUSH_RECORDS, CAPTURE_MAX_AGE_SECONDS, ScoringSettings
from mlops.registry.artifacts import ArtifactStore
from mlops.serving.capture import CaptureWriter
from mlops.serving.decision_ids import decision_ids, split_client_ids
from mlops.serving.decisions import DecisionLog
from mlops.serving.explanations import ExplainRequest, ServedExplainer, explain_request
from mlops.serving.scoring import BINARY, ScoringModel

MAX_BODY_BYTES = 4 * 1024 * 1024
JSON_TYPES = ("application/json", "application/vnd.api+json", "text/json")


def _response(status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": orjson.dumps(body).decode(),
        "isBase64Encoded": False,
    }


def error_response(exc: PlatformError, request_id: str) -> dict[str, Any]:
    """The HTTP answer to a domain error. Anything the service cannot do right now is "unavailable" (503), never a
    bare 500; its message reaches the client only when written for clients (NoLiveModelError), otherwise the
    details (bucket, key, table, dependency errors) go to the log and the client reads a generic message."""
    if exc.http_status < 500:
        body = exc.to_dict()
        status = exc.http_status
    else:
        status = 503
        if isinstance(exc, NoLiveModelError):
            body = {"error": exc.code, "message": exc.message}
        else:
            logger().error("scoring unavailable", extra={"error": exc.code, "detail": exc.message,
                                                         "request_id": request_id})
            body = {"error": "ServiceUnavailable", "message": "the scoring service cannot answer right now; retry "
                                                              "shortly"}
    body["request_id"] = request_id
    return _response(status, body, {"X-Request-Id": request_id})


class ServedModel:
    """One model version ready to answer: its ONNX model, capture writer, decision log and explainer (the dedicated
    tier holds one per sandbox; the shared tier one per cached (family, version), mlops.serving.shared).

    `data`: the artifact's bytes (already checked against `sha256`); `artifact_bytes` is their size."""

    def __init__(self, data: bytes, *, bucket: str, family: str, version: int, sha256: str, sample_rate: float,
                 never_capture: frozenset[str], function_version: str,
                 capture_flush_records: int = CAPTURE_FLUSH_RECORDS, decision_flush_records: int = 512,
                 memory_arena: bool = True, on_captured: Callable[[float], Any] | None = None,
                 capture_max_age_seconds: float = CAPTURE_MAX_AGE_SECONDS) -> None:
        self.family, self.version, self.sha256 = family, version, sha256
        self.model = ScoringModel(data, memory_arena)
        self.capture = CaptureWriter(bucket, family, version, sample_rate, never_capture,
                                     flush_records=capture_flush_records, max_age_seconds=capture_max_age_seconds,
                                     on_written=on_captured)
        self.decisions = DecisionLog(bucket, family, version, function_version=function_version, model_sha256=sha256,
                                     classes=self.model.classes,
                                     threshold=self.model.threshold if self.model.task == BINARY else None,
                                     never_capture=never_capture, flush_records=decision_flush_records)
        self.explainer = ServedExplainer(data, family, version)
        self.artifact_bytes = len(data)

    def close(self) -> None:
        """Stop serving: buffered captures and decisions go to their writers."""
        self.capture.close()
        self.decisions.close()


def predict_response(model: ScoringModel, family: str, version: int, instances: Any, explain: ExplainRequest | None,
                     request_id: str, capture: CaptureWriter | None, decisions: DecisionLog | None,
                     explainer: ServedExplainer | None) -> dict[str, Any]:
    """Score `instances` with `model` (family `version`) and build the proxy response; captures keep class indices
    (canary and drift statistics count them; a regression's, its predicted value as answered), and every answer
    leaves a decision record, with the inputs when the capture sampled it. `decision_ids` names each record for
    delayed labels (mlops.serving.decision_ids): the request id for one record, `<request id>:<index>` in a batch,
    or the client's own `id` per instance (stripped before scoring, kept in the decision record). Both scoring tiers
    answer through here."""
    instances, client_ids = split_client_ids(instances, model.feature_set)
    index_list, proba_list = model.predict_instances(instances)
    ids = decision_ids(request_id, len(index_list), client_ids)
    if proba_list is None:  # a regression: the predicted values
        body: dict[str, Any] = {"model": family, "version": version, "predictions": index_list,
                                "request_id": request_id, "decision_ids": ids}
    else:
        classes = model.classes
        body = {"model": family, "version": version, "predictions": [classes[i] for i in index_list],
                "probabilities": proba_list, "classes": classes, "request_id": request_id, "decision_ids": ids}
    warnings, total = model.unknown_categories(instances)
    if warnings:  # undeclared categories scored as "other": said per record and field, never silently
        body["warnings"] = warnings
        if total > len(warnings):
            body["warnings_omitted"] = total - len(warnings)
    explanations = None
    if explain is not None and explainer is not None:
        explanations = body["explanations"] = explainer.explain(model, instances, explain)
    captured = [] if capture is None else capture.record(
        request_id, instances, index_list, [()] * len(index_list) if proba_list is None else proba_list)
    if decisions is not None:
        # Captures sample records one by one; the decision record keeps a request's inputs (all of them, for the
        # audit's recomputation) when its first record was sampled: still the capture rate, per request.
        keep_inputs = bool(captured) and captured[0] == 0
        decisions.record(request_id, index_list, proba_list, instances if keep_inputs else None, explanations,
                         ids=client_ids)
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Model-Version": str(version), "X-Request-Id": request_id},
        "body": orjson.dumps(body).decode(),
        "isBase64Encoded": False,
    }


def method_not_allowed(resource: str, method: str, name: str, request_id: str) -> dict[str, Any] | None:
    """The 405 answer for a method the route does not take (None when it does)."""
    if resource.endswith("/predict"):
        if method != "POST":
            return _response(405, {"error": "MethodNotAllowed", "message": "use POST for predictions",
                                    "request_id": request_id}, {"Allow": "POST"})
        return None
    if method != "GET":
        return _response(405, {"error": "MethodNotAllowed", "message": f"use GET on /models/{name}",
                                "request_id": request_id}, {"Allow": "GET"})
    return None


def openapi_response(registry: Any, family: str, request_id: str) -> dict[str, Any]:
    """The family's OpenAPI document, built from its registered schema (and the live model's classes)."""
    from mlops.core.errors import TransientError
    from mlops.serving.openapi import family_openapi

    try:
        record = registry.get_family(family)
        classes = None
        declared = record.family
        if record.live_version:
            lineage = registry.get_version(record.family.name, record.live_version).lineage
            classes = lineage.get("classes")
            # The schema the live model answers to (the declaration it was trained under), not a newer one.
            declared, _ = registry.live_declaration(record, lineage)
    except TransientError:
        raise NoLiveModelError("the model registry is unavailable; retry shortly") from None
    return _response(200, family_openapi(declared, classes), {"X-Request-Id": request_id})


def describe_response(registry: Any, family: str, served_version: int, request_id: str) -> dict[str, Any]:
    """GET /models/{name}: the family's schema, live and canary versions, and the live model's figures."""
    from mlops.core.errors import TransientError

    try:
        record = registry.get_family(family)
        declared, config_version = registry.live_declaration(record)
    except TransientError:
        raise NoLiveModelError("the model registry is unavailable; retry shortly") from None
    body: dict[str, Any] = {
        "model": record.family.name,
        "live_version": record.live_version or None,
        "canary_version": record.canary_version or None,
        "canary_weight": record.canary_weight if record.canary_version else 0,
        "task": declared.task,
        # The inputs the live model answers to: those of the declaration it was trained under.
        "features": [f.model_dump(mode="json") for f in declared.features],
        "family_config_version": config_version, "current_config_version": record.config_version,
        "served_version": served_version or None,
        "request_id": request_id,
    }
    if record.live_version:
        live = registry.get_version(record.family.name, record.live_version)
        lineage = live.lineage
        body.update({
            "metrics": lineage.get("metrics", {}),
            "fairness": {k: v for k, v in lineage.get("fairness", {}).items() if k != "groups"},
            "trained_at": lineage.get("trained_at"),
            "dataset": {k: lineage.get("dataset", {}).get(k) for k in ("bucket", "key", "version_id", "sha256",
                                                                         "rows")},
            "artifact_sha256": lineage.get("artifact_sha256"),
            "algorithm": lineage.get("algorithm"),
            "classes": lineage.get("classes"),
            "threshold": lineage.get("threshold"),
            "live_since": live.updated_at,
        })
    return _response(200, body, {"X-Request-Id": request_id, "X-Model-Version": str(served_version)})


class ScoringService:
    """The dedicated tier: one per Lambda sandbox of a family's own function, serving the model version bound to
    the published function version; the model is loaded on the first request and kept for the warm ones."""

    def __init__(self, settings: ScoringSettings, metrics: Any | None = None, figures: Any | None = None,
                 status: Any | None = None) -> None:
        """`metrics`: MetricsPublisher (integrity failures); `figures`: the EMF aggregator of request latency and
        errors by family and version (mlops.serving.metrics; None: none written); `status`:
        mlops.serving.family_status.FamilyStatus, so that a retired family answers 404 (None: not checked)."""
        self.settings = settings
        self.metrics = metrics
        self.figures = figures
        self.status = status
        self.model: ScoringModel | None = None
        self.capture: CaptureWriter | None = None
        self.decisions: DecisionLog | None = None
        self.explainer: ServedExplainer | None = None
        self._registry: Any = None
        self.version = str(settings.model_version)

    # ---- model lifecycle ------------------------------------------------------------------------------

    def load(self) -> ScoringModel:
        """Fetch the bound artifact, check its hash before parsing a byte of it, build the session."""
        if self.model is not None:
            return self.model
        s = self.settings
        if s.model_version == 0 or not s.model_sha256:
            raise NoLiveModelError(f"model family {s.model_family!r} has no live model yet")
        data = fetch_model(s.artifact_bucket, s.model_family, s.model_version, s.model_sha256, self.metrics)
        served = ServedModel(data, bucket=s.artifact_bucket, family=s.model_family, version=s.model_version,
                             sha256=s.model_sha256, sample_rate=s.capture_sample_rate,
                             never_capture=s.never_capture_fields, function_version=s.function_version,
                             capture_flush_records=s.capture_flush_records,
                             capture_max_age_seconds=s.capture_max_age_seconds,
                             decision_flush_records=s.decision_flush_records,
                             # on the writer thread, after each capture object: the registry import stays off
                             # the cold path
                             on_captured=lambda at: self.registry.mark_captured(s.model_family, at))
        self.capture, self.decisions, self.explainer = served.capture, served.decisions, served.explainer
        self.model = served.model
        return self.model

    @property
    def registry(self) -> Any:
        """Only GET needs the registry; importing it (and the family schema models) is kept off the cold path."""
        if self._registry is None:
            from mlops.registry.store import ModelRegistry

            self._registry = ModelRegistry(self.settings.registry_table)
        return self._registry

    # ---- requests -------------------------------------------------------------------------------------

    def handle(self, event: dict[str, Any], request_id: str) -> dict[str, Any]:
        try:
            context = event.get("requestContext") or {}
            request_id = context.get("requestId") or request_id
            method = event.get("httpMethod", "")
            params = event.get("pathParameters") or {}
            name = params.get("name", "")
            resource = event.get("resource", "")
            if name != self.settings.model_family:
                raise UnknownFamilyError(f"model family {name!r} is not served here")
            if self.status is not None:
                self.status.check()
            refused = method_not_allowed(resource, method, name, request_id)
            if refused is not None:
                return refused
            if resource.endswith("/predict"):
                return self.predict(event, request_id)
            if resource.endswith("/openapi.json"):
                return openapi_response(self.registry, self.settings.model_family, request_id)
            return describe_response(self.registry, self.settings.model_family, self.settings.model_version,
                                     request_id)
        except PlatformError as exc:
            return error_response(exc, request_id)

    def predict(self, event: dict[str, Any], request_id: str) -> dict[str, Any]:
        if self.figures is None:
            instances, explain = parse_request(event)
            return predict_response(self.load(), self.settings.model_family, self.settings.model_version, instances,
                                    explain, request_id, self.capture, self.decisions, self.explainer)
        started = time.perf_counter()
        family, version = self.settings.model_family, self.settings.model_version
        try:
            instances, explain = parse_request(event)
            response = predict_response(self.load(), family, version, instances, explain, request_id, self.capture,
                                        self.decisions, self.explainer)
        except PlatformError as exc:
            self.figures.observe(family, version, (time.perf_counter() - started) * 1000, exc.http_status >= 500)
            raise
        except Exception:
            self.figures.observe(family, version, (time.perf_counter() - started) * 1000, True)
            raise
        self.figures.observe(family, version, (time.perf_counter() - started) * 1000)
        return response


def fetch_model(bucket: str, family: str, version: int, sha256: str, metrics: Any | None = None) -> bytes:
    """The model's bytes from the models prefix, checked against `sha256`. A missing artifact or altered bytes
    become NoLiveModelError (503) whose message names the family and version only: the bucket and key, and the
    hashes, go to the log (and an integrity failure to its metric)."""
    try:
        return ArtifactStore(bucket).get_model(sha256, legacy=False)
    except ArtifactNotFoundError as exc:
        logger().error("model artifact unavailable", extra={"family": family, "version": version,
                                                            "detail": exc.message})
        raise NoLiveModelError(f"model {family} v{version} is unavailable; retry shortly or ask the operators"
                               ) from None
    except IntegrityError:
        if metrics is not None:
            metrics.integrity_failure(family, version)
        raise NoLiveModelError(f"model {family} v{version} failed its integrity check and is not served") from None


def parse_request(event: dict[str, Any]) -> tuple[Any, ExplainRequest | None]:
    """Decode the request body into the `instances` list and the explanation options (None unless "explain":
    true), naming the problem when it cannot.

    Refused before anything is decoded: a body over MAX_BODY_BYTES bytes (UTF-8 bytes as sent, not characters:
    413), a compressed body (Content-Encoding other than identity: 415), a Content-Type other than JSON, one
    declaring a charset other than UTF-8, or an empty one (415). A request without Content-Type is read as JSON,
    as API Gateway applies the application/json model to it."""
    headers = event.get("headers") or {}
    content_type = headers.get("Content-Type") or headers.get("content-type")
    if content_type is None and headers:  # header names are case-insensitive; the usual spellings come first
        content_type = _header(headers, "content-type")
    if content_type != "application/json":  # the usual spelling needs no normalising
        _check_content_type(content_type)
    encoding = headers.get("Content-Encoding") or headers.get("content-encoding")
    if encoding is not None:
        _check_content_encoding(encoding)
    body = event.get("body")
    if body is None or body == "":
        raise ValidationError("request body is empty; send {\"instances\": [...]}")
    if not isinstance(body, str):
        raise ValidationError("request body must be a JSON text")
    encoded = event.get("isBase64Encoded")
    _check_body_size(body, bool(encoded))
    raw: str | bytes = body
    if encoded:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("request body is flagged base64 but is not valid base64") from None
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # A compressed body under an unusual spelling of Content-Encoding: say so rather than "invalid JSON".
        _check_content_encoding(_header(headers, "content-encoding"))
        raise ValidationError(f"request body is not valid JSON: {exc}") from None
    if type(payload) is not dict:
        raise ValidationError("request body must be a JSON object with an 'instances' list")
    if "instances" not in payload:
        raise ValidationError("request body lacks 'instances'")
    if len(payload) != 1:
        return payload["instances"], explain_request(payload)
    return payload["instances"], None


def _header(headers: dict[str, Any], name: str) -> str | None:
    return next((str(v) for k, v in headers.items() if str(k).lower() == name), None)


def _check_content_type(content_type: str | None) -> None:
    """415 unless the media type is JSON with no charset or charset=utf-8 (RFC 8259: JSON exchanged between
    systems is UTF-8). None (no header) is JSON; an empty header is not."""
    if content_type is None:
        return
    media, _, parameters = str(content_type).partition(";")
    media = media.strip().lower()
    if not media:
        raise UnsupportedMediaTypeError("Content-Type is empty; send Content-Type: application/json")
    if media not in JSON_TYPES:
        raise UnsupportedMediaTypeError(f"Content-Type must be application/json, got {media[:60]!r}")
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaTypeError(
                f"charset {value.strip()[:40]!r} is not supported; send the JSON body as UTF-8 (charset=utf-8)")


def check_json_request(headers: dict[str, Any] | None) -> None:
    """The body checks every JSON route shares (scoring, family management): 415 for a Content-Type that is not
    JSON or declares a charset other than UTF-8, an empty Content-Type, or a Content-Encoding other than identity.
    Raises UnsupportedMediaTypeError (415)."""
    headers = headers or {}
    _check_content_type(_header(headers, "content-type"))
    _check_content_encoding(_header(headers, "content-encoding"))


def _check_content_encoding(encoding: str | None) -> None:
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        raise UnsupportedMediaTypeError(f"Content-Encoding {encoding.strip()[:40]!r} is not supported; send the "
                                        "JSON body uncompressed")


def _check_body_size(body: str, base64_encoded: bool) -> None:
    """413 when the body's bytes exceed MAX_BODY_BYTES, decided without decoding it: a base64 text of n characters
    holds at most 3n/4 bytes; a text holds between len and 4 x len UTF-8 bytes, so only texts in between are
    encoded to count (surrogatepass: a lone surrogate counts its 3 bytes instead of failing here)."""
    if base64_encoded:
        size, exact = len(body) * 3 // 4 - body[-2:].count("="), True
    elif len(body) * 4 <= MAX_BODY_BYTES:
        return
    elif len(body) > MAX_BODY_BYTES:
        size, exact = len(body), False
    else:
        size, exact = len(body.encode("utf-8", "surrogatepass")), True
    if size > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"request body is {'' if exact else 'at least '}{size} bytes; the limit is "
                                   f"{MAX_BODY_BYTES} bytes", limit=MAX_BODY_BYTES)


class UnsupportedMediaTypeError(ValidationError):
    http_status = 415


class PayloadTooLargeError(ValidationError):
    http_status = 413

