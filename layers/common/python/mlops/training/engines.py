"""Training engines: where a family's Train step runs, decided up front (the PlanTraining state), and the SageMaker
side of it: the staged inputs, the CreateTrainingJob request, and collecting what the job wrote.

- `lambda`: the train function runs `pipeline.train_step` (the data set spooled to /tmp, read in blocks).
- `sagemaker`: a SageMaker training job runs the same `pipeline.train_step` (mlops.training.job) in AWS's prebuilt
  scikit-learn image, through Step Functions' `sagemaker:createTrainingJob.sync`; the CollectTrainingJob state
  stores its artifacts and returns the same Train output, so Evaluate, the gate, the canary and the registry
  cannot tell the engines apart (the lineage's `training` field can).
- `auto`: Lambda for data sets up to the family's `training.auto_lambda_max_bytes` that fit in the function's
  limits, SageMaker above.

The Lambda engine refuses up front a data set it cannot finish in its limits (memory, 15 minutes, /tmp), naming
the sagemaker engine; the estimates use factors measured by bench/training_engines.py (docs/training-engines.md).
This module imports neither scikit-learn nor the SageMaker SDK: requests are plain CreateTrainingJob JSON.
"""

from __future__ import annotations

import hashlib
import math
import re
import tarfile
import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from mlops.core import aws
from mlops.core.errors import (
    ArtifactNotFoundError,
    ConfigurationError,
    DataSetError,
    FamilyRetiredError,
    IntegrityError,
    ValidationError,
)
from mlops.core.schemas import ModelFamily
from mlops.registry.artifacts import ARTIFACT_PREFIX, MODEL_PREFIX, StoredObject

ENGINE_LAMBDA, ENGINE_SAGEMAKER = "lambda", "sagemaker"
TRAINING_JOB_PREFIX = "training-jobs/"
# AWS's prebuilt scikit-learn image: scikit-learn 1.9, Python 3.12 (the Lambda runtime's), pandas 2.2 and pyarrow
# 25 (the Parquet reader), x86_64 (github.com/aws/deep-learning-containers, docker/sklearn/1.9-0). The registry
# account per region is the one the SageMaker Python SDK uses (src/sagemaker/image_uri_config/sklearn.json).
SKLEARN_IMAGE_REPOSITORY = "sagemaker-scikit-learn"
SKLEARN_IMAGE_TAG = "1.9-0-cpu-py3"
SKLEARN_IMAGE_ACCOUNTS: dict[str, str] = {
    "af-south-1": "510948584623", "ap-east-1": "651117190479", "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698", "ap-northeast-3": "867004704886", "ap-south-1": "720646828776",
    "ap-south-2": "628508329040", "ap-southeast-1": "121021644041", "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941", "ap-southeast-4": "106583098589", "ca-central-1": "341280168497",
    "ca-west-1": "190319476487", "cn-north-1": "450853457545", "cn-northwest-1": "451049120500",
    "eu-central-1": "492215442770", "eu-central-2": "680994064768", "eu-north-1": "662702820516",
    "eu-south-1": "978288397137", "eu-south-2": "104374241257", "eu-west-1": "141502667606",
    "eu-west-2": "764974769150", "eu-west-3": "659782779980", "il-central-1": "898809789911",
    "me-central-1": "272398656194", "me-south-1": "801668240914", "sa-east-1": "737474898029",
    "us-east-1": "683313688378", "us-east-2": "257758044811", "us-gov-east-1": "237065988967",
    "us-gov-west-1": "414596584902", "us-west-1": "746614075791", "us-west-2": "246618743249",
}
# Input channels of the training job, under /opt/ml/input/data/<channel>/ in the container.
CHANNEL_DATA, CHANNEL_CONFIG, CHANNEL_CODE, CHANNEL_VENDOR = "train", "config", "code", "vendor"
JOB_CONFIG_FILE = "job.json"
# The source archive (sourcedir.tar.gz) holds the runtime library and this launcher at its root; the SageMaker
# training toolkit runs `python train.py` (hyperparameter sagemaker_program) from the extracted archive.
LAUNCHER = "train.py"
RESULT_FILE = "result.json"
ARTIFACTS_DIR = "artifacts"
FORMATS = {".csv": "csv", ".csv.gz": "gzip", ".parquet": "parquet"}
CONTENT_TYPES = {"csv": "text/csv", "gzip": "application/gzip", "parquet": "application/x-parquet"}

