"""Triggers: S3 notifications for datasets/ to the trigger function, which starts the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from constructs import Construct
from mlops.core.settings import Env
from mlops.pipeline.trigger import DATASET_PREFIX
from mlops.registry.runs import RUN_REPORT_PREFIX
from mlops.registry.store import FAMILY_INDEX
from mlops.rollout.code import CodeCanaryPolicy

from .functions import METRIC_REASON, FunctionDefaults, PlatformFunction
from .outcomes import FailedEvents
from .storage import Storage


@dataclass(frozen=True)
class TriggersProps:
    storage: Storage
    defaults: FunctionDefaults
    layers: tuple
    state_machine_arn: str
    execution_arns: str
    metrics_namespace: str
    failed_events: FailedEvents
    # The shared scoring function's code rollouts: `{"rollout_shared_code": true}` starts one.
    shared_scoring_function: lambda_.IFunction
    code_rollout_state_machine_arn: str
    code_canary: CodeCanaryPolicy


class Triggers(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: TriggersProps) -> None:
        super().__init__(scope, construct_id)
        storage = props.storage
        self.trigger = PlatformFunction(
            self, "Trigger", source="trigger", description="Starts the model pipeline for data set uploads",
            defaults=props.defaults, layers=props.layers, memory_size=512, timeout=Duration.seconds(30),
            environment={Env.STATE_MACHINE_ARN: props.state_machine_arn,
                         Env.SHARED_SCORING_FUNCTION: props.shared_scoring_function.function_name,
                         Env.CODE_ROLLOUT_STATE_MACHINE_ARN: props.code_rollout_state_machine_arn,
                         Env.CODE_CANARY_POLICY: props.code_canary.model_dump_json()})
        self.trigger.allow(["s3:GetObject", "s3:GetObjectVersion"], [storage.object_arns(DATASET_PREFIX)],
                           reason="HeadObject of uploaded data sets (any file name) to pin their version")
        self.trigger.allow(["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"], [storage.table.table_arn])
        self.trigger.allow(["dynamodb:Query"], [f"{storage.table.table_arn}/index/{FAMILY_INDEX}"])
        self.trigger.allow(["states:StartExecution"], [props.state_machine_arn, props.code_rollout_state_machine_arn])
        self.trigger.allow(["lambda:GetFunctionConfiguration"], [props.shared_scoring_function.function_arn])
        self.trigger.allow(["kms:Decrypt", "kms:GenerateDataKey"], [storage.key.key_arn])
        self.trigger.allow(["s3:PutObject"], [storage.object_arns(RUN_REPORT_PREFIX)],
                           reason="one summary object per rejected upload, keyed by family and run id; prefix-scoped")
        self.trigger.allow(["cloudwatch:PutMetricData"], ["*"],
                           {"StringEquals": {"cloudwatch:namespace": props.metrics_namespace}}, reason=METRIC_REASON)
        # Every object under datasets/ reaches the function and leaves a run record (started or rejected with the
        # reason); an event the function cannot process at all ends in the failed-events queue.
        props.failed_events.guard(self.trigger)
        storage.bucket.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.LambdaDestination(self.trigger.function),
                                              s3.NotificationKeyFilter(prefix=DATASET_PREFIX))
