"""Platform configuration from the cdk.json context key `mlops`, validated at synth (field names in errors)."""

from __future__ import annotations

import re
from typing import Any, Literal

import pydantic
from mlops.core.schemas import DEDICATED, ModelFamily
from mlops.rollout.code import CodeCanaryPolicy
from pydantic import BaseModel, ConfigDict, Field, field_validator

CONTEXT_KEY = "mlops"
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                      3288, 3653)


class ApiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    throttle_rate_limit: float = Field(100.0, gt=0, le=10_000)
    throttle_burst_limit: int = Field(200, gt=0, le=5_000)
    stage_name: str = Field("prod", pattern=r"^[A-Za-z0-9_]{1,64}$")


class SharedScoringConfig(BaseModel):
    """The shared scoring tier (one function for every shared-tier family; docs/architecture.md, "Serving tiers")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mb: int = Field(2048, ge=512, le=10_240)
    # The model cache's budget: what the function's memory leaves after the runtime, libraries and one request's
    # buffers (about 300 MiB measured); None: memory_mb - 512.
    model_cache_mib: int | None = Field(None, ge=16, le=10_000)
    routing_ttl_seconds: float = Field(5.0, ge=0.0, le=300.0)
    # None: unreserved (the account's pool); a number keeps that much concurrency for scoring alone.
    reserved_concurrency: int | None = Field(None, ge=1, le=10_000)
    code_canary: CodeCanaryPolicy = CodeCanaryPolicy()
    # Tier alarms (the family is a dimension of the figures: each breaching family is named).
    alarm_errors: int = Field(5, ge=1)
    alarm_mean_latency_ms: float = Field(250.0, gt=0.0)
    alarm_p99_latency_ms: float = Field(500.0, gt=0.0)

    @property
    def cache_mib(self) -> int:
        return self.model_cache_mib or max(16, self.memory_mb - 512)


class PlatformConfig(BaseModel):
    """Everything an operator declares: families and their policies, plus platform-wide settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Seed families: registered as config version 1 at deploy time when the registry has none (never overwriting a
    # version registered at run time since: `mlops families apply`). Optional: families are data.
    families: tuple[ModelFamily, ...] = ()
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    log_retention_days: int = 90
    capture_retention_days: int = Field(90, ge=1, le=3650)
    report_retention_days: int = Field(400, ge=1, le=3650)
    alarm_email: str | None = None
    scoring_memory_mb: int = Field(1024, ge=128, le=10_240)
    training_memory_mb: int = Field(3008, ge=512, le=10_240)
    # The train function's /tmp: the Lambda engine spools each data set there (as stored, gzip stays gzip).
    training_ephemeral_mb: int = Field(2048, ge=512, le=10_240)
    api: ApiConfig = ApiConfig()
    shared_scoring: SharedScoringConfig = SharedScoringConfig()
    # Concurrency kept apart from scoring (docs/architecture.md, "Monitoring at scale"): the drift function's
    # reserved concurrency, which is also the fan-out's MaxConcurrency (families checked at once), and the train
    # and evaluate functions' (None: unreserved). A burst beyond it waits in the state machines' throttling retries.
    monitoring_concurrency: int = Field(10, ge=1, le=1_000)
    # Families per child execution of the drift fan-out: checked one after another in one drift invocation (keep
    # batch x the longest check under its 15 minutes); the child's state transitions are shared by the batch.
    monitoring_batch_size: int = Field(10, ge=1, le=100)
    training_concurrency: int | None = Field(10, ge=1, le=1_000)
    # One schedule checks the performance of every live family of both tiers (CBPE estimates; labels are checked as
    # they arrive).
    performance_schedule: str = Field("rate(6 hours)",
                                      pattern=r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(.+\))$")

    @field_validator("families")
    @classmethod
    def _unique_names(cls, value: tuple[ModelFamily, ...]) -> tuple[ModelFamily, ...]:
        names = [f.name for f in value]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"family names must be unique; repeated: {duplicated}")
        return value

    @property
    def shared_families(self) -> tuple[ModelFamily, ...]:
        return tuple(f for f in self.families if f.serving != DEDICATED)

    @property
    def dedicated_families(self) -> tuple[ModelFamily, ...]:
        return tuple(f for f in self.families if f.serving == DEDICATED)

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"must be one of CloudWatch Logs' retention values {LOG_RETENTION_DAYS}")
        return value

    @field_validator("alarm_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError("must be an e-mail address")
        return value


class ConfigError(ValueError):
    """Raised at synth: the message names every invalid field by its path in the cdk.json context."""


def load_config(context: Any) -> PlatformConfig:
    if not isinstance(context, dict):
        raise ConfigError(f"cdk.json context key {CONTEXT_KEY!r} must be an object of platform settings (and "
                          "optional seed 'families')")
    try:
        return PlatformConfig.model_validate(context)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = CONTEXT_KEY + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
            problems.append(f"{path}: {err['msg']}")
        raise ConfigError("invalid platform configuration:\n  " + "\n  ".join(problems)) from None