# Lambda engine limits and estimates. Peak memory of the whole train step (read, fit, ONNX, explanations, holdout)
# above the imported runtime, in multiples of the uncompressed CSV bytes, and fit seconds per row and feature per
# vCPU: measured by bench/training_engines.py (1M and 5M rows, 8 features, a shared 2-core machine; read as one
# core's rate, so conservative; docs/training-engines.md), rounded up.
LAMBDA_TIMEOUT_SECONDS = 900
LAMBDA_RUNTIME_MB = 300
MEMORY_MARGIN = 0.9
TIME_MARGIN = 0.8
PEAK_FACTOR = {"logistic_regression": 14.0, "hist_gradient_boosting": 10.0, "random_forest": 16.0}
DEFAULT_PEAK_FACTOR = 16.0
READ_SECONDS_PER_BYTE = 1.0e-7
FIT_SECONDS_PER_ROW_FEATURE = {"logistic_regression": 1.0e-6, "hist_gradient_boosting": 1.2e-5,
                               "random_forest": 1.6e-5}
DEFAULT_FIT_SECONDS = 1.6e-5
# Algorithms whose fit uses every core (HistGradientBoosting's OpenMP, the forest's n_jobs=-1).
PARALLEL_ALGORITHMS = frozenset({"hist_gradient_boosting", "random_forest"})
# Lambda allocates CPU in proportion to memory: one vCPU at 1,769 MB, six at 10,240 MB
# (docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html).
MB_PER_VCPU = 1769
MAX_LAMBDA_VCPUS = 6
# SageMaker's own overheads around MaxRuntimeInSeconds (provisioning, image pull, upload), for the state timeout.
JOB_OVERHEAD_SECONDS = 1800
SAMPLE_BYTES = 64 * 1024
_JOB_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9-]")
# Instance families with local NVMe storage (m5d, c5d, g4dn, p4d...): SageMaker refuses a volume KMS key for them
# (their instance storage is encrypted by the hardware).
_INSTANCE_STORAGE = re.compile(r"^ml\.[a-z]+[0-9]+[a-z]*d[a-z]*\.")


@dataclass(frozen=True)
class LambdaLimits:
    """The train function's limits: memory (MB), timeout (s), /tmp (MB)."""

    memory_mb: int = 3008
    timeout_seconds: int = LAMBDA_TIMEOUT_SECONDS
    ephemeral_mb: int = 512

    @property
    def vcpus(self) -> float:
        return min(MAX_LAMBDA_VCPUS, max(1.0, self.memory_mb / MB_PER_VCPU))


@dataclass(frozen=True)
class DataSetSize:
    """What the plan knows without reading the data set: bytes as stored, its format (csv, gzip, parquet), the
    uncompressed CSV bytes (gzip: the trailer's ISIZE; None for Parquet) and rows estimated from the first 64 KB."""

    stored_bytes: int
    format: str
    csv_bytes: int | None
    rows: int | None


@dataclass(frozen=True)
class LambdaEstimate:
    """Estimated peak memory (MB) and duration (s) of the Lambda train step, and why it cannot run there (empty
    when it can)."""

    peak_mb: float
    seconds: float
    problems: tuple[str, ...]


@dataclass(frozen=True)
class EngineChoice:
    engine: str
    reason: str
    estimate: LambdaEstimate | None


def data_format(key: str) -> str | None:
    """csv, gzip or parquet from an object key's suffix (any case); None for anything else."""
    name = key.lower()
    for suffix in (".csv.gz", ".csv", ".parquet"):
        if name.endswith(suffix):
            return FORMATS[suffix]
    return None


def training_image_uri(region: str) -> str:
    """AWS's scikit-learn training image for `region`. Raises ConfigurationError for a region without one."""
    account = SKLEARN_IMAGE_ACCOUNTS.get(region)
    if account is None:
        raise ConfigurationError(f"no SageMaker scikit-learn image is published in region {region!r}; the sagemaker "
                                 "training engine is available in " + ", ".join(sorted(SKLEARN_IMAGE_ACCOUNTS)))
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/{SKLEARN_IMAGE_REPOSITORY}:{SKLEARN_IMAGE_TAG}"


