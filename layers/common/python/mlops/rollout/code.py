"""Code rollouts of the shared scoring function: its `live` alias is the weighted canary of its own code.

A deploy changes `$LATEST` only; traffic moves through a rollout (`{"rollout_shared_code": true}` to the trigger
function starts one; infra/statemachine/code_rollout.asl.json runs it):

- `code_start`: publish `$LATEST` as a version (nothing to roll out when it has the code and configuration of the
  version the alias serves), then route the policy's first step of the alias to it. One code rollout at a time:
  an alias already carrying a canary is refused.
- `code_check`, per bake window: the new version's errors and p99 latency over all its traffic (Lambda's own
  per-version metrics, ExecutedVersion) and per family (the tier's EMF figures with that FunctionVersion): a family
  with at least `min_family_requests` requests in the window is judged on its own, so one family's failure is
  not averaged away by the others. Below `min_requests` in all, the window waits (rolled back after
  `max_idle_windows`).
- `code_step`, `code_promote` (alias 100% to the new version), `code_rollback` (alias back to the previous version
  only) and `code_failure` (the same, after any failure: Catch in the definition).

Model versions are not involved: every family keeps its registry routing while the code changes under it.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlops.core import aws
from mlops.core.errors import ConfigurationError, IllegalTransitionError, RolloutInProgressError, ValidationError
from mlops.core.observability import logger

if TYPE_CHECKING:
    from mlops.rollout.control import RolloutContext

MAX_FAMILIES_IN_STATE = 20  # the worst families' figures kept in the execution state (its size is bounded)


class CodeCanaryPolicy(BaseModel):
    """How the shared function's new code is exposed and judged (platform configuration, `shared_scoring`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: tuple[int, ...] = (10, 50, 100)
    bake_seconds: int = Field(300, ge=0, le=86_400)
    max_error_rate: float = Field(0.01, ge=0.0, le=1.0)
    max_p99_latency_ms: float = Field(500.0, gt=0.0)
    min_requests: int = Field(100, ge=1)
    min_family_requests: int = Field(20, ge=1)
    max_idle_windows: int = Field(3, ge=0)

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or list(value) != sorted(set(value)) or value[-1] != 100 or value[0] <= 0:
            raise ValueError("code canary steps must strictly increase from above 0 to 100")
        return value


def policy_from_json(text: str) -> CodeCanaryPolicy:
    """The policy from its JSON (an environment variable set by CDK); ConfigurationError naming the problem."""
    try:
        return CodeCanaryPolicy.model_validate(orjson.loads(text or "{}"))
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise ConfigurationError(f"invalid code canary policy: {exc}") from None


def rollout_input(function: str, policy: CodeCanaryPolicy) -> dict[str, Any]:
    return {"function": function, "policy": policy.model_dump(mode="json"),
            "timing": {"bake_seconds": policy.bake_seconds}}


def start_shared_code_rollout(function: str, state_machine_arn: str, policy: CodeCanaryPolicy,
                              attempt: str = "") -> dict[str, Any]:
    """Start the code rollout of the shared function's `$LATEST`. The execution is named after its code and
    configuration revision (and `attempt`, to try the same code again after a rollback): a repeated request
    starts nothing new."""
    if not function or not state_machine_arn:
        raise ValidationError("this stack has no shared scoring tier to roll out")
    config = aws.client("lambda").get_function_configuration(FunctionName=function)
    digest = hashlib.sha256(f"{config['CodeSha256']}\n{config.get('RevisionId', '')}\n{attempt}".encode())
    name = f"shared-code-{digest.hexdigest()[:24]}"
    try:
        response = aws.client("stepfunctions").start_execution(
            stateMachineArn=state_machine_arn, name=name,
            input=orjson.dumps(rollout_input(function, policy), option=orjson.OPT_SORT_KEYS).decode())
    except Exception as exc:
        if aws.error_code(exc) != "ExecutionAlreadyExists":
            raise
        arn = state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
        return {"started": False, "execution": name, "execution_arn": arn, "code_sha256": config["CodeSha256"],
                "reason": "this code was already rolled out (or is being); send an \"attempt\" to try it again"}
    return {"started": True, "execution": name, "execution_arn": response["executionArn"],
            "code_sha256": config["CodeSha256"]}


# ---- control actions (the control function runs them; the definition names them) ------------------------------


