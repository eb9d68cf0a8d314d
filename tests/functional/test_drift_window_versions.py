"""A drift check's window is the traffic since the last judged window, whichever model version served it: a
promotion or a rollback between two checks loses no captured record (fresh-user pass on issue 12, HIGH: the
window restarted at the new live version's go-live, so the previous version's unjudged records, and the new one's
canary records, were never judged). Inputs are judged against the live model's baseline, predictions are the live
model's own; a version trained with other inputs is named, not mixed in. A capture object that cannot be read is
skipped and named in the report instead of failing every later check of the family."""

from __future__ import annotations

import time
import uuid

import boto3
import numpy as np
import pytest
from mlops.core.observability import MetricsPublisher
from mlops.data import synthetic
from mlops.monitoring.drift import DriftMonitor
from mlops.registry.artifacts import ArtifactStore
from mlops.registry.store import CANARY, LIVE, RETIRED, ROLLED_BACK
from mlops.serving.capture import ARRIVAL_MARK, CaptureReader, key_for
from mlops.serving.capture_columns import CapturedColumns, encode

from .conftest import BUCKET
from .test_verdicts_live_overlap import _run


def _write(family, version: int, rows: int, seed: int, *, shift: float = 0.0, declared=None) -> str:
    """One capture object of `rows` records served by `version`, keyed by its write time (as the writers key
    them); `shift` moves every income. Returns its key."""
    records = synthetic.to_instances(synthetic.credit_risk_columns(rows, seed), declared or family)
    for r in records:
        r["income"] = float(r["income"]) + shift
    at = time.time()
    body = encode(CapturedColumns.from_rows([(at, f"r{seed}-{i}", 0, r, 0, [0.8, 0.2])
                                             for i, r in enumerate(records)]))
    key = key_for(family.name, version, int(at * 1000), ARRIVAL_MARK + uuid.uuid4().hex[:12])
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    time.sleep(0.005)  # the next check's window ends after this object's millisecond
    return key


def _family(name: str):
    # A lenient gate: these tests are about the drift window, every trained version may go live.
    return synthetic.credit_risk_family(name=name, drift={"min_samples": 200}, sensitive_attribute=None,
                                        gate={"min_auc_margin": -0.5, "min_auc": 0.5, "min_lift_over_trivial": 0.0})


@pytest.fixture()
def monitor(platform):
    return DriftMonitor(platform.registry, ArtifactStore(BUCKET), CaptureReader(BUCKET), MetricsPublisher("Test"),
                        "arn:aws:states:us-east-1:123456789012:stateMachine:x", lambda arn: False)


def _check(platform, monitor, family) -> dict:
    return monitor.check(platform.registry.get_family(family.name))


def test_a_promotion_and_a_rollback_between_checks_lose_no_captured_record(platform, monitor):
    family = _family("handover")
    v1 = _run(platform, family, synthetic.credit_risk_columns(2500, 1), "run-1")["register"]["version"]
    platform.registry.transition(family.name, v1, LIVE, "test", "first model")
    v2 = _run(platform, family, synthetic.credit_risk_columns(2500, 2), "run-2")["register"]["version"]
    _write(family, v1, 300, 11)
    first = _check(platform, monitor, family)
    assert first["verdict"] == "no_drift" and first["rows"] == 300

    _write(family, v1, 200, 12)  # v1's traffic after the check, before v2 takes over
    platform.registry.transition(family.name, v2, CANARY, "test", "canary")
    _write(family, v2, 40, 13)  # v2's canary share, written before its promotion
    platform.registry.transition(family.name, v2, LIVE, "test", "promoted")
    _write(family, v2, 210, 14)
    second = _check(platform, monitor, family)
    assert second["live_version"] == v2
    assert second["rows_by_version"] == {str(v1): 200, str(v2): 250}, second["rows_by_version"]
    assert second["rows"] == 450 and second["prediction_rows"] == 250
    assert second["window_start"] == first["window_end"] and not second["window_open"]

    _write(family, v2, 100, 15, shift=-60_000)
    platform.registry.transition(family.name, v2, ROLLED_BACK, "test", "complaints")
    assert platform.registry.get_version(family.name, v1).status in (RETIRED, LIVE)
    if platform.registry.get_version(family.name, v1).status == RETIRED:
        platform.registry.transition(family.name, v1, LIVE, "test", "back to v1")
    _write(family, v1, 150, 16, shift=-60_000)
    third = _check(platform, monitor, family)
    assert third["live_version"] == v1
    assert third["rows_by_version"] == {str(v1): 150, str(v2): 100} and third["rows"] == 250
    assert third["verdict"] == "drift" and "income" in third["drifted_features"]  # the rolled-back model's too

    assert _check(platform, monitor, family)["verdict"] == "no_traffic"  # each record judged once

    _write(family, v1, 20, 17)  # too few: judged as insufficient, read again (with more) next time
    small = _check(platform, monitor, family)
    assert small["verdict"] == "insufficient_data" and small["window_open"]
    assert small["window_end"] == small["window_start"] < small["read_until"]
    _write(family, v1, 200, 18)
    assert _check(platform, monitor, family)["rows"] == 220


