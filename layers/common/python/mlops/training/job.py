"""The SageMaker training job's entry point: `pipeline.train_step`, the Lambda engine's own Train step, run inside
AWS's scikit-learn container with the job's channels as its only input and /opt/ml/model as its only output.

The container makes no AWS call (the job may run with network isolation): the data set version the PlanTraining
state staged is read from the `train` channel under its original S3 reference (so lineage names the upload,
not the staging copy), the family declaration and the run's input from the `config` channel, and every artifact
`train_step` stores goes to /opt/ml/model/artifacts/<sha256> (with a .meta.json) instead of S3. SageMaker uploads
/opt/ml/model as model.tar.gz; the CollectTrainingJob state re-hashes and stores each artifact and checks for
duplicate content against the registry. The registry the container sees is a stand-in: the family from the
configuration, no run annotations, no earlier verdicts.

Exit status 0 with /opt/ml/model/result.json (the Train output); 1 for a platform error (bad data set...), 2 for
anything else, each with /opt/ml/output/failure holding the reason (DescribeTrainingJob's FailureReason, its
first 1,024 characters: docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-output.html).

Run as `python train.py` by the training toolkit (sagemaker_program), `python -m mlops.training.job` locally.
"""

from __future__ import annotations

import hashlib
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from mlops.core.errors import ArtifactNotFoundError, DataSetError, PlatformError
from mlops.core.schemas import ModelFamily
from mlops.registry.artifacts import ARTIFACT_PREFIX, MODEL_PREFIX, ArtifactStore, StoredObject
from mlops.training.engines import ARTIFACTS_DIR, CHANNEL_CONFIG, CHANNEL_DATA, JOB_CONFIG_FILE, RESULT_FILE

BASE = Path("/opt/ml")
FAILURE_CHARS = 1024
BLOCK = 1 << 20
# engines.LAUNCHER at the root of the source archive (infra/training_jobs.py writes it): the dependencies the
# `vendor` channel delivers (the training function's own layers, as an archive) go first on sys.path, ahead of
# the image's older packages, then this module runs. Standard library only: nothing else is importable yet.
LAUNCHER_SOURCE = '''"""SageMaker training job entry point of the mlops platform (sagemaker_program)."""
import os
import runpy
import sys
import tarfile
from pathlib import Path

channel = Path(os.environ.get("SM_CHANNEL_VENDOR", "/opt/ml/input/data/vendor"))
target = Path(os.environ.get("MLOPS_VENDOR_DIR", "/tmp/mlops-vendor"))
for archive in sorted(channel.glob("*")):
    with tarfile.open(archive, mode="r:*") as tar:
        tar.extractall(target, filter="data")
sys.path[:0] = [str(target), str(Path(__file__).resolve().parent)]
runpy.run_module("mlops.training.job", run_name="__main__", alter_sys=True)
'''


@dataclass(frozen=True)
class JobPaths:
    """The container's directories, from the training toolkit's SM_* variables (defaults: SageMaker's paths)."""

    data: Path
    config: Path
    model: Path
    output: Path

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> JobPaths:
        env = dict(os.environ if env is None else env)
        base = Path(env.get("SAGEMAKER_BASE_DIR", str(BASE)))
        channel = base / "input" / "data"
        return cls(data=Path(env.get(f"SM_CHANNEL_{CHANNEL_DATA.upper()}", channel / CHANNEL_DATA)),
                   config=Path(env.get(f"SM_CHANNEL_{CHANNEL_CONFIG.upper()}", channel / CHANNEL_CONFIG)),
                   model=Path(env.get("SM_MODEL_DIR", base / "model")),
                   output=Path(env.get("SM_OUTPUT_DIR", base / "output")))