def estimate_lambda(family: ModelFamily, size: DataSetSize, limits: LambdaLimits) -> LambdaEstimate:
    """Peak memory and duration of the train step on Lambda, from the measured factors above, and the limits it
    breaks: memory (peak > 90% of the function's), time (> 80% of its timeout), /tmp (the spooled object)."""
    problems: list[str] = []
    if size.format == "parquet":
        return LambdaEstimate(0.0, 0.0, ("the lambda engine reads .csv and .csv.gz only (no Parquet reader fits "
                                         "in Lambda's 250 MiB package limit beside scikit-learn)",))
    csv_bytes = size.csv_bytes if size.csv_bytes is not None else size.stored_bytes
    csv_mb = csv_bytes / 2**20
    peak_mb = LAMBDA_RUNTIME_MB + PEAK_FACTOR.get(family.algorithm, DEFAULT_PEAK_FACTOR) * csv_mb
    rows = size.rows if size.rows is not None else csv_bytes // 20
    cores = limits.vcpus if family.algorithm in PARALLEL_ALGORITHMS else 1.0
    fit = FIT_SECONDS_PER_ROW_FEATURE.get(family.algorithm, DEFAULT_FIT_SECONDS) * rows * len(family.features)
    seconds = READ_SECONDS_PER_BYTE * csv_bytes + fit / cores
    if peak_mb > MEMORY_MARGIN * limits.memory_mb:
        problems.append(f"about {peak_mb:,.0f} MB of memory, over 90% of the function's {limits.memory_mb} MB")
    if seconds > TIME_MARGIN * limits.timeout_seconds:
        problems.append(f"about {seconds:,.0f} s, over 80% of Lambda's {limits.timeout_seconds} s limit")
    if size.stored_bytes / 2**20 > MEMORY_MARGIN * limits.ephemeral_mb:
        problems.append(f"{size.stored_bytes / 2**20:,.0f} MB to spool, over 90% of the function's "
                        f"{limits.ephemeral_mb} MB of /tmp")
    return LambdaEstimate(round(peak_mb, 1), round(seconds, 1), tuple(problems))


def choose_engine(family: ModelFamily, size: DataSetSize, limits: LambdaLimits, key: str = "") -> EngineChoice:
    """The engine for this data set: the family's `training.engine`, `auto` resolved by size and fit.

    Raises DataSetError when the family declares `lambda` and the data set cannot finish within the function's
    limits (or is Parquet): the message gives the estimate and names the sagemaker engine."""
    policy = family.training
    estimate = estimate_lambda(family, size, limits)
    described = _describe(size, key)
    if policy.engine == ENGINE_SAGEMAKER:
        return EngineChoice(ENGINE_SAGEMAKER, "the family declares training.engine: sagemaker", estimate)
    if policy.engine == ENGINE_LAMBDA:
        if estimate.problems:
            raise DataSetError(
                f"{described} cannot train on the lambda engine: {'; '.join(estimate.problems)}. Declare "
                f"training.engine: sagemaker (or auto) in family {family.name!r} to train it on a SageMaker "
                "training job", engine=ENGINE_LAMBDA, estimate=asdict(estimate))
        return EngineChoice(ENGINE_LAMBDA, "the family declares training.engine: lambda", estimate)
    csv_bytes = size.csv_bytes if size.csv_bytes is not None else size.stored_bytes
    if size.format == "parquet":
        return EngineChoice(ENGINE_SAGEMAKER, "auto: Parquet trains on the sagemaker engine", estimate)
    if csv_bytes > policy.auto_lambda_max_bytes:
        return EngineChoice(ENGINE_SAGEMAKER, f"auto: {csv_bytes:,} CSV bytes, over auto_lambda_max_bytes "
                                              f"{policy.auto_lambda_max_bytes:,}", estimate)
    if estimate.problems:
        return EngineChoice(ENGINE_SAGEMAKER, "auto: beyond the lambda engine's limits (" +
                            "; ".join(estimate.problems) + ")", estimate)
    return EngineChoice(ENGINE_LAMBDA, f"auto: {csv_bytes:,} CSV bytes, within auto_lambda_max_bytes "
                                       f"{policy.auto_lambda_max_bytes:,} and the function's limits", estimate)


def _describe(size: DataSetSize, key: str) -> str:
    name = repr(key.rsplit("/", 1)[-1]) if key else "the data set"
    parts = [f"{size.stored_bytes / 2**20:,.1f} MB as stored"]
    if size.format == "gzip" and size.csv_bytes is not None:
        parts.append(f"{size.csv_bytes / 2**20:,.1f} MB uncompressed")
    if size.rows is not None:
        parts.append(f"about {size.rows:,} rows")
    return f"data set {name} ({', '.join(parts)})"


def gzip_isize(tail: bytes, stored_bytes: int) -> int | None:
    """The uncompressed size a gzip member records in its last 4 bytes (ISIZE, RFC 1952 section 2.3.1: size mod
    2^32). CSV never compresses to more than it holds, so an ISIZE below the stored size means it wrapped: at
    least 4 GiB more. None when `tail` is not 4 bytes."""
    if len(tail) != 4:
        return None
    isize = int.from_bytes(tail, "little")
    while isize < stored_bytes:
        isize += 2**32
    return isize


