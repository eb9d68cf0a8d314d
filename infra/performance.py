"""Performance monitoring with delayed labels: the performance function, fed by S3 notifications on labels/ and by
one platform-wide schedule, its alarms per serving tier (the family is a dimension of the metrics the alarm's
query groups by, never an alarm of its own: nothing grows with the number of families) and its dashboard row.

Why labels uploads go to the function directly (and not only to the schedule): every upload must leave a record
within seconds (accepted or rejected, with its counts), and a labels upload is exactly when realised metrics change,
so the function ingests the file and re-checks that family at once. The schedule covers what changes without
labels: new decisions, hence the CBPE estimate, for every live family of both tiers.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from constructs import Construct
from mlops.core.schemas import DEDICATED, SHARED
from mlops.core.settings import Env
from mlops.monitoring.labels import INGESTED_PREFIX, LABELS_PREFIX
from mlops.monitoring.performance import BREACH_DIMENSIONS, REPORT_PREFIX
from mlops.registry.store import FAMILY_INDEX
from mlops.serving.decisions import DECISION_PREFIX

from .functions import METRIC_REASON, FunctionDefaults, PlatformFunction
from .monitoring import Monitoring
from .outcomes import FailedEvents
from .storage import Storage

BREACH_METRICS = ("PerformanceBreaches", "EstimatedPerformanceBreaches")


def breaches_by_family(metric: str, namespace: str, tier: str) -> cw.MathExpression:
    """A Metrics Insights query: the tier's families' breach counts (mlops.monitoring.performance publishes them
    with the family and its tier as dimensions), one series per family, so the alarm's contributors name the
    families."""
    schema = f'SCHEMA("{namespace}", {", ".join(sorted(BREACH_DIMENSIONS))})'
    return cw.MathExpression(expression=f"SELECT MAX({metric}) FROM {schema} WHERE Tier = '{tier}' GROUP BY Family "
                                        "ORDER BY MAX() DESC LIMIT 500",
                             period=Duration.hours(1), label=f"{tier}: {metric}")


@dataclass(frozen=True)
class PerformanceMonitoringProps:
    storage: Storage
    defaults: FunctionDefaults
    layers: tuple
    monitoring: Monitoring
    state_machine_arn: str
    execution_arns: str
    metrics_namespace: str
    failed_events: FailedEvents
    schedule: str


class PerformanceMonitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, props: PerformanceMonitoringProps) -> None:
        super().__init__(scope, construct_id)
        storage, ns, monitoring = props.storage, props.metrics_namespace, props.monitoring
        self.function = PlatformFunction(
            self, "Checks", source="performance",
            description="Labels uploads and scheduled performance checks (realised metrics, CBPE estimate)",
            defaults=props.defaults, layers=props.layers, memory_size=3008, timeout=Duration.minutes(15),
            environment={Env.STATE_MACHINE_ARN: props.state_machine_arn,
                         Env.ALERTS_TOPIC_ARN: monitoring.topic.topic_arn})
        props.failed_events.guard(self.function)
        fn = self.function
        table = storage.table.table_arn
        # GetItem/Query: families (the sharded family index), versions, runs and uploads; UpdateItem: the run
        # record of a retrain it starts (mlops.monitoring.retrain).
        fn.allow(["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
                 [table, f"{table}/index/{FAMILY_INDEX}"])
        # Lists decision records (keys by time), labels records and its own reports; never object versions, nor
        # data sets (a retrain's data set comes from the registry's upload records: mlops.monitoring.retrain).
        fn.allow(["s3:ListBucket"], [storage.bucket.bucket_arn],
                 {"StringLike": {"s3:prefix": [f"{p}*" for p in (DECISION_PREFIX, INGESTED_PREFIX, REPORT_PREFIX)]}})
        fn.allow(["s3:GetObject", "s3:GetObjectVersion"],
                 [storage.object_arns(p) for p in (DECISION_PREFIX, LABELS_PREFIX, INGESTED_PREFIX, REPORT_PREFIX)],
                 reason="reads decision records (keys by time), labels files and records (any file name) and its "
                        "own reports; prefix-scoped")
        fn.allow(["s3:PutObject"], [storage.object_arns(INGESTED_PREFIX), storage.object_arns(REPORT_PREFIX)],
                 reason="one record per labels upload and one report per check, keyed by family and time; "
                        "prefix-scoped")
        fn.allow(["kms:Decrypt", "kms:GenerateDataKey"], [storage.key.key_arn])
        fn.allow(["states:StartExecution"], [props.state_machine_arn])
        fn.allow(["states:DescribeExecution"], [props.execution_arns],
                 reason="execution names are created per run; scoped to this pipeline's executions")
        fn.allow(["cloudwatch:PutMetricData"], ["*"], {"StringEquals": {"cloudwatch:namespace": ns}},
                 reason=METRIC_REASON)
        # Not topic.grant_publish: on a KMS-encrypted topic it also grants kms:GenerateDataKey* (a wildcard action);
        # the two KMS actions SNS needs are granted above.
        fn.allow(["sns:Publish"], [monitoring.topic.topic_arn])
        # Every object under labels/ reaches the function and leaves a record; an event the function cannot
        # process at all ends in the failed-events queue.
        storage.bucket.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.LambdaDestination(fn.function),
                                              s3.NotificationKeyFilter(prefix=LABELS_PREFIX))
        self.schedule = events.Rule(self, "Schedule", schedule=events.Schedule.expression(props.schedule),
                                    description="Performance check of every live family (CBPE estimate, labels)")
        self.schedule.add_target(targets.LambdaFunction(fn.function, event=events.RuleTargetInput.from_object(
            {"detail-type": "Scheduled Event", "source": "mlops.performance", "detail": {}}),
            retry_attempts=2, dead_letter_queue=props.failed_events.queue))

        widgets: list[cw.IWidget] = [cw.TextWidget(markdown="## Performance with delayed labels", width=24, height=1)]
        for tier in (SHARED, DEDICATED):
            title = tier.capitalize()
            realised, estimated = (breaches_by_family(m, ns, tier) for m in BREACH_METRICS)
            monitoring.add_alarm(f"PerformanceBreaches{title}", realised, 1,
                                 f"{tier} tier: a family's realised performance (delayed labels) breaks its policy; "
                                 "the alarm's contributors and the alerts topic name the family, `mlops performance "
                                 "show FAMILY` the checks")
            monitoring.add_alarm(f"EstimatedPerformanceBreaches{title}", estimated, 1,
                                 f"{tier} tier: a family's CBPE estimate (calibrated model, before labels) breaks its "
                                 "policy; the alarm's contributors and the alerts topic name the family")
            widgets.append(cw.GraphWidget(title=f"{tier} tier: performance breaches by family",
                                          left=[realised, estimated], width=6))
        per_family = [
            cw.MathExpression(expression=f"SELECT MAX({metric}) FROM SCHEMA(\"{ns}\", Family, Metric) "
                                         f"WHERE Metric = '{figure}' GROUP BY Family ORDER BY MAX() DESC LIMIT 10",
                              label=f"{metric} {figure}", period=Duration.hours(1))
            for metric, figure in (("RealisedMetric", "auc"), ("EstimatedMetric", "auc"))]
        coverage = cw.MathExpression(expression=f"SELECT MAX(LabelCoverage) FROM SCHEMA(\"{ns}\", Family) "
                                                "GROUP BY Family ORDER BY MAX() ASC LIMIT 10",
                                     label="label coverage", period=Duration.hours(1))
        widgets += [cw.GraphWidget(title="AUC per family: realised and estimated", left=per_family, width=6),
                    cw.GraphWidget(title="Label coverage per family (lowest 10)", left=[coverage], width=6)]
        monitoring.dashboard.add_widgets(*widgets)
