"""Lineage: everything needed to answer "which model, trained on which data, by which code, and why"."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DataSetRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str
    version_id: str | None = Field(description="S3 object version the rows were read from")
    etag: str = ""
    sha256: str
    rows: int
    columns: list[dict[str, Any]]


class CodeVersion(BaseModel):
    model_config = ConfigDict(frozen=True)

    package: str
    package_version: str
    git_revision: str | None = None
    dirty: bool | None = Field(None, description="uncommitted changes to tracked files when built (None: unknown)")
    libraries: dict[str, str] = Field(default_factory=dict)


class HoldoutRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    fraction: float
    rows: int
    row_ids_sha256: str
    artifact_sha256: str
    seed: int


class LineageRecord(BaseModel):
    """Stored with each registered version; gate and rollout facts are merged in as the pipeline proceeds."""

    model_config = ConfigDict(extra="allow")

    family: str
    dataset: DataSetRef
    code: CodeVersion
    algorithm: str
    hyperparameters: dict[str, Any]
    seed: int
    holdout: HoldoutRef
    artifact_sha256: str
    artifact_key: str
    baseline_profile: dict[str, Any]
    metrics: dict[str, Any] = Field(default_factory=dict)
    fairness: dict[str, Any] = Field(default_factory=dict)
    parity: dict[str, Any] = Field(default_factory=dict)
    gate: dict[str, Any] = Field(default_factory=dict)
    previous_live_version: int | None = None
    trained_at: str
    pipeline_execution: str | None = None
