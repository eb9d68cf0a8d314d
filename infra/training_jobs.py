"""The sagemaker training engine at deploy time: the runtime library and its dependencies as S3 assets (no Docker
build: AWS's prebuilt scikit-learn image runs them), one job role per dedicated family scoped to its prefixes (one
for the shared tier), and what the state machine needs for `sagemaker:createTrainingJob.sync`
(mlops.training.engines, docs/training-engines.md).

- Source archive (sourcedir.tar.gz, a few hundred KB): layers/common/python/mlops and the launcher `train.py` at
  its root; the training toolkit extracts it (hyperparameter sagemaker_submit_directory) from the `code` channel,
  which works with network isolation.
- Dependency archive: the train function's own layers (base + training requirements, built by infra/layers.py
  for x86_64, cp312: the image runs Python 3.12 on x86_64) as one tar.gz for the `vendor` channel; the launcher
  puts it first on sys.path, so a job trains with exactly the Lambda engine's scikit-learn, skl2onnx and onnx.
- Both archives are deterministic (sorted members, fixed mtimes and owners, gzip without a timestamp), so their
  asset hashes change only with their content; the dependency archive is cached under .build/training/.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import ArnFormat, Aws, CfnMapping, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct
from mlops.core.schemas import DEDICATED, ModelFamily
from mlops.training.engines import (
    SKLEARN_IMAGE_ACCOUNTS,
    SKLEARN_IMAGE_REPOSITORY,
    SKLEARN_IMAGE_TAG,
    TRAINING_JOB_PREFIX,
)
from mlops.training.job import LAUNCHER_SOURCE

from .layers import BUILDER_VERSION, ROOT, build_layer, layer_key
from .nag import acknowledge, acknowledge_wildcard
from .storage import Storage

CACHE = ROOT / ".build" / "training"
LIBRARY = ROOT / "layers" / "common" / "python"
DEPENDENCY_LAYERS = ("base", "training")
JOB_ARCHITECTURE = "x86_64"
ARCHIVE_VERSION = "1"  # bump to rebuild the cached dependency archive when its recipe changes
SAGEMAKER_LOGS = "/aws/sagemaker/TrainingJobs"
SFN_RULE = "StepFunctionsGetEventsForSageMakerTrainingJobsRule"


@dataclass(frozen=True)
class TrainingJobsProps:
    storage: Storage
    families: tuple[ModelFamily, ...]


def _members(files: Iterable[tuple[str, Path | bytes]]) -> bytes:
    """A deterministic tar.gz of (name, file or bytes) pairs in the given order."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, source in files:
            data = source if isinstance(source, bytes) else source.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0, 0, "", ""
            executable = not isinstance(source, bytes) and os.access(source, os.X_OK)
            info.mode = 0o755 if executable else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _tree(root: Path, prefix: str = "") -> list[tuple[str, Path]]:
    return sorted((prefix + str(p.relative_to(root)), p) for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def source_archive() -> Path:
    """sourcedir.tar.gz: the launcher and the runtime library, written under .build/training/ by content hash."""
    data = _members([("train.py", LAUNCHER_SOURCE.encode()), *_tree(LIBRARY / "mlops", "mlops/")])
    return _write(f"sourcedir-{hashlib.sha256(data).hexdigest()[:24]}.tar.gz", data)


def dependency_archive() -> Path:
    """The train function's dependency layers (x86_64) as one tar.gz, built once per layer content."""
    layers = [ROOT / "layers" / name / "requirements.txt" for name in DEPENDENCY_LAYERS]
    key = hashlib.sha256("\0".join([ARCHIVE_VERSION, BUILDER_VERSION, *(layer_key(r, JOB_ARCHITECTURE)
                                                                       for r in layers)]).encode()).hexdigest()
    target = CACHE / f"dependencies-{key[:24]}.tar.gz"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        files: dict[str, Path] = {}
        for requirements in layers:
            site = build_layer(requirements, JOB_ARCHITECTURE) / "python"
            files.update(dict(_tree(site)))  # both layers pin the same shared packages (numpy, protobuf...)
        return _write(target.name, _members(sorted(files.items())))


def _write(name: str, data: bytes) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / name
    if not path.exists():
        staging = path.with_name(f"{name}.tmp{os.getpid()}")
        staging.write_bytes(data)
        staging.rename(path)
    return path


class TrainingJobs(Construct):
    """Exposes `image_uri`, `code_uri`, `vendor_uri`, `roles` (family name -> role) and `grant_start(role)`."""

    def __init__(self, scope: Construct, construct_id: str, *, props: TrainingJobsProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        storage = props.storage
        self.source = s3_assets.Asset(self, "Source", path=str(source_archive()))
        self.dependencies = s3_assets.Asset(self, "Dependencies", path=str(dependency_archive()))
        self.code_uri = self.source.s3_object_url
        self.vendor_uri = self.dependencies.s3_object_url
        accounts = CfnMapping(self, "ImageAccounts",
                              mapping={region: {"account": account} for region, account in
                                       sorted(SKLEARN_IMAGE_ACCOUNTS.items())})
        image_account = accounts.find_in_map(Aws.REGION, "account")
        self.image_uri = Fn.join("", [image_account, ".dkr.ecr.", Aws.REGION, ".", Aws.URL_SUFFIX,
                                      f"/{SKLEARN_IMAGE_REPOSITORY}:{SKLEARN_IMAGE_TAG}"])
        log_groups = stack.format_arn(service="logs", resource="log-group", resource_name=f"{SAGEMAKER_LOGS}:*",
                                      arn_format=ArnFormat.COLON_RESOURCE_NAME)
        self.keys = sorted({storage.key.key_arn, *(f.training.kms_key_arn for f in props.families
                                                   if f.training.kms_key_arn)}, key=str)
        self.roles: dict[str, iam.Role] = {}
        # One role per dedicated family, scoped to its prefixes; one role for the shared tier (key "*", the
        # families registered at run time included: their names are not known at deploy time).
        dedicated = [f for f in props.families if f.serving == DEDICATED]
        shared_keys = sorted({f.training.kms_key_arn for f in props.families
                              if f.serving != DEDICATED and f.training.kms_key_arn})
        scopes = [(f.name, f"Role{_pascal(f.name)}", f"family {f.name}", f"{TRAINING_JOB_PREFIX}{f.name}/",
                   [f.training.kms_key_arn] if f.training.kms_key_arn else []) for f in dedicated]
        scopes.append(("*", "RoleSharedTier", "shared-tier families", TRAINING_JOB_PREFIX, shared_keys))
        for key, construct_id, who, prefix, family_keys in scopes:
            role = iam.Role(self, construct_id, assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                            description=f"SageMaker training jobs of {who} (its prefixes only)")
            objects = storage.object_arns(prefix)
            reason = (f"the jobs' inputs and outputs live under {prefix}<family>/<job name>/, one folder per run; "
                      "prefix-scoped")
            _allow(role, ["s3:GetObject", "s3:PutObject"], [objects])
            acknowledge_wildcard(role, objects, f"s3:GetObject, s3:PutObject: {reason}")
            _allow(role, ["s3:ListBucket"], [storage.bucket.bucket_arn], {"StringLike": {"s3:prefix": [f"{prefix}*"]}})
            _allow(role, ["s3:GetObject"], [self.source.bucket.arn_for_objects(self.source.s3_object_key),
                                            self.dependencies.bucket.arn_for_objects(self.dependencies.s3_object_key)])
            _allow(role, ["kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"], [storage.key.key_arn, *family_keys])
            _allow(role, ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                          "logs:DescribeLogStreams"], [log_groups])
            acknowledge_wildcard(role, log_groups, "CloudWatch Logs: SageMaker writes each job's streams in its "
                                                   f"fixed log group {SAGEMAKER_LOGS}, named per job at run time")
            # No ECR statement: SageMaker pulls its own prebuilt images from AWS's registry accounts; the
            # execution role's ECR permissions are for images in the customer's registry.
            _allow(role, ["cloudwatch:PutMetricData"], ["*"],
                   {"StringEquals": {"cloudwatch:namespace": SAGEMAKER_LOGS}})
            acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                        "cloudwatch:PutMetricData has no resource-level permissions; bound by condition to "
                        f"SageMaker's training namespace {SAGEMAKER_LOGS}")
            self.roles[key] = role
        # Shared-tier families are registered at run time: their jobs are named <family>-<run digest> too, but the
        # names cannot be listed here.
        self._job_arns = [stack.format_arn(service="sagemaker", resource="training-job", resource_name="*")]

    def roles_json(self) -> str:
        return Stack.of(self).to_json_string({name: role.role_arn for name, role in self.roles.items()})

    def grant_start(self, role: iam.IRole) -> None:
        """What the state machine's role needs for createTrainingJob.sync
        (docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html): create, describe, stop and tag the
        families' jobs, pass their roles to SageMaker only, manage the managed rule that reports job status,
        and grant SageMaker the use of the keys for the job's volume."""
        stack = Stack.of(self)
        if not self._job_arns:  # no seed family in cdk.json: no job to start
            return
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                     "sagemaker:AddTags", "sagemaker:ListTags"], resources=self._job_arns))
        for arn in self._job_arns:
            acknowledge_wildcard(role, arn, "training job names are <family>-<run digest>, created per run for "
                                            "families registered at run time; the job roles scope the data")
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["iam:PassRole"], resources=[r.role_arn for r in self.roles.values()],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[stack.format_arn(service="events", resource="rule", resource_name=SFN_RULE)]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["kms:CreateGrant", "kms:DescribeKey"], resources=self.keys,
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}}))


def _allow(role: iam.Role, actions: list[str], resources: list[str], conditions: dict | None = None) -> None:
    role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources, conditions=conditions))


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))
