"""Rollout control: the family lock, canary start, checks, step up, promotion, rollback and failure handling, for
both serving tiers through one router protocol (mlops.rollout.routers): registry weights for the shared tier,
the weighted `live` alias of the family's own function for the dedicated tier.

Ownership (docs/architecture.md): CDK owns a dedicated scoring function's code and base configuration ($LATEST)
and creates its `live` alias once; from then on only this module moves the alias. Each published function
version carries MLOPS_MODEL_VERSION/MLOPS_MODEL_SHA256 in its (immutable) configuration, so a published
version is bound to exactly one model version for its whole life. The shared tier's routing is the registry's
family item, written only here (and by the operator CLI, through the same router).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import numpy as np

from mlops.core import aws
from mlops.core.errors import IllegalTransitionError, PlatformError, TransientError, ValidationError
from mlops.core.observability import MetricsPublisher, logger
from mlops.core.schemas import BINARY, DEDICATED, CanaryPolicy
from mlops.core.settings import Env
from mlops.registry import runs
from mlops.registry.store import (
    CANARY,
    CANDIDATE,
    LIVE,
    REJECTED,
    ROLLBACK_INSUFFICIENT_TRAFFIC,
    ROLLBACK_MISBEHAVED,
    ROLLED_BACK,
    ModelRegistry,
)
from mlops.reports.publish import publish_model_card
from mlops.rollout.code import ACTIONS as code_actions
from mlops.rollout.history import error_message, history_summary
from mlops.rollout.routers import (
    ALIAS,
    AliasRouter,
    AliasState,
    CanaryMetrics,
    EmfCanaryMetrics,
    TrafficFigures,
    TrafficRouter,
    router_for,
)
from mlops.serving.capture import CaptureReader
from mlops.stats.canary import prediction_divergence
from mlops.stats.distributions import bin_counts, psi
from mlops.stats.profile import PREDICTION_EDGES
from mlops.stats.tasks import (
    CANARY_CAPTURED_ROWS,
    Divergence,
    canary_divergence,
    captured_predictions,
    captured_task_predictions,
)
from mlops.training.steps import PipelineContext, register_step

LOCK_TTL_SECONDS = 24 * 3600


# ---- adapters -------------------------------------------------------------------------------------------


class LambdaAliasRouter:
    """The `live` alias of a family's scoring function, through the Lambda API (`client`: a boto3 Lambda client,
    default the process-wide one; the CLI passes its own, bound to the operator's credentials)."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def _lambda(self) -> Any:
        return self._client or aws.client("lambda")

    def current(self, function: str) -> AliasState | None:
        try:
            alias = self._lambda.get_alias(FunctionName=function, Name=ALIAS)
        except Exception as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                return None
            raise _transient_or(exc) from exc
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        (canary, weight), = weights.items() if weights else ((None, 0.0),)
        return AliasState(primary=alias["FunctionVersion"], canary=canary, weight=float(weight))

    def publish_bound(self, function: str, family: str, model_version: int, sha256: str) -> str:
        """Publish a function version whose configuration names the model; reuse one already published for
        the same model (a retried step publishes nothing new)."""
        client = self._lambda
        config = client.get_function_configuration(FunctionName=function)
        variables = dict((config.get("Environment") or {}).get("Variables") or {})
        if not self._bound_to(variables, model_version, sha256):
            variables.update({Env.MODEL_VERSION: str(model_version), Env.MODEL_SHA256: sha256})
            # RevisionId makes both calls fail if anyone else changed the function in between.
            config = self._wait_updated(function, client.update_function_configuration(
                FunctionName=function, Environment={"Variables": variables}, **_revision(config)))
        # A retried step finds $LATEST already bound to this model: PublishVersion then returns the version already
        # published from it (Lambda publishes nothing when code and configuration are unchanged since the last
        # version), or publishes it when the earlier attempt stopped before publishing. No listing of versions.
        published = client.publish_version(
            FunctionName=function, Description=f"{family} model v{model_version} sha256:{sha256[:16]}",
            **_revision(config))
        bound = (published.get("Environment") or {}).get("Variables") or {}
        if bound.get(Env.MODEL_VERSION) != str(model_version):
            raise IllegalTransitionError(
                f"published version {published['Version']} of {function} is not bound to model v{model_version}")
        return str(published["Version"])

    def route(self, function: str, primary: str, canary: str | None = None, weight: float = 0.0) -> None:
        routing = {"AdditionalVersionWeights": {canary: round(weight, 4)}} if canary and weight > 0 else \
            {"AdditionalVersionWeights": {}}
        client = self._lambda
        try:
            client.update_alias(FunctionName=function, Name=ALIAS, FunctionVersion=primary, RoutingConfig=routing)
        except Exception as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                client.create_alias(FunctionName=function, Name=ALIAS, FunctionVersion=primary,
                                    RoutingConfig=routing, Description="owned by the rollout pipeline")
                return
            raise _transient_or(exc) from exc

    @staticmethod
    def _bound_to(variables: dict[str, str], model_version: int, sha256: str) -> bool:
        return variables.get(Env.MODEL_VERSION) == str(model_version) and variables.get(Env.MODEL_SHA256) == sha256

    def publish_code(self, function: str, description: str) -> str:
        """Publish `$LATEST` as it is (the shared function's code rollout; no model binding). Lambda answers the
        latest version when nothing changed since it was published."""
        try:
            published = self._lambda.publish_version(FunctionName=function, Description=description)
        except Exception as exc:
            raise _transient_or(exc) from exc
        return str(published["Version"])

    def same_code(self, function: str, one: str, other: str) -> bool:
        """Whether two published versions have the same code and environment (nothing to roll out)."""
        client = self._lambda
        a, b = (client.get_function_configuration(FunctionName=function, Qualifier=v) for v in (one, other))
        return a.get("CodeSha256") == b.get("CodeSha256") and \
            (a.get("Environment") or {}).get("Variables") == (b.get("Environment") or {}).get("Variables")

    def _wait_updated(self, function: str, config: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while config.get("LastUpdateStatus") == "InProgress":
            if time.monotonic() > deadline:
                raise TransientError(f"{function} configuration update did not finish in {timeout:.0f}s")
            time.sleep(1.0)
            config = self._lambda.get_function_configuration(FunctionName=function)
        if config.get("LastUpdateStatus") == "Failed":
            raise IllegalTransitionError(f"{function} configuration update failed: "
                                         f"{config.get('LastUpdateStatusReason')}")
        return config


class CloudWatchCanaryMetrics:
    """AWS/Lambda per-version metrics of invocations through the alias (dimension ExecutedVersion)."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    def traffic(self, function: str, version: str, start: datetime, end: datetime) -> TrafficFigures:
        cw = self._client or aws.client("cloudwatch")
        dims = [{"Name": "FunctionName", "Value": function}, {"Name": "Resource", "Value": f"{function}:{ALIAS}"},
                {"Name": "ExecutedVersion", "Value": version}]
        period = max(60, int((end - start).total_seconds() // 60 + 1) * 60)
        window = {"StartTime": start - timedelta(seconds=1), "EndTime": end + timedelta(seconds=1),
                  "Period": period, "Dimensions": dims, "Namespace": "AWS/Lambda"}

        def total(name: str) -> float:
            points = cw.get_metric_statistics(MetricName=name, Statistics=["Sum"], **window)["Datapoints"]
            return float(sum(p.get("Sum", 0.0) for p in points))

        latency = cw.get_metric_statistics(MetricName="Duration", ExtendedStatistics=["p99"], **window)
        p99s = [p["ExtendedStatistics"]["p99"] for p in latency["Datapoints"] if "ExtendedStatistics" in p]
        return TrafficFigures(invocations=total("Invocations"), errors=total("Errors"),
                              p99_ms=max(p99s) if p99s else None)


def _revision(config: dict[str, Any]) -> dict[str, str]:
    return {"RevisionId": config["RevisionId"]} if config.get("RevisionId") else {}


def _transient_or(exc: Exception) -> Exception:
    return TransientError(str(exc)) if aws.is_transient(exc) else exc


# ---- control actions --------------------------------------------------------------------------------------


@dataclass
class RolloutContext:
    """What the control steps use. `router`/`metrics`: the dedicated tier's Lambda alias and AWS/Lambda metrics;
    `family_metrics`: the shared tier's EMF figures; `router_for(record)` picks the family's tier."""

    pipeline: PipelineContext
    router: AliasRouter | None
    metrics: CanaryMetrics | None
    captures: CaptureReader
    publisher: MetricsPublisher
    is_execution_running: Any  # Callable[[str], bool]
    state_machine_arn: str = ""
    family_metrics: CanaryMetrics | None = None

    @property
    def registry(self) -> ModelRegistry:
        return self.pipeline.registry

    def router_for(self, record: Any) -> TrafficRouter:
        return router_for(record, self.registry, self.router, self.metrics, self.family_metrics)

    @property
    def runs(self) -> runs.RunLog:
        return runs.RunLog(self.registry, self.publisher, runs.RunArchive(self.pipeline.artifacts.bucket))


def acquire_lock(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    family = state["family"]
    attempts = int((state.get("lock") or {}).get("attempts", 0)) + 1
    acquired = ctx.registry.acquire_rollout(family, run_id, LOCK_TTL_SECONDS, ctx.is_execution_running)
    holder = run_id if acquired else ctx.registry.get_family(family).rollout_holder
    return {"acquired": acquired, "attempts": attempts, "holder": holder}


def refuse(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    holder = (state.get("lock") or {}).get("holder")
    reason = (f"rollout {holder} kept the {state['family']} lock for {state['lock']['attempts']} attempts; "
              "this run was refused")
    detail = {"reason": reason, "holder": holder, "dataset": state.get("dataset")}
    history = history_summary(ctx.state_machine_arn, run_id)
    ctx.runs.ended(state["family"], run_id, runs.REFUSED, step="RefuseRollout", reason=reason, detail=detail,
                   steps=history.get("steps"), started_at=history.get("started_at"))
    return detail


def register(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Register the candidate, and write its model card (HTML + JSON) to the artifact bucket."""
    registration = register_step(ctx.pipeline, state, run_id)
    card = publish_model_card(ctx.registry, ctx.pipeline.artifacts.bucket, state["family"], registration["version"])
    return {**registration, "model_card": card}


def go_live_first(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The family's first model: nothing to canary against, so traffic moves to it at once."""
    family, version = state["family"], int(state["registration"]["version"])
    record = ctx.registry.get_family(family)
    if record.live_version not in (0, version):
        raise IllegalTransitionError(f"{family} got live v{record.live_version} meanwhile; not going live directly")
    router = ctx.router_for(record)
    sha = ctx.registry.get_version(family, version).artifact_sha256
    target = router.bind(version, sha)
    # Registry first: if routing then fails, failure handling reconciles traffic to the live version.
    ctx.registry.transition(family, version, LIVE, f"pipeline:{run_id}", "first model of the family passed the gate")
    router.route(target)
    return {"version": version, "target": target, "primary_target": target, "tier": router.tier, "weight": 100,
            **_function_versions(router, target, target)}


def canary_start(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    family, version = state["family"], int(state["registration"]["version"])
    record = ctx.registry.get_family(family)
    policy = record.family.canary
    router = ctx.router_for(record)
    current = router.state()
    live = ctx.registry.get_version(family, record.live_version)
    live_target = router.target(live)
    if current is None or current.primary != live_target:
        raise IllegalTransitionError(
            f"{router.describe()} serves {current.primary if current else 'nothing'}, but live v{live.version} is "
            f"{live_target or 'not bound'}; refusing to canary")
    sha = ctx.registry.get_version(family, version).artifact_sha256
    target = router.bind(version, sha)
    weight = policy.steps[0]
    ctx.registry.transition(family, version, CANARY, f"pipeline:{run_id}", f"canary at {weight}%")
    router.route(current.primary, target, weight / 100)
    ctx.registry.set_canary_weight(family, version, weight)
    ctx.publisher.put("CanaryWeight", weight, {"Family": family}, unit="Percent")
    started = {"version": version, "target": target, "primary_target": current.primary, "tier": router.tier,
               "live_version": live.version, "step": 0, "weight": weight, "window_start": time.time(),
               **_function_versions(router, target, current.primary)}
    record_canary(ctx, family, run_id, started, policy, None)
    return started


def _function_versions(router: TrafficRouter, target: str, primary: str) -> dict[str, str]:
    """The dedicated tier's targets under their historical names (function versions), for readers of the state."""
    if router.tier == DEDICATED:
        return {"function_version": target, "primary_function_version": primary}
    return {}


def _targets(canary: dict[str, Any]) -> tuple[str, str]:
    """(canary target, primary target) of a canary state; executions started before both tiers existed carry
    function versions only."""
    return (str(canary.get("target") or canary["function_version"]),
            str(canary.get("primary_target") or canary.get("primary_function_version") or ""))


CAPTURES_OFF = ("predictions not compared: captures off (capture_sample_rate 0), judged on errors and p99 latency "
                "only")


def canary_check(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Judge the bake window: errors, p99 latency and prediction divergence from the live version on the
    same traffic. Decision: step_up, promote, rollback, or wait (not enough canary traffic yet).

    Divergence (a significant test and a large effect: `canary.prediction_divergence` on the predicted classes of
    a binary family, `tasks.canary_divergence` on a regression's predicted values or a multiclass family's
    predicted classes; one level, `divergence_pvalue` split across the judged steps) is acted on once per step,
    when the window is complete (enough requests and captured predictions on both sides): a window that waits is
    judged again with more traffic, and acting on every look would raise the false-rollback rate above the
    policy's `divergence_pvalue`. A family with capture_sample_rate 0 is judged on errors and latency only
    (CAPTURES_OFF in its reasons)."""
    canary = state["canary"]
    family = state["family"]
    record = ctx.registry.get_family(family)
    policy = record.family.canary
    idle = int((state.get("check") or {}).get("idle_windows", 0))
    start = datetime.fromtimestamp(float(canary["window_start"]), UTC)
    end = datetime.now(UTC)
    traffic = ctx.router_for(record).traffic(_targets(canary)[0], start, end)
    figures: dict[str, Any] = {"invocations": traffic.invocations, "errors": traffic.errors,
                               "p99_ms": traffic.p99_ms, "weight": canary["weight"]}
    reasons: list[str] = []
    if traffic.invocations > 0:
        error_rate = traffic.errors / traffic.invocations
        figures["error_rate"] = round(error_rate, 6)
        if error_rate > policy.max_error_rate:
            reasons.append(f"error rate {error_rate:.2%} over {policy.max_error_rate:.2%} "
                           f"({traffic.errors:.0f} of {traffic.invocations:.0f} requests)")
        if traffic.p99_ms is not None and traffic.p99_ms > policy.max_p99_latency_ms:
            reasons.append(f"p99 latency {traffic.p99_ms:.1f} ms over {policy.max_p99_latency_ms:.1f} ms")
    since = float(canary["window_start"])
    if record.family.capture_sample_rate == 0:
        # A family that must not capture (capture_sample_rate 0) has no predictions to compare: it is judged on
        # errors and latency alone, as a deployment guardrail on alarms is, and every decision says so. Waiting
        # for captures that never come would roll every new model back for "not enough canary traffic".
        divergence = Divergence(True, False, {"status": "not_checked", "reason": CAPTURES_OFF}, CAPTURES_OFF,
                                "predictions")
        figures.update({"canary_predictions": 0, "live_predictions": 0,
                        "divergence": {"status": "not_checked", "diverged": None, "summary": CAPTURES_OFF}})
    elif record.family.task == BINARY:
        divergence = _binary_divergence(ctx, family, canary, since, policy, figures)
    else:  # regression, multiclass: a two-sample test and an effect size per task (mlops.stats.tasks)
        new = captured_task_predictions(ctx.captures, record.family, int(canary["version"]), since)
        old = captured_task_predictions(ctx.captures, record.family, int(canary["live_version"]), since)
        divergence = canary_divergence(record.family.task, old, new, policy)
        figures.update({"canary_predictions": int(new.size), "live_predictions": int(old.size),
                        "divergence": {**{k: v for k, v in divergence.figures.items()
                                          if k not in ("canary_predictions", "live_predictions")},
                                       "diverged": divergence.diverged if divergence.judged else None,
                                       "summary": divergence.summary}})
    decision = _canary_decision(policy, canary, traffic.invocations, divergence, figures, reasons, idle)
    record_canary(ctx, family, run_id, canary, policy, decision)
    return decision


def record_canary(ctx: RolloutContext, family: str, run_id: str, canary: dict[str, Any], policy: CanaryPolicy,
                  check: dict[str, Any] | None, ended: str | None = None) -> None:
    """The canary's state on its run record (`canary`): version, weight and step now, the policy's
    min_requests, and the last check's decision, reasons and figures (requests in the window, captured
    predictions, the divergence test's p-value and effect size). The execution's own state cannot be read from
    outside, so this is what `mlops upload --follow` and `mlops runs show` show. Written at the start, at every
    check and step, and at the end (`ended`: promoted, rolled_back); a failed write is logged, never fails the
    rollout it describes."""
    snapshot: dict[str, Any] = {
        "version": int(canary["version"]), "weight": canary["weight"], "step": int(canary["step"]),
        "steps": list(policy.steps), "min_requests": policy.min_requests, "bake_seconds": policy.bake_seconds,
        "max_idle_windows": policy.max_idle_windows, "updated_at": datetime.now(UTC).isoformat()}
    if ended:
        snapshot["ended"] = ended
    if check:
        figures = check.get("figures") or {}
        snapshot["last_check"] = {
            "decision": check.get("decision"), "reasons": list(check.get("reasons") or [])[:5],
            "idle_windows": check.get("idle_windows"), "weight": figures.get("weight"),
            "requests": figures.get("invocations"), "errors": figures.get("errors"), "p99_ms": figures.get("p99_ms"),
            "canary_predictions": figures.get("canary_predictions"),
            "live_predictions": figures.get("live_predictions"), "divergence": figures.get("divergence")}
    try:
        ctx.registry.annotate_run(family, run_id, canary=snapshot)
    except Exception as exc:  # noqa: BLE001 - progress shown to people must never fail the rollout
        logger().warning("canary progress not recorded on the run", extra={"run": run_id, "error": str(exc)})


def _binary_divergence(ctx: RolloutContext, family: str, canary: dict[str, Any], since: float,
                       policy: CanaryPolicy, figures: dict[str, Any]) -> Divergence:
    """The predicted classes of a binary family's canary against the live version's (`canary.prediction_divergence`),
    with its figures (and the probability PSI, information only) added to `figures`."""
    new_labels, new = _predictions(ctx, family, int(canary["version"]), since)
    old_labels, old = _predictions(ctx, family, int(canary["live_version"]), since)
    # Decisions, not calibration: a better model may shift probabilities, a broken one flips decisions.
    divergence = prediction_divergence(old_labels, new_labels, policy)
    figures.update({"canary_predictions": int(new.size), "live_predictions": int(old.size),
                    "divergence": _rounded(divergence)})
    if divergence["status"] == "checked":
        figures["positive_rate"] = {side: round(rate, 6) for side, rate in divergence["positive_rate"].items()}
        # The predicted-probability distribution is information only (a better model may be calibrated anew).
        figures["probability_psi"] = round(psi(bin_counts(old, PREDICTION_EDGES), bin_counts(new, PREDICTION_EDGES)), 6)
    return Divergence(divergence["status"] == "checked", bool(divergence["diverged"]), figures["divergence"],
                      divergence["summary"], "predicted classes")


def _canary_decision(policy: CanaryPolicy, canary: dict[str, Any], invocations: float, divergence: Divergence,
                     figures: dict[str, Any], reasons: list[str], idle: int) -> dict[str, Any]:
    """The canary check's decision, for every task: rollback on any reason (errors, latency, or divergence
    judged on a complete window: at least `min_requests` requests and a verdict on the captured predictions);
    wait while the window is incomplete (rollback after `max_idle_windows`); else step up, or promote at the
    last step."""
    enough = invocations >= policy.min_requests and divergence.judged
    if enough and divergence.diverged:
        reasons.append(divergence.reason.replace("the live version", f"live v{canary['live_version']}"))
    if reasons:
        return {"decision": "rollback", "reasons": reasons, "figures": figures, "idle_windows": idle,
                "cause": ROLLBACK_MISBEHAVED}
    new, old = figures["canary_predictions"], figures["live_predictions"]
    if not enough:
        if idle + 1 > policy.max_idle_windows:
            return {"decision": "rollback", "figures": figures, "idle_windows": idle + 1,
                    "cause": ROLLBACK_INSUFFICIENT_TRAFFIC, "reasons": [
                f"not enough canary traffic to judge after {idle + 1} bake windows "
                f"({invocations:.0f} requests, {new} captured canary and {old} live predictions; "
                f"{policy.min_requests} needed)"]}
        return {"decision": "wait", "figures": figures, "idle_windows": idle + 1,
                "reasons": [f"waiting for traffic: {invocations:.0f} requests, {new} captured canary "
                            f"and {old} live predictions ({policy.min_requests} needed)"]}
    step = int(canary["step"])
    decision = "promote" if step + 1 >= len(policy.steps) or policy.steps[step + 1] >= 100 else "step_up"
    return {"decision": decision, "figures": figures, "idle_windows": 0,
            "reasons": [f"canary healthy: {divergence.summary}"]}


def _rounded(divergence: dict[str, Any]) -> dict[str, Any]:
    """The divergence figures for the state and the lineage: rates and effect rounded, the p-value to 4 digits."""
    out = {k: v for k, v in divergence.items() if k != "positive_rate"}
    for key in ("alpha", "cohens_h", "min_cohens_h"):
        if key in out:
            out[key] = round(out[key], 6)
    if "p_value" in out:
        out["p_value"] = float(f"{out['p_value']:.4g}")
    return out


def _predictions(ctx: RolloutContext, family: str, version: int, since: float) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and positive-class probabilities of the captured predictions of one version since `since`
    (the newest 50,000 at most: enough for any test, bounded for the function's memory), read as columns
    (`CaptureReader.columns`: objects in parallel, no object per record)."""
    window = ctx.captures.columns(family, version, since, None, max_rows=CANARY_CAPTURED_ROWS, request_ids=False)
    return np.asarray(window.label).astype(np.int64), captured_predictions(BINARY, window)


def canary_step(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    canary = dict(state["canary"])
    family = state["family"]
    record = ctx.registry.get_family(family)
    step = int(canary["step"]) + 1
    weight = record.family.canary.steps[step]
    target, primary = _targets(canary)
    ctx.router_for(record).route(primary, target, weight / 100)
    ctx.registry.set_canary_weight(family, int(canary["version"]), weight)
    ctx.publisher.put("CanaryWeight", weight, {"Family": family}, unit="Percent")
    canary.update({"step": step, "weight": weight, "window_start": time.time()})
    record_canary(ctx, family, run_id, canary, record.family.canary, state.get("check"))
    return canary


def promote(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The registry transition decides (one conditional transaction, so a concurrent rollback cannot also win);
    the alias then follows the registry."""
    canary = state["canary"]
    family = state["family"]
    record = ctx.registry.get_family(family)
    ctx.registry.transition(family, int(canary["version"]), LIVE, f"pipeline:{run_id}",
                            f"canary healthy at every step {list(record.family.canary.steps)}")
    reconcile_alias(ctx, family)
    ctx.publisher.put("CanaryWeight", 0, {"Family": family}, unit="Percent")
    record_canary(ctx, family, run_id, {**canary, "weight": 100}, record.family.canary, state.get("check"),
                  ended="promoted")
    target, _ = _targets(canary)
    return {"live_version": int(canary["version"]), "target": target,
            **({"function_version": canary["function_version"]} if "function_version" in canary else {})}


def rollback(ctx: RolloutContext, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Registry first (the canary becomes rolled_back with the reasons), then the alias back to the live
    version only. A rollback that loses a race with a promotion raises and moves nothing."""
    canary = state["canary"]
    family = state["family"]
    reasons = (state.get("check") or {}).get("reasons") or ["canary check failed"]
    cause = (state.get("check") or {}).get("cause", ROLLBACK_MISBEHAVED)
    # The cause also decides whether the data set stays usable for retrains: too little traffic is no verdict.
    ctx.registry.transition(family, int(canary["version"]), ROLLED_BACK, f"pipeline:{run_id}",
                            "canary: " + "; ".join(reasons), cause=cause)
    reconcile_alias(ctx, family)
    ctx.publisher.put("CanaryWeight", 0, {"Family": family}, unit="Percent")
    # The cause decides whether an operator may still promote it (registry.store.rolled_back_for_insufficient_traffic).
    ctx.registry.update_lineage(family, int(canary["version"]), {
        "canary_result": {"decision": "rollback", "reasons": reasons, "figures": (state.get("check") or {})
                          .get("figures"), "cause": cause}})
    record_canary(ctx, family, run_id, {**canary, "weight": 0}, ctx.registry.get_family(family).family.canary,
                  state.get("check"), ended="rolled_back")
    return {"rolled_back_version": int(canary["version"]), "reasons": reasons}


def finish(ctx: RolloutContext, state: dict[str, Any], run_id: str, outcome: str) -> dict[str, Any]:
    """Record the run's outcome with the reasons behind it, remember a content verdict (so an identical
    re-upload is recognised), release the family lock. The returned dict is the execution's output."""
    family = state["family"]
    version = (state.get("registration") or {}).get("version")
    detail: dict[str, Any] = {"version": version, "dataset": state.get("dataset"), "trigger": state.get("trigger")}
    warnings = (state.get("evaluation") or {}).get("warnings")
    if warnings:  # signs of target leakage from the gate: reported with whatever outcome the run had
        detail["warnings"] = list(warnings)
    if outcome == runs.PROMOTED:
        reason = f"v{version} is live"
    elif outcome == runs.GATED_OUT:
        gate = (state.get("evaluation") or {}).get("gate") or {}
        detail["gate_reasons"] = list(gate.get("reasons") or [])
        reason = "gate: " + ("; ".join(detail["gate_reasons"]) or "the candidate did not pass")
    elif outcome == runs.ROLLED_BACK:
        detail["canary_reasons"] = list((state.get("rollback") or state.get("check") or {}).get("reasons") or [])
        detail["canary_figures"] = (state.get("check") or {}).get("figures")
        # misbehaved or insufficient_traffic: only the first rules the data set out of retrains.
        detail["canary_cause"] = (state.get("check") or {}).get("cause", ROLLBACK_MISBEHAVED)
        reason = "canary: " + ("; ".join(detail["canary_reasons"]) or "check failed")
    elif outcome == runs.UNCHANGED:  # Train (CollectTrainingJob) found the model identical to an existing version
        detail["identical_to"] = (state.get("train") or {}).get("identical_to") or {}
        reason = runs.unchanged_reason(detail["identical_to"])
        _record_reproduced(ctx, family, state, detail["identical_to"])
    elif outcome == runs.DUPLICATE:  # found by PlanTraining (before the lock) or by Train (after waiting for it)
        detail["duplicate_of"] = ((state.get("train") or {}).get("duplicate_of")
                                  or (state.get("plan") or {}).get("duplicate_of") or {})
        reason = runs.duplicate_reason(detail["duplicate_of"])
    else:
        reason = outcome
    history = history_summary(ctx.state_machine_arn, run_id, skip_current=True)
    if outcome == runs.DUPLICATE:
        step = "Train" if (state.get("train") or {}).get("duplicate_of") else "PlanTraining"
    elif outcome == runs.UNCHANGED:
        step = "CollectTrainingJob" if state.get("training_job") else "Train"
    else:
        step = history.get("step") or ""
    ctx.runs.ended(family, run_id, outcome, step=step, reason=reason, detail=detail,
                   version=version, steps=history.get("steps"), started_at=history.get("started_at"))
    fingerprint = (ctx.registry.get_run(family, run_id) or {}).get("fingerprint")
    if fingerprint and outcome in runs.CONTENT_VERDICTS:
        ctx.registry.record_content_verdict(family, fingerprint, run_id, outcome, version)
    if version:  # the card again, now with the status this run ended in
        publish_model_card(ctx.registry, ctx.pipeline.artifacts.bucket, family, int(version))
    ctx.registry.release_rollout(family, run_id)
    return {"outcome": outcome, "family": family, "version": version}


def _record_reproduced(ctx: RolloutContext, family: str, state: dict[str, Any], identical_to: dict[str, Any]) -> None:
    """An `unchanged` run's data set and declaration reproduce `identical_to`'s version: recorded on the data set
    (`ModelRegistry.record_reproduced`) so the next retrain under that declaration passes it over (third fresh-user
    pass: a declaration change that does not change the model, C: 1.0 written out, retrained at every check). A
    failed write is logged; the run's own record already says unchanged."""
    dataset = state.get("dataset") or {}
    config = int((state.get("train") or {}).get("family_config_version")
                 or (state.get("plan") or {}).get("family_config_version") or 0)
    if not dataset.get("key") or not identical_to.get("version"):
        return
    try:
        ctx.registry.record_reproduced(family, dataset, int(identical_to["version"]), config)
    except Exception as exc:  # noqa: BLE001 - the run ends unchanged either way
        logger().warning("reproduced model not recorded on its data set", extra={"family": family,
                                                                                  "error": str(exc)[:300]})


def handle_failure(ctx: RolloutContext, state: dict[str, Any], run_id: str,
                   status: str | None = None) -> dict[str, Any]:
    """Whatever failed, leave traffic on the healthy version, the registry consistent, the lock released, and
    the run recorded as failed with the step and the reason.

    Called by the definition's HandleFailure (after a Catch), and for executions that ended FAILED, TIMED_OUT
    or ABORTED outside any Catch (`status` set; see runs.handle_status_change), where the outcome is recorded
    only if the run has none yet. Traffic and the family's canary are touched only when this run holds the
    family lock (or nobody does): a run that failed while waiting for the lock must not undo another's canary."""
    family = state.get("family", "")
    actions: list[str] = []
    history = history_summary(ctx.state_machine_arn, run_id, before="HandleFailure")
    # After a Catch the state's error is the step's; an execution that ended otherwise reports its last state
    # (PipelineFailed when HandleFailure itself failed): the failing step's own error then says more.
    error = (history.get("failure") if status else None) or state.get("error") or {}
    error_name, message = error_message(error)
    reason = f"pipeline failure: {error_name}"
    if family:
        try:
            record = ctx.registry.get_family(family)
            if record.rollout_holder in (None, run_id):
                # Traffic first: the alias serves the registry's live version only, whatever else fails below.
                actions += reconcile_alias(ctx, family)
                record = ctx.registry.get_family(family)
                if record.canary_version:
                    ctx.registry.transition(family, record.canary_version, ROLLED_BACK, f"pipeline:{run_id}",
                                            reason)
                    actions.append(f"v{record.canary_version} rolled_back")
            registered = (state.get("registration") or {}).get("version")
            if registered and ctx.registry.get_version(family, int(registered)).status == CANDIDATE:
                # Never leave a half-done candidate behind: it did not finish its checks, so it is rejected.
                ctx.registry.transition(family, int(registered), REJECTED, f"pipeline:{run_id}", reason)
                actions.append(f"v{registered} rejected")
        except PlatformError as exc:
            actions.append(f"cleanup incomplete: {exc.message}")
    step = history.get("step") or state.get("stage") or ""
    detail = {"error": error_name, "message": message, "dataset": state.get("dataset"), "step": step,
              "status": status or "FAILED", "actions": actions}
    if status and error is not state.get("error"):
        detail["execution_error"] = error_message(state.get("error") or {})[0]
    if family:
        ctx.runs.ended(family, run_id, runs.FAILED, step=step, reason=f"{error_name}: {message}"[:2000],
                       detail=detail, steps=history.get("steps"), started_at=history.get("started_at"),
                       version=(state.get("registration") or {}).get("version"), only_if_open=status is not None)
        ctx.registry.release_rollout(family, run_id)
    logger().error("pipeline run failed", extra={"family": family, "run": run_id, "detail": detail,
                                                 "actions": actions, "reason": reason})
    return detail


def reconcile_alias(ctx: Any, family: str) -> list[str]:
    """Make traffic go to exactly the registry's live version (no-op when it already does): the `live` alias of a
    dedicated family's function, the canary weight of a shared-tier family. `ctx`: anything with `registry` and
    `router_for(record)` (RolloutContext, the operator CLI's)."""
    record = ctx.registry.get_family(family)
    if not record.live_version:
        return []
    live = ctx.registry.get_version(family, record.live_version)
    router = ctx.router_for(record)
    target = router.target(live)
    current = router.state()
    if not target or (current and current.primary == target and not current.canary):
        return []
    router.route(target)
    return [f"{router.describe()} set to live v{live.version} ({target})"]


ACTIONS = {
    "acquire_lock": acquire_lock, "refuse": refuse, "register": register, "go_live_first": go_live_first,
    "canary_start": canary_start, "canary_check": canary_check, "canary_step": canary_step,
    "promote": promote, "rollback": rollback, "handle_failure": handle_failure,
    **{f"finish:{outcome}": partial(finish, outcome=outcome)
       for outcome in (runs.PROMOTED, runs.GATED_OUT, runs.ROLLED_BACK, runs.DUPLICATE, runs.UNCHANGED)},
    # Executions started on the previous definition call `finish:rejected` for a gated-out candidate.
    "finish:rejected": partial(finish, outcome=runs.GATED_OUT),
    # The shared scoring function's code rollouts (infra/statemachine/code_rollout.asl.json).
    **code_actions,
}


def run_action(ctx: RolloutContext, action: str, state: dict[str, Any], run_id: str) -> dict[str, Any]:
    try:
        fn = ACTIONS[action]
    except KeyError:
        raise ValidationError(f"unknown control action {action!r}; known: {sorted(ACTIONS)}") from None
    return fn(ctx, state, run_id)


def execution_is_running(state_machine_arn: str):  # type: ignore[no-untyped-def]
    """A lock holder check: is the execution with this name still running?"""
    def check(run_id: str) -> bool:
        arn = state_machine_arn.replace(":stateMachine:", ":execution:") + f":{run_id}"
        try:
            status = aws.client("stepfunctions").describe_execution(executionArn=arn)["status"]
        except Exception as exc:
            if aws.error_code(exc) == "ExecutionDoesNotExist":
                return False
            return True
        return status == "RUNNING"

    return check


def create_rollout_context(settings: Any) -> RolloutContext:
    """The production wiring of the control steps (real adapters)."""
    return RolloutContext(
        pipeline=PipelineContext.create(settings.artifact_bucket, settings.registry_table),
        router=LambdaAliasRouter(), metrics=CloudWatchCanaryMetrics(), captures=CaptureReader(settings.artifact_bucket),
        publisher=MetricsPublisher(settings.metrics_namespace),
        is_execution_running=execution_is_running(settings.state_machine_arn),
        state_machine_arn=settings.state_machine_arn, family_metrics=EmfCanaryMetrics(settings.metrics_namespace),
    )
