"""The platform stack: only wiring; each concern is a construct in its own module."""

from __future__ import annotations

import subprocess

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct
from mlops.core.codeversion import DIRTY_SUFFIX, working_tree_dirty
from mlops.core.settings import Env

from .audit import Audit, AuditProps
from .code_rollout import CodeRollout, CodeRolloutProps, code_rollout_arn
from .config import PlatformConfig
from .families import FamilyManagement, FamilyManagementProps
from .functions import FunctionDefaults, PlatformFunction
from .layers import ROOT, dependency_layer, runtime_library_layer
from .monitoring import MonitoredFamily, Monitoring, MonitoringProps
from .nag import acknowledge_platform_findings
from .outcomes import FailedEvents, Outcomes, OutcomesProps
from .performance import PerformanceMonitoring, PerformanceMonitoringProps
from .pipeline import Pipeline, PipelineProps, execution_arns, state_machine_arn
from .reports import ReportWriters, ReportWritersProps
from .scoring import FamilyScoring, FamilyScoringProps, ScoringApi, SharedScoring, SharedScoringProps
from .storage import Storage, StorageProps
from .training_jobs import TrainingJobs, TrainingJobsProps
from .triggers import Triggers, TriggersProps

METRICS_NAMESPACE = "MLOpsPlatform"


