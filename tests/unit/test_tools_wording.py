"""Operator wording: canary requests against the minimum, the step shown for runs, the names a drift check goes
by (`mlops drift show --run`)."""

from __future__ import annotations

from mlops_local.commands.runs import requests_text, run_step, run_summary
from mlops_local.views import drift_ids


def test_more_requests_than_the_minimum_read_as_a_count_with_its_minimum():
    assert requests_text(40, 20) == "40 requests (min 20)"
    assert requests_text(20, 20) == "20 requests (min 20)"
    assert requests_text(4, 20) == "4 requests (min 20: 16 more needed)"
    assert requests_text(None, 20) == "? requests (min 20)"


def _steps(*names: str, open_last: bool = False) -> list[dict]:
    steps = [{"step": n, "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:00:01Z"} for n in names]
    if open_last:
        steps[-1]["ended_at"] = None
    return steps


def test_the_step_of_a_run_is_the_deciding_one_else_the_last_state_entered():
    assert run_step({"step": "Gate", "steps": _steps("Train", "Gate", "FinishGatedOut")}) == "Gate"
    assert run_step({"outcome": "promoted", "steps": _steps("Train", "Promote", "FinishPromoted")}) == \
        "FinishPromoted"
    assert run_step({"outcome": "started", "steps": _steps("Train", "Bake", open_last=True)}) == "Bake (running)"
    assert run_step({"outcome": "rejected"}) is None
    assert run_summary({"outcome": "started", "steps": _steps("Train", open_last=True)})["last_step"] == \
        "Train (running)"


def test_a_drift_check_goes_by_its_run_id_its_report_keys_and_their_file_names():
    item = {"at": "2026-03-01T12:00:05.456789Z", "report": {
        "report_key": "reports/drift/family=f/2026-03-01T12-00-05.460000Z.json",
        "report_html_key": "reports/drift/family=f/2026-03-01T12-00-05.460000Z.html",
        "checked_at": "2026-03-01T12:00:05.400000+00:00"}}
    ids = drift_ids(item)
    assert ids[0] == "2026-03-01T12:00:05.456789Z"
    assert {"2026-03-01T12-00-05.460000Z", "2026-03-01T12-00-05.460000Z.html",
            "reports/drift/family=f/2026-03-01T12-00-05.460000Z.json"} <= set(ids)
    assert "2026-03-01T12:00:05.400000+00:00" in ids


def _card_diff(status: str) -> str | None:
    from mlops.reports.model_card import build_model_card

    record = {"family": "f", "version": 2, "status": status, "created_at": "2026-01-01T00:00:00Z",
              "lineage": {"family": "f", "version": 2, "previous_live_version": 1}}
    return build_model_card(record, [])["model_details"]["version"]["diff"]


def test_model_card_header_calls_a_version_a_challenger_only_while_it_is_one():
    assert _card_diff("candidate") == "challenger of live v1"
    assert _card_diff("canary") == "challenger of live v1"
    assert _card_diff("live") == "live, replacing v1"
    assert _card_diff("retired") == "replaced v1; since retired"
    assert "rolled back" in _card_diff("rolled_back")


def test_report_open_without_a_display_says_where_the_page_is(tmp_path, monkeypatch):
    import click

    from mlops_local.commands import reports

    launched = []
    monkeypatch.setattr(click, "launch", lambda url, **kw: launched.append(url) or 1)
    page = tmp_path / "model-card.html"
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert reports.open_in_browser(page) == f"no browser can be opened here (no display); the model card is at {page}"
    assert launched == []
    monkeypatch.setenv("DISPLAY", ":0")
    assert reports.open_in_browser(page) == (f"the browser could not be opened (launcher exit code 1); the model card "
                                             f"is at {page}")
    assert launched == [str(page)]


def test_report_to_a_folder_that_cannot_be_created_is_a_usage_error_before_the_platform_is_asked(tmp_path):
    from click.testing import CliRunner

    from mlops_local.cli import cli

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = CliRunner().invoke(cli, ["report", "credit-risk", "1", "-o", str(blocker / "sub")])
    assert result.exit_code == 2
    assert "is a file, not a folder" in result.output and "-o/--output" in result.output
    assert "Traceback" not in result.output


def test_built_in_credit_risk_features_carry_reason_texts_in_the_library_and_in_cdk_json():
    import json
    from pathlib import Path

    from mlops.data.synthetic import credit_risk_family

    texts = {f.name: f.description for f in credit_risk_family().features}
    assert all(texts.values()) and texts["late_payments"] == "Too many recent late payments"
    cdk = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())
    deployed = next(f for f in cdk["context"]["mlops"]["families"] if f["name"] == "credit-risk")
    assert {f["name"]: f.get("description") for f in deployed["features"]} == texts
