"""What the drift and families commands say when there is nothing to judge (fresh-user pass): a fan-out's
families that were not listed and why, a tier with no live family, a family that captures nothing
(capture_sample_rate 0: accepted with a warning, shown by `families show`, named by `drift check-all` and the
canary display), a never-checked family's wording for a stack and for local runs, and the default --reason."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from mlops.data import synthetic

from mlops_local import views
from mlops_local.cli import cli
from mlops_local.commands import drift as drift_cmd
from mlops_local.commands import families as families_cmd
from mlops_local.commands.runs import canary_lines, canary_progress
from mlops_local.familyfile import dump_family

ARN = "arn:aws:states:us-east-1:123456789012:execution:fanout:cli-abc"


def summary(name: str, status: str = "active", latest: int = 1, live: int = 1, serving: str = "shared",
            last_capture_at: float | None = None) -> Any:
    return SimpleNamespace(name=name, status=status, latest_version=latest, live_version=live, serving=serving,
                           last_capture_at=last_capture_at)


def fanout_platform(listed: list[str], idle: list[str], summaries: list[Any], rates: dict[str, float]) -> Any:
    """A platform whose fan-out listed `listed` (none of them recorded a check) and left `idle` out."""
    listing = {"bucket": "b", "key": "k.json", "count": len(listed), "idle_key": "k.idle.json" if idle else None}
    bodies = {"k.json": [{"families": listed, "run": "cli-abc"}], "k.idle.json": idle}
    clients = {
        "stepfunctions": SimpleNamespace(
            start_execution=lambda **kw: {"executionArn": ARN},
            describe_execution=lambda **kw: {"status": "SUCCEEDED", "output": json.dumps({"listing": listing})}),
        "s3": SimpleNamespace(get_object=lambda **kw: {"Body": SimpleNamespace(
            read=lambda: json.dumps(bodies[kw["Key"]]).encode())}),
    }
    registry = SimpleNamespace(
        drift_records=lambda name, limit=10: [], iter_families=lambda status=None: summaries,
        get_family=lambda name: SimpleNamespace(family=SimpleNamespace(capture_sample_rate=rates[name])))
    return SimpleNamespace(drift_fanout="arn:fanout", client=clients.__getitem__, poll_seconds=0.0,
                           registry=registry, description="a test platform")


def test_check_all_names_the_families_it_did_not_list_and_those_that_capture_nothing():
    summaries = [summary("busy", last_capture_at=5.0), summary("nocap"), summary("quiet-nocap"),
                 summary("old", status="retired"), summary("new", latest=0, live=0),
                 summary("rolled", latest=2, live=0), summary("other-tier", serving="dedicated", live=0, latest=0)]
    platform = fanout_platform(["busy", "nocap"], ["quiet-nocap"], summaries,
                               {"busy": 0.1, "nocap": 0.0, "quiet-nocap": 0.0})
    found = views.drift_fanout(platform, "shared")
    rows = {f["family"]: f for f in found["families"]}
    assert rows["nocap"]["captures_off"] and rows["quiet-nocap"]["captures_off"]
    assert not rows["busy"]["captures_off"]  # it has captures: never looked up
    assert found["not_listed"] == [{"family": "new", "reason": "never trained"},
                                   {"family": "rolled", "reason": "no live model"},
                                   {"family": "old", "reason": "retired"}]  # the other tier's family is not counted
    assert drift_cmd.fanout_verdict(rows["nocap"]) == "[yellow]captures off (capture_sample_rate 0): nothing judged[/]"
    assert "captures off" in drift_cmd.fanout_verdict(rows["quiet-nocap"])
    assert drift_cmd.fanout_verdict(rows["busy"]) == "[dim]no new traffic: nothing judged[/]"
    line = drift_cmd.not_listed_text(found["not_listed"], "shared")
    assert line == ("not listed: 3 registered families of tier shared: 1 never trained (new); 1 no live model "
                    "(rolled); 1 retired (old)")


def test_not_listed_names_a_reason_s_families_up_to_ten_then_only_counts_them():
    many = [{"family": f"f{i:02d}", "reason": "retired"} for i in range(11)]
    assert drift_cmd.not_listed_text(many, None) == "not listed: 11 registered families: 11 retired"
    assert drift_cmd.not_listed_text(many[:10], None).endswith(", f09)")
    assert drift_cmd.not_listed_text([], None) is None


@pytest.fixture()
def fanout(monkeypatch):
    """`mlops drift check-all` on a canned fan-out result."""
    def run(result: dict[str, Any], *args: str):
        monkeypatch.setattr(drift_cmd, "connect", lambda target: SimpleNamespace(description="a test platform"))
        monkeypatch.setattr(views, "drift_fanout", lambda *a, **kw: result)
        return CliRunner().invoke(cli, ["drift", "check-all", *args], catch_exceptions=False)

    return run


def test_check_all_of_a_tier_with_no_live_family_says_so_instead_of_an_empty_table(fanout):
    result = fanout({"execution": ARN, "status": "SUCCEEDED", "seconds": 0.1, "tier": "dedicated", "families": [],
                     "not_listed": [{"family": "solo", "reason": "never trained"}]}, "--tier", "dedicated")
    assert result.exit_code == 0
    assert "no live families in tier dedicated: nothing to check" in result.output
    assert "Families" not in result.output  # no empty table
    assert "not listed: 1 registered family of tier dedicated: 1 never trained (solo)" in result.output
    as_json = fanout({"execution": ARN, "status": "SUCCEEDED", "seconds": 0.1, "tier": None, "families": [],
                      "not_listed": [{"family": "solo", "reason": "retired"}]}, "--json")
    assert json.loads(as_json.stdout)["not_listed"] == [{"family": "solo", "reason": "retired"}]


def test_a_never_checked_family_is_told_how_checks_run_on_a_stack_and_locally():
    family = synthetic.credit_risk_family(name="fresh")
    live = SimpleNamespace(family=family, live_version=1, retired=False)
    text = drift_cmd.no_checks_text(live)
    assert "On a deployed stack checks run on the family's drift schedule" in text
    assert "locally nothing runs on a schedule: run `mlops drift check fresh`" in text
    untrained = drift_cmd.no_checks_text(SimpleNamespace(family=family, live_version=0, retired=False))
    assert "it has no live model" in untrained and "schedule" not in untrained
    off = family.model_copy(update={"capture_sample_rate": 0.0})
    assert "captures off (capture_sample_rate 0)" in drift_cmd.no_checks_text(
        SimpleNamespace(family=off, live_version=1, retired=False))


def test_validate_accepts_capture_sample_rate_0_with_a_warning(tmp_path):
    path = tmp_path / "nocap.yaml"
    path.write_text(dump_family(synthetic.credit_risk_family(name="nocap", capture_sample_rate=0.0)))
    result = CliRunner().invoke(cli, ["families", "validate", str(path)], catch_exceptions=False)
    assert result.exit_code == 0 and "ok: " in result.stdout
    assert "warning: family nocap: capture_sample_rate 0" in result.stderr
    assert "drift monitoring and canary checks get no captured traffic" in result.stderr
    normal = tmp_path / "normal.yaml"
    normal.write_text(dump_family(synthetic.credit_risk_family(name="normal")))
    assert "warning" not in CliRunner().invoke(cli, ["families", "validate", str(normal)]).stderr


class Management:
    """The management routes' answers, recording each request."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.sent.append(body or {})
        name = path.rsplit("/", 1)[-1]
        return {"change": "created", "family": {"name": name, "config_version": 1, "status": "active"}}


