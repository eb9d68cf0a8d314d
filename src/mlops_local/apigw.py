"""API Gateway REST (Lambda proxy) events, shaped exactly like AWS's, for local serving and tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

ROUTES = {"predict": "/models/{name}/predict", "describe": "/models/{name}", "openapi": "/models/{name}/openapi.json"}


def proxy_event(method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None,
                is_base64: bool = False, source_ip: str = "127.0.0.1", stage: str = "local") -> dict[str, Any]:
    """The event API Gateway sends for `method path` on the scoring API's resources."""
    parts = path.strip("/").split("/")
    name = parts[1] if len(parts) >= 2 and parts[0] == "models" else ""
    resource = ROUTES["predict"] if len(parts) == 3 and parts[2] == "predict" else ROUTES["describe"]
    if len(parts) == 3 and parts[2] == "openapi.json":
        resource = ROUTES["openapi"]
    request_id = str(uuid.uuid4())
    now = time.time()
    all_headers = {"Content-Type": "application/json", "Host": "localhost", **(headers or {})}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"name": name},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource, "httpMethod": method, "path": f"/{stage}{path}", "stage": stage,
            "requestId": request_id, "extendedRequestId": request_id, "accountId": "123456789012",
            "apiId": "local", "protocol": "HTTP/1.1", "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000",
                                                                                   time.gmtime(now)),
            "requestTimeEpoch": int(now * 1000), "domainName": "localhost",
            "identity": {"sourceIp": source_ip, "userAgent": all_headers.get("User-Agent", "local"),
                         "caller": None, "user": None, "accessKey": None, "apiKey": None, "userArn": None},
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def management_event(method: str, path: str, query: dict[str, str] | None = None, body: str | None = None,
                     headers: dict[str, str] | None = None, is_base64: bool = False, principal: str = "local",
                     source_ip: str = "127.0.0.1", stage: str = "local") -> dict[str, Any]:
    """The event API Gateway sends for the management routes GET /families and GET|PUT|DELETE /families/{name},
    with `principal` as the IAM identity's userArn (API Gateway fills it from the SigV4 signature)."""
    parts = path.strip("/").split("/")
    named = len(parts) == 2
    event = proxy_event(method, path, body, headers, is_base64, source_ip, stage)
    resource = "/families/{name}" if named else "/families"
    event.update({"resource": resource, "pathParameters": {"name": parts[1]} if named else None,
                  "queryStringParameters": query or None,
                  "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None})
    event["requestContext"]["resourcePath"] = resource
    event["requestContext"]["identity"].update({"userArn": principal, "caller": principal, "user": principal})
    return event


def audit_event(request_id: str, query: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                principal: str = "local", source_ip: str = "127.0.0.1", stage: str = "local") -> dict[str, Any]:
    """The event API Gateway sends for GET /audit/{request_id} (IAM-authorized: `principal` is the caller's
    userArn), with the optional query parameters `family` and `at`."""
    from urllib.parse import quote

    event = proxy_event("GET", f"/audit/{quote(request_id, safe='')}", None, headers, False, source_ip, stage)
    event.update({"resource": "/audit/{request_id}", "pathParameters": {"request_id": request_id},
                  "queryStringParameters": query or None,
                  "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None})
    event["requestContext"]["resourcePath"] = "/audit/{request_id}"
    event["requestContext"]["identity"].update({"userArn": principal, "caller": principal, "user": principal})
    return event
