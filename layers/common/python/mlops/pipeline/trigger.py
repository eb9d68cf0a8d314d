"""Start the model pipeline for data set uploads: one execution per object version, whatever the redelivery."""

from __future__ import annotations

import difflib
import hashlib
import re
from typing import Any
from urllib.parse import unquote_plus

import orjson
from pydantic import BaseModel, ConfigDict

from mlops.core import aws
from mlops.core.errors import FamilyRetiredError, UnknownFamilyError, ValidationError
from mlops.core.observability import MetricsPublisher, logger
from mlops.core.schemas import DEDICATED, ModelFamily
from mlops.data.datasets import SUPPORTED_SUFFIXES, is_supported_key
from mlops.registry.runs import NO_FAMILY, REJECTED, RunLog
from mlops.registry.store import FamilyRecord, ModelRegistry

DATASET_PREFIX = "datasets/"
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


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
    """Deterministic per object version: a redelivered or duplicated event maps to the same execution (and
    the same run id). Characters Step Functions does not allow in names become `_`."""
    digest = hashlib.sha256(f"{bucket}\n{key}\n{version}".encode()).hexdigest()[:32]
    return f"{_NAME_UNSAFE.sub('_', family[:40]) or NO_FAMILY}-{digest}"


def is_trainable_key(family: ModelFamily, key: str) -> bool:
    """Whether the family's training engine reads the file type of an object key: .csv and .csv.gz on every
    engine (`datasets.is_supported_key`), .parquet on the sagemaker and auto engines."""
    return is_supported_key(key) or (key.lower().endswith(".parquet") and family.training.engine != "lambda")


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


def start_pipeline(state_machine_arn: str, name: str, payload: dict[str, Any],
                   run_log: RunLog | None = None) -> dict[str, Any]:
    """Start one execution named `name`; with `run_log`, its run is recorded as started (also when the
    execution already existed: a redelivered event completes a record an earlier attempt did not write)."""
    arn = state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
    try:
        response = aws.client("stepfunctions").start_execution(
            stateMachineArn=state_machine_arn, name=name,
            input=orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode())
        result = {"started": True, "execution": name, "execution_arn": response["executionArn"]}
    except Exception as exc:
        if aws.error_code(exc) != "ExecutionAlreadyExists":
            raise
        result = {"started": False, "execution": name, "execution_arn": arn,
                  "reason": "duplicate event: execution already exists"}
    if run_log is not None:
        run_log.started(payload["family"], name, dataset=payload.get("dataset"), trigger=payload.get("trigger"),
                        execution_arn=result["execution_arn"])
    return result


def start_code_rollout(family_name: str, registry: ModelRegistry, state_machine_arn: str,
                       run_log: RunLog | None = None) -> dict[str, Any]:
    """Roll out a new scoring-function code version: retrain the live model on its exact data set version
    (deterministic: the same artifact) so the new code is published, gated and canaried like any model."""
    record = registry.get_family(family_name)
    if record.retired:
        raise FamilyRetiredError(retired_message(record))
    if record.family.serving != DEDICATED:
        raise ValidationError(f"{family_name} is served by the shared scoring tier, whose code rolls out for every "
                              "family at once: send {\"rollout_shared_code\": true}")
    if not record.live_version:
        raise UnknownFamilyError(f"{family_name} has no live model; its first model will use the new code")
    live = registry.get_version(family_name, record.live_version)
    source = live.lineage["dataset"]
    dataset = {k: source.get(k) for k in ("bucket", "key", "version_id", "etag")}
    code = aws.client("lambda").get_function_configuration(FunctionName=record.scoring_function)["CodeSha256"]
    digest = hashlib.sha256(f"{code}\n{live.version}".encode()).hexdigest()[:24]
    payload = pipeline_input(record, dataset, "code")
    payload["seed"] = live.lineage.get("seed", record.family.seed)
    return {"family": family_name, **start_pipeline(state_machine_arn, f"{family_name[:40]}-code-{digest}", payload,
                                                    run_log)}


def handle_event(event: dict[str, Any], registry: ModelRegistry, state_machine_arn: str,
                 run_log: RunLog | None = None, shared_code: Any = None) -> dict[str, Any]:
    """S3 notifications, or an operator's request after a scoring-code deploy: `{"rollout_code": "<family>"}` for
    a dedicated family's function, `{"rollout_shared_code": true}` (optional `"attempt"`) for the shared scoring
    function (`shared_code(attempt)` starts it: mlops.rollout.code.start_shared_code_rollout, bound by the
    handler to the stack's function, state machine and policy)."""
    run_log = run_log or RunLog(registry, MetricsPublisher("MLOpsPlatform"))
    if isinstance(event, dict) and event.get("rollout_shared_code") is True:
        if shared_code is None:
            raise ValidationError("this stack has no shared scoring tier to roll out")
        return {"outcomes": [shared_code(str(event.get("attempt") or ""))]}
    if isinstance(event, dict) and "rollout_code" in event:
        return {"outcomes": [start_code_rollout(str(event["rollout_code"]), registry, state_machine_arn, run_log)]}
    return {"outcomes": handle_s3_event(event, registry, state_machine_arn, run_log)}