@pytest.mark.parametrize("given", [None, "", "   "])
def test_apply_warns_of_capture_sample_rate_0_and_records_the_default_reason_for_an_empty_one(tmp_path, monkeypatch,
                                                                                            given):
    path = tmp_path / "nocap.yaml"
    path.write_text(dump_family(synthetic.credit_risk_family(name="nocap", capture_sample_rate=0.0)))
    api = Management()
    monkeypatch.setattr(families_cmd, "connect", lambda target: SimpleNamespace(
        management=lambda: api, description="a test platform"))
    args = ["families", "apply", str(path), "--json"] + ([] if given is None else ["--reason", given])
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["applied"][0]["name"] == "nocap"  # the warning is not in the JSON
    assert "warning: family nocap: capture_sample_rate 0" in result.stderr
    assert api.sent[0]["reason"] == "mlops families apply nocap.yaml"


def test_the_canary_display_says_why_a_canary_with_requests_but_no_captured_predictions_waits():
    canary = {"version": 2, "weight": 10, "step": 0, "steps": [10, 50, 100], "min_requests": 20,
              "bake_seconds": 300, "max_idle_windows": 3}
    check = {"decision": "wait", "weight": 10, "requests": 400, "canary_predictions": 0, "live_predictions": 0,
             "idle_windows": 1, "reasons": ["waiting for traffic"]}
    run = {"family": "nocap", "outcome": "started", "canary": {**canary, "last_check": check}}
    assert any("no prediction captured on either side" in line and "capture_sample_rate" in line
               for line in canary_lines(run))
    off = {**run, "canary": {**canary, "last_check": {**check, "divergence": {"status": "not_checked"}}}}
    assert not any("no prediction captured" in line for line in canary_lines(off))  # its reasons say why
    assert "mlops families show nocap" in canary_progress(run)
    captured = {**run, "canary": {**canary, "last_check": {**check, "canary_predictions": 3}}}
    assert not any("no prediction captured" in line for line in canary_lines(captured))


def test_drift_show_says_what_a_window_spanning_a_promotion_held():
    from mlops_local import views
    from mlops_local.commands.drift import window_lines

    report = {"verdict": "no_drift", "live_version": 2, "rows": 450, "rows_by_version": {"1": 200, "2": 250},
              "prediction_rows": 250, "not_judged": [{"version": 3, "rows": 12, "reason": "v3 was trained with "
                                                                                          "other inputs (age)"}],
              "unreadable_count": 1, "unreadable_objects": [{"key": "captures/x.cap", "error": "ValueError: bad"}],
              "window_open": False}
    summary = views.drift_summary({"at": "2026-12-01T10:00:00Z", "verdict": "no_drift", "report": report})
    text = "\n".join(window_lines(summary, report))
    assert "v1 200, v2 250" in text and "predictions: v2's 250" in text
    assert "12 rows of v3" in text and "other inputs (age)" in text
    assert "1 capture object(s) could not be read" in text and "captures/x.cap" in text
    one = {**report, "rows_by_version": {"2": 250}, "not_judged": [], "unreadable_count": 0, "window_open": True}
    lines = window_lines(views.drift_summary({"at": "t", "verdict": "insufficient_data", "report": one}), one)
    assert lines == ["  the window stays open: too few rows to judge, they are read again with the next traffic"]


def test_runs_with_a_family_name_as_a_command_says_to_use_family():
    result = CliRunner().invoke(cli, ["runs", "toyfam"])
    assert result.exit_code == 2
    assert "mlops runs --family toyfam" in result.output and "mlops runs show RUN_ID" in result.output
