"""Family management API: families registered, updated and retired at run time (docs/families.md, "Families at run
time"). IAM-authorized routes on the platform's API, beside GET /audit/{request_id}:

    GET    /families         list (query: limit 1..1000, next_token, status=active|retired)
    GET    /families/{name}  the current declaration, status and configuration history (query: history)
    PUT    /families/{name}  register or update: {"family": {...}, "reason": "...", "expected_config_version": n}
    DELETE /families/{name}  retire: {"reason": "...", "expected_config_version": n}

A declaration is validated by the same pydantic model as `mlops families validate` (mlops.core.schemas.ModelFamily);
every change is a new configuration version recorded with the caller's principal (API Gateway's IAM identity), the
time and the reason (mlops.registry.store.ModelRegistry.register_family / retire_family).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict
from typing import Any

import orjson
import pydantic

from mlops.core.errors import PlatformError, UnknownFamilyError, ValidationError
from mlops.core.observability import logger
from mlops.core.schemas import DEDICATED, FAMILY_NAME, ModelFamily
from mlops.registry.store import CREATED, FamilyChange, FamilyRecord, FamilySummary, ModelRegistry

FAMILIES_RESOURCE = "/families"
FAMILY_RESOURCE = "/families/{name}"
# A declaration is at most MAX_CONFIG_BYTES (100 KB) of JSON; the request around it is refused beyond this.
MAX_BODY_BYTES = 256 * 1024
DEFAULT_HISTORY = 20
MAX_ERRORS_LISTED = 10


class FamilyManager:
    """The operations behind the routes, on one registry. Every method returns JSON-ready dicts and raises
    PlatformError subclasses (ValidationError 400, UnknownFamilyError 404, ConcurrencyConflictError and
    RolloutInProgressError 409)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def list(self, limit: int = 100, next_token: str | None = None, status: str | None = None) -> dict[str, Any]:
        """{"families": [summary...] in name order, "next_token": str | None}."""
        page = self.registry.list_families(limit=limit, next_token=next_token, status=status)
        return {"families": [summary_json(f) for f in page.items], "next_token": page.next_token}

    def show(self, name: str, history: int = DEFAULT_HISTORY) -> dict[str, Any]:
        """{"family": summary, "declaration": {...}, "changed_by", "change_reason", "history": [change...] newest
        first (at most `history`), "history_next_token"}."""
        record = self.registry.get_family(_checked_name(name))
        changes = self.registry.family_history(name, limit=history)
        return {"family": summary_json(FamilySummary.from_record(record)),
                "declaration": record.family.model_dump(mode="json"), "changed_by": record.changed_by,
                "change_reason": record.change_reason, "history": [change_json(c) for c in changes.items],
                "history_next_token": changes.next_token}

    def apply(self, name: str, body: dict[str, Any], actor: str) -> dict[str, Any]:
        """Register or update the family from {"family", "reason", "expected_config_version"}: {"change",
        "family": summary, "declaration"}; `change` is created, updated, reactivated or unchanged."""
        _checked_name(name)
        declaration = body.get("family")
        if not isinstance(declaration, dict):
            raise ValidationError("the body needs `family`: the family declaration as an object (the same fields as "
                                  "a family file)")
        try:
            family = ModelFamily.model_validate(declaration)
        except pydantic.ValidationError as exc:
            problems = describe_validation(exc)
            raise ValidationError("invalid family declaration: " + "; ".join(problems[:MAX_ERRORS_LISTED])
                                  + (f"; and {len(problems) - MAX_ERRORS_LISTED} more"
                                     if len(problems) > MAX_ERRORS_LISTED else ""), problems=problems) from None
        if family.name != name:
            raise ValidationError(f"the path names family {name!r} but the declaration is named {family.name!r}")
        self._check_tier(family)
        result = self.registry.register_family(family, actor, _reason(body), expected_version=_expected(body))
        _log(result.change, result.record, actor)
        return {"change": result.change, "family": summary_json(FamilySummary.from_record(result.record)),
                "declaration": result.record.family.model_dump(mode="json")}

    def _check_tier(self, family: ModelFamily) -> None:
        """The serving tier is a deployment decision: a dedicated family needs its own scoring function, alias and
        API routes, which a deployment creates (cdk.json's families), and a deployed one keeps its routes until the
        next deployment. A run-time change may not move a family between tiers. Raises ValidationError naming
        what to do instead."""
        try:
            current = self.registry.get_family(family.name).family.serving
        except UnknownFamilyError:
            current = None
        if family.serving == DEDICATED and current != DEDICATED:
            raise ValidationError(
                f"serving: dedicated needs a scoring function of its own for family {family.name!r}, which only a "
                "deployment creates: declare it in cdk.json's mlops.families and deploy, or register it with "
                "serving: shared (the default; the shared scoring tier serves it at once)")
        if current == DEDICATED and family.serving != DEDICATED:
            raise ValidationError(
                f"{family.name!r} is served by its own scoring function (declared dedicated at deployment): change "
                "its serving tier in cdk.json and deploy; a run-time change keeps serving: dedicated")

    def retire(self, name: str, body: dict[str, Any], actor: str) -> dict[str, Any]:
        """Retire the family from {"reason", "expected_config_version"}: {"change": retired | unchanged, "family"}."""
        result = self.registry.retire_family(_checked_name(name), actor, _reason(body),
                                             expected_version=_expected(body))
        _log(result.change, result.record, actor)
        return {"change": result.change, "family": summary_json(FamilySummary.from_record(result.record))}


