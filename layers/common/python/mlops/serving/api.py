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
(mlops.serving.decisions).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from mlops.core.errors import IntegrityError, NoLiveModelError, PlatformError, UnknownFamilyError, ValidationError
from mlops.core.settings import ScoringSettings
from mlops.registry.artifacts import ArtifactStore
from mlops.serving.capture import CaptureWriter
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
    body = exc.to_dict()
    body["request_id"] = request_id
    # Anything the service cannot do right now is "unavailable" to the client, never a bare 500.
    status = exc.http_status if exc.http_status < 500 else 503
    return _response(status, body, {"X-Request-Id": request_id})


class ScoringService:
    """One per Lambda sandbox: the bound model is loaded on the first request and kept for the warm ones."""

    def __init__(self, settings: ScoringSettings, metrics: Any | None = None, status: Any | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        # mlops.serving.family_status.FamilyStatus: a retired family answers 404 (None: not checked).
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
        try:
            data = ArtifactStore(s.artifact_bucket).get(s.model_sha256)
        except IntegrityError:
            if self.metrics is not None:
                self.metrics.integrity_failure(s.model_family, s.model_version)
            raise NoLiveModelError(
                f"model {s.model_family} v{s.model_version} failed its integrity check and is not served"
            ) from None
        self.model = ScoringModel(data)
        self.capture = CaptureWriter(
            s.artifact_bucket, s.model_family, s.model_version, s.capture_sample_rate, s.never_capture_fields,
            flush_records=s.capture_flush_records,
        )
        self.decisions = DecisionLog(
            s.artifact_bucket, s.model_family, s.model_version, function_version=s.function_version,
            model_sha256=s.model_sha256, classes=self.model.classes,
            threshold=self.model.threshold if self.model.task == BINARY else None,  # no threshold for other tasks
            never_capture=s.never_capture_fields, flush_records=s.decision_flush_records)
        self.explainer = ServedExplainer(data, s.model_family, s.model_version)
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
            if resource.endswith("/predict"):
                if method != "POST":
                    return _response(405, {"error": "MethodNotAllowed", "message": "use POST for predictions",
                                           "request_id": request_id}, {"Allow": "POST"})
                return self.predict(event, request_id)
            if method != "GET":
                return _response(405, {"error": "MethodNotAllowed", "message": f"use GET on /models/{name}",
                                       "request_id": request_id}, {"Allow": "GET"})
            if resource.endswith("/openapi.json"):
                return self.openapi(request_id)
            return self.describe(request_id)
        except PlatformError as exc:
            return error_response(exc, request_id)

    def predict(self, event: dict[str, Any], request_id: str) -> dict[str, Any]:
        instances, explain = parse_request(event)
        model = self.load()
        index_list, proba_list = model.predict_instances(instances)
        if proba_list is None:  # a regression: the predicted values
            body: dict[str, Any] = {"model": self.settings.model_family, "version": self.settings.model_version,
                                    "predictions": index_list, "request_id": request_id}
        else:
            classes = model.classes
            body = {"model": self.settings.model_family, "version": self.settings.model_version,
                    "predictions": [classes[i] for i in index_list], "probabilities": proba_list,
                    "classes": classes, "request_id": request_id}
        explanations = None
        if explain is not None and self.explainer is not None:
            explanations = body["explanations"] = self.explainer.explain(model, instances, explain)
        # Captures keep class indices (canary and drift statistics count them; a regression's, its predicted value
        # as answered); every answer leaves a decision record, with the inputs when the capture sampled it.
        captured = self.capture is not None and self.capture.record(
            request_id, instances, index_list, [()] * len(index_list) if proba_list is None else proba_list)
        if self.decisions is not None:
            self.decisions.record(request_id, index_list, proba_list, instances if captured else None, explanations)
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "application/json", "X-Model-Version": self.version,
                        "X-Request-Id": request_id},
            "body": orjson.dumps(body).decode(),
            "isBase64Encoded": False,
        }

    def openapi(self, request_id: str) -> dict[str, Any]:
        """The family's OpenAPI document, built from its registered schema (and the live model's classes)."""
        from mlops.core.errors import TransientError
        from mlops.serving.openapi import family_openapi

        try:
            record = self.registry.get_family(self.settings.model_family)
            classes = None
            if record.live_version:
                classes = self.registry.get_version(record.family.name, record.live_version).lineage.get("classes")
        except TransientError:
            raise NoLiveModelError("the model registry is unavailable; retry shortly") from None
        return _response(200, family_openapi(record.family, classes), {"X-Request-Id": request_id})

    def describe(self, request_id: str) -> dict[str, Any]:
        from mlops.core.errors import TransientError

        try:
            record = self.registry.get_family(self.settings.model_family)
        except TransientError:
            raise NoLiveModelError("the model registry is unavailable; retry shortly") from None
        body: dict[str, Any] = {
            "model": record.family.name,
            "live_version": record.live_version or None,
            "canary_version": record.canary_version or None,
            "canary_weight": record.canary_weight if record.canary_version else 0,
            "task": record.family.task,
            "features": [f.model_dump(mode="json") for f in record.family.features],
            "served_version": self.settings.model_version or None,
            "request_id": request_id,
        }
        if record.live_version:
            live = self.registry.get_version(record.family.name, record.live_version)
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
        return _response(200, body, {"X-Request-Id": request_id, "X-Model-Version": self.version})


def parse_request(event: dict[str, Any]) -> tuple[Any, ExplainRequest | None]:
    """Decode the request body into the `instances` list and the explanation options (None unless "explain":
    true), naming the problem when it cannot."""
    headers = event.get("headers") or {}
    content_type = headers.get("Content-Type") or headers.get("content-type")
    if content_type is None and headers:  # header names are case-insensitive; the usual spellings come first
        content_type = next((v for k, v in headers.items() if str(k).lower() == "content-type"), None)
    if content_type != "application/json":  # the usual spelling needs no normalising
        content_type = str(content_type or "application/json").split(";", 1)[0].strip().lower()
        if content_type not in JSON_TYPES:
            raise UnsupportedMediaTypeError(f"Content-Type must be application/json, got {content_type!r}")
    body = event.get("body")
    if body is None or body == "":
        raise ValidationError("request body is empty; send {\"instances\": [...]}")
    if not isinstance(body, str):
        raise ValidationError("request body must be a JSON text")
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    raw: str | bytes = body
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("request body is flagged base64 but is not valid base64") from None
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"request body is not valid JSON: {exc}") from None
    if type(payload) is not dict:
        raise ValidationError("request body must be a JSON object with an 'instances' list")
    if "instances" not in payload:
        raise ValidationError("request body lacks 'instances'")
    if len(payload) != 1:
        return payload["instances"], explain_request(payload)
    return payload["instances"], None


class UnsupportedMediaTypeError(ValidationError):
    http_status = 415


class PayloadTooLargeError(ValidationError):
    http_status = 413

