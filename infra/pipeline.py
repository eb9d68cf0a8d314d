"""Pipeline: the train, evaluate and control functions and the state machine from the shared definition file."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from mlops.core.settings import Env
from mlops.registry.artifacts import ARTIFACT_PREFIX, MODEL_PREFIX
from mlops.registry.runs import RUN_REPORT_PREFIX
from mlops.serving.capture import CAPTURE_PREFIX
from mlops.training.engines import TRAINING_JOB_PREFIX

from .functions import CONTENT_ADDRESSED, METRIC_REASON, FunctionDefaults, PlatformFunction
from .layers import ROOT
from .nag import acknowledge_wildcard
from .storage import Storage
from .training_jobs import TrainingJobs

DEFINITION_FILE = ROOT / "infra" / "statemachine" / "pipeline.asl.json"


@dataclass(frozen=True)
class PipelineProps:
    storage: Storage
    defaults: FunctionDefaults
    scoring_layers: tuple[lambda_.ILayerVersion, ...]
    training_layers: tuple[lambda_.ILayerVersion, ...]
    scoring_function_arns: tuple[str, ...]
    training_memory_mb: int
    metrics_namespace: str
    git_revision: str
    training_jobs: TrainingJobs
    training_ephemeral_mb: int = 2048
    # The shared scoring function (its code rollouts are run by the control function) and their state machine.
    shared_scoring_function: str = ""
    code_rollout_state_machine_arn: str = ""
    # Reserved concurrency of Train and Evaluate (None: unreserved): retrains never starve scoring; a burst
    # beyond it waits in the definition's throttling retrier instead of failing.
    training_concurrency: int | None = None


def state_machine_name(stack: Stack) -> str:
    # A physical name, deliberately: the control function's role must name the executions it inspects, and
    # the state machine references the control function, so a token would create a dependency cycle.
    return f"{stack.stack_name}-ModelPipeline"[:80]


def state_machine_arn(stack: Stack) -> str:
    return stack.format_arn(service="states", resource="stateMachine", resource_name=state_machine_name(stack),
                            arn_format=ArnFormat.COLON_RESOURCE_NAME)


def execution_arns(stack: Stack) -> str:
    return stack.format_arn(service="states", resource="execution",
                            resource_name=f"{state_machine_name(stack)}:*", arn_format=ArnFormat.COLON_RESOURCE_NAME)


class Pipeline(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: PipelineProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        storage = props.storage
        artifacts = storage.object_arns(ARTIFACT_PREFIX)
        models = storage.object_arns(MODEL_PREFIX)
        datasets = storage.object_arns("datasets/")
        kms = ["kms:Decrypt", "kms:GenerateDataKey"]

        self.train = PlatformFunction(
            self, "Train", source="train", description="Pipeline step Train: fit, convert to ONNX, profile",
            defaults=props.defaults, layers=props.training_layers, memory_size=props.training_memory_mb,
            timeout=Duration.minutes(15), environment={
                Env.GIT_REVISION: props.git_revision, Env.EPHEMERAL_STORAGE_MB: str(props.training_ephemeral_mb),
                Env.TRAINING_IMAGE: props.training_jobs.image_uri, Env.TRAINING_CODE_URI: props.training_jobs.code_uri,
                Env.TRAINING_VENDOR_URI: props.training_jobs.vendor_uri,
                Env.TRAINING_ROLES: props.training_jobs.roles_json(), Env.PLATFORM_KEY_ARN: storage.key.key_arn})
        # The Lambda engine spools the data set to /tmp (never held in memory): room for what it accepts.
        self.train.function.node.default_child.add_property_override(
            "EphemeralStorage", {"Size": props.training_ephemeral_mb})
        self.train.allow(["s3:GetObject", "s3:GetObjectVersion"], [datasets],
                         reason="users upload data sets under datasets/<family>/ with any file name; prefix-scoped")
        self.train.allow(["s3:PutObject"], [artifacts, models], reason=CONTENT_ADDRESSED)
        jobs = storage.object_arns(TRAINING_JOB_PREFIX)
        self.train.allow(["s3:PutObject", "s3:GetObject"], [jobs],
                         reason="PlanTraining stages a job's data set version and configuration, CollectTrainingJob "
                                "reads its model.tar.gz, under training-jobs/<family>/<job name>/ (named per run)")
        self.train.allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], [storage.table.table_arn])
        self.train.allow(kms, [storage.key.key_arn])

        self.evaluate = PlatformFunction(
            self, "Evaluate", source="evaluate", description="Pipeline step Evaluate: ONNX on holdout, gate",
            defaults=props.defaults, layers=props.scoring_layers, memory_size=2048, timeout=Duration.minutes(5))
        # PutObject: the per-group fairness detail, stored like the holdout (too large for the state).
        self.evaluate.allow(["s3:GetObject", "s3:PutObject"], [artifacts], reason=CONTENT_ADDRESSED)
        self.evaluate.allow(["s3:GetObject"], [models], reason=CONTENT_ADDRESSED)
        self.evaluate.allow(["dynamodb:GetItem"], [storage.table.table_arn])
        self.evaluate.allow(kms, [storage.key.key_arn])

        if props.training_concurrency is not None:
            for step in (self.train, self.evaluate):
                step.function.node.default_child.add_property_override("ReservedConcurrentExecutions",
                                                                       props.training_concurrency)

        self.control = PlatformFunction(
            self, "Control", source="control", description="Pipeline control: lock, register, canary, promote",
            defaults=props.defaults, layers=props.scoring_layers, memory_size=1024, timeout=Duration.minutes(5),
            environment={Env.STATE_MACHINE_ARN: state_machine_arn(stack),
                         Env.SHARED_SCORING_FUNCTION: props.shared_scoring_function,
                         Env.CODE_ROLLOUT_STATE_MACHINE_ARN: props.code_rollout_state_machine_arn})
        self.control.allow(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query",
                            "dynamodb:ConditionCheckItem"], [storage.table.table_arn])
        self.control.allow(["s3:ListBucket"], [storage.bucket.bucket_arn],
                           {"StringLike": {"s3:prefix": [f"{CAPTURE_PREFIX}*"]}})
        self.control.allow(["s3:GetObject"], [storage.object_arns(CAPTURE_PREFIX)],
                           reason="canary checks read captured predictions keyed by family, version and time")
        self.control.allow(["kms:Decrypt"], [storage.key.key_arn])
        self.control.allow(["s3:PutObject"], [storage.object_arns(RUN_REPORT_PREFIX)],
                           reason="one summary object per ended run, keyed by family and run id; prefix-scoped")
        function_arns = [*props.scoring_function_arns, *(f"{a}:*" for a in props.scoring_function_arns)]
        if function_arns:  # seed families in cdk.json
            self.control.allow(["lambda:GetAlias", "lambda:UpdateAlias", "lambda:CreateAlias",
                                "lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration",
                                "lambda:PublishVersion"], function_arns,
                               reason="versions of the scoring functions are published by the rollout at run time")
        self.control.allow(["states:DescribeExecution", "states:GetExecutionHistory"], [execution_arns(stack)],
                           reason="checks whether the holder of a family's rollout lock is still running; reads a "
                                  "run's history for its step timings and the step that failed")
        # CloudWatch has no resource-level permissions for these two actions; PutMetricData is namespace-bound.
        self.control.allow(["cloudwatch:GetMetricStatistics", "cloudwatch:ListMetrics"], ["*"],
                           reason="GetMetricStatistics and ListMetrics have no resource-level permissions (canary "
                                  "checks read the scoring functions' AWS/Lambda metrics and the shared tier's "
                                  "figures by family and version)")
        self.control.allow(["cloudwatch:PutMetricData"], ["*"],
                           {"StringEquals": {"cloudwatch:namespace": props.metrics_namespace}}, reason=METRIC_REASON)

        self.log_group = logs.LogGroup(self, "ExecutionLogs", retention=props.defaults.log_retention,
                                       encryption_key=props.defaults.log_key, removal_policy=RemovalPolicy.RETAIN)
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            state_machine_name=state_machine_name(stack),
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_file(str(DEFINITION_FILE)),
            definition_substitutions={
                "TrainFunctionArn": self.train.function.function_arn,
                "EvaluateFunctionArn": self.evaluate.function.function_arn,
                "ControlFunctionArn": self.control.function.function_arn,
            },
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            tracing_enabled=True,
        )
        props.training_jobs.grant_start(self.state_machine.role)
        for step in (self.train, self.evaluate, self.control):
            step.function.grant_invoke(self.state_machine)
            acknowledge_wildcard(self.state_machine.role, f"{step.function.function_arn}:*",
                                 "lambda:InvokeFunction by qualified ARN (version/alias), as grant_invoke allows; "
                                 "the same pipeline function")
        self.functions = (self.train, self.evaluate, self.control)
