"""Code rollouts of the shared scoring function: their state machine, from the shared definition file."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from .functions import FunctionDefaults, PlatformFunction
from .layers import ROOT
from .nag import acknowledge_wildcard

DEFINITION_FILE = ROOT / "infra" / "statemachine" / "code_rollout.asl.json"


def code_rollout_name(stack: Stack) -> str:
    # A physical name, as the pipeline's: the control function's environment names it, and the state machine
    # references the control function, so a token would create a dependency cycle.
    return f"{stack.stack_name}-SharedCodeRollout"[:80]


def code_rollout_arn(stack: Stack) -> str:
    return stack.format_arn(service="states", resource="stateMachine", resource_name=code_rollout_name(stack),
                            arn_format=ArnFormat.COLON_RESOURCE_NAME)


@dataclass(frozen=True)
class CodeRolloutProps:
    control: PlatformFunction
    defaults: FunctionDefaults


class CodeRollout(Construct):
    """Publish the shared function's `$LATEST`, canary it on the `live` alias in weighted steps judged on every
    family's errors and latency, promote or roll back (mlops.rollout.code); the control function runs each step."""

    def __init__(self, scope: Construct, construct_id: str, *, props: CodeRolloutProps) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.log_group = logs.LogGroup(self, "ExecutionLogs", retention=props.defaults.log_retention,
                                       encryption_key=props.defaults.log_key, removal_policy=RemovalPolicy.RETAIN)
        control = props.control.function
        self.state_machine = sfn.StateMachine(
            self, "StateMachine", state_machine_name=code_rollout_name(stack),
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_file(str(DEFINITION_FILE)),
            definition_substitutions={"ControlFunctionArn": control.function_arn},
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            tracing_enabled=True)
        control.grant_invoke(self.state_machine)
        acknowledge_wildcard(self.state_machine.role, f"{control.function_arn}:*",
                             "lambda:InvokeFunction by qualified ARN (version/alias), as grant_invoke allows; the "
                             "control function")