def summary_json(summary: FamilySummary) -> dict[str, Any]:
    """A family as listings show it (FamilySummary's fields; `features` is the number of features)."""
    return asdict(summary)


def change_json(change: FamilyChange, declaration: bool = False) -> dict[str, Any]:
    """One configuration change: version, change, status, at, actor, reason (and the declaration on request)."""
    out = {k: v for k, v in asdict(change).items() if k not in ("config", "family")}
    if declaration:
        out["declaration"] = change.config
    return out


def describe_validation(exc: pydantic.ValidationError) -> list[str]:
    """One line per problem: the field path (`features[2].missing`) and pydantic's message."""
    lines = []
    for err in exc.errors():
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        lines.append(f"{path or 'the declaration'}: {err['msg']}")
    return lines


def caller_principal(event: dict[str, Any]) -> str:
    """Who made the request: API Gateway's IAM identity (`userArn`: an IAM user or an assumed-role session ARN),
    else the caller id; `unknown` only for an event without identity (API Gateway never sends one on an
    IAM-authorized route)."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    return str(identity.get("userArn") or identity.get("caller") or "unknown")


def handle_request(manager: FamilyManager, event: dict[str, Any], request_id: str) -> dict[str, Any]:
    """The routes (API Gateway REST proxy event) -> the proxy response; every problem is a 4xx/503 JSON answer
    naming it, with the request id. Imports neither numpy nor onnxruntime: the function runs on the base layers."""
    context = event.get("requestContext") or {}
    request_id = context.get("requestId") or request_id
    method = str(event.get("httpMethod") or "").upper()
    resource = str(event.get("resource") or "")
    query = event.get("queryStringParameters") or {}
    try:
        if resource == FAMILIES_RESOURCE:
            if method != "GET":
                return _method_not_allowed("GET", resource, request_id)
            body = manager.list(_int(query, "limit", 100, 1, 1000), query.get("next_token") or None,
                                query.get("status") or None)
            return _ok(200, body, request_id)
        if resource != FAMILY_RESOURCE:
            return _ok(404, {"error": "NotFound", "message": f"no route {method} {resource}",
                             "request_id": request_id}, request_id)
        name = str((event.get("pathParameters") or {}).get("name") or "")
        if method == "GET":
            return _ok(200, manager.show(name, _int(query, "history", DEFAULT_HISTORY, 0, 100)), request_id)
        if method == "PUT":
            result = manager.apply(name, _json_body(event), caller_principal(event))
            return _ok(201 if result["change"] == CREATED else 200, result, request_id)
        if method == "DELETE":
            return _ok(200, manager.retire(name, _json_body(event), caller_principal(event)), request_id)
        return _method_not_allowed("GET, PUT, DELETE", resource, request_id)
    except _TooLarge as exc:
        return _ok(413, {"error": "PayloadTooLarge", "message": str(exc), "request_id": request_id}, request_id)
    except PlatformError as exc:
        # The status is the error class's (mlops.core.errors); what the service cannot do now is 503, never a 500.
        status = exc.http_status if exc.http_status < 500 else 503
        return _ok(status, {**exc.to_dict(), "request_id": request_id}, request_id)


class _TooLarge(Exception):
    pass


def _json_body(event: dict[str, Any]) -> dict[str, Any]:
    from mlops.serving.api import check_json_request

    check_json_request(event.get("headers"))  # 415, as the scoring routes answer
    raw: Any = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("the body is marked base64 but is not valid base64") from None
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if len(data) > MAX_BODY_BYTES:
        raise _TooLarge(f"the body is {len(data)} bytes; at most {MAX_BODY_BYTES}")
    if not data.strip():
        raise ValidationError("the body must be a JSON object with a `reason`")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"the body is not UTF-8 text (byte {exc.start}); send JSON encoded as UTF-8") from None
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValidationError(f"the body must be a JSON object, not {type(body).__name__}")
    return body


def _reason(body: dict[str, Any]) -> str:
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("`reason` is required: a non-empty text saying why the change is made")
    return reason


def _expected(body: dict[str, Any]) -> int | None:
    value = body.get("expected_config_version")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationError(f"`expected_config_version` must be a non-negative integer, got {value!r}")
    return value


def _checked_name(name: str) -> str:
    if not FAMILY_NAME.match(name):
        raise ValidationError(f"family name {name[:80]!r} must match {FAMILY_NAME.pattern}")
    return name


def _int(query: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    text = query.get(key)
    if text is None or text == "":
        return default
    if not str(text).isdigit() or not low <= int(text) <= high:
        raise ValidationError(f"query parameter {key!r} must be an integer from {low} to {high}, got {text!r}")
    return int(text)


def _ok(status: int, body: dict[str, Any], request_id: str) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json", "X-Request-Id": request_id},
            "body": orjson.dumps(body).decode(), "isBase64Encoded": False}


def _method_not_allowed(allowed: str, resource: str, request_id: str) -> dict[str, Any]:
    response = _ok(405, {"error": "MethodNotAllowed", "message": f"use {allowed} on {resource}",
                         "request_id": request_id}, request_id)
    response["headers"]["Allow"] = allowed
    return response


def _log(change: str, record: FamilyRecord, actor: str) -> None:
    logger().info("family configuration", extra={"family": record.family.name, "change": change,
                                                 "config_version": record.config_version, "status": record.status,
                                                 "actor": actor, "reason": record.change_reason})

