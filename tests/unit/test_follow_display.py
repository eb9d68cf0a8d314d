"""What `mlops upload --follow` and `mlops runs show` print about a run: the run id on one line whatever the
table's width, the canary's requests against min_requests, and the divergence test a canary check recorded
(fresh-user pass on issues 10 and 11)."""

from __future__ import annotations

import io
import time
from types import SimpleNamespace

from mlops.data.synthetic import credit_risk_family
from mlops.rollout import control
from mlops.rollout.control import RolloutContext, TrafficFigures
from mlops.serving.capture import CapturedRecord
from mlops.serving.capture_columns import CapturedColumns
from rich.console import Console
from rich.text import Text

from mlops_local.commands.runs import _progress_table, canary_lines, canary_progress, divergence_text

RUN_ID = "a-family-name-that-is-quite-long-indeed-0123456789abcdef0123456789abcdef"
VISITS = [{"state": "Bake", "entered_at": "2026-01-05T09:00:00.000000Z", "exited_at": None, "seconds": None,
           "error": None}]


def rendered(renderable, width: int = 120) -> list[str]:
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    console.print(renderable)
    return console.file.getvalue().splitlines()


def test_the_follow_display_keeps_the_run_id_on_one_line():
    lines = rendered(_progress_table(RUN_ID, VISITS, done=True))
    assert f"Run {RUN_ID}" in lines


class Registry:
    def __init__(self, family) -> None:
        self.family = family
        self.annotations: list[dict] = []

    def get_family(self, name):
        return SimpleNamespace(family=self.family, scoring_function="fn", live_version=1, canary_version=2,
                               canary_weight=10)

    def annotate_run(self, family, run_id, **fields):
        self.annotations.append({"family": family, "run_id": run_id, **fields})


class Captures:
    def __init__(self, by_version):
        self.by_version = by_version

    def records(self, family, version, since, until=None, limit=None):
        for i, label in enumerate(self.by_version[version][:limit]):
            yield CapturedRecord(since + 1, f"r{i}", {}, label, [0.8, 0.2] if label == 0 else [0.3, 0.7])

    def columns(self, family, version, since, until=None, max_rows=None, request_ids=True):
        return CapturedColumns.from_records(list(self.records(family, version, since, until, max_rows)))


def checked(invocations: float, live: list[int], canary: list[int]) -> tuple[dict, dict]:
    family = credit_risk_family(canary={"steps": [10, 50, 100], "min_requests": 20})
    registry = Registry(family)
    metrics = SimpleNamespace(traffic=lambda *a: TrafficFigures(invocations=invocations, errors=0.0, p99_ms=12.0))
    ctx = RolloutContext(pipeline=SimpleNamespace(registry=registry), router=None, metrics=metrics,
                         captures=Captures({1: live, 2: canary}), publisher=None, is_execution_running=None,
                         family_metrics=metrics)  # the family is on the shared tier: its figures by family
    state = {"family": family.name, "canary": {"window_start": time.time() - 60, "function_version": "7",
                                               "version": 2, "live_version": 1, "weight": 10, "step": 0}}
    decision = control.canary_check(ctx, state, "run-1")
    (note,) = registry.annotations
    return decision, {"family": family.name, "run_id": note["run_id"], "canary": note["canary"]}


def test_a_waiting_canary_check_is_recorded_on_its_run_and_shown_against_min_requests():
    decision, run = checked(4, live=[0] * 40, canary=[0] * 4)
    assert decision["decision"] == "wait"
    canary = run["canary"]
    assert (canary["version"], canary["weight"], canary["min_requests"]) == (2, 10, 20)
    assert canary["last_check"]["requests"] == 4 and canary["last_check"]["decision"] == "wait"
    progress = canary_progress(run)
    assert progress.startswith("Canary v2 at 10% (step 1 of 3): 4 requests (min 20: 16 more needed) at the last check")
    assert "waiting for traffic (1 of 3 idle windows, then a rollback)" in progress
    assert "POST /models/credit-risk/predict" in progress


def test_runs_show_gives_the_divergence_test_the_check_recorded():
    decision, run = checked(25, live=[0] * 213 + [1] * 12, canary=[0] * 25)
    assert decision["decision"] == "step_up"
    divergence = run["canary"]["last_check"]["divergence"]
    text = "\n".join(Text.from_markup(line).plain for line in canary_lines(run))
    assert "Canary v2 at 10% of traffic (step 1 of 3: 10%, 50%, 100%)" in text
    assert "25 requests (min 20) in the window" in text
    assert (f"divergence: Fisher's exact p {divergence['p_value']:.4g} (alpha {divergence['alpha']:.4g}), "
            f"Cohen's h {divergence['cohens_h']:.4g} (min 0.5), not diverged") in text


def test_divergence_text_of_other_tasks_and_of_an_unjudged_window():
    assert divergence_text({"status": "checked", "test": "ks", "ks_p_value": 0.03, "alpha": 0.005,
                            "ks_statistic": 0.31, "diverged": False}) == "KS p 0.03 (alpha 0.005), KS D 0.31, " \
                                                                         "not diverged"
    assert divergence_text({"status": "insufficient_data", "summary": "3 canary and 30 live predictions"}) == \
        "3 canary and 30 live predictions"
    assert divergence_text(None) == ""


def test_a_canary_whose_run_failed_is_shown_as_ended_not_at_its_last_weight():
    _, run = checked(4, live=[0] * 40, canary=[0] * 4)
    failed = {**run, "outcome": "failed"}  # stopped by an operator: the failure handling moved the traffic back
    assert Text.from_markup(canary_lines(failed)[0]).plain == \
        "Canary v2 ended with the run (failed; the live version has all traffic)"
    assert canary_progress(failed) is None
