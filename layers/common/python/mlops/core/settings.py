"""Per-function settings read once from environment variables whose names are shared with the CDK code."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlops.core.errors import ConfigurationError

# Capture objects: a writer flushes at this many sampled records or 60 s after its first one, whichever comes
# first (a size-or-time buffer, as Kinesis Data Firehose buffers). Large enough that a busy family's hourly
# window is a few hundred objects (the drift check's cost is per object: docs/benchmarks.md, drift_scale). The age
# bound is checked when a record arrives (a frozen sandbox runs no timer); records buffered in a reclaimed sandbox
# are lost: at most this many, or 60 s of its traffic.
CAPTURE_FLUSH_RECORDS = 5_000
CAPTURE_MAX_AGE_SECONDS = 60.0
# A drift check's window ends this long before it starts: a capture object whose PUT began before the check (the
# writers key objects by their write time) is visible to its listing by then, whatever the clocks' skew.
CAPTURE_SETTLE_SECONDS = 60.0


class Env:
    """Environment variable names: the CDK stacks set exactly these, the settings models read exactly these."""

    ARTIFACT_BUCKET = "MLOPS_ARTIFACT_BUCKET"
    REGISTRY_TABLE = "MLOPS_REGISTRY_TABLE"
    STATE_MACHINE_ARN = "MLOPS_STATE_MACHINE_ARN"
    MODEL_FAMILY = "MLOPS_MODEL_FAMILY"
    MODEL_VERSION = "MLOPS_MODEL_VERSION"
    MODEL_SHA256 = "MLOPS_MODEL_SHA256"
    CAPTURE_SAMPLE_RATE = "MLOPS_CAPTURE_SAMPLE_RATE"
    CAPTURE_FLUSH_RECORDS = "MLOPS_CAPTURE_FLUSH_RECORDS"
    CAPTURE_MAX_AGE_SECONDS = "MLOPS_CAPTURE_MAX_AGE_SECONDS"
    CAPTURE_SETTLE_SECONDS = "MLOPS_CAPTURE_SETTLE_SECONDS"
    NEVER_CAPTURE = "MLOPS_NEVER_CAPTURE"
    GIT_REVISION = "MLOPS_GIT_REVISION"
    DECISION_FLUSH_RECORDS = "MLOPS_DECISION_FLUSH_RECORDS"
    # How long a scoring sandbox trusts the family's status (active/retired) before reading it again.
    FAMILY_STATUS_TTL = "MLOPS_FAMILY_STATUS_TTL_SECONDS"
    # The shared scoring tier (mlops.serving.shared): how long a family's routing (live, canary, weight) is trusted
    # before the registry is read again, how long a stale one may serve while the registry is unavailable, the
    # model cache's memory budget, where its EMF metrics go (stdout in Lambda; the local runtime puts them).
    ROUTING_TTL_SECONDS = "MLOPS_ROUTING_TTL_SECONDS"
    ROUTING_MAX_STALE_SECONDS = "MLOPS_ROUTING_MAX_STALE_SECONDS"
    MODEL_CACHE_MIB = "MLOPS_MODEL_CACHE_MIB"
    METRICS_SINK = "MLOPS_METRICS_SINK"
    # The control function: the shared scoring function (its `live` alias is moved by code rollouts only).
    SHARED_SCORING_FUNCTION = "MLOPS_SHARED_SCORING_FUNCTION"
    CODE_ROLLOUT_STATE_MACHINE_ARN = "MLOPS_CODE_ROLLOUT_STATE_MACHINE_ARN"
    CODE_CANARY_POLICY = "MLOPS_CODE_CANARY_POLICY"
    # The alerts topic: the performance function names the family and version of a breach there
    # (mlops.monitoring.performance).
    ALERTS_TOPIC_ARN = "MLOPS_ALERTS_TOPIC_ARN"
    # Set by Lambda itself: the published version answering (decision records), the runtime API (extensions).
    FUNCTION_VERSION = "AWS_LAMBDA_FUNCTION_VERSION"
    RUNTIME_API = "AWS_LAMBDA_RUNTIME_API"
    METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
    SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
    # Training engines (mlops.training.engines): the SageMaker training jobs' image, source and dependency archives, one
    # role per family (JSON object), the platform's KMS key, the train function's /tmp size.
    TRAINING_IMAGE = "MLOPS_TRAINING_IMAGE"
    TRAINING_CODE_URI = "MLOPS_TRAINING_CODE_URI"
    TRAINING_VENDOR_URI = "MLOPS_TRAINING_VENDOR_URI"
    TRAINING_ROLES = "MLOPS_TRAINING_ROLES"
    PLATFORM_KEY_ARN = "MLOPS_PLATFORM_KEY_ARN"
    EPHEMERAL_STORAGE_MB = "MLOPS_EPHEMERAL_STORAGE_MB"
    # Set by Lambda itself: the function's memory and region.
    FUNCTION_MEMORY_MB = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
    REGION = "AWS_REGION"


class _Settings(BaseModel):
    # defer_build: each function builds only the settings model it uses (cold start).
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=False, defer_build=True)


class StorageSettings(_Settings):
    """Every pipeline function reads and writes artifacts and the registry."""

    artifact_bucket: str = Field(alias=Env.ARTIFACT_BUCKET, min_length=3, max_length=63)
    registry_table: str = Field(alias=Env.REGISTRY_TABLE, min_length=3, max_length=255)
    metrics_namespace: str = Field("MLOpsPlatform", alias=Env.METRICS_NAMESPACE, min_length=1)


class TriggerSettings(StorageSettings):
    state_machine_arn: str = Field(alias=Env.STATE_MACHINE_ARN, pattern=r"^arn:aws[a-z-]*:states:")
    # `{"rollout_shared_code": true}` starts a code rollout of the shared scoring function with this policy (JSON,
    # mlops.rollout.code.CodeCanaryPolicy); empty: the stack has no shared tier.
    shared_scoring_function: str = Field("", alias=Env.SHARED_SCORING_FUNCTION, max_length=140)
    code_rollout_state_machine_arn: str = Field("", alias=Env.CODE_ROLLOUT_STATE_MACHINE_ARN,
                                                pattern=r"^(arn:aws[a-z-]*:states:.*)?$")
    code_canary_policy: str = Field("{}", alias=Env.CODE_CANARY_POLICY)


class TrainSettings(StorageSettings):
    # Recorded in lineage as the code version; CDK sets it from the deploying checkout.
    git_revision: str = Field("", alias=Env.GIT_REVISION, max_length=64)
    # Plan (engine choice and limits) and the sagemaker engine's jobs; empty URIs: that engine is not deployed.
    memory_mb: int = Field(3008, alias=Env.FUNCTION_MEMORY_MB, ge=128, le=10_240)
    ephemeral_storage_mb: int = Field(512, alias=Env.EPHEMERAL_STORAGE_MB, ge=512, le=10_240)
    region: str = Field("us-east-1", alias=Env.REGION, min_length=1)
    training_image: str = Field("", alias=Env.TRAINING_IMAGE)
    training_code_uri: str = Field("", alias=Env.TRAINING_CODE_URI, pattern=r"^(s3://.+)?$")
    training_vendor_uri: str = Field("", alias=Env.TRAINING_VENDOR_URI, pattern=r"^(s3://.+)?$")
    training_roles: str = Field("{}", alias=Env.TRAINING_ROLES)
    platform_key_arn: str = Field("", alias=Env.PLATFORM_KEY_ARN)

    @field_validator("training_roles")
    @classmethod
    def _roles_object(cls, value: str) -> str:
        import orjson

        try:
            roles = orjson.loads(value or "{}")
        except orjson.JSONDecodeError:
            roles = None
        if not isinstance(roles, dict) or not all(isinstance(v, str) for v in roles.values()):
            raise ValueError("must be a JSON object of family name -> role ARN")
        return value


class EvaluateSettings(StorageSettings):
    pass


class RolloutSettings(StorageSettings):
    """Register, canary start/check, promote, rollback and the rollout lock; the shared scoring function's code
    rollouts (empty when the stack has no shared tier)."""

    state_machine_arn: str = Field(alias=Env.STATE_MACHINE_ARN, pattern=r"^arn:aws[a-z-]*:states:")
    shared_scoring_function: str = Field("", alias=Env.SHARED_SCORING_FUNCTION, max_length=140)
    code_rollout_state_machine_arn: str = Field("", alias=Env.CODE_ROLLOUT_STATE_MACHINE_ARN,
                                                pattern=r"^(arn:aws[a-z-]*:states:.*)?$")


class DriftSettings(StorageSettings):
    state_machine_arn: str = Field(alias=Env.STATE_MACHINE_ARN, pattern=r"^arn:aws[a-z-]*:states:")
    # 0 in the local runtime, which writes every capture before it starts a check.
    capture_settle_seconds: float = Field(CAPTURE_SETTLE_SECONDS, alias=Env.CAPTURE_SETTLE_SECONDS, ge=0.0,
                                          le=3600.0)


class PerformanceSettings(StorageSettings):
    """Labels uploads (S3 notifications on labels/) and the scheduled performance check
    (mlops.monitoring.performance)."""

    state_machine_arn: str = Field(alias=Env.STATE_MACHINE_ARN, pattern=r"^arn:aws[a-z-]*:states:")
    # Empty: breaches are only published as metrics (the tier's alarm), no message naming the family.
    alerts_topic_arn: str = Field("", alias=Env.ALERTS_TOPIC_ARN, pattern=r"^(arn:aws[a-z-]*:sns:.+)?$")


class ScoringSettings(StorageSettings):
    """A published scoring-function version is bound to one model version through these values."""

    model_family: str = Field(alias=Env.MODEL_FAMILY, pattern=r"^[a-z][a-z0-9-]{1,62}$")
    # 0 means "no model bound": $LATEST before the first rollout; it answers 503.
    model_version: int = Field(0, alias=Env.MODEL_VERSION, ge=0)
    model_sha256: str = Field("", alias=Env.MODEL_SHA256, pattern=r"^([0-9a-f]{64})?$")
    capture_sample_rate: float = Field(0.1, alias=Env.CAPTURE_SAMPLE_RATE, ge=0.0, le=1.0)
    capture_flush_records: int = Field(CAPTURE_FLUSH_RECORDS, alias=Env.CAPTURE_FLUSH_RECORDS, ge=1, le=10_000)
    capture_max_age_seconds: float = Field(CAPTURE_MAX_AGE_SECONDS, alias=Env.CAPTURE_MAX_AGE_SECONDS, gt=0.0,
                                           le=3600.0)
    never_capture: str = Field("", alias=Env.NEVER_CAPTURE)
    # Decision records (mlops.serving.decisions): batch size; the function version Lambda runs this sandbox as.
    decision_flush_records: int = Field(512, alias=Env.DECISION_FLUSH_RECORDS, ge=1, le=512)
    # A retired family answers 404 at most this many seconds after its retirement (mlops.serving.family_status).
    family_status_ttl_seconds: float = Field(30.0, alias=Env.FAMILY_STATUS_TTL, ge=0.0, le=3600.0)
    function_version: str = Field("", alias=Env.FUNCTION_VERSION, max_length=64)
    metrics_sink: Literal["stdout", "cloudwatch"] = Field("stdout", alias=Env.METRICS_SINK)

    @property
    def never_capture_fields(self) -> frozenset[str]:
        return frozenset(x.strip() for x in self.never_capture.split(",") if x.strip())


class SharedScoringSettings(StorageSettings):
    """The shared scoring function: every shared-tier family, routed by the registry (mlops.serving.shared)."""

    capture_flush_records: int = Field(CAPTURE_FLUSH_RECORDS, alias=Env.CAPTURE_FLUSH_RECORDS, ge=1, le=10_000)
    capture_max_age_seconds: float = Field(CAPTURE_MAX_AGE_SECONDS, alias=Env.CAPTURE_MAX_AGE_SECONDS, gt=0.0,
                                           le=3600.0)
    decision_flush_records: int = Field(512, alias=Env.DECISION_FLUSH_RECORDS, ge=1, le=512)
    function_version: str = Field("", alias=Env.FUNCTION_VERSION, max_length=64)
    # A rollback or a canary step reaches traffic within this many seconds (plus DynamoDB's replication lag).
    routing_ttl_seconds: float = Field(5.0, alias=Env.ROUTING_TTL_SECONDS, ge=0.0, le=300.0)
    routing_max_stale_seconds: float = Field(300.0, alias=Env.ROUTING_MAX_STALE_SECONDS, ge=0.0, le=86_400.0)
    # Models beyond this budget are evicted least recently used first (footprints measured at load).
    model_cache_mib: int = Field(512, alias=Env.MODEL_CACHE_MIB, ge=16, le=10_240)
    metrics_sink: Literal["stdout", "cloudwatch"] = Field("stdout", alias=Env.METRICS_SINK)


class AuditSettings(StorageSettings):
    """GET /audit/{request_id}: reads decision records, the registry and artifacts."""


class FamiliesSettings(StorageSettings):
    """GET/PUT/DELETE /families[/{name}]: reads and writes family declarations in the registry."""


S = TypeVar("S", bound=_Settings)
_overlay = threading.local()


def environ() -> Mapping[str, str]:
    """The function's environment: os.environ in Lambda; a per-thread mapping when the local runtime runs
    several functions in one process (it never mutates os.environ, which other threads read concurrently)."""
    return getattr(_overlay, "env", None) or os.environ


@contextmanager
def function_environment(env: Mapping[str, str]) -> Iterator[None]:
    previous = getattr(_overlay, "env", None)
    _overlay.env = env
    try:
        yield
    finally:
        _overlay.env = previous


def load_settings(model: type[S], environ_: Mapping[str, str] | None = None) -> S:
    """Validate the environment against `model`; the error names every missing or invalid variable."""
    env = environ() if environ_ is None else environ_
    try:
        return model.model_validate({k: v for k, v in env.items()})
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "?"
            if err["type"] == "missing":
                problems.append(f"{name} is not set")
            else:
                problems.append(f"{name}={env.get(name)!r}: {err['msg']}")
        raise ConfigurationError(
            f"{model.__name__}: invalid environment: " + "; ".join(problems), variables=problems
        ) from None


def env_var_names(model: type[_Settings]) -> set[str]:
    """Names the CDK code must provide for `model` (required ones only)."""
    return {f.alias for f in model.model_fields.values() if f.is_required() and f.alias}
