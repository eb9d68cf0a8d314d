"""Why a canary was rolled back decides whether it may still go live: a canary check records the cause
(too little traffic to judge, or misbehaviour), and the registry lets only the first be promoted (fresh-user pass
on issue 17)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import boto3
import pytest
from mlops.core.errors import IllegalTransitionError
from mlops.data import synthetic
from mlops.registry.store import (
    CANARY,
    LIVE,
    ROLLBACK_INSUFFICIENT_TRAFFIC,
    ROLLBACK_MISBEHAVED,
    ROLLED_BACK,
    rolled_back_for_insufficient_traffic,
)
from mlops.rollout import control
from mlops.rollout.control import RolloutContext, TrafficFigures
from mlops.serving.capture_columns import CapturedColumns
from mlops.training import steps

from .conftest import BUCKET

FAMILY = "credit-risk"


def _version(ctx, seed: int) -> int:
    key = f"datasets/{FAMILY}/{seed}.csv"
    version_id = boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=synthetic.credit_risk_csv(800, seed))[
        "VersionId"]
    event = {"family": FAMILY, "dataset": {"bucket": BUCKET, "key": key, "version_id": version_id}}
    event["train"] = steps.train_step(ctx, event)
    event["evaluation"] = steps.evaluate_step(ctx, event)
    return steps.register_step(ctx, event, run_id=f"run-{seed}")["version"]


def _rolled_back_canary(ctx, seed: int, canary_result: dict) -> int:
    version = _version(ctx, seed)
    ctx.registry.transition(FAMILY, version, CANARY, "pipeline:run", "canary at 10%")
    ctx.registry.transition(FAMILY, version, ROLLED_BACK, "pipeline:run", "canary: " + "; ".join(
        canary_result["reasons"]))
    ctx.registry.update_lineage(FAMILY, version, {"canary_result": canary_result})
    return version


class _Captures:
    def columns(self, family, version, since, until=None, max_rows=None, request_ids=True):
        return CapturedColumns.empty()


def _check(platform, invocations: float, errors: float, idle: int) -> dict:
    family = synthetic.credit_risk_family(canary={"min_requests": 20, "max_idle_windows": 1})
    registry = SimpleNamespace(get_family=lambda name: SimpleNamespace(family=family, scoring_function="fn",
                                                                       live_version=1, canary_version=2,
                                                                       canary_weight=10),
                               annotate_run=lambda *a, **k: None)
    metrics = SimpleNamespace(traffic=lambda *a: TrafficFigures(invocations=invocations, errors=errors, p99_ms=5.0))
    ctx = RolloutContext(pipeline=SimpleNamespace(registry=registry), router=None, metrics=metrics,
                         captures=_Captures(), publisher=None, is_execution_running=None,
                         family_metrics=metrics)  # a shared-tier family: its figures by family
    state = {"family": family.name, "check": {"idle_windows": idle},
             "canary": {"window_start": time.time() - 60, "function_version": "7", "version": 2, "live_version": 1,
                        "weight": 10, "step": 0}}
    return control.canary_check(ctx, state, "run-1")


def test_a_canary_check_records_why_it_rolls_back(platform):
    idle = _check(platform, invocations=3, errors=0, idle=1)
    assert idle["decision"] == "rollback" and idle["cause"] == ROLLBACK_INSUFFICIENT_TRAFFIC
    failing = _check(platform, invocations=40, errors=10, idle=0)
    assert failing["decision"] == "rollback" and failing["cause"] == ROLLBACK_MISBEHAVED


def test_only_a_canary_rolled_back_for_lack_of_traffic_may_go_live(platform):
    # Every candidate passes the gate: what is tested is what may happen after its canary.
    platform.registry.put_family(synthetic.credit_risk_family(gate={"min_auc_margin": -0.5}),
                                 scoring_function="credit-risk-scoring")
    live = _version(platform, 1)
    platform.registry.transition(FAMILY, live, LIVE, "test", "first model")
    idle = _rolled_back_canary(platform, 2, {"decision": "rollback", "cause": ROLLBACK_INSUFFICIENT_TRAFFIC,
                                             "reasons": ["not enough canary traffic to judge after 4 bake windows"]})
    diverged = _rolled_back_canary(platform, 3, {"decision": "rollback", "cause": ROLLBACK_MISBEHAVED,
                                                 "reasons": ["predicted classes diverge from live v1"]})
    with pytest.raises(IllegalTransitionError) as refused:
        platform.registry.transition(FAMILY, diverged, LIVE, "cli:someone", "try anyway")
    assert "only a canary rolled back because too little traffic reached it to judge it may go live" in \
        refused.value.message and "diverge" in refused.value.message
    changed = platform.registry.transition(FAMILY, idle, LIVE, "cli:someone", "traffic was paused")
    assert changed.status == LIVE and platform.registry.get_version(FAMILY, live).status == "retired"
    assert platform.registry.get_family(FAMILY).live_version == idle


def test_versions_rolled_back_before_causes_were_recorded_are_read_from_their_reasons(platform):
    def record(reasons: list[str], status: str = ROLLED_BACK):
        return SimpleNamespace(status=status, lineage={"canary_result": {"decision": "rollback", "reasons": reasons}})

    assert rolled_back_for_insufficient_traffic(record([
        "not enough canary traffic to judge after 4 bake windows (3 requests, ...)"]))
    assert not rolled_back_for_insufficient_traffic(record(["error rate 20% over 1%"]))
    assert not rolled_back_for_insufficient_traffic(record([]))
    assert not rolled_back_for_insufficient_traffic(record(["not enough canary traffic to judge"], status=LIVE))
