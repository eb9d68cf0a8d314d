"""rollout.canary_check's verdicts on captured predictions (fake metrics, captures and registry): an identical
model on few rows steps up, a label flip rolls back, and divergence is acted on once per step."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from mlops.data.synthetic import credit_risk_family
from mlops.rollout import control
from mlops.rollout.control import RolloutContext, TrafficFigures
from mlops.serving.capture import CapturedRecord
from mlops.serving.capture_columns import CapturedColumns


class Captures:
    def __init__(self, by_version: dict[int, list[int]]) -> None:
        self.by_version = by_version

    def records(self, family, version, since, until=None, limit=None):
        for i, label in enumerate(self.by_version[version][:limit]):
            yield CapturedRecord(since + 1, f"r{i}", {}, label, [0.8, 0.2] if label == 0 else [0.3, 0.7])

    def columns(self, family, version, since, until=None, max_rows=None, request_ids=True):
        return CapturedColumns.from_records(list(self.records(family, version, since, until, max_rows)))


class Metrics:
    def __init__(self, invocations: float) -> None:
        self.invocations = invocations

    def traffic(self, function, version, start, end):
        return TrafficFigures(invocations=self.invocations, errors=0.0, p99_ms=12.0)


def check(live: list[int], canary: list[int], invocations: float | None = None, step: int = 0,
          **policy) -> dict:
    family = credit_risk_family(canary={"steps": [10, 50, 100], **policy})
    registry = SimpleNamespace(get_family=lambda name: SimpleNamespace(family=family, scoring_function="fn"))
    metrics = Metrics(len(canary) if invocations is None else invocations)
    ctx = RolloutContext(pipeline=SimpleNamespace(registry=registry), router=None, metrics=metrics,
                         captures=Captures({1: live, 2: canary}), publisher=None, is_execution_running=None,
                         family_metrics=metrics)
    state = {"family": family.name, "canary": {"window_start": time.time() - 60, "function_version": "7",
                                               "version": 2, "live_version": 1, "weight": 10, "step": step}}
    return control.canary_check(ctx, state, "run-1")


def test_identical_model_on_25_rows_without_a_positive_steps_up_instead_of_rolling_back():
    # The reported rollback: 0.0% vs 5.5% positive on 25 canary rows (PSI 0.337 over 0.25; Fisher's p 0.62).
    verdict = check(live=[0] * 213 + [1] * 12, canary=[0] * 25)
    assert verdict["decision"] == "step_up", verdict["reasons"]
    divergence = verdict["figures"]["divergence"]
    assert divergence["diverged"] is False and divergence["p_value"] > 0.5
    assert verdict["figures"]["positive_rate"] == {"canary": 0.0, "live": pytest.approx(0.053333)}


def test_label_flip_rolls_back_with_its_figures_in_the_reason():
    verdict = check(live=[0] * 167 + [1] * 13, canary=[0] * 2 + [1] * 18)
    assert verdict["decision"] == "rollback"
    (reason,) = verdict["reasons"]
    assert reason.startswith("predicted classes diverge from live v1") and "positive rate 90.0% vs 7.2%" in reason


def test_divergence_is_not_acted_on_before_the_window_is_complete():
    # Captures are in but the window has too few requests: wait, and judge once when it is complete.
    verdict = check(live=[0] * 167 + [1] * 13, canary=[0] * 2 + [1] * 18, invocations=5)
    assert verdict["decision"] == "wait" and verdict["figures"]["divergence"]["diverged"] is True


def test_too_few_live_predictions_waits_for_traffic():
    verdict = check(live=[0] * 10, canary=[0] * 40)
    assert verdict["decision"] == "wait"
    assert verdict["figures"]["divergence"]["status"] == "insufficient_data"
    assert "10 live predictions" in verdict["reasons"][0]


def test_the_last_judged_step_promotes():
    verdict = check(live=[0] * 100 + [1] * 20, canary=[0] * 100 + [1] * 22, step=1)
    assert verdict["decision"] == "promote" and verdict["reasons"][0].startswith("canary healthy")
    assert verdict["figures"]["divergence"]["alpha"] == pytest.approx(0.005)