def rows_from_sample(sample: bytes, csv_bytes: int) -> int | None:
    """Rows in `csv_bytes` of CSV, from the mean length of the complete lines after the header in `sample` (its
    first bytes as text); None when the sample holds no complete data line."""
    lines = sample.count(b"\n")
    if lines < 2:
        return None
    first = sample.index(b"\n") + 1
    body = sample.rfind(b"\n") + 1 - first
    per_row = body / (lines - 1)
    return max(1, int(math.ceil((csv_bytes - first) / per_row)))


def _gunzip_head(data: bytes) -> bytes:
    """What the first bytes of a gzip stream decompress to (up to SAMPLE_BYTES), in 4 KB steps so that a
    damaged end (read later, by the parser) does not hide a readable start."""
    decompressor, out = zlib.decompressobj(wbits=31), b""
    for start in range(0, len(data), 4096):
        try:
            out += decompressor.decompress(data[start:start + 4096], SAMPLE_BYTES - len(out))
        except zlib.error:
            break
        if len(out) >= SAMPLE_BYTES or decompressor.eof:
            break
    return out


class DataSetProbe:
    """Reads what the plan needs from S3 without downloading the data set: HeadObject of the exact version, the
    gzip trailer, and the first 64 KB (ranged GETs)."""

    def __init__(self, s3: Any | None = None) -> None:
        self._s3 = s3

    def size(self, ref: dict[str, Any]) -> tuple[DataSetSize, dict[str, Any]]:
        """(size, head) of the referenced object version. Raises DataSetError for an unsupported file type,
        ArtifactNotFoundError when the version does not exist."""
        s3 = self._s3 or aws.client("s3")
        bucket, key, version = ref["bucket"], ref["key"], ref.get("version_id") or None
        fmt = data_format(key)
        if fmt is None:
            raise DataSetError(f"unsupported file type {key.rsplit('/', 1)[-1]!r}: the platform reads .csv, .csv.gz "
                               "and (on the sagemaker engine) .parquet", key=key[:300])
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, **({"VersionId": version} if version else {})}
        try:
            head = s3.head_object(**kwargs)
        except Exception as exc:
            if aws.error_code(exc) in {"404", "NoSuchKey", "NoSuchVersion", "NotFound", "400"}:
                raise ArtifactNotFoundError(f"data set s3://{bucket}/{key} (version {version}) does not exist",
                                            key=key) from None
            raise
        stored = int(head.get("ContentLength") or 0)
        csv_bytes: int | None = stored if fmt == "csv" else None
        rows = None
        if fmt != "parquet" and stored:
            first = s3.get_object(**kwargs, Range=f"bytes=0-{SAMPLE_BYTES - 1}")["Body"].read()
            if fmt == "gzip":
                tail = s3.get_object(**kwargs, Range=f"bytes={max(0, stored - 4)}-{stored - 1}")["Body"].read()
                csv_bytes = gzip_isize(tail, stored)
                # A sample holding the whole file stops before its trailer (checked by the parser, not here).
                first = _gunzip_head(first[:-8] if len(first) >= stored else first)
                if not first:
                    raise DataSetError(f"file {key.rsplit('/', 1)[-1]!r} is named .gz but is not gzip data")
            rows = rows_from_sample(first, csv_bytes or stored)
        return DataSetSize(stored_bytes=stored, format=fmt, csv_bytes=csv_bytes, rows=rows), head


@dataclass(frozen=True)
class JobSettings:
    """What the deployment provides for SageMaker training jobs (the train function's environment)."""

    artifact_bucket: str
    region: str
    image_uri: str
    code_uri: str
    vendor_uri: str
    roles: dict[str, str]
    platform_key_arn: str
    git_revision: str = ""

    def role_for(self, family: str) -> str:
        """The family's job role ("*": every family's, as the local runtime declares it)."""
        role = self.roles.get(family) or self.roles.get("*")
        if not role:
            raise ConfigurationError(f"family {family!r} has no SageMaker training role: the sagemaker engine is "
                                     "deployed for the families of the platform configuration (redeploy after "
                                     "adding the family)")
        return role


def job_name_prefix(family: str) -> str:
    """The part of a family's job names before the run digest (the job role and the state machine scope to it)."""
    return _JOB_NAME_UNSAFE.sub("-", family[:40]).strip("-") or "mlops"


