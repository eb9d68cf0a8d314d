"""SageMaker training jobs on this machine, for the state machine's `sagemaker:createTrainingJob.sync` state.

moto 5.2.5's Step Functions interpreter does not run that integration: it sends CreateTrainingJob to moto's
SageMaker (which records the job as Completed at once and runs nothing), then fails the state with States.Runtime
"Unsupported sync callback procedure" (read in moto/stepfunctions/parser/.../state_task_service_unsupported.py
and state_task_service_callback.py; checked by tests/workflow/test_training_engines.py). This module gives the
interpreter a SageMaker service task that does what the service integration does:

- CreateTrainingJob: the request is validated against botocore's SageMaker model and recorded in moto's
  SageMaker (DescribeTrainingJob answers through boto3), then the job runs: its S3 channels are downloaded from
  moto into a directory laid out as /opt/ml, and the same entry point runs (`python -m mlops.training.job`, the
  working tree's library instead of the deployed source archive) in a subprocess with the training toolkit's
  SM_* variables; /opt/ml/model is uploaded as <S3OutputPath>/<job>/output/model.tar.gz.
- .sync: the state waits for the job and outputs DescribeTrainingJob. A job that exits non-zero is Failed with
  FailureReason from /opt/ml/output/failure; one still running after MaxRuntimeInSeconds is killed and Stopped
  with SecondaryStatus MaxRuntimeExceeded. Both fail the state with States.TaskFailed and DescribeTrainingJob as
  the cause, as Step Functions reports a .sync job that did not complete; an API error is
  SageMaker.AmazonSageMakerException.
Not emulated: instance provisioning, managed spot interruptions and MaxWaitTimeInSeconds, network isolation.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "layers" / "common" / "python"
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
# Channels that carry the deployed program (source and dependency archives): the local run uses the working tree.
PROGRAM_CHANNELS = frozenset({"code", "vendor"})


@dataclass
class LocalTrainingJob:
    """One job's request and what DescribeTrainingJob reports of it."""

    request: dict[str, Any]
    arn: str
    status: str = "InProgress"
    secondary: str = "Starting"
    failure_reason: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    model_artifacts: str | None = None
    logs: str = ""

    @property
    def name(self) -> str:
        return str(self.request["TrainingJobName"])

    def describe(self) -> dict[str, Any]:
        """DescribeTrainingJob's fields for this job (timestamps as epoch milliseconds, as Step Functions
        serializes them)."""
        def millis(at: float | None) -> int | None:
            return None if at is None else int(at * 1000)

        out: dict[str, Any] = {
            "TrainingJobName": self.name, "TrainingJobArn": self.arn, "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary, "CreationTime": millis(self.created),
            **{k: self.request[k] for k in ("AlgorithmSpecification", "RoleArn", "HyperParameters",
                                            "InputDataConfig", "OutputDataConfig", "ResourceConfig",
                                            "StoppingCondition", "EnableNetworkIsolation",
                                            "EnableManagedSpotTraining") if k in self.request},
        }
        if self.started is not None:
            out["TrainingStartTime"] = millis(self.started)
        if self.ended is not None and self.started is not None:
            out["TrainingEndTime"] = millis(self.ended)
            seconds = max(1, int(round(self.ended - self.started)))
            out["TrainingTimeInSeconds"] = seconds
            out["BillableTimeInSeconds"] = seconds
        if self.failure_reason:
            out["FailureReason"] = self.failure_reason
        if self.model_artifacts:
            out["ModelArtifacts"] = {"S3ModelArtifacts": self.model_artifacts}
        return {k: v for k, v in out.items() if v is not None}


