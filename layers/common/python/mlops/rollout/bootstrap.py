"""Deploy-time setup of a model family (CloudFormation custom resource): the seed registry entry and the `live` alias.

The alias is created once, pointing at a published bootstrap version that serves no model (503), and is
never touched again by a deployment: from then on only the rollout moves it (docs/architecture.md).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

from mlops.core import aws
from mlops.core.schemas import ModelFamily
from mlops.registry.store import ModelRegistry
from mlops.rollout.control import ALIAS

Sender = Callable[[str, dict[str, Any]], None]


def ensure_alias(function_name: str) -> str:
    """Create `live` on a bootstrap version if the function has no alias yet; otherwise leave it alone."""
    client = aws.client("lambda")
    try:
        return str(client.get_alias(FunctionName=function_name, Name=ALIAS)["FunctionVersion"])
    except Exception as exc:
        if aws.error_code(exc) != "ResourceNotFoundException":
            raise
    version = client.publish_version(FunctionName=function_name, Description="bootstrap: no model bound")["Version"]
    client.create_alias(FunctionName=function_name, Name=ALIAS, FunctionVersion=version,
                        Description="owned by the rollout pipeline after creation")
    return str(version)


def handle(event: dict[str, Any], registry: ModelRegistry) -> dict[str, Any]:
    """Create/Update: seed the cdk.json family (config version 1 when the registry has none; a registered
    declaration, possibly changed at run time since, is never overwritten: `ModelRegistry.seed_family`) and make
    sure the alias exists. Delete: nothing (registry history and the function's versions are audit evidence)."""
    props = event.get("ResourceProperties") or {}
    family = ModelFamily.model_validate(json.loads(props["Family"]))
    function_name = props["ScoringFunction"]
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId") or f"family-{family.name}", "Data": {}}
    seeded = registry.seed_family(family, function_name, actor=f"cloudformation:{event.get('StackId', 'unknown')}",
                                  reason="seed family from cdk.json (deploy-time bootstrap)")
    version = ensure_alias(function_name)
    return {"PhysicalResourceId": f"family-{family.name}",
            "Data": {"AliasVersion": version, "ConfigVersion": str(seeded.record.config_version),
                     "Seeded": seeded.change}}


def respond(event: dict[str, Any], context: Any, registry: ModelRegistry, send: Sender | None = None) -> None:
    """Run `handle` and always answer CloudFormation (a missing answer blocks a stack for an hour)."""
    send = send or _put_response
    body = {"StackId": event["StackId"], "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "PhysicalResourceId": event.get("PhysicalResourceId") or context.log_stream_name}
    try:
        result = handle(event, registry)
        body.update({"Status": "SUCCESS", "PhysicalResourceId": result["PhysicalResourceId"], "Data": result["Data"]})
    except Exception as exc:  # any failure must still be reported, with its reason
        body.update({"Status": "FAILED", "Reason": f"{type(exc).__name__}: {exc}"[:1000]})
    send(event["ResponseURL"], body)


def _put_response(url: str, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(data))})
    with urllib.request.urlopen(request, timeout=30):  # noqa: S310 - the pre-signed S3 URL CloudFormation gave
        pass