class ChannelObjects:
    """The ObjectStore `train_step` sees: `get` of the staged data set under its original reference (a seekable
    file, hashed once); `put` of an artifact writes it under the model directory for SageMaker to upload."""

    def __init__(self, dataset: dict[str, Any], path: Path, artifacts: Path) -> None:
        self.dataset = dataset
        self.path = path
        self.artifacts = artifacts

    def get(self, bucket: str, key: str, version_id: str | None = None, max_bytes: int | None = None,
            spool: bool = False) -> StoredObject:
        if (bucket, key) != (self.dataset["bucket"], self.dataset["key"]) or not self.path.is_file():
            raise ArtifactNotFoundError(f"s3://{bucket}/{key} is not the data set staged for this job", key=key)
        size = self.path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise DataSetError(f"s3://{bucket}/{key} is {size} bytes, over the limit of {max_bytes} bytes",
                               size=size, limit=max_bytes)
        file: BinaryIO = self.path.open("rb")
        digest = hashlib.sha256()
        while block := file.read(BLOCK):
            digest.update(block)
        file.seek(0)
        data: bytes | BinaryIO = file if spool else file.read()
        if not spool:
            file.close()
        return StoredObject(bucket=bucket, key=key, version_id=self.dataset.get("version_id"),
                            etag=str(self.dataset.get("etag", "")), sha256=digest.hexdigest(), data=data, size=size)

    def put(self, bucket: str, key: str, data: bytes, metadata: dict[str, str], content_type: str) -> None:
        prefix = next((p for p in (ARTIFACT_PREFIX, MODEL_PREFIX) if key.startswith(p)), None)
        if prefix is None:
            raise ArtifactNotFoundError(f"a training job writes artifacts only, not s3://{bucket}/{key}", key=key)
        digest = key.removeprefix(prefix)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        (self.artifacts / digest).write_bytes(data)
        meta = {"kind": metadata.get("kind"), "content_type": content_type,
                "metadata": {k: v for k, v in metadata.items() if k not in ("kind", "sha256")}}
        (self.artifacts / f"{digest}.meta.json").write_bytes(orjson.dumps(meta))


@dataclass(frozen=True)
class _FamilyRecord:
    family: ModelFamily
    live_version: int = 0


class JobRegistry:
    """The registry as far as `train_step` reads it inside the job: the family from the job configuration;
    run annotations and content verdicts are the CollectTrainingJob state's (it has the real registry)."""

    def __init__(self, family: ModelFamily) -> None:
        self.family = family

    def get_family(self, name: str) -> _FamilyRecord:
        if name != self.family.name:
            raise ArtifactNotFoundError(f"this training job trains family {self.family.name!r}, not {name!r}")
        return _FamilyRecord(self.family)

    def annotate_run(self, *args: Any, **kwargs: Any) -> None:
        return None

    def content_verdict(self, *args: Any, **kwargs: Any) -> None:
        return None


def run(paths: JobPaths) -> dict[str, Any]:
    """Train from the channels into the model directory; returns the Train output (also written as result.json).
    Raises what `train_step` raises (DataSetError for a bad data set...)."""
    from mlops.data.columnar import parse_parquet
    from mlops.data.datasets import EXTRA_READERS
    from mlops.training.steps import PipelineContext, train_step

    EXTRA_READERS[".parquet"] = parse_parquet  # this engine has a Parquet reader (pyarrow in the image)
    config = orjson.loads((paths.config / JOB_CONFIG_FILE).read_bytes())
    family = ModelFamily.model_validate(config["family"])
    event = config["event"]
    objects = ChannelObjects(event["dataset"], paths.data / config["data_file"], paths.model / ARTIFACTS_DIR)
    ctx = PipelineContext(artifacts=ArtifactStore(config["artifact_bucket"], objects), registry=JobRegistry(family),
                          objects=objects, git_revision=config.get("git_revision", ""))
    result = train_step(ctx, event)
    paths.model.mkdir(parents=True, exist_ok=True)
    (paths.model / RESULT_FILE).write_bytes(orjson.dumps(result, option=orjson.OPT_SORT_KEYS))
    return result


def main(env: dict[str, str] | None = None) -> int:
    """The job: 0 on success; 1 (platform error) or 2 (anything else) with the reason in output/failure."""
    paths = JobPaths.from_environment(env)
    started = time.monotonic()
    try:
        result = run(paths)
    except PlatformError as exc:
        return _fail(paths, f"{exc.code}: {exc.message}", 1)
    except Exception as exc:  # the failure file is the job's only way to say why
        tail = traceback.format_exc(limit=3)
        return _fail(paths, f"{type(exc).__name__}: {exc}\n{tail}", 2)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(orjson.dumps({"rows": result.get("dataset", {}).get("rows"), "cpus": os.cpu_count(),
                        "seconds": round(time.monotonic() - started, 1), "peak_rss_mb": round(peak_mb)}).decode(),
          flush=True)
    return 0


def _fail(paths: JobPaths, reason: str, status: int) -> int:
    paths.output.mkdir(parents=True, exist_ok=True)
    (paths.output / "failure").write_text(reason[:FAILURE_CHARS])
    print(reason, file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
