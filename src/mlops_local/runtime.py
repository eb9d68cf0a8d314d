"""The platform on embedded moto: the same functions, the same state machine definition, the same wiring."""

from __future__ import annotations

import io
import json
import logging
import socket
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .guard import secure_local_environment
from .moto_shims import LocalLambdaRuntime, install_all

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
DEFINITION = ROOT / "infra" / "statemachine" / "pipeline.asl.json"
ACCOUNT = "123456789012"
REGION = "us-east-1"
PIPELINE_FUNCTIONS = ("trigger", "train", "evaluate", "control", "drift")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("handler.py", "# the local runtime runs functions/<name>/handler.py in-process\n")
    return buffer.getvalue()


def load_definition(substitutions: dict[str, str]) -> str:
    """The deployed definition file with CDK's ${Name} substitutions applied."""
    text = DEFINITION.read_text()
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
    bucket: str = "mlops-local-artifacts"
    table: str = "mlops-local-registry"
    endpoint_url: str | None = None
    state_machine_arn: str = ""
    function_names: dict[str, str] = field(default_factory=dict)
    scoring_functions: dict[str, str] = field(default_factory=dict)
    runtime: LocalLambdaRuntime = field(default_factory=LocalLambdaRuntime)
    _mock: Any = None
    _server: Any = None
    _role: str = ""

    def start(self) -> LocalPlatform:
        secure_local_environment()
        # moto's interpreter logs every failed state at ERROR (the platform records failures itself), and the
        # server logs every request: keep stdout for the platform's own output.
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        install_all()
        self.runtime.install()
        config = {"stepfunctions": {"execute_state_machine": True}, "core": {"reset_boto3_session": False}}
        if self.server:
            import os

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
        from mlops import aws

        aws.reset_clients()
        self._provision()
        return self

    def stop(self) -> None:
        from mlops import aws
        from mlops.capture import flush_all

        flush_all(timeout=5)
        self.drain_executions(timeout=30)
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
        from mlops import aws
        from mlops.registry import TABLE_DEFINITION

        s3 = aws.client("s3")
        s3.create_bucket(Bucket=self.bucket)
        s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        aws.client("dynamodb").create_table(TableName=self.table, **TABLE_DEFINITION)
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
        self._role = role
        for family in self.families:
            self.add_family(family)
        aws.client("s3").put_bucket_notification_configuration(
            Bucket=self.bucket, NotificationConfiguration={"LambdaFunctionConfigurations": [{
                "Id": "datasets", "LambdaFunctionArn": arns["trigger"], "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "datasets/"}]}},
            }]})

    def add_family(self, family: Any) -> None:
        """Scoring function per family, bootstrap version (no model) behind the `live` alias, registry entry."""
        from mlops.bootstrap import ensure_alias
        from mlops.settings import Env

        role = self._role
        fn = f"mlops-local-score-{family.name}"
        env = {**self._storage_env("score"), Env.MODEL_FAMILY: family.name,
               Env.CAPTURE_SAMPLE_RATE: str(family.capture_sample_rate),
               Env.CAPTURE_FLUSH_RECORDS: str(self.capture_flush_records),
               Env.NEVER_CAPTURE: ",".join(family.never_capture)}
        self._create_function(fn, "score", role, env)
        self.scoring_functions[family.name] = fn
        # Exactly what the deploy-time custom resource does (functions/bootstrap).
        self.registry.put_family(family, scoring_function=fn)
        ensure_alias(fn)

    def _create_function(self, name: str, source: str, role: str, env: dict[str, str]) -> str:
        from mlops import aws

        created = aws.client("lambda").create_function(
            FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.lambda_handler",
            Code={"ZipFile": _zip()}, Timeout=900 if source == "train" else 300, MemorySize=1024,
            Environment={"Variables": env},
        )
        self.runtime.register(name, FUNCTIONS / source / "handler.py")
        return str(created["FunctionArn"])

    def _storage_env(self, service: str) -> dict[str, str]:
        from mlops.settings import Env

        return {Env.ARTIFACT_BUCKET: self.bucket, Env.REGISTRY_TABLE: self.table,
                Env.METRICS_NAMESPACE: "MLOpsPlatform", Env.SERVICE_NAME: f"mlops-{service}",
                "POWERTOOLS_LOG_LEVEL": "WARNING"}

    def _pipeline_env(self, name: str) -> dict[str, str]:
        from mlops.settings import Env

        env = self._storage_env(name)
        if name in ("trigger", "control", "drift"):
            env[Env.STATE_MACHINE_ARN] = self.state_machine_arn
        return env

    # ---- operations -----------------------------------------------------------------------------------

    @property
    def registry(self) -> Any:
        from mlops.registry import ModelRegistry

        return ModelRegistry(self.table)

    def flush_captures(self) -> None:
        from mlops.capture import flush_all

        if not flush_all(timeout=10):
            raise TimeoutError("captured records were not written to S3 within 10 s")

    def upload_dataset(self, family: str, filename: str, data: bytes) -> dict[str, Any]:
        """Put a data set where users put it; the S3 notification starts the pipeline."""
        from mlops import aws

        response = aws.client("s3").put_object(Bucket=self.bucket, Key=f"datasets/{family}/{filename}", Body=data)
        return {"bucket": self.bucket, "key": f"datasets/{family}/{filename}", "version_id": response["VersionId"]}

    def executions(self) -> list[dict[str, Any]]:
        from mlops import aws

        pages = aws.client("stepfunctions").get_paginator("list_executions").paginate(
            stateMachineArn=self.state_machine_arn)
        return [e for page in pages for e in page["executions"]]

    def wait_for(self, execution_arn: str, timeout: float = 120.0) -> dict[str, Any]:
        from mlops import aws

        sfn = aws.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            described = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return described
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} still running after {timeout:.0f}s")
            time.sleep(0.05)

    def drain_executions(self, timeout: float = 30.0) -> None:
        """Wait for running executions (a leftover execution thread must not outlive the mock)."""
        if not self.state_machine_arn:
            return
        from mlops import aws

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
        """Invoke the family's scoring function through its `live` alias (weights honoured)."""
        from mlops import aws

        fn = self.scoring_functions[family]
        response = aws.client("lambda").invoke(FunctionName=fn, Qualifier="live", Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read())
        executed = response.get("ExecutedVersion") or response["ResponseMetadata"]["HTTPHeaders"].get(
            "x-amz-executed-version", "")
        if response.get("FunctionError"):
            return {"statusCode": 502, "headers": {"Content-Type": "application/json"},
                    "body": json.dumps({"error": "InternalServerError", "message": "the scoring function failed",
                                        "detail": payload.get("errorType")})}, executed
        return payload, executed

    def run_drift_check(self) -> dict[str, Any]:
        from mlops import aws

        response = aws.client("lambda").invoke(FunctionName=self.function_names["drift"], Payload=json.dumps(
            {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}).encode())
        payload = json.loads(response["Payload"].read())
        if response.get("FunctionError"):
            raise RuntimeError(f"drift check failed: {payload}")
        return payload
