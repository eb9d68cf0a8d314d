"""Deploy-time setup (CloudFormation custom resources): a dedicated family's registry entry and `live` alias
(`Custom::ModelFamily`), and the shared scoring tier's alias and seed families (`Custom::SharedScoring`).

An alias is created once, pointing at a first published version (for a dedicated function, one that serves no
model: 503), and is never touched again by a deployment: from then on only rollouts move it (docs/architecture.md).
The shared tier's seed families come from one JSON asset (its S3 location and sha256 are the resource's only
properties), so the template does not grow with them.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from collections.abc import Callable
from typing import Any

from mlops.core import aws
from mlops.core.schemas import ModelFamily
from mlops.registry.store import ModelRegistry
from mlops.rollout.control import ALIAS

Sender = Callable[[str, dict[str, Any]], None]
SHARED_RESOURCE_TYPE = "Custom::SharedScoring"


def ensure_alias(function_name: str, description: str = "bootstrap: no model bound") -> str:
    """Create `live` on a first published version if the function has no alias yet; otherwise leave it alone."""
    client = aws.client("lambda")
    try:
        return str(client.get_alias(FunctionName=function_name, Name=ALIAS)["FunctionVersion"])
    except Exception as exc:
        if aws.error_code(exc) != "ResourceNotFoundException":
            raise
    version = client.publish_version(FunctionName=function_name, Description=description)["Version"]
    client.create_alias(FunctionName=function_name, Name=ALIAS, FunctionVersion=version,
                        Description="owned by the rollout pipeline after creation")
    return str(version)


def seed_families(location: dict[str, str]) -> list[ModelFamily]:
    """The seed families of the shared tier from their JSON asset ({"Bucket", "Key", "Sha256"}), checked against
    the hash the template carries. Raises ValueError naming the problem."""
    body = aws.client("s3").get_object(Bucket=location["Bucket"], Key=location["Key"])["Body"].read()
    if hashlib.sha256(body).hexdigest() != location["Sha256"]:
        raise ValueError(f"seed families asset s3://{location['Bucket']}/{location['Key']} does not match its sha256")
    return [ModelFamily.model_validate(f) for f in json.loads(body)]


def handle_shared(event: dict[str, Any], registry: ModelRegistry) -> dict[str, Any]:
    """Create/Update: the shared function's `live` alias (once) and the seed families registered on it (as
    `ModelRegistry.seed_family`: never overwriting a registered declaration).
    Delete: nothing."""
    props = event.get("ResourceProperties") or {}
    function_name = props["ScoringFunction"]
    physical = event.get("PhysicalResourceId") or f"shared-scoring-{function_name}"
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": physical, "Data": {}}
    families = seed_families(props["SeedFamilies"]) if props.get("SeedFamilies") else []
    actor = f"cloudformation:{event.get('StackId', 'unknown')}"
    for family in families:  # config version 1 when new; a run-time change is never overwritten by a deploy
        registry.seed_family(family, function_name, actor=actor)
    version = ensure_alias(function_name, "first code version of the shared scoring function")
    return {"PhysicalResourceId": physical, "Data": {"AliasVersion": version, "SeedFamilies": len(families)}}


def handle(event: dict[str, Any], registry: ModelRegistry) -> dict[str, Any]:
    """Create/Update: seed the cdk.json family (config version 1 when the registry has none; a registered
    declaration, possibly changed at run time since, is never overwritten: `ModelRegistry.seed_family`) and make
    sure the alias exists. Delete: nothing (registry history and the function's versions are audit evidence)."""
    if event.get("ResourceType") == SHARED_RESOURCE_TYPE:
        return handle_shared(event, registry)
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
