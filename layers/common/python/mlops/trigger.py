"""Start the model pipeline for data set uploads: one execution per object version, whatever the redelivery."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import unquote_plus

import orjson
from pydantic import BaseModel, ConfigDict

from . import aws
from .datasets import is_supported_key
from .errors import UnknownFamilyError
from .observability import logger
from .registry import FamilyRecord, ModelRegistry

DATASET_PREFIX = "datasets/"


class _S3Object(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str
    size: int = 0
    eTag: str = ""
    versionId: str | None = None


class _S3Bucket(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str


class _S3Entity(BaseModel):
    model_config = ConfigDict(extra="ignore")
    bucket: _S3Bucket
    object: _S3Object


class S3EventRecord(BaseModel):
    """The fields of an S3 notification record the trigger relies on (AWS sends more; all are optional here)."""

    model_config = ConfigDict(extra="ignore")
    eventSource: str = "aws:s3"
    eventName: str
    s3: _S3Entity


class S3Notification(BaseModel):
    model_config = ConfigDict(extra="ignore")
    Records: list[S3EventRecord]


def execution_name(family: str, bucket: str, key: str, version: str) -> str:
    """Deterministic per object version: a redelivered or duplicated event maps to the same execution."""
    digest = hashlib.sha256(f"{bucket}\n{key}\n{version}".encode()).hexdigest()[:32]
    return f"{family[:40]}-{digest}"


def pipeline_input(record: FamilyRecord, dataset: dict[str, Any], source: str) -> dict[str, Any]:
    """The execution input. It holds nothing time-dependent, so duplicate starts are recognised as such."""
    canary = record.family.canary
    poll = max(1, canary.lock_poll_seconds)
    return {
        "family": record.family.name,
        "dataset": dataset,
        "seed": record.family.seed,
        "trigger": {"source": source},
        "timing": {
            "bake_seconds": canary.bake_seconds,
            "lock_poll_seconds": canary.lock_poll_seconds,
            "lock_max_attempts": max(1, canary.lock_max_wait_seconds // poll),
        },
    }


def start_pipeline(state_machine_arn: str, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        response = aws.client("stepfunctions").start_execution(
            stateMachineArn=state_machine_arn, name=name,
            input=orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode())
    except Exception as exc:
        if aws.error_code(exc) == "ExecutionAlreadyExists":
            return {"started": False, "execution": name, "reason": "duplicate event: execution already exists"}
        raise
    return {"started": True, "execution": name, "execution_arn": response["executionArn"]}


def start_code_rollout(family_name: str, registry: ModelRegistry, state_machine_arn: str) -> dict[str, Any]:
    """Roll out a new scoring-function code version: retrain the live model on its exact data set version
    (deterministic: the same artifact) so the new code is published, gated and canaried like any model."""
    record = registry.get_family(family_name)
    if not record.live_version:
        raise UnknownFamilyError(f"{family_name} has no live model; its first model will use the new code")
    live = registry.get_version(family_name, record.live_version)
    source = live.lineage["dataset"]
    dataset = {k: source.get(k) for k in ("bucket", "key", "version_id", "etag")}
    code = aws.client("lambda").get_function_configuration(FunctionName=record.scoring_function)["CodeSha256"]
    digest = hashlib.sha256(f"{code}\n{live.version}".encode()).hexdigest()[:24]
    payload = pipeline_input(record, dataset, "code")
    payload["seed"] = live.lineage.get("seed", record.family.seed)
    return {"family": family_name, **start_pipeline(state_machine_arn, f"{family_name[:40]}-code-{digest}", payload)}


def handle_event(event: dict[str, Any], registry: ModelRegistry, state_machine_arn: str) -> dict[str, Any]:
    """S3 notifications, or an operator's `{"rollout_code": "<family>"}` after a scoring-code deploy."""
    if isinstance(event, dict) and "rollout_code" in event:
        return {"outcomes": [start_code_rollout(str(event["rollout_code"]), registry, state_machine_arn)]}
    return {"outcomes": handle_s3_event(event, registry, state_machine_arn)}


def handle_s3_event(event: dict[str, Any], registry: ModelRegistry, state_machine_arn: str) -> list[dict[str, Any]]:
    notification = S3Notification.model_validate(event)
    outcomes = []
    for record in notification.Records:
        outcome = _handle_record(record, registry, state_machine_arn)
        (logger().info if outcome.get("started") else logger().warning)("s3 upload", extra=outcome)
        outcomes.append(outcome)
    return outcomes


def _handle_record(record: S3EventRecord, registry: ModelRegistry, state_machine_arn: str) -> dict[str, Any]:
    bucket = record.s3.bucket.name
    key = unquote_plus(record.s3.object.key)
    base = {"bucket": bucket, "key": key, "started": False}
    if not record.eventName.startswith("ObjectCreated"):
        return {**base, "reason": f"ignored event {record.eventName}"}
    parts = key.split("/")
    if len(parts) < 3 or parts[0] + "/" != DATASET_PREFIX or not parts[1] or not parts[-1]:
        return {**base, "reason": f"rejected: key must look like {DATASET_PREFIX}<model-name>/<file>.csv"}
    family_name = parts[1]
    try:
        family = registry.get_family(family_name)
    except UnknownFamilyError:
        return {**base, "reason": f"rejected: unknown model family {family_name!r}"}
    if not is_supported_key(key):
        return {**base, "family": family_name, "reason": f"rejected: unsupported file type {parts[-1]!r}; "
                                                         "upload a .csv data set"}
    version_id = record.s3.object.versionId
    etag = record.s3.object.eTag.strip('"')
    size = record.s3.object.size
    if not version_id:
        # S3 includes versionId for versioned buckets; without it, pin the version the object has now.
        head = aws.client("s3").head_object(Bucket=bucket, Key=key)
        version_id, etag, size = head.get("VersionId"), head.get("ETag", "").strip('"'), head["ContentLength"]
    if size > family.family.max_dataset_bytes:
        reason = f"rejected: {size} bytes is over the family's limit of {family.family.max_dataset_bytes}"
        registry.record_run(family_name, execution_name(family_name, bucket, key, version_id or etag),
                            "rejected_dataset", {"reason": reason, "key": key, "version_id": version_id})
        return {**base, "family": family_name, "reason": reason}
    dataset = {"bucket": bucket, "key": key, "version_id": version_id, "etag": etag}
    name = execution_name(family_name, bucket, key, version_id or etag)
    return {**base, "family": family_name, **start_pipeline(state_machine_arn, name,
                                                            pipeline_input(family, dataset, "s3"))}
