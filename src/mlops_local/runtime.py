"""The platform on embedded moto: the same functions, the same state machine definition, the same wiring.

moto does not deliver EventBridge events, so the runtime emulates the one rule the platform depends on: when an
execution of the pipeline ends FAILED, TIMED_OUT or ABORTED, the control function receives the "Step Functions
Execution Status Change" event AWS would send (the same shape, from DescribeExecution), with EventBridge's and
Lambda's retries; an event still failing goes to the local failed-events queue, as the CDK wiring sends it to
the SQS queue there."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import threading
import time
import uuid
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .guard import secure_local_environment
from .moto_shims import LocalLambdaRuntime, install_all
from .sagemaker_jobs import LocalTrainingJobs, SageMakerIntegration

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
DEFINITION = ROOT / "infra" / "statemachine" / "pipeline.asl.json"
CODE_ROLLOUT_DEFINITION = ROOT / "infra" / "statemachine" / "code_rollout.asl.json"
DRIFT_FANOUT_DEFINITION = ROOT / "infra" / "statemachine" / "drift_fanout.asl.json"
# The fan-out's MaxConcurrency locally (the stack's is the drift function's reserved concurrency, cdk.json
# monitoring_concurrency).
LOCAL_MONITORING_CONCURRENCY = 4
LOCAL_MONITORING_BATCH = 5
SHARED_SCORING = "mlops-local-score-shared"
# Local time scale for the shared function's code rollouts (the CDK stack takes them from its configuration).
LOCAL_CODE_CANARY = {"steps": [20, 50, 100], "bake_seconds": 1, "min_requests": 5, "min_family_requests": 3,
                     "max_idle_windows": 10, "max_p99_latency_ms": 10_000}
# The shared tier reads routing from the registry this often locally (a rollback reaches traffic within it).
LOCAL_ROUTING_TTL_SECONDS = 0.2
ACCOUNT = "123456789012"
REGION = "us-east-1"
PIPELINE_FUNCTIONS = ("trigger", "train", "evaluate", "control", "drift", "performance")
# The management routes' function (GET /families, GET|PUT|DELETE /families/{name}), as deployed beside the API.
MANAGEMENT_FUNCTION = "families"
# GET /audit/{request_id}, as deployed beside the management routes (infra/audit.py).
AUDIT_FUNCTION = "audit"
# Time compressed like the bake windows of the served families: a retirement reaches scoring within a second.
FAMILY_STATUS_TTL_SECONDS = 1.0
FAILURE_STATUSES = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
STATUS_CHANGE = "Step Functions Execution Status Change"
DELIVERY_ATTEMPTS = 3  # EventBridge delivers, Lambda retries an asynchronous invocation twice
FAILED_EVENTS_QUEUE = "mlops-local-failed-events"


def local_actor() -> str:
    """Who changes families on a local runtime: `local:<user name of this process>`."""
    import getpass

    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return f"local:uid-{os.getuid()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("handler.py", "# the local runtime runs functions/<name>/handler.py in-process\n")
    return buffer.getvalue()


def load_definition(substitutions: dict[str, str], path: Path = DEFINITION) -> str:
    """The deployed definition file with CDK's ${Name} substitutions applied."""
    text = path.read_text()
    for key, value in substitutions.items():
        text = text.replace("${" + key + "}", value)
    if "${" in text:
        raise ValueError("state machine definition has unsubstituted placeholders")
    return text