def code_start(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    function = state["function"]
    policy = CodeCanaryPolicy.model_validate(state["policy"])
    aliases = _aliases(ctx)
    current = aliases.current(function)
    if current is None:
        raise IllegalTransitionError(f"{function} has no `live` alias; deploy the stack first")
    if current.canary:
        raise RolloutInProgressError(f"the `live` alias of {function} already routes {current.weight:.0%} to version "
                                     f"{current.canary}: one code rollout at a time")
    published = aliases.publish_code(function, f"code rollout {run_id}"[:256])
    if published == current.primary or aliases.same_code(function, published, current.primary):
        return {"unchanged": True, "target": current.primary, "primary_target": current.primary}
    weight = policy.steps[0]
    aliases.route(function, current.primary, published, weight / 100)
    logger().info("code canary started", extra={"function": function, "version": published,
                                                "previous": current.primary, "weight": weight})
    return {"unchanged": False, "target": published, "primary_target": current.primary, "step": 0,
            "weight": weight, "window_start": time.time()}


def code_check(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The bake window's verdict: step_up, promote, wait or rollback, with the figures and reasons."""
    function, canary = state["function"], state["canary"]
    policy = CodeCanaryPolicy.model_validate(state["policy"])
    idle = int((state.get("check") or {}).get("idle_windows", 0))
    start, end = datetime.fromtimestamp(float(canary["window_start"]), UTC), datetime.now(UTC)
    if ctx.metrics is None or ctx.family_metrics is None:
        raise ConfigurationError("a code rollout reads Lambda's and the tier's metrics: both adapters are needed")
    total = ctx.metrics.traffic(function, canary["target"], start, end)
    families = ctx.family_metrics.by_family(canary["target"], start, end)
    reasons: list[str] = []
    judged: dict[str, dict[str, Any]] = {}
    if total.invocations > 0:
        _judge("all families", total.invocations, total.errors, total.p99_ms, policy, reasons)
    for family, figures in families.items():
        if figures.invocations >= policy.min_family_requests:
            judged[family] = {"requests": figures.invocations, "errors": figures.errors, "p99_ms": figures.p99_ms}
            _judge(f"family {family}", figures.invocations, figures.errors, figures.p99_ms, policy, reasons)
    worst = sorted(judged.items(), key=lambda item: (-item[1]["errors"] / item[1]["requests"],
                                                     -(item[1]["p99_ms"] or 0.0)))[:MAX_FAMILIES_IN_STATE]
    figures_out = {"invocations": total.invocations, "errors": total.errors, "p99_ms": total.p99_ms,
                   "weight": canary["weight"], "families_with_traffic": len(families),
                   "families_judged": len(judged), "worst_families": dict(worst)}
    if reasons:
        return {"decision": "rollback", "reasons": reasons, "figures": figures_out, "idle_windows": idle}
    if total.invocations < policy.min_requests:
        if idle + 1 > policy.max_idle_windows:
            return {"decision": "rollback", "figures": figures_out, "idle_windows": idle + 1, "reasons": [
                f"not enough traffic on the new code after {idle + 1} bake windows ({total.invocations:.0f} "
                f"requests; {policy.min_requests} needed)"]}
        return {"decision": "wait", "figures": figures_out, "idle_windows": idle + 1, "reasons": [
            f"waiting for traffic: {total.invocations:.0f} requests ({policy.min_requests} needed)"]}
    step = int(canary["step"])
    decision = "promote" if step + 1 >= len(policy.steps) or policy.steps[step + 1] >= 100 else "step_up"
    return {"decision": decision, "figures": figures_out, "idle_windows": 0, "reasons": [
        f"new code healthy on {total.invocations:.0f} requests, {len(judged)} families judged on their own"]}


def _judge(who: str, requests: float, errors: float, p99_ms: float | None, policy: CodeCanaryPolicy,
           reasons: list[str]) -> None:
    rate = errors / requests if requests else 0.0
    if rate > policy.max_error_rate:
        reasons.append(f"{who}: error rate {rate:.2%} over {policy.max_error_rate:.2%} ({errors:.0f} of "
                       f"{requests:.0f} requests)")
    if p99_ms is not None and p99_ms > policy.max_p99_latency_ms:
        reasons.append(f"{who}: p99 latency {p99_ms:.1f} ms over {policy.max_p99_latency_ms:.1f} ms")


def code_step(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    canary = dict(state["canary"])
    policy = CodeCanaryPolicy.model_validate(state["policy"])
    step = int(canary["step"]) + 1
    weight = policy.steps[step]
    _aliases(ctx).route(state["function"], canary["primary_target"], canary["target"], weight / 100)
    canary.update({"step": step, "weight": weight, "window_start": time.time()})
    return canary


def code_promote(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    canary = state["canary"]
    _aliases(ctx).route(state["function"], canary["target"])
    return _outcome(ctx, state, "promoted", [f"version {canary['target']} serves every family"])


def code_rollback(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    canary = state["canary"]
    _aliases(ctx).route(state["function"], canary["primary_target"])
    return _outcome(ctx, state, "rolled_back", list((state.get("check") or {}).get("reasons") or []))


def code_failure(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Whatever failed: the alias back to the version it served before this rollout, when known."""
    canary = state.get("canary") or {}
    primary = canary.get("primary_target")
    actions = []
    if primary:
        _aliases(ctx).route(state["function"], primary)
        actions.append(f"alias `live` of {state['function']} set to version {primary}")
    error = state.get("error") or {}
    return {**_outcome(ctx, state, "failed", [f"{error.get('Error', 'failure')}: {str(error.get('Cause', ''))[:500]}"]),
            "actions": actions}


def _outcome(ctx: RolloutContext, state: dict[str, Any], outcome: str, reasons: list[str]) -> dict[str, Any]:
    ctx.publisher.put("CodeRollouts", 1, {"Outcome": outcome})
    figures = (state.get("check") or {}).get("figures")
    (logger().info if outcome == "promoted" else logger().error)(
        "code rollout ended", extra={"function": state["function"], "outcome": outcome, "reasons": reasons,
                                     "canary": state.get("canary"), "figures": figures})
    return {"outcome": outcome, "function": state["function"], "reasons": reasons,
            "version": (state.get("canary") or {}).get("target")}


def _aliases(ctx: RolloutContext) -> Any:
    if ctx.router is None:
        raise ConfigurationError("a code rollout moves a Lambda alias: the alias router is needed")
    return ctx.router


ACTIONS = {"code_start": code_start, "code_check": code_check, "code_step": code_step, "code_promote": code_promote,
           "code_rollback": code_rollback, "code_failure": code_failure}
