"""`mlops demo` on a loaded machine: its stories hold when requests are slow, and its summary is what the registry
holds, never what the stories expected."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from mlops.data import synthetic

from mlops_local.demo import Demo, DemoReport, Step

# These tests start their own processes (or none) and share no embedded AWS with the workflow group: a group of
# their own lets the second test worker run them beside it.
pytestmark = pytest.mark.xdist_group("own-processes")

# Runs `mlops demo --json --family FILE=DATA` in a fresh process (its own embedded AWS) with injected load: the
# first request each model version serves takes 700 ms inside the function, as a cold start does on a busy
# 2-core laptop. The registry is read, independently of the demo, just before the platform stops.
RUNNER = r"""
import json, sys, time
from mlops.serving.api import ScoringService
from mlops_local.cli import main
from mlops_local.runtime import LocalPlatform

slow = []
handle = ScoringService.handle

def slow_first_call(self, event, request_id):
    key = (self.settings.model_family, self.settings.model_version)
    if key not in slow:
        slow.append(key)
        time.sleep(0.7)
    return handle(self, event, request_id)

ScoringService.handle = slow_first_call
# Shared-tier families (the default): the first request each (family, model version) serves is slow too.
from mlops.serving.shared import SharedScoringService
shared_predict = SharedScoringService.predict

def slow_first_shared_call(self, event, route, request_id, started):
    key = (route.family, route.version_for(request_id))
    if key not in slow:
        slow.append(key)
        time.sleep(0.7)
    return shared_predict(self, event, route, request_id, started)

SharedScoringService.predict = slow_first_shared_call
truth = {}
stop = LocalPlatform.stop

def read_registry_then_stop(self):
    for name in self.scoring_functions:
        versions = self.registry.list_versions(name, limit=100).items
        truth[name] = {"live_version": self.registry.get_family(name).live_version,
                       "versions": {str(v.version): v.status for v in versions}}
    truth["drift_verdicts"] = [d["verdict"] for d in self.registry.drift_records("credit-risk", limit=100)]
    truth["slow_calls"] = [list(k) for k in slow]
    stop(self)

LocalPlatform.stop = read_registry_then_stop
try:
    code = main(sys.argv[2:])
except SystemExit as exit:
    code = exit.code
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "truth": truth}, out)
"""


@pytest.mark.slow
def test_demo_stories_hold_under_slow_first_calls_and_the_summary_matches_the_registry(tmp_path):
    family_file = tmp_path / "my-loans.json"
    family_file.write_text(synthetic.credit_risk_family(name="my-loans").model_dump_json())
    data = tmp_path / "loans.csv"
    data.write_bytes(synthetic.credit_risk_csv(1500, 3))
    result_file = tmp_path / "result.json"
    done = subprocess.run([sys.executable, "-c", RUNNER, str(result_file), "demo", "--json",
                           "--family", f"{family_file}={data}"], capture_output=True, text=True, timeout=600)
    assert result_file.exists(), done.stderr[-4000:]
    result = json.loads(result_file.read_text())
    report = json.loads(done.stdout.strip().splitlines()[-1])
    truth = result["truth"]
    # The load really reached the canaries: v2 and the retrained version were slow on their first request.
    assert {("credit-risk", 2), ("credit-risk", 5)} <= {tuple(k) for k in truth["slow_calls"]}
    assert report["ok"] is True and result["code"] == 0, done.stdout[-6000:]
    builtin = truth["credit-risk"]
    assert report["live_version"] == builtin["live_version"]
    assert report["versions"] == builtin["versions"]
    assert report["rejected_versions"] == sorted(int(v) for v, s in builtin["versions"].items() if s == "rejected")
    assert report["rolled_back_versions"] == sorted(int(v) for v, s in builtin["versions"].items()
                                                    if s == "rolled_back")
    assert report["drift_detected"] == ("drift" in truth["drift_verdicts"])
    (mine,) = report["families"]
    assert mine["name"] == "my-loans" and mine["data"] == str(data)
    assert mine["live_version"] == truth["my-loans"]["live_version"] == 1
    assert mine["versions"] == truth["my-loans"]["versions"] == {"1": "live"}
    assert "live v1 (v1 live)" in done.stdout and f"my-loans ({family_file}, data {data})" in done.stdout


@dataclass
class Version:
    version: int
    status: str


@dataclass
class Page:
    items: list[Version]
    next_token: str | None = None


class RecordedRegistry:
    """A registry holding a given end state: v1 live, v2 rolled back by its canary, v3 rejected."""

    def __init__(self, statuses: dict[int, str], drift: list[dict[str, Any]]) -> None:
        self.statuses = statuses
        self.drift = drift

    def list_versions(self, family: str, limit: int = 50, next_token: str | None = None,
                      newest_first: bool = True) -> Page:
        return Page([Version(v, s) for v, s in sorted(self.statuses.items())])

    def get_family(self, family: str) -> Any:
        live = next((v for v, s in self.statuses.items() if s == "live"), 0)
        return type("FamilyRecord", (), {"live_version": live})()

    def drift_records(self, family: str, limit: int = 20) -> list[dict[str, Any]]:
        return self.drift


@pytest.mark.parametrize(("statuses", "live", "rejected", "rolled_back"), [
    ({1: "live", 2: "rolled_back", 3: "rejected"}, 1, [3], [2]),
    ({1: "retired", 2: "live", 3: "rejected", 4: "rolled_back"}, 2, [3], [4]),
    ({1: "live"}, 1, [], []),
])
def test_demo_summary_reports_the_registry_state_whatever_the_stories_expected(statuses, live, rejected,
                                                                               rolled_back):
    demo = Demo(out=io.StringIO())
    demo.report.steps = [Step("2. Better model canaried step by step and promoted", "v2 live", "v2 rolled_back")]
    platform = type("Platform", (), {"registry": RecordedRegistry(statuses, [{"verdict": "no_drift", "report": {
        "retrain": {"started": False}}}])})()
    traffic = type("Traffic", (), {"sent": 3, "records": 15, "by_version": {"1": 3}, "statuses": {200: 3}})()
    demo._read_back(platform, traffic)  # type: ignore[arg-type]
    demo._summary()
    report: DemoReport = demo.report
    assert (report.live_version, report.rejected_versions, report.rolled_back_versions) == (live, rejected, rolled_back)
    assert report.drift_detected is False and report.retrain_started is False and report.ok is False
    text = demo.out.getvalue()
    listed = ", ".join(f"v{v} {s}" for v, s in sorted(statuses.items()))
    assert f"credit-risk (registry): live v{live} ({listed})" in text
    assert report.to_json()["rejected_versions"] == rejected and report.to_json()["live_version"] == live
