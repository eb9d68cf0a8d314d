"""Outcomes: nothing is lost silently. One encrypted queue receives every event the platform could not process
(on-failure destination of the asynchronously invoked functions, dead-letter queue of the EventBridge targets);
executions that end FAILED, TIMED_OUT or ABORTED outside the definition's Catch reach the control function's
failure handling through an EventBridge rule; alarms fire on failed runs and on anything in the queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jsii
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from mlops.registry.runs import FAILED, FAILURE_STATUSES, METRIC, STATUS_CHANGE

from .functions import PlatformFunction
from .nag import acknowledge

if TYPE_CHECKING:
    from .monitoring import Monitoring

# Lambda retries a failed asynchronous invocation twice; an event older than this goes to the queue unprocessed.
ASYNC_RETRIES = 2
ASYNC_MAX_AGE = Duration.hours(6)


@jsii.implements(lambda_.IDestination)
class _QueueDestination:
    """An on-failure destination that only names the queue: the function's role gets exactly
    sqs:SendMessage and the two KMS actions from `FailedEvents.guard` (CDK's SqsDestination grants
    kms:ReEncrypt* and kms:GenerateDataKey* wildcards)."""

    def __init__(self, queue: sqs.IQueue) -> None:
        self.queue = queue

    def bind(self, _scope: Construct, _fn: lambda_.IFunction, options: Any = None, **_: Any) -> Any:
        return lambda_.DestinationConfig(destination=self.queue.queue_arn)


class FailedEvents(Construct):
    """The failed-events queue, encrypted with the platform key; `guard(function)` makes it the function's
    on-failure destination. Messages are kept 14 days (SQS's maximum) for an operator to inspect and replay."""

    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = key
        self.queue = sqs.Queue(self, "Queue", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key,
                               enforce_ssl=True, retention_period=Duration.days(14),
                               removal_policy=RemovalPolicy.RETAIN)
        # EventBridge writes dead letters with the service principal: the key must let it encrypt for the queue.
        key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=["*"],
            conditions={"StringEquals": {"aws:SourceAccount": stack.account}}))
        acknowledge(self.queue, "AwsSolutions-SQS3",
                    "This queue is itself the dead-letter destination (Lambda on-failure destination and "
                    "EventBridge target DLQ); a dead-letter queue behind it would only move the same messages")

    def guard(self, function: PlatformFunction) -> None:
        """Asynchronous invocations that still fail after Lambda's retries land in the queue, whole."""
        function.function.configure_async_invoke(on_failure=_QueueDestination(self.queue),
                                                 retry_attempts=ASYNC_RETRIES, max_event_age=ASYNC_MAX_AGE)
        function.allow(["sqs:SendMessage"], [self.queue.queue_arn])
        function.allow(["kms:GenerateDataKey", "kms:Decrypt"], [self.key.key_arn])


@dataclass(frozen=True)
class OutcomesProps:
    failed_events: FailedEvents
    control: PlatformFunction
    state_machine_arn: str
    monitoring: Monitoring
    metrics_namespace: str


class Outcomes(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: OutcomesProps) -> None:
        super().__init__(scope, construct_id)
        queue = props.failed_events.queue
        self.rule = events.Rule(
            self, "ExecutionEndedOutsideCatch",
            description="Pipeline executions ending FAILED, TIMED_OUT or ABORTED -> failure handling (run record, "
                        "lock, traffic); a no-op when the definition's own HandleFailure already ran",
            event_pattern=events.EventPattern(
                source=["aws.states"], detail_type=[STATUS_CHANGE],
                detail={"stateMachineArn": [props.state_machine_arn], "status": sorted(FAILURE_STATUSES)}))
        self.rule.add_target(targets.LambdaFunction(props.control.function, dead_letter_queue=queue,
                                                    retry_attempts=8, max_event_age=Duration.hours(24)))
        props.failed_events.guard(props.control)
        props.monitoring.add_alarm(
            "FailedEvents", queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"), 1,
            "Events the platform could not process (an upload, a drift check, a failure handling) are waiting in "
            "the failed-events queue; each message holds the original event and the error")
        props.monitoring.add_alarm(
            "RunFailures", cw.Metric(namespace=props.metrics_namespace, metric_name=METRIC,
                                     dimensions_map={"Outcome": FAILED}, statistic="Sum",
                                     period=Duration.minutes(5)), 1,
            "A pipeline run failed (any family); `mlops runs --family F` shows the step and the reason")