@dataclass
class LocalPlatform:
    """Start with `start()`; everything lives in moto until `stop()`."""

    families: list[Any]
    server: bool = False
    capture_flush_records: int = 1
    # A capture writer also flushes when a record arrives this long after its batch's first (the platform's 60 s;
    # the demo uses half a second with larger batches, so canary checks read few objects).
    capture_max_age_seconds: float = 60.0
    # A family registered through the management route gets a scoring function here (False: registry only, as
    # when the shared scoring tier serves it; the benchmark of run-time registration uses that).
    provision_families: bool = True
    bucket: str = "mlops-local-artifacts"
    table: str = "mlops-local-registry"
    endpoint_url: str | None = None
    state_machine_arn: str = ""
    function_names: dict[str, str] = field(default_factory=dict)
    scoring_functions: dict[str, str] = field(default_factory=dict)
    # The shared scoring tier: its function (every shared-tier family), the code-rollout state machine and policy.
    shared_scoring_function: str = SHARED_SCORING
    code_rollout_state_machine_arn: str = ""
    drift_fanout_state_machine_arn: str = ""
    code_canary: dict[str, Any] = field(default_factory=lambda: dict(LOCAL_CODE_CANARY))
    runtime: LocalLambdaRuntime = field(default_factory=LocalLambdaRuntime)
    # The sagemaker training engine's jobs, run on this machine (mlops_local.sagemaker_jobs).
    training_jobs: LocalTrainingJobs = field(default_factory=LocalTrainingJobs)
    failed_events_queue_url: str = ""
    # What the emulated EventBridge delivered (event, and the control function's answer or errors), newest last.
    status_changes: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))
    _deliveries: threading.Condition = field(default_factory=threading.Condition)
    _pending: set[str] = field(default_factory=set)
    _mock: Any = None
    _server: Any = None
    _role: str = ""
    _provisioning: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> LocalPlatform:
        secure_local_environment()
        # moto's interpreter logs every failed state at ERROR (the platform records failures itself), and the
        # server logs every request: keep stdout for the platform's own output.
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        install_all()
        self.runtime.install()
        SageMakerIntegration.install(self.training_jobs)
        _StatusChangeHook.install(self)
        config = {"stepfunctions": {"execute_state_machine": True}, "core": {"reset_boto3_session": False}}
        if self.server:
            import requests
            from moto.server import ThreadedMotoServer

            port = free_port()
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            self._server.start()
            self.endpoint_url = f"http://127.0.0.1:{port}"
            os.environ["AWS_ENDPOINT_URL"] = self.endpoint_url
            os.environ["MOTO_PORT"] = str(port)
            requests.post(f"{self.endpoint_url}/moto-api/config", json={"stepfunctions": config["stepfunctions"]},
                          timeout=10)
        else:
            from moto import mock_aws

            self._mock = mock_aws(config=config)
            self._mock.start()
        from mlops.core import aws

        aws.reset_clients()
        self._provision()
        return self

    def stop(self) -> None:
        from mlops.core import aws
        from mlops.serving.capture import flush_all
        from mlops.serving.decisions import flush_all as flush_decisions

        flush_all(timeout=5)
        flush_decisions(timeout=5, bucket=self.bucket)
        self.drain_executions(timeout=30)
        self.training_jobs.wait(timeout=30)
        SageMakerIntegration.uninstall(self.training_jobs)
        _StatusChangeHook.uninstall(self)
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        aws.reset_clients()

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- provisioning (mirrors the CDK stacks) --------------------------------------------------------

    def _provision(self) -> None:
        from mlops.core import aws
        from mlops.registry.store import TABLE_DEFINITION, TTL_SPECIFICATION

        s3 = aws.client("s3")
        s3.create_bucket(Bucket=self.bucket)
        s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        aws.client("dynamodb").create_table(TableName=self.table, **TABLE_DEFINITION)
        aws.client("dynamodb").update_time_to_live(TableName=self.table, TimeToLiveSpecification=TTL_SPECIFICATION)
        self.failed_events_queue_url = aws.client("sqs").create_queue(QueueName=FAILED_EVENTS_QUEUE)["QueueUrl"]
        role = aws.client("iam").create_role(
            RoleName="mlops-local-lambda", AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Principal": {"Service": "lambda.amazonaws.com"}}]}),
        )["Role"]["Arn"]
        sfn_role = aws.client("iam").create_role(
            RoleName="mlops-local-states", AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Principal": {"Service": "states.amazonaws.com"}}]}),
        )["Role"]["Arn"]
        self.state_machine_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:mlops-local-pipeline"
        self.code_rollout_state_machine_arn = \
            f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:mlops-local-code-rollout"
        arns = {}
        for name in PIPELINE_FUNCTIONS:
            fn = f"mlops-local-{name}"
            arns[name] = self._create_function(fn, name, role, self._pipeline_env(name))
            self.function_names[name] = fn
        definition = load_definition({"TrainFunctionArn": arns["train"], "EvaluateFunctionArn": arns["evaluate"],
                                      "ControlFunctionArn": arns["control"]})
        created = aws.client("stepfunctions").create_state_machine(
            name="mlops-local-pipeline", definition=definition, roleArn=sfn_role, type="STANDARD")
        self.state_machine_arn = created["stateMachineArn"]
        self.code_rollout_state_machine_arn = aws.client("stepfunctions").create_state_machine(
            name="mlops-local-code-rollout", roleArn=sfn_role, type="STANDARD",
            definition=load_definition({"ControlFunctionArn": arns["control"]}, CODE_ROLLOUT_DEFINITION),
        )["stateMachineArn"]
        self.drift_fanout_state_machine_arn = aws.client("stepfunctions").create_state_machine(
            name="mlops-local-drift-fanout", roleArn=sfn_role, type="STANDARD",
            definition=load_definition({"DriftFunctionArn": arns["drift"],
                                        "MaxConcurrency": str(LOCAL_MONITORING_CONCURRENCY),
                                        "BatchSize": str(LOCAL_MONITORING_BATCH)},
                                       DRIFT_FANOUT_DEFINITION),
        )["stateMachineArn"]
        self._role = role
        fn = f"mlops-local-{MANAGEMENT_FUNCTION}"
        self._create_function(fn, MANAGEMENT_FUNCTION, role, self._storage_env(MANAGEMENT_FUNCTION))
        self.function_names[MANAGEMENT_FUNCTION] = fn
        fn = f"mlops-local-{AUDIT_FUNCTION}"
        self._create_function(fn, AUDIT_FUNCTION, role, self._storage_env(AUDIT_FUNCTION))
        self.function_names[AUDIT_FUNCTION] = fn
        self._create_shared_scoring()
        for family in self.families:
            self.add_family(family)
        aws.client("s3").put_bucket_notification_configuration(
            Bucket=self.bucket, NotificationConfiguration={"LambdaFunctionConfigurations": [{
                "Id": "datasets", "LambdaFunctionArn": arns["trigger"], "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "datasets/"}]}},
            }, {
                "Id": "labels", "LambdaFunctionArn": arns["performance"], "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "labels/"}]}},
            }]})

    def _create_shared_scoring(self) -> None:
        """The shared scoring function with its `live` alias on a first published version (what the stack's
        custom resource does at the first deploy)."""
        from mlops.core.settings import Env
        from mlops.rollout.bootstrap import ensure_alias

        env = {**self._storage_env("score-shared"), Env.CAPTURE_FLUSH_RECORDS: str(self.capture_flush_records),
               Env.CAPTURE_MAX_AGE_SECONDS: str(self.capture_max_age_seconds),
               Env.DECISION_FLUSH_RECORDS: str(min(self.capture_flush_records, 512)),
               Env.ROUTING_TTL_SECONDS: str(LOCAL_ROUTING_TTL_SECONDS), Env.METRICS_SINK: "cloudwatch"}
        self._create_function(self.shared_scoring_function, "score_shared", self._role, env)
        ensure_alias(self.shared_scoring_function, "first code version of the shared scoring function")

    def add_family(self, family: Any, actor: str | None = None, reason: str = "registered by the local runtime") -> Any:
        """Register (or update) the family as a run-time change by `actor` (default `local:<user>`), then give it
        a scoring function behind a `live` alias (`provision_scoring`). Returns the registry's FamilyChangeResult."""
        result = self.registry.register_family(family, actor or local_actor(), reason)
        self.provision_scoring(family.name)
        return result

    def provision_scoring(self, name: str) -> str:
        """The function that serves the family. Shared tier (the default): the shared scoring function, which
        serves every registered family from the registry; nothing is created. Dedicated: its own function, created on
        first use with a bootstrap version (no model) behind the `live` alias, as the deploy-time custom resource
        does (functions/bootstrap); afterwards its $LATEST capture settings follow the registered declaration (the
        next published version carries them). Returns the function name."""
        from mlops.core import aws
        from mlops.core.settings import Env
        from mlops.rollout.bootstrap import ensure_alias

        family = self.registry.get_family(name).family
        if family.serving != "dedicated":
            with self._provisioning:
                self.scoring_functions[name] = self.shared_scoring_function
                self.registry.seed_family(family, self.shared_scoring_function, actor=local_actor())
            return self.shared_scoring_function
        fn = f"mlops-local-score-{name}"
        env = {**self._storage_env("score"), Env.MODEL_FAMILY: name,
               Env.CAPTURE_SAMPLE_RATE: str(family.capture_sample_rate),
               Env.CAPTURE_FLUSH_RECORDS: str(self.capture_flush_records),
               Env.CAPTURE_MAX_AGE_SECONDS: str(self.capture_max_age_seconds),
               Env.DECISION_FLUSH_RECORDS: str(min(self.capture_flush_records, 512)),
               Env.NEVER_CAPTURE: ",".join(family.never_capture),
               Env.FAMILY_STATUS_TTL: str(FAMILY_STATUS_TTL_SECONDS), Env.METRICS_SINK: "cloudwatch"}
        with self._provisioning:
            if self.scoring_functions.get(name, self.shared_scoring_function) == self.shared_scoring_function:
                self._create_function(fn, "score", self._role, env)
                self.scoring_functions[name] = fn
                self.registry.seed_family(family, fn, actor=local_actor())  # records the function name only
                ensure_alias(fn)
            else:
                client = aws.client("lambda")
                current = client.get_function_configuration(FunctionName=fn)["Environment"]["Variables"]
                keep = {k: v for k, v in current.items() if k in (Env.MODEL_VERSION, Env.MODEL_SHA256)}
                if {**env, **keep} != current:
                    client.update_function_configuration(FunctionName=fn, Environment={"Variables": {**env, **keep}})
        return fn

    def invoke_management(self, event: dict[str, Any]) -> dict[str, Any]:
        """The management function's answer to an API Gateway proxy event (GET/PUT/DELETE /families...); a PUT
        that registered or changed a family gives it a scoring function (what the shared tier does when deployed)."""
        from mlops.core import aws

        response = aws.client("lambda").invoke(FunctionName=self.function_names[MANAGEMENT_FUNCTION],
                                               Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            return {"statusCode": 502, "headers": {"Content-Type": "application/json"},
                    "body": json.dumps({"error": "InternalServerError", "message": "the management function failed",
                                        "detail": (payload or {}).get("errorType")})}
        if self.provision_families and event.get("httpMethod") == "PUT" and payload.get("statusCode") in (200, 201):
            self.provision_scoring(str((event.get("pathParameters") or {}).get("name")))
        return payload

    def invoke_audit(self, event: dict[str, Any]) -> dict[str, Any]:
        """The audit function's answer to an API Gateway proxy event for GET /audit/{request_id}."""
        from mlops.core import aws

        response = aws.client("lambda").invoke(FunctionName=self.function_names[AUDIT_FUNCTION],
                                               Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            return {"statusCode": 502, "headers": {"Content-Type": "application/json"},
                    "body": json.dumps({"error": "InternalServerError", "message": "the audit function failed",
                                        "detail": (payload or {}).get("errorType")})}
        return payload

    def _create_function(self, name: str, source: str, role: str, env: dict[str, str]) -> str:
        from mlops.core import aws

        created = aws.client("lambda").create_function(
            FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.lambda_handler",
            Code={"ZipFile": _zip()}, Timeout=900 if source == "train" else 300, MemorySize=1024,
            Environment={"Variables": env},
        )
        self.runtime.register(name, FUNCTIONS / source / "handler.py")
        return str(created["FunctionArn"])

    def _storage_env(self, service: str) -> dict[str, str]:
        from mlops.core.settings import Env

        return {Env.ARTIFACT_BUCKET: self.bucket, Env.REGISTRY_TABLE: self.table,
                Env.METRICS_NAMESPACE: "MLOpsPlatform", Env.SERVICE_NAME: f"mlops-{service}",
                "POWERTOOLS_LOG_LEVEL": "WARNING"}

    def _pipeline_env(self, name: str) -> dict[str, str]:
        from mlops.core.settings import Env

        env = self._storage_env(name)
        if name in ("trigger", "control", "drift", "performance"):
            env[Env.STATE_MACHINE_ARN] = self.state_machine_arn
        if name == "drift":  # run_drift_fanout and run_drift_check write every buffered capture first
            env[Env.CAPTURE_SETTLE_SECONDS] = "0"
        if name in ("trigger", "control"):
            env.update({Env.SHARED_SCORING_FUNCTION: self.shared_scoring_function,
                        Env.CODE_ROLLOUT_STATE_MACHINE_ARN: self.code_rollout_state_machine_arn})
        if name == "trigger":
            env[Env.CODE_CANARY_POLICY] = json.dumps(self.code_canary)
        if name == "train":  # the sagemaker engine: local jobs run the working tree, not these archives
            env.update({Env.REGION: REGION, Env.TRAINING_CODE_URI: f"s3://{self.bucket}/local/sourcedir.tar.gz",
                        Env.TRAINING_VENDOR_URI: f"s3://{self.bucket}/local/vendor.tar.gz",
                        Env.TRAINING_ROLES: json.dumps({"*": f"arn:aws:iam::{ACCOUNT}:role/mlops-local-training"})})
        return env

    # ---- operations -----------------------------------------------------------------------------------

    @property
    def registry(self) -> Any:
        from mlops.registry.store import ModelRegistry

        return ModelRegistry(self.table)

    def flush_captures(self) -> None:
        """Write buffered captures and decision records to S3 now."""
        from mlops.serving.capture import flush_all
        from mlops.serving.decisions import flush_all as flush_decisions

        if not (flush_all(timeout=10) and flush_decisions(timeout=10, bucket=self.bucket)):
            raise TimeoutError("captured records and decision records were not written to S3 within 10 s")

    def upload_dataset(self, family: str, filename: str, data: bytes) -> dict[str, Any]:
        """Put a data set where users put it; the S3 notification starts the pipeline."""
        from mlops.core import aws

        response = aws.client("s3").put_object(Bucket=self.bucket, Key=f"datasets/{family}/{filename}", Body=data)
        return {"bucket": self.bucket, "key": f"datasets/{family}/{filename}", "version_id": response["VersionId"]}

    def upload_labels(self, family: str, filename: str, data: bytes) -> dict[str, Any]:
        """Put a labels file where users put it; the S3 notification ingests it (synchronously here) and checks the
        family's performance. Returns the object's version and its upload record (mlops.monitoring.labels)."""
        from mlops.core import aws
        from mlops.monitoring.labels import LabelStore, upload_id

        key = f"labels/{family}/{filename}"
        response = aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=data)
        record = LabelStore(self.bucket).find(family, upload_id(self.bucket, key, response["VersionId"]))
        return {"bucket": self.bucket, "key": key, "version_id": response["VersionId"], "record": record}

    def executions(self) -> list[dict[str, Any]]:
        from mlops.core import aws

        pages = aws.client("stepfunctions").get_paginator("list_executions").paginate(
            stateMachineArn=self.state_machine_arn)
        return [e for page in pages for e in page["executions"]]

    def run_drift_fanout(self, tier: str | None = None, families: list[str] | None = None,
                         timeout: float = 600.0, skip_idle: bool = False) -> dict[str, Any]:
        """What a drift schedule does when it fires: one execution of the fan-out state machine over the live
        families (of `tier`, or the named ones; `skip_idle` as the schedules: families without a capture since
        their last check are left out), waited for. Returns its description."""
        from mlops.core import aws

        self.flush_captures()
        sfn = aws.client("stepfunctions")
        arn = sfn.start_execution(stateMachineArn=self.drift_fanout_state_machine_arn,
                                  name=f"drift-{int(time.time() * 1000)}-{os.urandom(4).hex()}",
                                  input=json.dumps({"tier": tier or "", "families": families or [],
                                                    "skip_idle": skip_idle}))["executionArn"]
        deadline = time.monotonic() + timeout
        while True:
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                return described
            if time.monotonic() > deadline:
                raise TimeoutError(f"drift fan-out {arn} still running after {timeout:.0f}s")
            time.sleep(0.1)

    def wait_for(self, execution_arn: str, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the execution ended and, if it failed, until its status-change event was handled."""
        from mlops.core import aws

        sfn = aws.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            described = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} still running after {timeout:.0f}s")
            time.sleep(0.05)
        with self._deliveries:
            if not self._deliveries.wait_for(lambda: execution_arn not in self._pending,
                                             max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"the status-change event of {execution_arn} was not handled in time")
        return described

    # ---- EventBridge emulation: execution status changes -> control function ---------------------------

    def status_change_event(self, described: dict[str, Any]) -> dict[str, Any]:
        """The event EventBridge delivers for an execution status change: DescribeExecution's fields as
        `detail`, dates in epoch milliseconds (docs.aws.amazon.com/step-functions/latest/dg/cw-events.html)."""
        def millis(at: Any) -> int | None:
            return int(at.timestamp() * 1000) if at is not None else None

        detail = {
            "executionArn": described["executionArn"], "stateMachineArn": described["stateMachineArn"],
            "name": described["name"], "status": described["status"],
            "startDate": millis(described.get("startDate")), "stopDate": millis(described.get("stopDate")),
            "input": described.get("input"), "output": described.get("output"),
            "inputDetails": {"included": True}, "outputDetails": {"included": True} if "output" in described
            else None, "error": described.get("error"), "cause": described.get("cause"),
            "redriveCount": 0, "redriveStatus": "REDRIVABLE" if described["status"] != "SUCCEEDED"
            else "NOT_REDRIVABLE",
        }
        stopped = described.get("stopDate")
        return {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": STATUS_CHANGE, "source": "aws.states",
            "account": ACCOUNT, "region": REGION, "resources": [described["executionArn"]],
            "time": (stopped.strftime("%Y-%m-%dT%H:%M:%SZ") if stopped is not None
                     else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
            "detail": detail,
        }

    def deliver_status_change(self, execution_arn: str) -> None:
        """What the EventBridge rule of the CDK stack does: the control function gets the event; a delivery
        that keeps failing ends in the failed-events queue."""
        from mlops.core import aws

        described = aws.client("stepfunctions").describe_execution(executionArn=execution_arn)
        if described["status"] not in FAILURE_STATUSES:
            return
        event = self.status_change_event(described)
        errors: list[str] = []
        for _ in range(DELIVERY_ATTEMPTS):
            response = aws.client("lambda").invoke(FunctionName=self.function_names["control"],
                                                   Payload=json.dumps(event).encode())
            payload = json.loads(response["Payload"].read() or b"null")
            if not response.get("FunctionError"):
                self.status_changes.append({"event": event, "result": payload})
                return
            errors.append(str((payload or {}).get("errorMessage", payload)))
        self.status_changes.append({"event": event, "errors": errors})
        aws.client("sqs").send_message(QueueUrl=self.failed_events_queue_url, MessageBody=json.dumps(
            {"requestContext": {"condition": "RetriesExhausted", "functionArn": self.function_names["control"]},
             "requestPayload": event, "responsePayload": {"errorMessage": errors[-1]}}))

    def _execution_ending(self, execution_arn: str) -> None:
        with self._deliveries:
            self._pending.add(execution_arn)

    def _execution_ended(self, execution_arn: str, status: str) -> None:
        try:
            if status in FAILURE_STATUSES:
                self.deliver_status_change(execution_arn)
        except Exception as exc:  # noqa: BLE001 - an emulated delivery failure must not kill moto's worker
            logging.getLogger(__name__).error("status-change delivery failed: %s", exc)
        finally:
            with self._deliveries:
                self._pending.discard(execution_arn)
                self._deliveries.notify_all()

    def drain_executions(self, timeout: float = 30.0) -> None:
        """Wait for running executions (a leftover execution thread must not outlive the mock)."""
        if not self.state_machine_arn:
            return
        from mlops.core import aws

        try:
            running = [e for e in self.executions() if e["status"] == "RUNNING"]
        except Exception:
            return
        for execution in running:
            try:
                self.wait_for(execution["executionArn"], timeout)
            except TimeoutError:
                aws.client("stepfunctions").stop_execution(executionArn=execution["executionArn"])

    def invoke_scoring(self, family: str, event: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Invoke the family's scoring function (the shared one, or its own) through its `live` alias (weights
        honoured). Returns the proxy response and the function version that executed."""
        from mlops.core import aws

        fn = self.scoring_functions.get(family) or self.shared_scoring_function
        response = aws.client("lambda").invoke(FunctionName=fn, Qualifier="live", Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read())
        executed = response.get("ExecutedVersion") or response["ResponseMetadata"]["HTTPHeaders"].get(
            "x-amz-executed-version", "")
        if response.get("FunctionError"):
            return {"statusCode": 502, "headers": {"Content-Type": "application/json"},
                    "body": json.dumps({"error": "InternalServerError", "message": "the scoring function failed",
                                        "detail": payload.get("errorType")})}, executed
        return payload, executed

    def run_performance_check(self, families: list[str] | None = None) -> dict[str, Any]:
        """What the platform schedule does: the performance function checks every live family (or the named)."""
        from mlops.core import aws

        response = aws.client("lambda").invoke(FunctionName=self.function_names["performance"], Payload=json.dumps(
            {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
             "detail": {"families": families} if families else {}}).encode())
        payload = json.loads(response["Payload"].read())
        if response.get("FunctionError"):
            raise RuntimeError(f"performance check failed: {payload}")
        return payload

    def run_drift_check(self) -> dict[str, Any]:
        from mlops.core import aws

        response = aws.client("lambda").invoke(FunctionName=self.function_names["drift"], Payload=json.dumps(
            {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}).encode())
        payload = json.loads(response["Payload"].read())
        if response.get("FunctionError"):
            raise RuntimeError(f"drift check failed: {payload}")
        return payload


class _StatusChangeHook:
    """Patches moto's execution worker: when an execution of the active platform's state machine ends, the
    platform delivers the status-change event (moto has no EventBridge delivery). One platform at a time."""

    active: LocalPlatform | None = None

    @classmethod
    def install(cls, platform: LocalPlatform) -> None:
        from moto.stepfunctions.parser.backend import execution as sfn_execution

        cls.active = platform
        comm = sfn_execution.BaseExecutionWorkerCommunication
        if getattr(comm.terminated, "__mlops_status_hook__", False):
            return
        original = comm.terminated

        def terminated(self):  # type: ignore[no-untyped-def]
            target = cls.active
            execution = self.execution
            watched = target is not None and execution.state_machine_arn == target.state_machine_arn
            if watched:
                target._execution_ending(execution.exec_arn)
            try:
                original(self)
            finally:
                if watched:
                    status = execution.exec_status.value if execution.exec_status is not None else ""
                    target._execution_ended(execution.exec_arn, status)

        terminated.__mlops_status_hook__ = True  # type: ignore[attr-defined]
        comm.terminated = terminated

    @classmethod
    def uninstall(cls, platform: LocalPlatform) -> None:
        if cls.active is platform:
            cls.active = None
