"""Monitoring: the drift function, its fan-out state machine and schedules, alarms to an SNS topic, and the
dashboard: per tier, with the family as a dimension (Metrics Insights queries over the scoring figures), so nothing
grows with shared-tier families."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from mlops.core.schemas import ModelFamily
from mlops.core.settings import Env
from mlops.monitoring.drift import FANOUT_PREFIX, REPORT_PREFIX
from mlops.registry.artifacts import ARTIFACT_PREFIX
from mlops.registry.store import FAMILY_INDEX
from mlops.serving.capture import CAPTURE_PREFIX
from mlops.serving.metrics import DIMENSIONS, ERRORS, LATENCY

from .config import SharedScoringConfig
from .functions import METRIC_REASON, FunctionDefaults, PlatformFunction
from .layers import ROOT
from .nag import acknowledge_wildcard
from .outcomes import FailedEvents
from .storage import Storage

FANOUT_DEFINITION = ROOT / "infra" / "statemachine" / "drift_fanout.asl.json"


@dataclass(frozen=True)
class MonitoredFamily:
    family: ModelFamily
    function_name: str
    alias_name: str


def insights(select: str, namespace: str, tier: str | None, statistic: str | None = None,
             limit: int = 500) -> cw.MathExpression:
    """A Metrics Insights query over the scoring figures (mlops.serving.metrics), grouped by Family (one series
    per family; 500 is Metrics Insights' limit of series per query). `statistic` replaces the aggregate."""
    if statistic:
        select = f"{statistic}({select.split('(', 1)[1]}"
    schema = f'SCHEMA("{namespace}", {", ".join(sorted(DIMENSIONS))})'
    where = f" WHERE Tier = '{tier}'" if tier else ""
    aggregate = select.split("(", 1)[0]
    return cw.MathExpression(expression=f"SELECT {select} FROM {schema}{where} GROUP BY Family "
                                        f"ORDER BY {aggregate}() DESC LIMIT {limit}",
                             period=Duration.minutes(5), label="")


@dataclass(frozen=True)
class MonitoringProps:
    storage: Storage
    defaults: FunctionDefaults
    layers: tuple
    state_machine: sfn.IStateMachine
    state_machine_arn: str
    execution_arns: str
    families: tuple[MonitoredFamily, ...]  # the dedicated tier's
    metrics_namespace: str
    alarm_email: str | None
    failed_events: FailedEvents
    shared: SharedScoringConfig
    shared_function: lambda_.IFunction
    api: apigw.RestApi
    monitoring_concurrency: int = 10
    monitoring_batch_size: int = 10


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
        # Monitoring never takes more than its share of the account's concurrency (scoring keeps the rest).
        d.function.node.default_child.add_property_override("ReservedConcurrentExecutions",
                                                            props.monitoring_concurrency)
        d.allow(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
                [storage.table.table_arn, f"{storage.table.table_arn}/index/{FAMILY_INDEX}"])
        d.allow(["s3:ListBucket"], [storage.bucket.bucket_arn], {"StringLike": {"s3:prefix": [f"{CAPTURE_PREFIX}*"]}})
        d.allow(["s3:GetObject"], [storage.object_arns(CAPTURE_PREFIX), storage.object_arns(ARTIFACT_PREFIX)],
                reason="reads captured traffic (keys by time) and baseline profiles (content-addressed); prefix-scoped")
        d.allow(["s3:PutObject"], [storage.object_arns(REPORT_PREFIX), storage.object_arns(FANOUT_PREFIX)],
                reason="one report object per check, keyed by family and time, and one family listing per fan-out "
                       "run; prefix-scoped")
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
        shared = props.shared
        # Per tier, with the family as a dimension: one alarm watches every family (a Metrics Insights query
        # grouped by Family; each breaching family is a contributor the notification names). Nothing per family.
        for tier in ("shared", "dedicated"):
            title = tier.capitalize()
            alarm(f"ScoringErrors{title}", insights(f"SUM({ERRORS})", ns, tier), shared.alarm_errors,
                  f"{tier} tier: a family's scoring errors (unexpected failures and 5xx) reached "
                  f"{shared.alarm_errors} in 5 min; the alarm's contributors name the families")
            alarm(f"ScoringLatency{title}", insights(f"AVG({LATENCY})", ns, tier), shared.alarm_mean_latency_ms,
                  f"{tier} tier: a family's mean scoring latency over {shared.alarm_mean_latency_ms:g} ms for 15 min",
                  periods=3)
        alarm("SharedScoringP99", props.shared_function.metric_duration(
            statistic="p99", period=Duration.minutes(5)), shared.alarm_p99_latency_ms,
            f"shared tier: p99 duration over {shared.alarm_p99_latency_ms:g} ms for 15 min", periods=3)
        alarm("ApiServerErrors", props.api.metric_server_error(period=Duration.minutes(5), statistic="Sum"), 5,
              "the scoring API answered 5 or more 5xx in 5 min (a function that fails before answering included)")
        alarm("Integrity", cw.MathExpression(
            expression=f'SELECT SUM(ArtifactIntegrityFailures) FROM SCHEMA("{ns}", Family) GROUP BY Family',
            period=Duration.minutes(5), label="integrity failures"), 1,
            "a model artifact failed its hash check; the contributor names the family")
        alarm("DriftDetected", cw.MathExpression(
            expression=f'SELECT MAX(DriftedFeatures) FROM SCHEMA("{ns}", Family) GROUP BY Family',
            period=Duration.hours(1), label="drifted features"), 1,
            f"a family's scheduled check found drifted features (report under {REPORT_PREFIX}); the contributor "
            "names the family")

        alarm("DriftCheckErrors", cw.MathExpression(
            expression=f'SELECT SUM(DriftCheckErrors) FROM SCHEMA("{ns}", Family) GROUP BY Family',
            period=Duration.hours(1), label="failed drift checks"), 1,
            "a family's drift check failed (in the fan-out, after its retries); the contributor names the family")
        self.fanout = self._fanout(props)

        def schedule(construct_id: str, expression: str, detail: dict, description: str) -> None:
            rule = events.Rule(self, construct_id, schedule=events.Schedule.expression(expression),
                               description=description)
            rule.add_target(targets.SfnStateMachine(
                self.fanout, input=events.RuleTargetInput.from_object({"tier": "", "families": [], "skip_idle": True,
                                                                     **detail}),
                retry_attempts=2, dead_letter_queue=props.failed_events.queue))

        schedule("DriftScheduleSharedTier", "rate(1 hour)", {"tier": "shared"},
                 "Drift check of every live shared-tier family, fanned out")
        widgets: list[cw.IWidget] = [
            cw.TextWidget(markdown="# MLOps platform", width=24, height=1),
            cw.GraphWidget(title="Requests by family (top 10)", width=8, left=[
                insights(f"SUM({LATENCY})", ns, None, statistic="COUNT", limit=10)]),
            cw.GraphWidget(title="Errors by family (top 10)", width=8, left=[
                insights(f"SUM({ERRORS})", ns, None, limit=10)]),
            cw.GraphWidget(title="Mean latency by family, ms (top 10)", width=8, left=[
                insights(f"AVG({LATENCY})", ns, None, limit=10)]),
            cw.GraphWidget(title="Shared function: p99 duration (ms) and concurrency", width=12,
                           left=[props.shared_function.metric_duration(statistic="p99")],
                           right=[props.shared_function.metric("ConcurrentExecutions", statistic="Maximum")]),
            cw.GraphWidget(title="Canary weight by family, %", width=12, left=[cw.MathExpression(
                expression=f'SELECT MAX(CanaryWeight) FROM SCHEMA("{ns}", Family) GROUP BY Family '
                           "ORDER BY MAX() DESC LIMIT 10", period=Duration.minutes(1), label="")]),
        ]
        for monitored in props.families:  # the dedicated tier: each family's own drift schedule
            family = monitored.family
            name = family.name
            schedule(f"DriftSchedule{''.join(p.capitalize() for p in name.split('-'))}", family.drift.schedule,
                     {"families": [name]}, f"Drift check of {name}")
        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.hours(6))
        self.dashboard.add_widgets(*widgets)

    def _fanout(self, props: MonitoringProps) -> sfn.StateMachine:
        """The drift fan-out (infra/statemachine/drift_fanout.asl.json): ListFamilies writes the live families to
        S3, a Distributed Map checks each (MaxConcurrency = the drift function's reserved concurrency) in child
        executions, a failed check is recorded by family. Its role may start and watch its own child executions
        (a physical name breaks the cycle of a policy naming its own state machine)."""
        stack = Stack.of(self)
        name = f"{stack.stack_name}-DriftFanout"[:80]
        arn = stack.format_arn(service="states", resource="stateMachine", resource_name=name,
                               arn_format=ArnFormat.COLON_RESOURCE_NAME)
        executions = stack.format_arn(service="states", resource="execution", resource_name=f"{name}:*",
                                      arn_format=ArnFormat.COLON_RESOURCE_NAME)
        log_group = logs.LogGroup(self, "FanoutLogs", retention=props.defaults.log_retention,
                                  encryption_key=props.defaults.log_key, removal_policy=RemovalPolicy.RETAIN)
        machine = sfn.StateMachine(
            self, "DriftFanout", state_machine_name=name, state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_file(str(FANOUT_DEFINITION)),
            definition_substitutions={"DriftFunctionArn": self.drift.function.function_arn,
                                      "MaxConcurrency": str(props.monitoring_concurrency),
                                      "BatchSize": str(props.monitoring_batch_size)},
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True)
        self.drift.function.grant_invoke(machine)
        role = machine.role
        role.add_to_principal_policy(iam.PolicyStatement(actions=["states:StartExecution"], resources=[arn]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["states:DescribeExecution", "states:StopExecution"], resources=[executions]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[props.storage.object_arns(FANOUT_PREFIX)]))
        props.storage.key.grant_decrypt(role)
        acknowledge_wildcard(role, executions, "DescribeExecution/StopExecution of the fan-out's own child "
                                               "executions, whose names Step Functions creates per item")
        acknowledge_wildcard(role, f"{self.drift.function.function_arn}:*",
                             "lambda:InvokeFunction by qualified ARN (version/alias), as grant_invoke allows; the "
                             "drift function")
        acknowledge_wildcard(role, props.storage.object_arns(FANOUT_PREFIX),
                             "reads the family listing its own ListFamilies step wrote; prefix-scoped")
        return machine

    def add_alarm(self, construct_id: str, metric: cw.IMetric, threshold: float, description: str,
                  periods: int = 1) -> cw.Alarm:
        """An alarm at `threshold` or above, missing data not breaching, notifying the alerts topic."""
        created = cw.Alarm(self, construct_id, metric=metric, threshold=threshold, evaluation_periods=periods,
                           comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                           treat_missing_data=cw.TreatMissingData.NOT_BREACHING, alarm_description=description)
        created.add_alarm_action(self._action)
        self.alarms.append(created)
        return created