def job_name(family: str, run_id: str) -> str:
    """The training job's name, deterministic per pipeline run (a redelivered Plan names the same job): the family
    and 16 hex digits of the run id's sha256, at most 57 characters of [a-zA-Z0-9-]."""
    return f"{job_name_prefix(family)}-{hashlib.sha256(run_id.encode()).hexdigest()[:16]}"


def job_prefix(family: str, name: str) -> str:
    """Where a job's staged inputs and its output live: training-jobs/<family>/<job name>/."""
    return f"{TRAINING_JOB_PREFIX}{family}/{name}/"


def has_instance_storage(instance_type: str) -> bool:
    return bool(_INSTANCE_STORAGE.match(instance_type))


def training_job_request(family: ModelFamily, settings: JobSettings, name: str, data_file: str,
                         fmt: str, run_id: str) -> dict[str, Any]:
    """The CreateTrainingJob request (docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTrainingJob.html)
    for the state machine's TrainOnSageMaker state: AWS's scikit-learn image, the source archive as the `code`
    channel (so it works with network isolation; the training toolkit extracts sagemaker_submit_directory),
    the dependency archive, the job configuration and the staged data set as channels, the family's instance,
    volume, stopping condition, spot, KMS key and network isolation."""
    policy = family.training
    prefix = f"s3://{settings.artifact_bucket}/{job_prefix(family.name, name)}"
    key_arn = policy.kms_key_arn or settings.platform_key_arn

    def channel(name_: str, uri: str, content_type: str | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"ChannelName": name_, "InputMode": "File", "CompressionType": "None",
                                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                                                "S3DataDistributionType": "FullyReplicated"}}}
        if content_type:
            spec["ContentType"] = content_type
        return spec

    resources: dict[str, Any] = {"InstanceType": policy.instance_type, "InstanceCount": 1,
                                 "VolumeSizeInGB": policy.volume_size_gb}
    if key_arn and not has_instance_storage(policy.instance_type):
        resources["VolumeKmsKeyId"] = key_arn
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": policy.max_runtime_seconds}
    if policy.managed_spot:
        stopping["MaxWaitTimeInSeconds"] = policy.spot_wait_seconds
    output: dict[str, Any] = {"S3OutputPath": f"{prefix}output"}
    if key_arn:
        output["KmsKeyId"] = key_arn
    code_file = settings.code_uri.rsplit("/", 1)[-1]
    return {
        "TrainingJobName": name,
        "RoleArn": settings.role_for(family.name),
        "AlgorithmSpecification": {"TrainingImage": settings.image_uri, "TrainingInputMode": "File"},
        # The framework containers read each value as JSON (sagemaker_training.environment.read_hyperparameters).
        "HyperParameters": {
            "sagemaker_program": orjson.dumps(LAUNCHER).decode(),
            "sagemaker_submit_directory": orjson.dumps(f"/opt/ml/input/data/{CHANNEL_CODE}/{code_file}").decode(),
            "sagemaker_container_log_level": "20",
            "sagemaker_region": orjson.dumps(settings.region).decode(),
        },
        "InputDataConfig": [
            channel(CHANNEL_DATA, f"{prefix}input/data/{data_file}", CONTENT_TYPES[fmt]),
            channel(CHANNEL_CONFIG, f"{prefix}input/config/{JOB_CONFIG_FILE}", "application/json"),
            channel(CHANNEL_CODE, settings.code_uri, "application/gzip"),
            channel(CHANNEL_VENDOR, settings.vendor_uri, "application/gzip"),
        ],
        "OutputDataConfig": output,
        "ResourceConfig": resources,
        "StoppingCondition": stopping,
        "EnableNetworkIsolation": policy.network_isolation,
        "EnableManagedSpotTraining": policy.managed_spot,
        "Tags": [{"Key": "mlops:family", "Value": family.name}, {"Key": "mlops:run", "Value": run_id[:256]}],
    }


def check_dataset_bytes(family: ModelFamily, size: DataSetSize, key: str = "") -> None:
    """Refuse, before any engine is chosen, a data set over the family's `max_dataset_bytes`: its bytes as stored,
    or for gzip the uncompressed bytes its trailer records (the reader stops at that limit on every engine, so a
    training job would fail inside its billed time). Raises DataSetError naming the field and the value that would
    admit the data set."""
    limit = family.max_dataset_bytes
    largest = max(size.stored_bytes, size.csv_bytes or 0)
    if largest <= limit:
        return
    what = "decompresses to" if size.format == "gzip" and largest > size.stored_bytes else "is"
    needed = 2 ** math.ceil(math.log2(largest / 2**20)) * 2**20  # the next power of two in MiB, as a suggestion
    raise DataSetError(
        f"{_describe(size, key)} {what} {largest:,} bytes, over family {family.name!r}'s max_dataset_bytes of "
        f"{limit:,} ({limit / 2**20:,.0f} MiB; the limit applies to the data set as stored and decompressed, on "
        f"every engine). To train it, raise max_dataset_bytes in the family (e.g. max_dataset_bytes: {needed}) and, "
        "beyond the lambda engine's memory and 15 minutes, declare training.engine: sagemaker or auto",
        max_dataset_bytes=limit, dataset_bytes=largest)


