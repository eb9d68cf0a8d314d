"""The operator commands against the local runtime (the session's platform on moto, reached through its stack
outputs as a deployed stack is): families, versions, compare, history, drift, report, promote and rollback, with
their error paths (unknown family, unknown version, a rollout in progress, a change the registry forbids)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from mlops.data import synthetic
from mlops.registry.runs import family_config_sha256
from mlops.reports.publish import model_card_keys

from mlops_local.cli import cli

from .conftest import TIERS, alias_state, live_model, run_upload, serving_state
from .operator_story import promoted_twice, shared_story

# One worker builds the shared story once for this module and the console's.
pytestmark = pytest.mark.xdist_group("operator-story")


@pytest.fixture()
def story(platform):
    return shared_story(platform)


def mlops(*args: str):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def as_json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_families_list_and_show_give_the_registry_pointers_and_the_declaration(platform, story, stack):
    name = story["name"]
    listed = as_json(mlops("families", "list", "--json", *stack))["families"]
    mine = next(f for f in listed if f["name"] == name)
    assert (mine["live_version"], mine["canary_version"], mine["latest_version"]) == (2, None, 3)
    assert mine["scoring_function"] == platform.scoring_functions[name]

    shown = as_json(mlops("families", "show", name, "--json", *stack))
    assert shown["declaration"] == story["family"].model_dump(mode="json")
    table = mlops("families", "show", name, *stack)
    assert table.exit_code == 0 and "Features" in table.stdout and "late_payments" in table.stdout
    assert "sensitive attribute 'sex'" in table.stdout

    unknown = mlops("families", "show", "no-such-family", *stack)
    assert unknown.exit_code == 2 and "unknown model family 'no-such-family'" in unknown.output
    assert name in unknown.output, "the message lists the registered families"


def test_versions_list_and_show_tell_status_metrics_gate_fairness_lineage_and_history(platform, story, stack):
    name = story["name"]
    listed = as_json(mlops("versions", "list", name, "--json", *stack))["versions"]
    assert [(v["version"], v["status"]) for v in listed] == [(3, "rejected"), (2, "live"), (1, "retired")]
    assert "min_auc" in listed[0]["failed_checks"] and listed[1]["gate_passed"] is True
    recorded = platform.registry.get_version(name, 2).lineage
    assert listed[1]["metrics"]["auc"] == recorded["metrics"]["auc"]
    assert listed[1]["dataset"]["version_id"] == recorded["dataset"]["version_id"]

    detail = as_json(mlops("versions", "show", name, "2", "--json", *stack))
    lineage = detail["record"]["lineage"]
    checks = {c["check"]: c for c in lineage["gate"]["checks"]}
    assert {"onnx_parity", "min_auc", "lift_over_trivial_model", "demographic_parity_difference",
            "equal_opportunity_difference", "auc_vs_live"} <= set(checks)
    assert all(c["passed"] for c in checks.values())
    groups = lineage["fairness"]["groups"]
    assert set(groups) == {"F", "M"} and sum(g["rows"] for g in groups.values()) == lineage["holdout"]["rows"]
    assert [e["to_status"] for e in detail["history"]] == ["candidate", "canary", "live"]
    assert lineage["curves"]["roc"]["auc"] == pytest.approx(lineage["metrics"]["auc"], abs=1e-6)
    assert lineage["family_config"]["sha256"] == family_config_sha256(story["family"])

    text = mlops("versions", "show", name, "2", *stack)
    assert text.exit_code == 0
    for heading in ("Lineage", "Holdout metrics", "Gate: passed", "auc_vs_live", "Fairness by sex", "Status history"):
        assert heading in text.stdout, heading

    missing = mlops("versions", "show", name, "99", *stack)
    assert missing.exit_code == 2 and f"{name!r} has no version 99 (versions 1 to 3" in missing.output
    unknown = mlops("versions", "list", "no-such-family", *stack)
    assert unknown.exit_code == 2 and "unknown model family" in unknown.output


def test_compare_puts_parameters_metrics_fairness_and_data_sets_side_by_side(platform, story, stack):
    name = story["name"]
    result = as_json(mlops("compare", name, "1", "2", "--json", *stack))
    rows = {(r["section"], r["field"]): r for r in result["rows"]}
    first, second = (platform.registry.get_version(name, v).lineage for v in (1, 2))
    auc = rows[("metrics", "auc")]
    assert (auc["a"], auc["b"], auc["differs"]) == (first["metrics"]["auc"], second["metrics"]["auc"], True)
    assert rows[("parameters", "algorithm")]["differs"] is False
    assert rows[("data set", "key")]["b"] == second["dataset"]["key"] and rows[("data set", "key")]["differs"]
    assert rows[("fairness", "group F")]["a"].startswith(f"n={first['fairness']['groups']['F']['rows']}")
    assert result["differences"] == sum(r["differs"] for r in result["rows"]) > 0

    differing = mlops("compare", name, "1", "2", *stack)
    everything = mlops("compare", name, "1", "2", "--all", *stack)
    assert "balanced_accuracy" in differing.stdout and "max_iter" not in differing.stdout
    assert "max_iter" in everything.stdout

    missing = mlops("compare", name, "1", "42", *stack)
    assert missing.exit_code == 2 and "no version 42" in missing.output


def _at(event) -> datetime:
    return datetime.fromisoformat(event.at.replace("Z", "+00:00"))


def test_history_tells_what_was_live_and_at_what_weight_at_a_moment(platform, story, stack):
    name = story["name"]
    events = sorted(platform.registry.history(name).items, key=lambda e: e.at)
    first_live = next(e for e in events if (e.version, e.to_status) == (1, "live"))
    canary = next(e for e in events if (e.version, e.to_status) == (2, "canary"))
    promoted = next(e for e in events if (e.version, e.to_status) == (2, "live"))

    def at(moment: datetime) -> dict:
        return as_json(mlops("history", name, "--at", moment.isoformat(), "--json", *stack))

    assert at(_at(first_live))["traffic"] == [{"version": 1, "role": "live", "weight": 100.0}]
    started = at(_at(canary))
    assert (started["live_version"], started["canary_version"], started["canary_weight"]) == (1, 2, 10.0)
    assert at(_at(canary).astimezone(timezone(timedelta(hours=2)))) == started, "the same moment in another zone"
    before_promotion = at(_at(promoted) - timedelta(milliseconds=1))
    assert before_promotion["canary_weight"] == 50.0, before_promotion["weight_source"]
    assert "execution history" in before_promotion["weight_source"]
    assert before_promotion["traffic"] == [{"version": 1, "role": "live", "weight": 50.0},
                                           {"version": 2, "role": "canary", "weight": 50.0}]
    assert at(_at(promoted))["traffic"] == [{"version": 2, "role": "live", "weight": 100.0}]
    assert at(datetime(2000, 1, 1))["traffic"] == []

    now = as_json(mlops("history", name, "--json", *stack))
    assert now["live_version"] == 2 and now["canary_version"] is None and len(now["events"]) == len(events)
    text = mlops("history", name, *stack)
    assert text.exit_code == 0 and "v2 (live) with 100% of traffic" in text.stdout

    bad = mlops("history", name, "--at", "yesterday", *stack)
    assert bad.exit_code == 2 and "is not a time" in bad.output


def test_drift_list_and_show_read_each_check_and_its_pages_are_written_beside_the_json(platform, story, stack):
    name = story["name"]
    # Other tests' drift checks also check this family on the shared platform: select the story's own two.
    ours = {r["report_key"] for r in story["drift"]}
    listed = as_json(mlops("drift", "list", name, "--json", *stack))["runs"]
    runs = [r for r in listed if r["report_key"] in ours]
    assert [r["verdict"] for r in runs] == ["drift", "no_drift"] and {r["live_version"] for r in runs} == {2}
    newest = as_json(mlops("drift", "show", name, "--run", runs[0]["run"], "--json", *stack))
    report = newest["report"]
    assert report["verdict"] == "drift" and report["features"]["income"]["status"] == "checked"
    income = report["histograms"]["features"]["income"]
    assert len(income["counts"]) == len(income["edges"]) + 1 and sum(income["counts"]) == report["rows"]
    s3 = boto3.client("s3")
    page = s3.get_object(Bucket=platform.bucket, Key=newest["summary"]["report_html_key"])["Body"].read().decode()
    assert newest["summary"]["report_html_key"] == report["report_key"].removesuffix(".json") + ".html"
    assert "Drift report" in page and "income" in page and "<script" not in page

    older = as_json(mlops("drift", "show", name, "--run", runs[1]["run"][:23], "--json", *stack))
    assert older["summary"]["run"] == runs[1]["run"] and older["report"]["verdict"] == "no_drift"
    table = mlops("drift", "show", name, *stack)
    assert table.exit_code == 0 and "PSI" in table.stdout and "region" in table.stdout

    missing = mlops("drift", "show", name, "--run", "1999-01-01", *stack)
    assert missing.exit_code == 2 and "no drift run '1999-01-01'" in missing.output


def test_model_cards_are_written_to_s3_at_registration_with_the_status_the_run_ended_in(platform, story):
    name = story["name"]
    s3 = boto3.client("s3")
    for version, status in ((1, "retired"), (2, "live"), (3, "rejected")):
        keys = model_card_keys(name, version)
        card = json.loads(s3.get_object(Bucket=platform.bucket, Key=keys["json"])["Body"].read())
        html = s3.get_object(Bucket=platform.bucket, Key=keys["html"])["Body"].read().decode()
        assert card["model_details"]["model_id"] == f"{name}/v{version}"
        # v1's card was last written when its own run ended (live); v2's run retired it without rewriting it.
        assert card["model_details"]["status"] == ("live" if version == 1 else status)
        assert "Model card" in html and "ROC curve" in html and "<script" not in html
        assert card["quantitative_analysis"]["curves"]["rows"] == \
            platform.registry.get_version(name, version).lineage["holdout"]["rows"]


def test_report_writes_the_model_card_drift_report_and_rollout_timeline_locally(story, stack, tmp_path):
    name = story["name"]
    out = tmp_path / "v2"
    written = as_json(mlops("report", name, "2", "-o", str(out), "--json", *stack))
    assert set(written["pages"]) == {"model-card", "drift-report", "rollout-timeline"} and written["notes"] == []
    card = json.loads((out / "model-card.json").read_text())
    assert card["model_details"]["status"] == "live" and card["gate"]["passed"] is True
    # The newest check of v2: the story's drifted one, or a later check another test ran on the shared platform.
    newest_of_v2 = next(r for r in as_json(mlops("drift", "list", name, "--json", *stack))["runs"]
                        if r["live_version"] == 2)
    drift_page = json.loads((out / "drift-report.json").read_text())
    assert drift_page["report_key"] == newest_of_v2["report_key"]
    assert drift_page["verdict"] == newest_of_v2["verdict"]
    rollout = json.loads((out / "rollout-timeline.json").read_text())
    assert [c["decision"] for c in rollout["checks"]][-1] == "promote" and rollout["history_kept"] is True
    for page in ("model-card", "drift-report", "rollout-timeline"):
        html = (out / f"{page}.html").read_text()
        assert html.startswith("<!doctype html>") and "Content-Security-Policy" in html

    first = as_json(mlops("report", name, "1", "-o", str(tmp_path / "v1"), "--json", *stack))
    assert set(first["pages"]) == {"model-card"}
    assert any("no drift check of v1" in n for n in first["notes"])
    assert any("had no canary rollout" in n for n in first["notes"])

    missing = mlops("report", name, "9", "-o", str(tmp_path / "v9"), *stack)
    assert missing.exit_code == 2 and not Path(tmp_path / "v9").exists()


@pytest.mark.parametrize("tier", TIERS)
def test_promote_and_rollback_move_registry_and_traffic_together_with_who_and_why(platform, stack, tier):
    family = promoted_twice(platform, f"ops-promote-{int(time.time() * 1000) % 10**8}", serving=tier)
    name = family.name
    v1, v2 = (platform.registry.get_version(name, v) for v in (1, 2))

    promoted = as_json(mlops("promote", name, "1", "--reason", "v2 mislabels the west region", "--json", *stack))
    assert (promoted["version"], promoted["previous_live_version"], promoted["already_live"]) == (1, 2, False)
    record = platform.registry.get_family(name)
    assert (record.live_version, platform.registry.get_version(name, 2).status) == (1, "retired")
    assert serving_state(platform, family) == (1, {})
    assert promoted["alias"]["tier"] == tier and promoted["alias"]["primary"] == (
        v1.function_version if tier == "dedicated" else "1")
    event = max(platform.registry.history(name).items, key=lambda e: (e.at, e.to_status == "live"))
    assert (event.version, event.to_status, event.reason) == (1, "live", "v2 mislabels the west region")
    assert event.actor.startswith("cli:arn:aws:") and promoted["actor"] == event.actor

    again = as_json(mlops("promote", name, "1", "--reason", "twice", "--json", *stack))
    assert again["already_live"] is True

    rolled = as_json(mlops("rollback", name, "--reason", "v1 was not the fix", "--json", *stack))
    assert (rolled["rolled_back_version"], rolled["live_version"], rolled["was_canary"]) == (1, 2, False)
    assert platform.registry.get_version(name, 1).status == "rolled_back"
    assert serving_state(platform, family) == (2, {})
    if tier == "dedicated":
        assert alias_state(platform, family) == (v2.function_version, {})
    card = json.loads(boto3.client("s3").get_object(Bucket=platform.bucket, Key=model_card_keys(name, 1)["json"])
                      ["Body"].read())
    assert card["model_details"]["status"] == "rolled_back", "the card in S3 follows the manual change"

    final = mlops("promote", name, "1", "--reason", "once more", *stack)
    assert final.exit_code == 4 and "rolled_back -> live is not allowed" in final.output
    nothing = mlops("rollback", name, "--reason", "again", *stack)
    assert nothing.exit_code == 4 and "no retired version to restore" in nothing.output
    assert platform.registry.get_family(name).live_version == 2, "refusals change nothing"
    blank = mlops("promote", name, "2", "--reason", "  ", *stack)
    assert blank.exit_code == 2 and "say why" in blank.output
    unknown = mlops("promote", name, "7", "--reason", "x", *stack)
    assert unknown.exit_code == 2 and "no version 7" in unknown.output


def test_promote_and_rollback_are_refused_while_a_rollout_runs(platform, new_family, stack):
    family = new_family(canary={"bake_seconds": 300})
    output, _ = run_upload(platform, family.name, "v1.csv", synthetic.credit_risk_csv(800, 11, label_noise=0.35))
    assert output["outcome"] == "promoted"
    platform.upload_dataset(family.name, "v2.csv", synthetic.credit_risk_csv(6000, 12))
    deadline = time.monotonic() + 120
    # The canary starts in the registry, then the alias follows: wait for both.
    while platform.registry.get_family(family.name).canary_version != 2 or not serving_state(platform, family)[1]:
        assert time.monotonic() < deadline, platform.registry.list_runs(family=family.name)
        time.sleep(0.1)
    holder = platform.registry.get_family(family.name).rollout_holder
    before = serving_state(platform, family)

    for args in (("promote", family.name, "1", "--reason", "now"), ("rollback", family.name, "--reason", "now")):
        refused = mlops(*args, *stack)
        assert refused.exit_code == 4, refused.output
        assert f"a rollout of {family.name} is running: {holder} holds" in refused.output
        assert "v2 is in canary at 10%" in refused.output
    record = platform.registry.get_family(family.name)
    assert (record.live_version, record.canary_version, record.rollout_holder) == (1, 2, holder)
    assert serving_state(platform, family) == before and before[1], "the canary keeps its traffic"

    execution = next(e for e in platform.executions() if e["name"] == holder)
    boto3.client("stepfunctions").stop_execution(executionArn=execution["executionArn"], cause="test")
    platform.wait_for(execution["executionArn"])
    assert platform.registry.get_family(family.name).rollout_holder is None

    other = "cli:someone-else:0001"
    assert platform.registry.acquire_rollout(family.name, other, 300)
    busy = mlops("rollback", family.name, "--reason", "now", *stack)
    assert busy.exit_code == 4 and other in busy.output, "another operator's change is respected too"
    platform.registry.release_rollout(family.name, other)
    done = as_json(mlops("promote", family.name, "1", "--reason", "after the rollout", "--json", *stack))
    assert done["already_live"] is True and platform.registry.get_family(family.name).rollout_holder is None


def test_a_record_the_renderer_cannot_draw_is_a_clear_error_not_a_traceback(platform, new_family, stack, tmp_path):
    from mlops_local.console import for_local

    family = new_family()
    live_model(platform, family, rows=1500, seed=8)
    platform.registry.update_lineage(family.name, 1, {"curves": {"format": 1, "roc": "not a curve"}})

    result = mlops("report", family.name, "1", "-o", str(tmp_path / "out"), *stack)
    assert result.exit_code == 1 and "the model card could not be drawn: AttributeError" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
    status, body, _ = for_local(platform).handle("GET", f"/console/families/{family.name}/versions/1")
    assert status == 500 and "The console failed" in body and "Traceback" not in body
