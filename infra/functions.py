"""One helper builds every Lambda function with the house defaults; roles are explicit and minimal."""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct
from mlops.core.settings import Env

from .layers import ASSET_EXCLUDE, ROOT
from .nag import STAR_REASONS, acknowledge_wildcard

RUNTIME = lambda_.Runtime.PYTHON_3_12
CONTENT_ADDRESSED = "objects are content-addressed by sha256, unknown until trained; prefix-scoped"
METRIC_REASON = ("PutMetricData has no resource-level permissions; the condition binds it to the platform's "
                 "metric namespace")


@dataclass(frozen=True)
class FunctionDefaults:
    """What every function shares: architecture, log retention and encryption, the base layers."""

    architecture: lambda_.Architecture
    log_retention: logs.RetentionDays
    log_key: kms.IKey
    layers: tuple[lambda_.ILayerVersion, ...]
    environment: dict[str, str] = field(default_factory=dict)


class PlatformFunction(Construct):
    """A function from functions/<source>/handler.py with its own role, log group, tracing and JSON logs.

    The role starts with exactly two statements (its own log group, X-Ray); everything else is granted by the
    construct that uses the function, statement by statement."""

    def __init__(self, scope: Construct, construct_id: str, *, source: str, description: str,
                 defaults: FunctionDefaults, layers: tuple[lambda_.ILayerVersion, ...] = (),
                 environment: dict[str, str] | None = None, memory_size: int = 512,
                 timeout: Duration | None = None, service: str | None = None) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(self, "Logs", retention=defaults.log_retention,
                                       encryption_key=defaults.log_key, removal_policy=RemovalPolicy.RETAIN)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             description=f"{description} (least privilege, no managed policies)")
        self.allow(["logs:CreateLogStream", "logs:PutLogEvents"],
                   [self.log_group.log_group_arn, f"{self.log_group.log_group_arn}:log-stream:*"],
                   reason="Log stream names are created by Lambda at run time; scoped to this function's log group")
        env = {
            **defaults.environment,
            Env.SERVICE_NAME: service or f"mlops-{source}",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            **(environment or {}),
        }
        self.function = lambda_.Function(
            self, "Function",
            runtime=RUNTIME,
            architecture=defaults.architecture,
            handler="handler.lambda_handler",
            code=lambda_.Code.from_asset(str(ROOT / "functions" / source), exclude=ASSET_EXCLUDE),
            layers=[*defaults.layers, *layers],
            description=description,
            memory_size=memory_size,
            timeout=timeout or Duration.seconds(60),
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            tracing=lambda_.Tracing.ACTIVE,
            environment=env,
        )

    def allow(self, actions: list[str], resources: list[str], conditions: dict | None = None,
              reason: str | None = None) -> None:
        """Grant exactly these actions on these resources. A wildcard resource needs a reason: it becomes the
        cdk-nag acknowledgment of that exact resource on this role."""
        self.role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources, conditions=conditions))
        wildcards = [r for r in resources if "*" in str(Stack.of(self).resolve(r))]
        if wildcards and not reason:
            raise ValueError(f"{self.node.path}: wildcard resources {wildcards} for {actions} need a reason")
        for resource in wildcards:
            if resource == "*":  # acknowledged once per role, with X-Ray's reason (infra/nag.py)
                STAR_REASONS.setdefault(self.role.node.path, []).append(f"{', '.join(actions)}: {reason}")
            else:
                acknowledge_wildcard(self.role, resource, f"{', '.join(actions)}: {reason}")