def state_timeout_seconds(family: ModelFamily) -> int:
    """TimeoutSeconds of the TrainOnSageMaker state: the job's own bound (spot: its wait) plus SageMaker's
    overheads, so SageMaker's MaxRuntimeExceeded is what normally ends a job that runs too long."""
    policy = family.training
    bound = policy.spot_wait_seconds if policy.managed_spot else policy.max_runtime_seconds
    return bound + JOB_OVERHEAD_SECONDS


def plan_step(ctx: Any, event: dict[str, Any], limits: LambdaLimits, jobs: JobSettings | None,
              probe: DataSetProbe | None = None) -> dict[str, Any]:
    """The PlanTraining state: choose the engine for this run's data set (refusing, before any training, what the
    Lambda engine cannot finish); recognise an upload whose content an earlier run already judged
    (`runs.check_duplicate`, before the rollout lock, so it never waits behind another run's canary: the data set
    is read and hashed here when the Lambda engine trains it or it fits the function's /tmp, otherwise the
    sagemaker engine's CollectTrainingJob checks); for the sagemaker engine stage the exact data set version and
    the job configuration under training-jobs/<family>/<job>/input/ and return the CreateTrainingJob request.

    Returns {"engine", "reason", "estimate", "data_set"}, plus {"duplicate_of"} for a duplicate (nothing staged)
    or {"job", "timeout_seconds"} for sagemaker. Raises
    DataSetError (refused), ArtifactNotFoundError (no such version), ConfigurationError (sagemaker not deployed)."""
    from mlops.registry.runs import (  # here, as in collect_step: the training job imports engines
        check_duplicate,
        judges_duplicates,
    )

    record = ctx.registry.get_family(_require(event, "family"))
    if getattr(record, "retired", False):
        raise FamilyRetiredError(f"model family {record.family.name!r} was retired at {record.changed_at}; this run "
                                 "does not train")
    family = record.family
    ref = _require(event, "dataset")
    size, head = (probe or DataSetProbe()).size(ref)
    check_dataset_bytes(family, size, ref["key"])
    choice = choose_engine(family, size, limits, ref["key"])
    # The run trains and is gated under this configuration version (training.steps.family_for_run).
    plan: dict[str, Any] = {"engine": choice.engine, "reason": choice.reason,
                            "estimate": asdict(choice.estimate) if choice.estimate else None,
                            "data_set": asdict(size),
                            "family_config_version": int(getattr(record, "config_version", 0))}
    if judges_duplicates(event) and (choice.engine == ENGINE_LAMBDA or size.stored_bytes <= limits.ephemeral_mb
                                     * 1024 * 1024):
        # Before the rollout lock: an identical re-upload must not wait behind a running canary to be told so.
        stored = ctx.objects.get(ref["bucket"], ref["key"], ref.get("version_id") or None,
                                 max_bytes=family.max_dataset_bytes, spool=True)
        try:
            duplicate = check_duplicate(ctx, family, stored, event)
        finally:
            if not isinstance(stored.data, bytes):
                stored.data.close()
        if duplicate:
            return {**plan, **duplicate}
    if choice.engine == ENGINE_LAMBDA:
        return plan
    if jobs is None:
        raise ConfigurationError("the sagemaker training engine is not configured in this deployment")
    if not jobs.image_uri:
        training_image_uri(jobs.region)  # raises: no scikit-learn image in this region
    run_id = str(event.get("run_id") or "")
    name = job_name(family.name, run_id or ref["key"])
    prefix = job_prefix(family.name, name)
    data_file = "data" + next(s for s in (".csv.gz", ".csv", ".parquet") if ref["key"].lower().endswith(s))
    s3 = aws.client("s3")
    source = {"Bucket": ref["bucket"], "Key": ref["key"]}
    version = ref.get("version_id") or head.get("VersionId")
    if version:
        source["VersionId"] = version
    # The exact version, copied server-side (multipart above 5 GB): a channel reads a prefix, never a version.
    s3.copy(source, jobs.artifact_bucket, f"{prefix}input/data/{data_file}")
    dataset = {**ref, "version_id": version, "etag": str(head.get("ETag", ref.get("etag", ""))).strip('"')}
    config = {"family": family.model_dump(mode="json"), "artifact_bucket": jobs.artifact_bucket,
              "git_revision": jobs.git_revision, "data_file": data_file, "size": size.stored_bytes,
              "event": {"family": family.name, "dataset": dataset, "seed": event.get("seed", family.seed),
                        "run_id": run_id, "trigger": event.get("trigger") or {}}}
    s3.put_object(Bucket=jobs.artifact_bucket, Key=f"{prefix}input/config/{JOB_CONFIG_FILE}",
                  Body=orjson.dumps(config, option=orjson.OPT_SORT_KEYS), ContentType="application/json")
    plan["job"] = training_job_request(family, jobs, name, data_file, size.format, run_id)
    plan["timeout_seconds"] = state_timeout_seconds(family)
    return plan


