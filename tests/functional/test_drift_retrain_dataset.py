"""Which data set a drift retrain uses: the newest recorded upload the family's engine reads whose upload run did
not rule it out (run records, not model versions) and that did not train the live model, and the retrain leaves a
run record saying it came from drift."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from mlops.core.observability import MetricsPublisher
from mlops.data.synthetic import credit_risk_family
from mlops.monitoring.drift import DriftMonitor
from mlops.pipeline.trigger import execution_name
from mlops.registry.artifacts import ArtifactStore
from mlops.registry.store import ModelRegistry
from mlops.serving.capture import CaptureReader

from .conftest import BUCKET, TABLE

FAMILY = "retrain-family"


@pytest.fixture()
def state_machine(platform) -> str:
    """A state machine that moto never executes (the drift check only starts executions)."""
    return boto3.client("stepfunctions").create_state_machine(
        name="pipeline", roleArn="arn:aws:iam::123456789012:role/states",
        definition=json.dumps({"StartAt": "S", "States": {"S": {"Type": "Pass", "End": True}}}))["stateMachineArn"]


@pytest.fixture()
def monitor(platform, state_machine) -> DriftMonitor:
    return DriftMonitor(platform.registry, ArtifactStore(BUCKET), CaptureReader(BUCKET), MetricsPublisher("MLOpsTest"),
                        state_machine, lambda arn: False)


@pytest.fixture()
def uploads(platform):
    """upload(filename, outcome): an object version under datasets/<family>/, its upload item and its upload run
    record (as the trigger writes them) ending in `outcome` (None: the upload item only, its run record expired),
    each run started a minute after the last."""
    clock = {"t": datetime(2026, 1, 5, 9, tzinfo=UTC)}
    writer = ModelRegistry(TABLE, clock=lambda: clock["t"])

    def upload(filename: str, outcome: str | None, family: str = FAMILY) -> str:
        key = f"datasets/{family}/{filename}"
        put = boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"income,target\n1,0\n")
        run_id = execution_name(family, BUCKET, key, put["VersionId"])
        clock["t"] += timedelta(minutes=1)
        dataset = {"bucket": BUCKET, "key": key, "version_id": put["VersionId"], "etag": put["ETag"].strip('"')}
        writer.record_upload(family, run_id, dataset)
        if outcome is not None:
            writer.start_run(family, run_id, dataset={"key": key, "version_id": put["VersionId"]},
                             trigger={"source": "s3"})
            if outcome != "started":
                writer.record_run(family, run_id, outcome, step="Train", reason=outcome)
        return run_id

    return upload


def declare(platform, **overrides):
    return platform.registry.put_family(credit_risk_family(name=FAMILY, drift={"auto_retrain": True}, **overrides))


def test_newest_dataset_skips_versions_whose_upload_run_ruled_the_data_out(platform, monitor, uploads):
    record = declare(platform)
    # Named to sort last: versions listed in the same second must be ordered by time, not by key.
    good = uploads("z-good.csv", "promoted")
    for outcome in ("failed", "duplicate", "gated_out", "rolled_back", "rejected"):
        uploads(f"newer-{outcome}.csv", outcome)
    found = monitor.newest_dataset(FAMILY, record)
    assert found["key"] == f"datasets/{FAMILY}/z-good.csv"
    assert found["run_id"] == good


def test_newest_dataset_takes_a_newer_version_whose_run_is_promoted_or_still_running(platform, monitor, uploads):
    record = declare(platform)
    uploads("old.csv", "promoted")
    uploads("bad.csv", "failed")
    uploads("running.csv", "started")
    assert monitor.newest_dataset(FAMILY, record)["key"] == f"datasets/{FAMILY}/running.csv"


def test_newest_dataset_reads_gzip_csv_and_parquet_where_the_engine_reads_it(platform, monitor, uploads):
    record = declare(platform)
    uploads("plain.csv", "promoted")
    uploads("packed.csv.gz", "promoted")
    uploads("columns.parquet", "promoted")  # the lambda engine has no Parquet reader
    uploads("notes.txt", "promoted")
    assert monitor.newest_dataset(FAMILY, record)["key"] == f"datasets/{FAMILY}/packed.csv.gz"
    on_sagemaker = declare(platform, training={"engine": "sagemaker"})
    assert monitor.newest_dataset(FAMILY, on_sagemaker)["key"] == f"datasets/{FAMILY}/columns.parquet"


def test_drift_retrain_records_a_started_run_with_trigger_drift(platform, monitor, uploads):
    record = declare(platform)
    source = uploads("good.csv", "promoted")
    uploads("broken.csv", "failed")
    retrain = monitor._maybe_retrain(record, {"verdict": "drift"})
    assert retrain["started"] is True
    run = platform.registry.get_run(FAMILY, retrain["execution"])
    assert run is not None, "the drift-started run left no run record"
    assert run["outcome"] == "started" and run["trigger"] == {"source": "drift"}
    assert retrain["dataset"]["key"] == f"datasets/{FAMILY}/good.csv" and "run_id" not in retrain["dataset"]
    assert retrain["dataset_run"] == source
    assert run["dataset"]["key"] == f"datasets/{FAMILY}/good.csv" and run["execution_arn"] == retrain["execution_arn"]


def test_drift_retrain_with_no_usable_data_set_says_why(platform, monitor, uploads):
    record = declare(platform)
    uploads("broken.csv", "failed")
    retrain = monitor._maybe_retrain(record, {"verdict": "drift"})
    assert retrain["started"] is False
    assert retrain["reason"].startswith(f"no usable data set under datasets/{FAMILY}/: none of the family's newest "
                                        "uploads could train a model it does not already have")
    assert retrain["reason"].endswith(f"considered: datasets/{FAMILY}/broken.csv (version "
                                      f"{_version_of('broken.csv')}): its run ended failed")


def _version_of(filename: str) -> str:
    key = f"datasets/{FAMILY}/{filename}"
    return boto3.client("s3").list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"][0]["VersionId"]


def test_newest_dataset_never_retrains_on_the_live_models_own_data_set_nor_on_older_ones(platform, monitor,
                                                                                         uploads):
    # Given a live model trained on the newest upload: a retrain on it would reproduce the live model, and a retrain
    # on an older upload would go backwards (under this declaration it reproduces the model trained on it).
    record = declare(platform)
    uploads("older.csv", "promoted")
    uploads("live.csv", "promoted")
    live_key = f"datasets/{FAMILY}/live.csv"
    lineage = {"dataset": {"bucket": BUCKET, "key": live_key, "version_id": _version_of("live.csv")},
               "family_config_version": platform.registry.get_family(FAMILY).config_version}
    live = platform.registry.allocate_version(FAMILY, lineage, actor="t").version
    platform.registry.transition(FAMILY, live, "live", "t", "first")
    record = platform.registry.get_family(FAMILY)
    skipped: list[str] = []
    assert monitor.newest_dataset(FAMILY, record, skipped) is None
    assert skipped == [f"{live_key} (version {_version_of('live.csv')}): the live model v{live} was trained on it"]


def test_drift_retrain_with_only_the_live_models_data_set_starts_nothing_and_says_to_upload(platform, monitor,
                                                                                             uploads):
    declare(platform)
    uploads("live.csv", "promoted")
    live_key = f"datasets/{FAMILY}/live.csv"
    listed = boto3.client("s3").list_object_versions(Bucket=BUCKET, Prefix=live_key)["Versions"][0]
    lineage = {"dataset": {"bucket": BUCKET, "key": live_key, "version_id": listed["VersionId"]},
               "family_config_version": platform.registry.get_family(FAMILY).config_version}
    live = platform.registry.allocate_version(FAMILY, lineage, actor="t").version
    platform.registry.transition(FAMILY, live, "live", "t", "first")
    retrain = monitor._maybe_retrain(platform.registry.get_family(FAMILY), {"verdict": "drift"})
    assert retrain["started"] is False and "upload newer data" in retrain["reason"]


def test_a_fanout_batch_checks_every_family_even_when_one_check_crashes(platform, monitor, monkeypatch):
    # One family's check raises something that is not a platform error: the batch records it and goes on.
    checked = []

    def check_family(name, run=None):
        if name == "crashes":
            raise RuntimeError("boom")
        checked.append(name)
        return {"family": name, "verdict": "no_drift"}

    failures = []
    monkeypatch.setattr(monitor, "check_family", check_family)
    monkeypatch.setattr(monitor, "record_failure", lambda name, error, run=None: failures.append((name, error)))
    result = monitor.check_batch(["first", "crashes", "last"])
    assert checked == ["first", "last"] and failures == [("crashes", "RuntimeError: boom")]
    assert [r["verdict"] for r in result["results"]] == ["no_drift", "error", "no_drift"]


def test_the_fanout_listing_batches_live_families_and_filters_by_tier(platform, monitor):
    for i in range(7):
        name = f"batch-{i}"
        platform.registry.put_family(credit_risk_family(name=name, serving="dedicated" if i == 6 else "shared"))
        version = platform.registry.allocate_version(name, {"dataset": {}}, actor="t").version
        platform.registry.transition(name, version, "live", "t", "first")
    listing = monitor.fanout_listing("shared", None, "run-1", batch_size=4)
    items = json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key=listing["key"])["Body"].read())
    shared = [f for i in items for f in i["families"]]
    assert [len(i["families"]) for i in items] == [4, 2] and listing["count"] == 6 and listing["batches"] == 2
    assert "batch-6" not in shared and FAMILY not in shared  # dedicated; and a family without a live model
