"""Monitoring: the drift function and its schedules, alarms to an SNS topic, and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from mlops.core.schemas import ModelFamily
from mlops.core.settings import Env
from mlops.monitoring.drift import REPORT_PREFIX
from mlops.registry.store import FAMILY_INDEX
from mlops.serving.capture import CAPTURE_PREFIX

from .functions import METRIC_REASON, FunctionDefaults, PlatformFunction
from .outcomes import FailedEvents
from .storage import Storage


@dataclass(frozen=True)
class MonitoredFamily:
    family: ModelFamily
    function_name: str
    alias_name: str


@dataclass(frozen=True)
class MonitoringProps:
    storage: Storage
    defaults: FunctionDefaults
    layers: tuple
    state_machine: sfn.IStateMachine
    state_machine_arn: str
    execution_arns: str
    families: tuple[MonitoredFamily, ...]
    metrics_namespace: str
    alarm_email: str | None
    failed_events: FailedEvents


class Monitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: MonitoringProps) -> None:
        super().__init__(scope, construct_id)
        storage, ns = props.storage, props.metrics_namespace
        self.drift = PlatformFunction(
            self, "Drift", source="drift", description="Scheduled drift check of live models",
            defaults=props.defaults, layers=props.layers, memory_size=3008, timeout=Duration.minutes(15),
            environment={Env.STATE_MACHINE_ARN: props.state_machine_arn})
        props.failed_events.guard(self.drift)
        d = self.drift
        d.allow(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
                [storage.table.table_arn, f"{storage.table.table_arn}/index/{FAMILY_INDEX}"])
        d.allow(["s3:ListBucket"], [storage.bucket.bucket_arn], {"StringLike": {"s3:prefix": [f"{CAPTURE_PREFIX}*"]}})
        d.allow(["s3:GetObject"], [storage.object_arns(CAPTURE_PREFIX), storage.object_arns("artifacts/sha256/")],
                reason="reads captured traffic (keys by time) and baseline profiles (content-addressed); prefix-scoped")
        d.allow(["s3:PutObject"], [storage.object_arns(REPORT_PREFIX)],
                reason="one report object per check, keyed by family and time; prefix-scoped")
        d.allow(["kms:Decrypt", "kms:GenerateDataKey"], [storage.key.key_arn])
        d.allow(["states:StartExecution"], [props.state_machine_arn])
        d.allow(["states:DescribeExecution"], [props.execution_arns],
                reason="execution names are created per run; scoped to this pipeline's executions")
        d.allow(["cloudwatch:PutMetricData"], ["*"], {"StringEquals": {"cloudwatch:namespace": ns}},
                reason=METRIC_REASON)

        self.topic = sns.Topic(self, "Alerts", display_name="MLOps platform alerts", master_key=storage.key,
                               enforce_ssl=True)
        storage.key.grant_encrypt_decrypt(iam.ServicePrincipal("cloudwatch.amazonaws.com"))
        # The topic's policy replaces SNS's default one: CloudWatch alarms of this account must be allowed to publish.
        stack = Stack.of(self)
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowCloudWatchAlarmsOfThisAccount", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"], resources=[self.topic.topic_arn],
            conditions={"StringEquals": {"aws:SourceAccount": stack.account},
                        "ArnLike": {"aws:SourceArn": f"arn:{stack.partition}:cloudwatch:{stack.region}:"
                                                     f"{stack.account}:alarm:*"}}))
        if props.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(props.alarm_email))
        self._action = cw_actions.SnsAction(self.topic)
        self.alarms: list[cw.Alarm] = []
        alarm = self.add_alarm

        alarm("PipelineFailures", props.state_machine.metric_failed(period=Duration.minutes(5)), 1,
              "A model pipeline execution failed; the reason is in the registry run record")
        widgets: list[cw.IWidget] = [cw.TextWidget(markdown="# MLOps platform", width=24, height=1)]
        for monitored in props.families:
            family = monitored.family
            name = family.name
            schedule_name = "".join(p.capitalize() for p in name.split("-"))
            rule = events.Rule(self, f"DriftSchedule{schedule_name}",
                               schedule=events.Schedule.expression(family.drift.schedule),
                               description=f"Drift check of {name}")
            rule.add_target(targets.LambdaFunction(d.function, event=events.RuleTargetInput.from_object(
                {"detail-type": "Scheduled Event", "source": "mlops.drift", "detail": {"families": [name]}}),
                retry_attempts=2, dead_letter_queue=props.failed_events.queue))
            dims = {"FunctionName": monitored.function_name, "Resource":
                    f"{monitored.function_name}:{monitored.alias_name}"}
            invocations = cw.Metric(namespace="AWS/Lambda", metric_name="Invocations", dimensions_map=dims,
                                    statistic="Sum", period=Duration.minutes(1), label=f"{name} requests")
            errors = cw.Metric(namespace="AWS/Lambda", metric_name="Errors", dimensions_map=dims, statistic="Sum",
                               period=Duration.minutes(5), label=f"{name} errors")
            p99 = cw.Metric(namespace="AWS/Lambda", metric_name="Duration", dimensions_map=dims, statistic="p99",
                            period=Duration.minutes(5), label=f"{name} p99 ms")
            family_dims = {"Family": name}
            canary_weight = cw.Metric(namespace=ns, metric_name="CanaryWeight", dimensions_map=family_dims,
                                      statistic="Maximum", period=Duration.minutes(1), label="canary weight %")
            drifted = cw.Metric(namespace=ns, metric_name="DriftedFeatures", dimensions_map=family_dims,
                                statistic="Maximum", period=Duration.hours(1), label="drifted features")
            max_psi = cw.Metric(namespace=ns, metric_name="MaxFeaturePSI", dimensions_map=family_dims,
                                statistic="Maximum", period=Duration.hours(1), label="max feature PSI")
            integrity = cw.Metric(namespace=ns, metric_name="ArtifactIntegrityFailures", dimensions_map=family_dims,
                                  statistic="Sum", period=Duration.minutes(5))
            alarm(f"ScoringErrors{schedule_name}", errors, 5, f"{name}: scoring function errors (5 in 5 min)")
            alarm(f"ScoringLatency{schedule_name}", p99, family.canary.max_p99_latency_ms,
                  f"{name}: p99 latency over {family.canary.max_p99_latency_ms} ms for 15 min", periods=3)
            alarm(f"Integrity{schedule_name}", integrity, 1, f"{name}: a model artifact failed its hash check")
            alarm(f"Drift{schedule_name}", drifted, family.drift.min_drifted_features,
                  f"{name}: drift confirmed by the scheduled check (report under {REPORT_PREFIX})")
            widgets += [
                cw.GraphWidget(title=f"{name}: traffic", left=[invocations], width=6),
                cw.GraphWidget(title=f"{name}: p99 latency (ms)", left=[p99], width=6),
                cw.GraphWidget(title=f"{name}: errors", left=[errors], width=4),
                cw.GraphWidget(title=f"{name}: canary weight", left=[canary_weight], width=4),
                cw.GraphWidget(title=f"{name}: drift", left=[drifted], right=[max_psi], width=4),
            ]
        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.hours(6))
        self.dashboard.add_widgets(*widgets)

    def add_alarm(self, construct_id: str, metric: cw.IMetric, threshold: float, description: str,
                  periods: int = 1) -> cw.Alarm:
        """An alarm at `threshold` or above, missing data not breaching, notifying the alerts topic."""
        created = cw.Alarm(self, construct_id, metric=metric, threshold=threshold, evaluation_periods=periods,
                           comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                           treat_missing_data=cw.TreatMissingData.NOT_BREACHING, alarm_description=description)
        created.add_alarm_action(self._action)
        self.alarms.append(created)
        return created