def test_a_version_trained_with_other_inputs_is_named_not_mixed_in(platform, monitor):
    family = _family("reshaped")
    v1 = _run(platform, family, synthetic.credit_risk_columns(2500, 1), "run-1")["register"]["version"]
    platform.registry.transition(family.name, v1, LIVE, "test", "first model")
    _write(family, v1, 300, 21)
    _check(platform, monitor, family)

    features = [f for f in family.features if f.name != "age"]
    changed = family.model_copy(update={"features": features})
    platform.registry.register_family(changed, actor="test", reason="age dropped")
    columns = synthetic.credit_risk_columns(2500, 2)
    columns.pop("age")
    v2 = _run(platform, changed, columns, "run-2")["register"]["version"]
    _write(family, v1, 120, 22)
    platform.registry.transition(family.name, v2, CANARY, "test", "canary")
    platform.registry.transition(family.name, v2, LIVE, "test", "without age")
    _write(changed, v2, 260, 23, declared=changed)
    report = _check(platform, monitor, family)
    assert report["rows_by_version"] == {str(v2): 260} and report["rows"] == 260
    (left,) = report["not_judged"]
    assert left["version"] == v1 and left["rows"] == 120 and "age" in left["reason"]
    assert "age" not in report["features"]


def test_an_unreadable_capture_object_is_named_and_the_rest_judged(platform, monitor):
    family = _family("corrupt")
    v1 = _run(platform, family, synthetic.credit_risk_columns(2500, 1), "run-1")["register"]["version"]
    platform.registry.transition(family.name, v1, LIVE, "test", "first model")
    _write(family, v1, 150, 31)
    bad = key_for(family.name, v1, int(time.time() * 1000), ARRIVAL_MARK + "garbage0000")
    boto3.client("s3").put_object(Bucket=BUCKET, Key=bad, Body=b"not a capture batch")
    time.sleep(0.005)
    _write(family, v1, 150, 32)
    report = _check(platform, monitor, family)
    assert report["verdict"] == "no_drift" and report["rows"] == 300
    assert report["unreadable_count"] == 1 and report["unreadable_objects"][0]["key"] == bad
    assert "MLCAP1" in report["unreadable_objects"][0]["error"]
    stored = platform.registry.drift_records(family.name)[0]["report"]
    assert stored["unreadable_objects"][0]["key"] == bad  # the record names it for operators and auditors

    _write(family, v1, 250, 33)
    later = _check(platform, monitor, family)
    assert later["rows"] == 250 and "unreadable_objects" not in later  # judged once, reported once


def test_the_newest_rows_are_kept_across_versions_above_the_cap(platform):
    family = synthetic.credit_risk_family(name="capped")
    since = time.time() - 1
    _write(family, 1, 50, 41)
    _write(family, 2, 30, 42)
    _write(family, 1, 20, 43)
    reader = CaptureReader(BUCKET)
    assert reader.versions(family.name) == [1, 2]
    window = reader.written(family.name, [1, 2], since, time.time(), max_rows=60)
    assert {v: len(c) for v, c in window.items()} == {1: 30, 2: 30}  # the oldest object's rows cut, not newer ones
    assert np.all(np.diff(window[1].at) >= 0)
    everything = reader.written(family.name, [1, 2], since, time.time())
    assert {v: len(c) for v, c in everything.items()} == {1: 70, 2: 30}


def test_a_check_that_raises_anything_is_recorded_and_the_other_families_still_checked(platform, monitor):
    """`drift check` and schedules naming several families (DriftMonitor.run) recorded only platform errors: any
    other exception crashed the invocation, unrecorded, and the families after it went unchecked."""
    broken, fine = _family("broken-one"), _family("fine-two")
    for family in (broken, fine):
        version = _run(platform, family, synthetic.credit_risk_columns(2500, 1), "run-1")["register"]["version"]
        platform.registry.transition(family.name, version, LIVE, "test", "first model")
        _write(family, version, 250, 51)
    real = monitor.check

    def check(record, run=None):
        if record.family.name == broken.name:
            raise KeyError("baseline_profile")
        return real(record, run)

    monitor.check = check
    results = {r["family"]: r for r in monitor.run([broken.name, fine.name])}
    assert results[broken.name]["verdict"] == "error" and "KeyError" in results[broken.name]["error"]
    assert results[fine.name]["verdict"] == "no_drift"
    (recorded,) = platform.registry.drift_records(broken.name)
    assert recorded["verdict"] == "error" and "baseline_profile" in recorded["report"]["error"]
