"""cdk-nag (AwsSolutions) acknowledgments. Each one names the rule, the resource (granular finding IDs, so a
new wildcard is never covered by an old reason) and a reason a security reviewer can check."""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import IConstruct

XRAY_REASON = ("X-Ray PutTraceSegments/PutTelemetryRecords/GetSampling* support no resource-level permissions "
               "(Resource must be *); added by CDK for active tracing")
# Per role path, why a statement needs Resource "*" (services without resource-level permissions).
STAR_REASONS: dict[str, list[str]] = {}
RUNTIME_REASON = ("Python 3.12 deliberately: the dependency layers are built for and verified on CPython 3.12 "
                  "(wheels, bytecode, import smoke test); moving runtime means rebuilding and re-verifying them")


def render(stack: Stack, value: Any) -> str:
    """A resource as cdk-nag prints it in finding IDs (GetAtt -> <Id.Attr>, Ref -> <Id>)."""
    resolved = stack.resolve(value)

    def walk(node: Any) -> str:
        if isinstance(node, str):
            return node
        if isinstance(node, dict):
            if "Fn::GetAtt" in node:
                logical, attribute = node["Fn::GetAtt"]
                return f"<{logical}.{attribute}>"
            if "Ref" in node:
                return f"<{node['Ref']}>"
            if "Fn::Join" in node:
                separator, parts = node["Fn::Join"]
                return separator.join(walk(p) for p in parts)
        raise ValueError(f"cannot render {node!r} for a cdk-nag finding id")

    return walk(resolved)


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions::{rule}", reason=reason))


def acknowledge_wildcard(scope: IConstruct, resource: str, reason: str) -> None:
    acknowledge(scope, f"AwsSolutions-IAM5[Resource::{render(Stack.of(scope), resource)}]", reason)


def acknowledge_platform_findings(stack: Stack) -> None:
    """Findings on resources CDK creates for us (the platform's own grants acknowledge themselves)."""
    for node in stack.node.find_all():
        if isinstance(node, lambda_.CfnFunction):
            path = node.node.path
            if "BucketNotificationsHandler" in path:
                continue
            acknowledge(node, "AwsSolutions-L1", RUNTIME_REASON)
        if isinstance(node, iam.Role) and node.node.try_find_child("DefaultPolicy") is not None:
            policy = stack.resolve(node.node.find_child("DefaultPolicy").node.default_child.policy_document)
            if any(s.get("Resource") == "*" and any(a.startswith("xray:") for a in _actions(s))
                   for s in policy.get("Statement", [])):
                reasons = [XRAY_REASON, *STAR_REASONS.get(node.node.path, [])]
                if isinstance(node.node.scope, sfn.StateMachine):
                    reasons.append("Step Functions log delivery (logs:CreateLogDelivery, ...) requires Resource *")
                acknowledge(node, "AwsSolutions-IAM5[Resource::*]", "; ".join(reasons))
        if isinstance(node, apigw.RestApi):
            acknowledge(node, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                              "AmazonAPIGatewayPushToCloudWatchLogs]",
                        "API Gateway's account-level logging role; this AWS-managed policy is the documented one")
            acknowledge(node, "AwsSolutions-COG4",
                        "Methods use IAM (SigV4) authorization: callers are AWS principals granted "
                        "execute-api:Invoke per route; there are no end-user identities for Cognito")
            acknowledge(node, "AwsSolutions-APIG3",
                        "No WAF by default: IAM authorization rejects unsigned traffic before integration and stage "
                        "throttling bounds load; a web ACL costs about USD 8/month even when idle and can be "
                        "associated by the operator")
        if "BucketNotificationsHandler" in node.node.path and isinstance(node, iam.CfnRole):
            acknowledge(node, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                              "AWSLambdaBasicExecutionRole]",
                        "CDK's singleton handler that configures S3 notifications at deploy time; logs only")
        if "BucketNotificationsHandler" in node.node.path and isinstance(node, iam.CfnPolicy):
            acknowledge(node, "AwsSolutions-IAM5[Resource::*]",
                        "CDK's singleton handler calls s3:PutBucketNotification, which it scopes at run time")


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)

