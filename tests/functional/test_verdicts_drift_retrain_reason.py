"""Why a drift retrain did not start names the uploads it passed over and why (the live model's own data set, a
failed run), in the drift check's record that `mlops drift show` and the report page print (MED 6)."""

from __future__ import annotations

import io

import boto3
from rich.console import Console

from mlops_local.commands.drift import print_check

from .conftest import BUCKET
from .test_drift_retrain_dataset import FAMILY, declare, monitor, state_machine, uploads  # noqa: F401


def test_retrain_not_started_names_each_upload_passed_over_and_drift_show_prints_it(platform, monitor, uploads):  # noqa: F811
    declare(platform)
    uploads("live.csv", "promoted")
    uploads("broken.csv", "failed")  # newer than the live model's data set, and ruled out
    live_key = f"datasets/{FAMILY}/live.csv"
    listed = boto3.client("s3").list_object_versions(Bucket=BUCKET, Prefix=live_key)["Versions"][0]
    lineage = {"dataset": {"bucket": BUCKET, "key": live_key, "version_id": listed["VersionId"]},
               "family_config_version": platform.registry.get_family(FAMILY).config_version}
    live = platform.registry.allocate_version(FAMILY, lineage, actor="t").version
    platform.registry.transition(FAMILY, live, "live", "t", "first")
    retrain = monitor._maybe_retrain(platform.registry.get_family(FAMILY), {"verdict": "drift"})
    assert retrain["started"] is False
    assert f"{live_key} (version {listed['VersionId']}): the live model v{live} was trained on it" in retrain["reason"]
    assert f"datasets/{FAMILY}/broken.csv" in retrain["reason"] and "its run ended failed" in retrain["reason"]
    console = Console(file=io.StringIO(), width=400, force_terminal=False, color_system=None)
    summary = {"run": "2026-01-05T10:00", "live_version": live, "verdict": "drift", "rows": 800,
               "prediction_drift": "-", "retrain": retrain}
    print_check(console, platform, FAMILY, {"summary": summary, "report": {"min_samples": 500, "features": {}}})
    assert "retrain: no: no usable data set" in console.file.getvalue()
    assert "its run ended failed" in console.file.getvalue()