def collect_step(ctx: Any, event: dict[str, Any]) -> dict[str, Any]:
    """The CollectTrainingJob state: the completed job's model.tar.gz holds the Train output (result.json) and
    the artifacts it names (artifacts/<sha256>); each is re-hashed and stored content-addressed, the duplicate
    check and the identical-model check (`runs.check_identical_model`: `identical_to` when the ONNX artifact is an
    existing version's) run against the registry (the container has no access to it), and the output gains
    `training`.

    Raises IntegrityError when an artifact's bytes do not hash to its name or the output names an artifact the
    archive lacks, ValidationError for a malformed job description."""
    from mlops.registry.runs import check_duplicate, check_identical_model
    from mlops.training.steps import family_for_run

    family, config_version = family_for_run(ctx.registry, event)
    job = _require(event, "job")
    try:
        uri = job["ModelArtifacts"]["S3ModelArtifacts"]
    except (KeyError, TypeError):
        raise ValidationError("the training job description lacks ModelArtifacts.S3ModelArtifacts") from None
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    archive = ctx.objects.get(bucket, key, spool=True)
    result, stored = None, set()
    with tarfile.open(fileobj=archive.data, mode="r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            body = tar.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == RESULT_FILE:
                result = orjson.loads(body)
            elif member.name.startswith(f"{ARTIFACTS_DIR}/") and not member.name.endswith(".meta.json"):
                digest = member.name.rsplit("/", 1)[-1]
                meta = orjson.loads(tar.extractfile(f"{member.name}.meta.json").read())  # type: ignore[union-attr]
                ref = ctx.artifacts.put(body, meta.get("kind", "artifact"), meta.get("metadata") or {},
                                        meta.get("content_type", "application/octet-stream"))
                if ref.sha256 != digest:
                    raise IntegrityError(f"training job {job.get('TrainingJobName')}: artifact {digest} holds bytes "
                                         f"hashing to {ref.sha256}", expected=digest, actual=ref.sha256)
                stored.add(digest)
    archive.data.close()
    if result is None:
        raise IntegrityError(f"training job {job.get('TrainingJobName')} wrote no {RESULT_FILE}")
    training = training_record(job)
    if "duplicate_of" in result:  # the container found nothing to judge against; it never returns this
        raise IntegrityError("the training job's output claims a duplicate; only the registry can tell")
    missing = sorted({sha for sha in _artifact_hashes(result) if sha not in stored})
    if missing:
        raise IntegrityError(f"training job {job.get('TrainingJobName')}: its output names artifacts the archive "
                             f"lacks: {missing[:5]}")
    dataset = result["dataset"]
    seen = StoredObject(bucket=dataset["bucket"], key=dataset["key"], version_id=dataset.get("version_id"),
                        etag=dataset.get("etag", ""), sha256=dataset["sha256"], data=b"",
                        size=int((event.get("plan") or {}).get("data_set", {}).get("stored_bytes", 0)))
    if duplicate := check_duplicate(ctx, family, seen, event):
        return {**duplicate, "training": training}
    output = {**result, "training": training, "family_config_version": config_version}
    return {**output, **(check_identical_model(ctx.registry, family.name, output, event) or {})}


def _artifact_hashes(result: dict[str, Any]) -> list[str]:
    """sha256 of every artifact a Train output names ({"sha256": ..., "key": "artifacts/sha256/..."} or
    "models/sha256/..." refs, and
    the holdout's artifact_sha256)."""
    found = []
    for value in result.values():
        if isinstance(value, dict):
            if isinstance(value.get("sha256"), str) and str(value.get("key", "")).startswith((ARTIFACT_PREFIX,
                                                                                               MODEL_PREFIX)):
                found.append(value["sha256"])
            if isinstance(value.get("artifact_sha256"), str):
                found.append(value["artifact_sha256"])
    return found


def training_record(job: dict[str, Any]) -> dict[str, Any]:
    """What lineage records of a SageMaker run (from DescribeTrainingJob)."""
    resources = job.get("ResourceConfig") or {}
    return {"engine": ENGINE_SAGEMAKER, "job_name": job.get("TrainingJobName"),
            "job_arn": job.get("TrainingJobArn"), "instance_type": resources.get("InstanceType"),
            "instance_count": resources.get("InstanceCount"), "image": (job.get("AlgorithmSpecification") or {}
                                                                        ).get("TrainingImage"),
            "training_seconds": job.get("TrainingTimeInSeconds"),
            "billable_seconds": job.get("BillableTimeInSeconds"),
            "managed_spot": bool(job.get("EnableManagedSpotTraining")),
            "network_isolation": bool(job.get("EnableNetworkIsolation"))}


def lambda_train_step(ctx: Any, event: dict[str, Any], limits: LambdaLimits) -> dict[str, Any]:
    """The Train state on the Lambda engine: `pipeline.train_step`, its output gaining `training` (engine,
    memory, seconds), and `identical_to` when the ONNX artifact it stored is an existing version's
    (`runs.check_identical_model`: the run ends `unchanged`; not for a code rollout, which means to)."""
    from mlops.registry.runs import check_identical_model
    from mlops.training.steps import train_step

    started = time.monotonic()
    result = train_step(ctx, event)
    result["training"] = {"engine": ENGINE_LAMBDA, "memory_mb": limits.memory_mb,
                          "seconds": round(time.monotonic() - started, 3),
                          "estimate": (event.get("plan") or {}).get("estimate")}
    if "duplicate_of" in result:  # identical content: no model was trained
        return result
    return {**result, **(check_identical_model(ctx.registry, str(event.get("family") or ""), result, event) or {})}


def sagemaker_failure_message(job: dict[str, Any]) -> str:
    """A failed or stopped training job in one line (the cause Step Functions gives is DescribeTrainingJob)."""
    name = job.get("TrainingJobName", "?")
    status = job.get("TrainingJobStatus", "?")
    secondary = job.get("SecondaryStatus", "")
    if status == "Stopped" and secondary in ("MaxRuntimeExceeded", "MaxWaitTimeExceeded"):
        limit = (job.get("StoppingCondition") or {}).get(
            "MaxRuntimeInSeconds" if secondary == "MaxRuntimeExceeded" else "MaxWaitTimeInSeconds")
        return (f"training job {name} timed out ({secondary}: over {limit} s); raise training.max_runtime_seconds "
                "or choose a larger training.instance_type")
    reason = job.get("FailureReason") or secondary or "no reason given"
    return f"training job {name} {status.lower()}: {reason}"


def _require(event: dict[str, Any], name: str) -> Any:
    if not isinstance(event, dict) or name not in event:
        raise ValidationError(f"pipeline input lacks {name}")
    return event[name]


def job_settings(settings: Any) -> JobSettings | None:
    """JobSettings from the train function's settings (mlops.core.settings.TrainSettings); None when the deployment
    has no sagemaker engine (no source archive)."""
    if not settings.training_code_uri:
        return None
    image = settings.training_image or (
        training_image_uri(settings.region) if settings.region in SKLEARN_IMAGE_ACCOUNTS else "")
    return JobSettings(artifact_bucket=settings.artifact_bucket, region=settings.region, image_uri=image,
                       code_uri=settings.training_code_uri, vendor_uri=settings.training_vendor_uri,
                       roles=orjson.loads(settings.training_roles or "{}"), platform_key_arn=settings.platform_key_arn,
                       git_revision=settings.git_revision)


def run_train_function(ctx: Any, settings: Any, event: dict[str, Any]) -> dict[str, Any]:
    """The train function's states by `action`: "plan" (PlanTraining), "train" or none (Train, the Lambda engine),
    "collect" (CollectTrainingJob). Raises ValidationError for another action."""
    limits = LambdaLimits(memory_mb=settings.memory_mb, ephemeral_mb=settings.ephemeral_storage_mb)
    action = event.get("action", "train") if isinstance(event, dict) else None
    if action == "plan":
        return plan_step(ctx, event, limits, job_settings(settings))
    if action == "collect":
        return collect_step(ctx, event)
    if action == "train":
        return lambda_train_step(ctx, event, limits)
    raise ValidationError(f"unknown train function action {action!r}: plan, train or collect")