def git_revision() -> str:
    """HEAD of the deploying checkout, `-dirty` appended when tracked files have uncommitted changes (recorded in
    lineage: mlops.core.codeversion.revision_and_dirty)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if out.returncode != 0:
        return ""
    dirty = working_tree_dirty(ROOT)
    return out.stdout.strip() + (DIRTY_SUFFIX if dirty else "")


class MlopsPlatformStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: PlatformConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        architecture = lambda_.Architecture.ARM_64 if config.architecture == "arm64" else lambda_.Architecture.X86_64

        storage = Storage(self, "Storage", props=StorageProps(capture_retention_days=config.capture_retention_days,
                                                              report_retention_days=config.report_retention_days))
        common = runtime_library_layer(self, "RuntimeLibraryLayer", architecture)
        base = dependency_layer(self, "BaseLayer", "base", architecture, "powertools, pydantic, orjson")
        scoring_layer = dependency_layer(self, "ScoringLayer", "scoring", architecture, "onnxruntime, numpy")
        training_layer = dependency_layer(self, "TrainingLayer", "training", architecture,
                                          "scikit-learn, scipy, skl2onnx, onnx")
        reports_layer = dependency_layer(self, "ReportsLayer", "reports", architecture,
                                         "Jinja2, pygal: model cards and drift report pages")
        defaults = FunctionDefaults(
            architecture=architecture,
            log_retention=logs.RetentionDays[_retention_name(config.log_retention_days)],
            log_key=storage.key,
            layers=(common, base),
            environment={Env.ARTIFACT_BUCKET: storage.bucket.bucket_name,
                         Env.REGISTRY_TABLE: storage.table.table_name,
                         Env.METRICS_NAMESPACE: METRICS_NAMESPACE},
        )

        bootstrap = PlatformFunction(self, "FamilySetup", source="bootstrap",
                                     description="Registers seed families and creates each `live` alias once",
                                     defaults=defaults, layers=(scoring_layer,), timeout=Duration.minutes(5))
        api = ScoringApi(self, "ScoringApi", config=config.api, defaults=defaults)
        shared = SharedScoring(self, "SharedScoring", props=SharedScoringProps(
            config=config.shared_scoring, seed_families=config.shared_families, storage=storage, api=api,
            defaults=defaults, layers=(scoring_layer,), bootstrap=bootstrap, metrics_namespace=METRICS_NAMESPACE))
        families = []
        for family in config.dedicated_families:
            scoring = FamilyScoring(self, f"Family{_pascal(family.name)}", props=FamilyScoringProps(
                family=family, storage=storage, api=api, defaults=defaults, layers=(scoring_layer,),
                bootstrap=bootstrap.function, memory_size=config.scoring_memory_mb,
                metrics_namespace=METRICS_NAMESPACE))
            families.append(scoring)
        scoring_arns = (shared.function.function_arn, *(f.function.function_arn for f in families))
        bootstrap.allow(["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"], [storage.table.table_arn])
        bootstrap.allow(["kms:Decrypt", "kms:GenerateDataKey"], [storage.key.key_arn])
        bootstrap.allow(["lambda:GetAlias", "lambda:CreateAlias", "lambda:PublishVersion"],
                        [*scoring_arns, *(f"{a}:*" for a in scoring_arns)],
                        reason="publishes the first version and creates the alias `live` (qualified ARNs)")

        failed_events = FailedEvents(self, "FailedEvents", key=storage.key)
        pipeline = Pipeline(self, "Pipeline", props=PipelineProps(
            storage=storage, defaults=defaults, scoring_layers=(scoring_layer,), training_layers=(training_layer,),
            scoring_function_arns=scoring_arns, training_memory_mb=config.training_memory_mb,
            training_concurrency=config.training_concurrency,
            metrics_namespace=METRICS_NAMESPACE, git_revision=git_revision(),
            training_jobs=TrainingJobs(self, "TrainingJobs", props=TrainingJobsProps(
                storage=storage, families=config.families)),
            training_ephemeral_mb=config.training_ephemeral_mb,
            shared_scoring_function=shared.function.function_name,
            code_rollout_state_machine_arn=code_rollout_arn(self)))
        CodeRollout(self, "SharedCodeRollout", props=CodeRolloutProps(control=pipeline.control, defaults=defaults))
        Triggers(self, "Triggers", props=TriggersProps(
            storage=storage, defaults=defaults, layers=(scoring_layer,), state_machine_arn=state_machine_arn(self),
            execution_arns=execution_arns(self), metrics_namespace=METRICS_NAMESPACE, failed_events=failed_events,
            shared_scoring_function=shared.function, code_rollout_state_machine_arn=code_rollout_arn(self),
            code_canary=config.shared_scoring.code_canary))
        monitoring = Monitoring(self, "Monitoring", props=MonitoringProps(
            storage=storage, defaults=defaults, layers=(scoring_layer,), state_machine=pipeline.state_machine,
            state_machine_arn=state_machine_arn(self), execution_arns=execution_arns(self),
            families=tuple(MonitoredFamily(family, scoring.function.function_name, scoring.alias_name)
                           for family, scoring in zip(config.dedicated_families, families, strict=True)),
            metrics_namespace=METRICS_NAMESPACE, alarm_email=config.alarm_email, failed_events=failed_events,
            shared=config.shared_scoring, shared_function=shared.function, api=api.api,
            monitoring_concurrency=config.monitoring_concurrency,
            monitoring_batch_size=config.monitoring_batch_size))
        PerformanceMonitoring(self, "Performance", props=PerformanceMonitoringProps(
            storage=storage, defaults=defaults, layers=(scoring_layer, reports_layer), monitoring=monitoring,
            state_machine_arn=state_machine_arn(self), execution_arns=execution_arns(self),
            metrics_namespace=METRICS_NAMESPACE, failed_events=failed_events, schedule=config.performance_schedule))
        Audit(self, "Audit", props=AuditProps(storage=storage, api=api, defaults=defaults, layers=(scoring_layer,)))
        FamilyManagement(self, "FamilyManagement", props=FamilyManagementProps(storage=storage, api=api,
                                                                                 defaults=defaults))
        ReportWriters(self, "Reports", props=ReportWritersProps(
            storage=storage, layer=reports_layer, control=pipeline.control, drift=monitoring.drift))
        Outcomes(self, "Outcomes", props=OutcomesProps(
            failed_events=failed_events, control=pipeline.control, state_machine_arn=state_machine_arn(self),
            monitoring=monitoring, metrics_namespace=METRICS_NAMESPACE))

        CfnOutput(self, "ArtifactBucket", value=storage.bucket.bucket_name,
                  description="Upload data sets to s3://<bucket>/datasets/<family>/<file>.csv")
        CfnOutput(self, "RegistryTable", value=storage.table.table_name)
        CfnOutput(self, "ScoringApiUrl", value=api.api.url, description="IAM-authorized (SigV4) scoring API")
        CfnOutput(self, "PipelineStateMachine", value=pipeline.state_machine.state_machine_arn)
        CfnOutput(self, "AlertsTopic", value=monitoring.topic.topic_arn)
        CfnOutput(self, "FailedEventsQueue", value=failed_events.queue.queue_url,
                  description="Events the platform could not process (original event + error), kept 14 days")
        CfnOutput(self, "Dashboard", value=monitoring.dashboard.dashboard_name)
        CfnOutput(self, "DriftFunction", value=monitoring.drift.function.function_name,
                  description="Runs the drift checks; `mlops drift check FAMILY --stack NAME` invokes it")
        CfnOutput(self, "DriftFanout", value=monitoring.fanout.state_machine_arn,
                  description="The scheduled drift fan-out; `mlops drift check-all --stack NAME` starts it now")
        CfnOutput(self, "SharedScoringFunction", value=shared.function.function_name,
                  description="Serves every shared-tier family; roll out its code with {\"rollout_shared_code\": true} "
                              "to the trigger function")
        for family, scoring in zip(config.dedicated_families, families, strict=True):
            CfnOutput(self, f"ScoringFunction{_pascal(family.name)}", value=scoring.function.function_name)
        acknowledge_platform_findings(self)


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def _retention_name(days: int) -> str:
    names = {1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
             60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
             365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS",
             1096: "THREE_YEARS", 1827: "FIVE_YEARS", 2192: "SIX_YEARS", 2557: "SEVEN_YEARS",
             2922: "EIGHT_YEARS", 3288: "NINE_YEARS", 3653: "TEN_YEARS"}
    return names[days]
