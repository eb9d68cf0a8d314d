"""A failed drift check afterwards (fresh-user pass, MED A): `mlops drift check` exits 1 and prints the failure the
drift function recorded, `drift show` and `drift list` show its error, time and window, the console's drift pages
render it (never a 500) with the newest completed report, and `mlops report` draws the newest completed report
instead, saying which one. Also a family that captures nothing (capture_sample_rate 0, MED B) is said to be one."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from urllib.parse import quote

from click.testing import CliRunner
from mlops.core import aws

from mlops_local.cli import cli
from mlops_local.serve import bind_front

from .conftest import fast_family, live_model


def mlops(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def flat(text: str) -> str:
    """Rich output with its table borders and line breaks taken out, for substring checks."""
    return " ".join(re.sub(r"[│┃┏┓┗┛┡┩└┘┌┐━─╇╈┳┻┼┬┴╋|]", " ", text).split())


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def garbage_capture(platform, family) -> str:
    """A capture object that is not a capture batch, written now under the live version's prefix (as a broken
    writer would)."""
    version = platform.registry.get_family(family.name).live_version
    ms = int(time.time() * 1000) + 1
    at = datetime.fromtimestamp(ms / 1000, UTC)
    key = (f"captures/family={family.name}/version={version}/date={at:%Y-%m-%d}/hour={at:%H}/"
           f"{ms:013d}-wbroken.cap")
    aws.client("s3").put_object(Bucket=platform.bucket, Key=key, Body=b"not a capture batch")
    platform.registry.mark_captured(family.name, ms / 1000)
    return key


def test_a_failed_check_is_shown_by_check_show_list_console_and_report(platform, new_family, traffic, stack,
                                                                       tmp_path):
    family = new_family(drift={"min_samples": 300})
    live_model(platform, family)
    traffic(family).send(400, "normal")
    platform.flush_captures()
    good = json.loads(mlops("drift", "check", family.name, "--json", *stack).stdout)
    assert good["summary"]["verdict"] == "no_drift", good["summary"]

    # The live model's baseline profile is gone: the next check fails, and the drift function records it.
    traffic(family).send(50, "normal")
    platform.flush_captures()
    live = platform.registry.get_version(family.name, 1)
    aws.client("s3").delete_object(Bucket=platform.bucket,
                                   Key=f"artifacts/sha256/{live.lineage['baseline_profile']['sha256']}")
    checked = mlops("drift", "check", family.name, *stack)
    assert checked.exit_code == 1, checked.output  # documented: drift confirmed or the check failed
    shown = flat(checked.output)
    assert "failed at" in shown and "does not exist" in shown, shown
    assert "Newest completed check: " + good["summary"]["run"] in shown
    assert "at least None" not in shown and "error on 0 rows" not in shown
    as_json = mlops("drift", "check", family.name, "--json", *stack)
    assert as_json.exit_code == 1
    failure = json.loads(as_json.stdout)
    assert failure["summary"]["verdict"] == "error" and "does not exist" in failure["summary"]["error"]
    assert failure["failure"]["newest_completed"]["run"] == good["summary"]["run"]
    # The window it would have judged starts where the last judged one ended (it stays open).
    assert failure["failure"]["window"]["start"] == datetime.fromtimestamp(
        float(good["report"]["window_end"]), UTC).isoformat()
    error_run = failure["summary"]["run"]

    shown = flat(mlops("drift", "show", family.name, *stack).output)
    assert f"drift check {error_run} of live v1: failed at" in shown and "does not exist" in shown
    assert "Window: captures written from" in shown and "the window stays open" in shown
    listed = flat(mlops("drift", "list", family.name, *stack).output)
    assert "failed: " in listed and "does not exist" in listed and error_run in listed
    runs = json.loads(mlops("drift", "list", family.name, "--json", *stack).stdout)["runs"]
    assert runs[0]["verdict"] == "error" and "does not exist" in runs[0]["error"] and runs[0]["checked_at"]

    # The console: the family's drift page shows the failure and the newest completed report below it; the failed
    # run's own page shows the failure with a link to that report; neither is a 500.
    httpd = bind_front(platform, 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/console/families/{family.name}"
    try:
        status, page = get(f"{base}/drift")
        assert status == 200, page[-2000:]
        assert "Drift check failed" in page and "does not exist" in page and "Drift statistics" in page
        status, page = get(f"{base}/drift/{quote(error_run, safe='')}")
        assert status == 200, page[-2000:]
        assert "Drift check failed" in page and "does not exist" in page
        assert f'href="/console/families/{family.name}/drift/{quote(good["summary"]["run"], safe="")}"' in page
        status, page = get(base)
        assert status == 200 and "failed: " in page and "does not exist" in page
    finally:
        httpd.shutdown()
        httpd.server_close()

    # The model card's report folder: the newest completed drift report, and a note naming it.
    drawn = mlops("report", family.name, "1", "-o", str(tmp_path / "reports"), "--json", *stack)
    assert drawn.exit_code == 0, drawn.output
    written = json.loads(drawn.stdout)
    assert "drift-report" in written["pages"], written
    assert any(good["summary"]["run"] in note and error_run in note for note in written["notes"]), written["notes"]
    stored = json.loads((tmp_path / "reports" / "drift-report.json").read_text())
    assert stored["verdict"] == "no_drift" and stored["report_key"] == good["summary"]["report_key"]


def test_an_unreadable_capture_object_is_skipped_and_named_not_a_failed_family(platform, new_family, traffic,
                                                                              stack):
    """One corrupt capture object used to fail every check of its family until someone deleted it: it is now
    skipped, named by `drift check` and `drift show`, and the rest of the window is judged."""
    family = new_family(drift={"min_samples": 300})
    live_model(platform, family)
    traffic(family).send(40, "normal")
    platform.flush_captures()
    key = garbage_capture(platform, family)
    traffic(family).send(40, "normal")
    platform.flush_captures()
    checked = mlops("drift", "check", family.name, *stack)
    assert checked.exit_code == 0, checked.output
    shown = flat(checked.output)
    assert "no drift on 400 rows" in shown.lower() or "400 rows" in shown, shown
    assert "1 capture object(s) could not be read and were skipped" in shown and key in shown, shown
    assert "not a capture batch" in shown
    again = flat(mlops("drift", "show", family.name, *stack).output)
    assert key in again
    (newest,) = platform.registry.drift_records(family.name, limit=1)
    assert newest["verdict"] == "no_drift" and newest["report"]["unreadable_objects"][0]["key"] == key


def test_a_family_that_captures_nothing_is_said_to(platform, new_family, stack):
    normal = new_family()
    assert "Capture: sample rate 1 (the share of scored records captured" in \
        flat(mlops("families", "show", normal.name, *stack).output)
    quiet = fast_family(f"{normal.name}-nocap").model_copy(update={"capture_sample_rate": 0.0})
    platform.add_family(quiet)
    live_model(platform, quiet)
    shown = flat(mlops("families", "show", quiet.name, *stack).output)
    assert "captures off (capture_sample_rate 0)" in shown
    listed = flat(mlops("drift", "list", quiet.name, *stack).output)
    assert "captures off (capture_sample_rate 0)" in listed, listed
    checked = mlops("drift", "check", quiet.name, *stack)
    assert checked.exit_code == 0 and "captures off (capture_sample_rate 0)" in flat(checked.output), checked.output
    assert json.loads(mlops("drift", "check", quiet.name, "--json", *stack).stdout)["summary"]["captures_off"]
    httpd = bind_front(platform, 0)  # the console says it too: the families list and the drift page's 404
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    console = f"http://127.0.0.1:{httpd.server_address[1]}/console"
    try:
        status, page = get(console)
        assert status == 200 and "captures off (capture_sample_rate 0)" in page, page[-2000:]
        status, page = get(f"{console}/families/{quiet.name}/drift")
        assert status == 404 and "captures off (capture_sample_rate 0)" in page, page[-2000:]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_console_drift_pages_of_a_failed_check_without_a_completed_one_and_of_an_undrawable_report(platform,
                                                                                                   new_family, stack):
    """Records written through the registry API: a failure before any completed check, and a completed check
    whose stored report the renderer refuses (no `features`). Each is a page saying so, never a 500."""
    family = new_family()
    platform.registry.record_drift(family.name, {"verdict": "error", "error": "ValueError: broken capture",
                                                 "family": family.name, "live_version": None, "rows": 0,
                                                 "drifted_features": [], "checked_at": "2026-03-01T12:00:00+00:00"})
    shown = flat(mlops("drift", "show", family.name, *stack).output)
    assert "failed at 2026-03-01 12:00:00 UTC: ValueError: broken capture" in shown, shown
    assert "No completed check of this family is recorded." in shown
    httpd = bind_front(platform, 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/console/families/{family.name}"
    try:
        status, page = get(f"{base}/drift")
        assert status == 200 and "Drift check failed" in page and "ValueError: broken capture" in page, page[-2000:]
        assert "none recorded" in page
        time.sleep(0.01)  # a later registry time
        platform.registry.record_drift(family.name, {"verdict": "no_drift", "family": family.name, "live_version": 1,
                                                     "rows": 500, "drifted_features": []})
        status, page = get(f"{base}/drift")
        assert status == 200 and "Drift report not drawn" in page and "no `features` object" in page, page[-2000:]
        status, page = get("/".join(base.split("/")[:-2]))  # the families page links the newest check
        assert status == 200
    finally:
        httpd.shutdown()
        httpd.server_close()