class LocalTrainingJobs:
    """Runs training jobs as subprocesses of this machine (see the module docstring). `program` is the command
    a job runs (default: the library's entry point with this interpreter); `workdir` holds each job's /opt/ml."""

    def __init__(self, program: list[str] | None = None, workdir: Path | None = None) -> None:
        self.program = program or [sys.executable, "-m", "mlops.training.job"]
        self.workdir = workdir
        self.jobs: dict[str, LocalTrainingJob] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def create(self, request: dict[str, Any], arn: str) -> LocalTrainingJob:
        with self._lock:
            if request["TrainingJobName"] in self.jobs:
                raise ValueError(f"Training job {request['TrainingJobName']} already exists")
            job = self.jobs[request["TrainingJobName"]] = LocalTrainingJob(request=request, arn=arn)
        thread = threading.Thread(target=self._run, args=(job,), name=f"training-job-{job.name}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return job

    def describe(self, name: str) -> dict[str, Any]:
        return self.jobs[name].describe()

    def wait(self, timeout: float = 60.0) -> None:
        """Wait for running jobs to end (platform shutdown)."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, job: LocalTrainingJob) -> None:
        from mlops.core import aws

        base = Path(tempfile.mkdtemp(prefix=f"mlops-job-{job.name}-", dir=self.workdir))
        try:
            job.secondary = "Downloading"
            s3 = aws.client("s3")
            for channel in job.request.get("InputDataConfig", []):
                if channel["ChannelName"] not in PROGRAM_CHANNELS:
                    _download_channel(s3, channel, base / "input" / "data" / channel["ChannelName"])
            (base / "model").mkdir(parents=True, exist_ok=True)
            (base / "output").mkdir(parents=True, exist_ok=True)
            job.started, job.secondary = time.time(), "Training"
            outcome = self._execute(job, base)
            if outcome == "Completed":
                job.secondary = "Uploading"
                job.model_artifacts = _upload_model(s3, job, base / "model")
            job.status, job.secondary = ("Stopped", outcome) if outcome == "MaxRuntimeExceeded" else (outcome, outcome)
        except Exception as exc:  # the job fails, as SageMaker reports an internal or download error
            job.failure_reason = f"ClientError: {exc}"[:1024]
            job.status = job.secondary = "Failed"
        finally:
            job.ended = time.time()
            _update_moto(job)
            shutil.rmtree(base, ignore_errors=True)

    def _execute(self, job: LocalTrainingJob, base: Path) -> str:
        data = base / "input" / "data"
        env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "SM_MODEL_DIR": str(base / "model"),
               "SM_OUTPUT_DIR": str(base / "output"), "SM_INPUT_DIR": str(base / "input"),
               "SM_CHANNELS": json.dumps([c["ChannelName"] for c in job.request.get("InputDataConfig", [])]),
               "PYTHONPATH": os.pathsep.join([str(LIBRARY), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               "TRAINING_JOB_NAME": job.name}
        for channel in job.request.get("InputDataConfig", []):
            env[f"SM_CHANNEL_{channel['ChannelName'].upper()}"] = str(data / channel["ChannelName"])
        limit = float(job.request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", 86_400))
        with open(base / "job.log", "wb") as log:
            process = subprocess.Popen(self.program, env=env, cwd=base, stdout=log, stderr=subprocess.STDOUT)
            try:
                code = process.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                job.logs = (base / "job.log").read_text(errors="replace")[-4000:]
                return "MaxRuntimeExceeded"
        job.logs = (base / "job.log").read_text(errors="replace")[-4000:]
        if code == 0:
            return "Completed"
        failure = base / "output" / "failure"
        job.failure_reason = (failure.read_text(errors="replace") if failure.exists()
                              else f"AlgorithmError: the program exited with status {code}")[:1024]
        return "Failed"


def _download_channel(s3: Any, channel: dict[str, Any], target: Path) -> None:
    """Objects under the channel's S3 prefix, placed relative to the prefix's last '/' (as SageMaker does)."""
    uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    base = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
    target.mkdir(parents=True, exist_ok=True)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    found = False
    for page in pages:
        for entry in page.get("Contents", []):
            found = True
            path = target / entry["Key"][len(base):]
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, entry["Key"], str(path))
    if not found:
        raise FileNotFoundError(f"channel {channel['ChannelName']}: no object under {uri}")


def _upload_model(s3: Any, job: LocalTrainingJob, model: Path) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(model.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(model)))
    output = job.request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    bucket, _, prefix = output.removeprefix("s3://").partition("/")
    key = f"{prefix}/{job.name}/output/model.tar.gz".lstrip("/")
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    return f"s3://{bucket}/{key}"


def _update_moto(job: LocalTrainingJob) -> None:
    """The job's outcome on moto's record of it, so boto3's DescribeTrainingJob tells the same."""
    try:
        from moto.sagemaker.models import sagemaker_backends

        arn = job.arn.split(":")
        fake = sagemaker_backends[arn[4]][arn[3]].training_jobs[job.name]
    except (KeyError, IndexError, ImportError):
        return
    fake.training_job_status = job.status
    fake.secondary_status = job.secondary
    if job.failure_reason:
        fake.failure_reason = job.failure_reason
    if job.model_artifacts:
        fake.model_artifacts = {"S3ModelArtifacts": job.model_artifacts}


class SageMakerIntegration:
    """Installs the service task into moto's Step Functions interpreter; the jobs of the active platform run."""

    active: LocalTrainingJobs | None = None

    @classmethod
    def install(cls, jobs: LocalTrainingJobs) -> None:
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory

        cls.active = jobs
        current = state_task_factory.state_task_service_for
        if getattr(current, "__mlops_sagemaker__", False):
            return
        _read_keyword_path_bindings()

        def state_task_service_for(service_name: str) -> Any:
            if service_name == "sagemaker":
                return _service_task_class()()
            return current(service_name=service_name)

        state_task_service_for.__mlops_sagemaker__ = True  # type: ignore[attr-defined]
        state_task_factory.state_task_service_for = state_task_service_for

    @classmethod
    def uninstall(cls, jobs: LocalTrainingJobs) -> None:
        if cls.active is jobs:
            cls.active = None


def _read_keyword_path_bindings() -> None:
    """moto's ASL lexer reads some parameter names as keywords (`"RoleArn.$"` is its ROLEARNPATH token), so such a
    binding keeps its path text as a literal value ("$.plan.job.RoleArn") instead of the value at that path. AWS
    reads JSON keys: `"RoleArn.$": "$.path"` is a path binding like any other. This reads it the same way."""
    from moto.stepfunctions.parser.asl.component.common.payload.payloadvalue.payloadbinding.payload_binding import (
        PayloadBindingStringExpressionSimple,
    )
    from moto.stepfunctions.parser.asl.component.common.string.string_expression import (
        StringContextPath,
        StringJsonPath,
    )
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    original = Preprocessor.visitPayload_binding_value

    def visit(self: Any, ctx: Any) -> Any:
        binding = original(self, ctx)
        value = getattr(binding.payload_value, "val", None)
        if binding.field.endswith(".$") and isinstance(value, str) and value.startswith("$"):
            path = StringContextPath(value) if value.startswith("$$") else StringJsonPath(value)
            return PayloadBindingStringExpressionSimple(field=binding.field[:-2], string_expression_simple=path)
        return binding

    Preprocessor.visitPayload_binding_value = visit


_task_class: type | None = None


def _service_task_class() -> type:
    """The StateTaskService subclass (built on first use: moto's parser modules load only with the interpreter)."""
    global _task_class
    if _task_class is not None:
        return _task_class
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    class StateTaskServiceSageMaker(StateTaskServiceCallback):
        """arn:aws:states:::sagemaker:createTrainingJob(.sync), run by LocalTrainingJobs."""

        def __init__(self) -> None:
            # WaitForTaskToken too: moto's callback machinery assumes a task-token endpoint exists for every
            # integration pattern (it interrupts it when the job ends).
            super().__init__(supported_integration_patterns={ResourceCondition.Sync,
                                                             ResourceCondition.WaitForTaskToken})

        def _validate_service_integration_is_supported(self) -> None:
            if self.resource.api_action != "createTrainingJob":
                raise ValueError(f"the local runtime runs sagemaker:createTrainingJob only, not "
                                 f"{self.resource.resource_arn}")

        def _from_error(self, env: Any, ex: Exception) -> Any:
            if isinstance(ex, ClientError | ValueError):
                error = "SageMaker.AmazonSageMakerException"
                return FailureEvent(env=env, error_name=CustomErrorName(error), event_type=HistoryEventType.TaskFailed,
                                    event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
                                        error=error, cause=str(ex)[:32_000], resource=self._get_sfn_resource(),
                                        resourceType=self._get_sfn_resource_type())))
            return super()._from_error(env=env, ex=ex)

        def _eval_service_task(self, env: Any, resource_runtime_part: Any, normalised_parameters: dict,
                               state_credentials: Any) -> None:
            jobs = SageMakerIntegration.active
            if jobs is None:
                raise ValueError("no local platform runs training jobs")
            _validate_request(normalised_parameters)
            client = boto_client_for(region=resource_runtime_part.region, service="sagemaker",
                                     state_credentials=state_credentials)
            created = client.create_training_job(**normalised_parameters)
            jobs.create(normalised_parameters, created["TrainingJobArn"])
            env.stack.append({"TrainingJobArn": created["TrainingJobArn"]})

        def _build_sync_resolver(self, env: Any, resource_runtime_part: Any, normalised_parameters: dict,
                                 state_credentials: Any) -> Callable[[], Any]:
            env.stack.pop()
            name = normalised_parameters["TrainingJobName"]

            def resolve() -> Any:
                jobs = SageMakerIntegration.active
                described = jobs.describe(name) if jobs is not None else {"TrainingJobName": name,
                                                                          "TrainingJobStatus": "Failed",
                                                                          "FailureReason": "platform stopped"}
                if described["TrainingJobStatus"] not in TERMINAL:
                    return None
                if described["TrainingJobStatus"] == "Completed":
                    return described
                raise FailureEventException(FailureEvent(
                    env=env, error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(
                        resource=self._get_sfn_resource(), resourceType=self._get_sfn_resource_type(),
                        error=StatesErrorNameType.StatesTaskFailed.to_name(), cause=to_json_str(described)))))

            return resolve

    _task_class = StateTaskServiceSageMaker
    return _task_class


def _validate_request(parameters: dict[str, Any]) -> None:
    """CreateTrainingJob's parameters against botocore's SageMaker model (types, required members, bounds), as
    the service would check them. Raises ValueError naming every problem."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob")
    report = ParamValidator().validate(parameters, model.input_shape)
    if report.has_errors():
        raise ValueError(f"ValidationException: {report.generate_report()}")