def handle_s3_event(event: dict[str, Any], registry: ModelRegistry, state_machine_arn: str,
                    run_log: RunLog) -> list[dict[str, Any]]:
    notification = S3Notification.model_validate(event)
    outcomes = []
    for record in notification.Records:
        outcome = _handle_record(record, registry, state_machine_arn, run_log)
        (logger().info if outcome.get("started") else logger().warning)("s3 upload", extra=outcome)
        outcomes.append(outcome)
    return outcomes


def _handle_record(record: S3EventRecord, registry: ModelRegistry, state_machine_arn: str,
                   run_log: RunLog) -> dict[str, Any]:
    """Every object created under datasets/ ends here with a run record: started, or rejected with the reason
    (no family folder, unknown family, unsupported file type, over the family's size limit)."""
    bucket = record.s3.bucket.name
    key = unquote_plus(record.s3.object.key)
    base = {"bucket": bucket, "key": key, "started": False}
    if not record.eventName.startswith("ObjectCreated"):
        return {**base, "reason": f"ignored event {record.eventName}"}
    if key.endswith("/") and record.s3.object.size == 0:
        return {**base, "reason": "ignored folder marker (a console's empty 'folder' object, not a data set)"}
    parts = key.split("/")
    has_family = len(parts) >= 3 and parts[0] + "/" == DATASET_PREFIX and bool(parts[1])
    family_name = parts[1] if has_family else NO_FAMILY
    version_id = record.s3.object.versionId
    etag = record.s3.object.eTag.strip('"')
    size = record.s3.object.size
    if not version_id:
        # S3 includes versionId for versioned buckets; without it, pin the version the object has now (the run
        # id, like the CLI's, is derived from the object version).
        version_id, etag, size = _current_version(bucket, key, etag, size)
    dataset = {"bucket": bucket, "key": key, "version_id": version_id, "etag": etag, "size": size}
    run_id = execution_name(family_name, bucket, key, version_id or etag)

    def reject(reason: str, known: bool) -> dict[str, Any]:
        run_log.ended(family_name, run_id, REJECTED, step="Trigger", reason=reason, known_family=known,
                      detail={"reason": reason, "key": key, "version_id": version_id}, dataset=dataset)
        return {**base, "family": family_name, "run_id": run_id, "reason": f"rejected: {reason}"}

    if not has_family:
        return reject(f"key must look like {DATASET_PREFIX}<model-name>/<file>; {key!r} names no model family",
                      known=False)
    try:
        family = registry.get_family(family_name)
    except UnknownFamilyError:
        return reject(f"unknown model family {family_name!r}{_did_you_mean(registry, family_name)}", known=False)
    if family.retired:
        return reject(retired_message(family), known=True)
    parquet = key.lower().endswith(".parquet")
    if not is_trainable_key(family.family, key):
        return reject(f"unsupported file type {parts[-1]!r}; upload a data set ending in "
                      f"{' or '.join(SUPPORTED_SUFFIXES)}" + (", or declare training.engine: sagemaker (or auto) "
                                                                "to train on Parquet" if parquet else ""), known=True)
    if size > family.family.max_dataset_bytes:
        return reject(f"{size} bytes is over the family's limit of {family.family.max_dataset_bytes}", known=True)
    registry.record_upload(family_name, run_id, dataset)
    started = start_pipeline(state_machine_arn, run_id, pipeline_input(family, dataset, "s3"), run_log)
    return {**base, "family": family_name, "run_id": run_id, **started}


def retired_message(record: FamilyRecord) -> str:
    """Why nothing starts for a retired family (the run record's reason)."""
    why = f" by {record.changed_by}" if record.changed_by else ""
    return (f"model family {record.family.name!r} is retired (config version {record.config_version}, "
            f"{record.changed_at or 'time unknown'}{why}: {record.change_reason or 'no reason recorded'}); no new "
            "runs start for it. `mlops families apply` makes it active again")


def _current_version(bucket: str, key: str, etag: str, size: int) -> tuple[str | None, str, int]:
    try:
        head = aws.client("s3").head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if aws.error_code(exc) in ("404", "NoSuchKey", "NotFound"):  # deleted since: the event's figures stand
            return None, etag, size
        raise
    return head.get("VersionId"), head.get("ETag", "").strip('"') or etag, int(head.get("ContentLength", size))


def _did_you_mean(registry: ModelRegistry, name: str) -> str:
    """A hint naming the closest registered families among the active ones sharing the name's first letter (one
    page of the family index, never the whole listing)."""
    try:
        known = [r.name for r in registry.list_families(limit=200, status="active", after=name[:1]).items
                 if r.name[:1] == name[:1]]
    except Exception:  # a hint must never turn a rejection into a failure
        return ""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        return f"; did you mean {' or '.join(repr(c) for c in close)}?"
    return "; no registered family has a close name (`mlops families list` lists them)"
