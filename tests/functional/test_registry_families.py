"""Families as data on moto (issue 12, part A): versioned declarations with who/when/why, retirement, deploy-time
seeds that never overwrite a run-time version, the sharded family index and its projection, TTL on run, drift and
upload items, and the direct lookups that replaced loops over a family's history."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from mlops.core.errors import ConcurrencyConflictError, RolloutInProgressError, UnknownFamilyError, ValidationError
from mlops.data.synthetic import credit_risk_family
from mlops.registry.store import (
    CREATED,
    FAMILY_ACTIVE,
    FAMILY_INDEX,
    FAMILY_INDEX_SHARDS,
    FAMILY_LISTING_ATTRIBUTES,
    FAMILY_RETIRED,
    REACTIVATED,
    REJECTED,
    RETIRED,
    ROLLED_BACK,
    RUN_TTL_DAYS,
    TTL_ATTRIBUTE,
    UNCHANGED,
    UPDATED,
    ModelRegistry,
    family_shard,
)

from .conftest import TABLE

FAMILY = "credit-risk"
ALICE = "arn:aws:sts::123456789012:assumed-role/DataScience/alice"


def _family(name: str = "loans", **changes):
    return credit_risk_family(name=name, **changes)


def _raw(key_sk: str, name: str = "loans") -> dict | None:
    return boto3.client("dynamodb").get_item(TableName=TABLE, Key={"PK": {"S": f"FAMILY#{name}"},
                                                                   "SK": {"S": key_sk}}).get("Item")


def test_register_family_versions_every_change_with_who_when_and_why(platform):
    reg = platform.registry
    created = reg.register_family(_family(), ALICE, "first declaration")
    assert created.change == CREATED and created.record.config_version == 1
    assert created.record.status == FAMILY_ACTIVE and created.record.changed_by == ALICE

    updated = reg.register_family(_family(capture_sample_rate=0.5), "arn:aws:iam::123456789012:user/bob",
                                  "capture more for the drift check")
    assert updated.change == UPDATED and updated.record.config_version == 2
    assert updated.record.family.capture_sample_rate == 0.5

    again = reg.register_family(_family(capture_sample_rate=0.5), ALICE, "re-applied the same file")
    assert again.change == UNCHANGED and again.record.config_version == 2

    history = reg.family_history("loans").items
    assert [(c.config_version, c.change) for c in history] == [(2, UPDATED), (1, CREATED)]
    assert history[0].actor == "arn:aws:iam::123456789012:user/bob"
    assert history[0].reason == "capture more for the drift check"
    assert history[1].actor == ALICE and history[1].at <= history[0].at
    # Each history item keeps the declaration as it was: version 1 still reads the old capture rate.
    assert reg.get_family_config("loans", 1).capture_sample_rate == credit_risk_family().capture_sample_rate
    assert reg.get_family_config("loans", 2).capture_sample_rate == 0.5
    with pytest.raises(UnknownFamilyError, match="no config version 3"):
        reg.get_family_config("loans", 3)


def test_register_family_keeps_the_rollout_pointers_and_lock(platform):
    reg = platform.registry
    reg.allocate_version(FAMILY, {"artifact_sha256": "0" * 64}, actor="t")
    assert reg.acquire_rollout(FAMILY, "exec-a", ttl_seconds=600)
    reg.register_family(credit_risk_family(capture_sample_rate=0.3), ALICE, "sample more")
    record = reg.get_family(FAMILY)
    assert record.latest_version == 1 and record.rollout_holder == "exec-a" and record.config_version == 2


def test_expected_version_refuses_a_change_based_on_a_stale_read(platform):
    reg = platform.registry
    reg.register_family(_family(), ALICE, "v1")
    with pytest.raises(ConcurrencyConflictError, match="config version 1, not 0"):
        reg.register_family(_family(), ALICE, "create again", expected_version=0)
    reg.register_family(_family(seed=7), ALICE, "v2", expected_version=1)
    with pytest.raises(ConcurrencyConflictError, match="config version 2, not 1"):
        reg.register_family(_family(seed=8), ALICE, "stale", expected_version=1)
    assert reg.get_family("loans").family.seed == 7


def test_concurrent_applies_each_get_their_own_config_version(platform):
    reg = platform.registry
    reg.register_family(_family(), ALICE, "v1")
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def apply(i: int) -> None:
        try:
            barrier.wait()
            reg.register_family(_family(seed=100 + i), f"user-{i}", f"seed {100 + i}")
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=apply, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    history = reg.family_history("loans", limit=50).items
    assert sorted(c.config_version for c in history) == list(range(1, 10))
    assert sorted(c.reason for c in history if c.config_version > 1) == sorted(f"seed {100 + i}" for i in range(8))
    newest = history[0]
    assert reg.get_family("loans").family.seed == newest.declaration.seed


def test_a_change_needs_a_reason_and_a_bounded_declaration(platform):
    with pytest.raises(ValidationError, match="needs a reason"):
        platform.registry.register_family(_family(), ALICE, "  ")
    huge = _family(features=[{"name": f"f{i}", "kind": "categorical",
                              "categories": [f"c{j}-{'x' * 40}" for j in range(200)]} for i in range(20)])
    with pytest.raises(ValidationError, match="bytes of JSON"):
        platform.registry.register_family(huge, ALICE, "too big")
    with pytest.raises(UnknownFamilyError):
        platform.registry.get_family(huge.name)


def test_retire_then_apply_reactivates_as_new_versions(platform):
    reg = platform.registry
    reg.register_family(_family(), ALICE, "v1")
    retired = reg.retire_family("loans", ALICE, "product discontinued")
    assert retired.change == RETIRED and retired.record.status == FAMILY_RETIRED
    assert retired.record.config_version == 2 and retired.record.change_reason == "product discontinued"
    assert reg.retire_family("loans", ALICE, "again").change == UNCHANGED
    back = reg.register_family(_family(), ALICE, "product relaunched")
    assert back.change == REACTIVATED and back.record.status == FAMILY_ACTIVE and back.record.config_version == 3
    assert [c.change for c in reg.family_history("loans").items] == [REACTIVATED, RETIRED, CREATED]
    with pytest.raises(UnknownFamilyError):
        reg.retire_family("nope", ALICE, "x")


def test_retire_is_refused_while_a_rollout_holds_the_family(platform):
    now = datetime(2025, 3, 1, tzinfo=UTC)
    clock = [now]
    reg = ModelRegistry(TABLE, clock=lambda: clock[0])
    assert reg.acquire_rollout(FAMILY, "exec-a", ttl_seconds=600)
    with pytest.raises(RolloutInProgressError, match="exec-a"):
        reg.retire_family(FAMILY, ALICE, "stop it")
    assert reg.get_family(FAMILY).status == FAMILY_ACTIVE
    clock[0] = now + timedelta(seconds=601)  # the lock expired: its holder is gone
    assert reg.retire_family(FAMILY, ALICE, "stop it").change == RETIRED


def test_seed_registers_version_1_once_and_never_overwrites_a_run_time_version(platform):
    reg = platform.registry
    seeded = reg.seed_family(_family(), "loans-scoring", "cloudformation:stack/x")
    assert seeded.change == CREATED and seeded.record.config_version == 1
    assert seeded.record.scoring_function == "loans-scoring"
    reg.register_family(_family(capture_sample_rate=0.9), ALICE, "changed at run time")
    # The next deploy seeds the cdk.json declaration again, with a new function name: only the name changes.
    again = reg.seed_family(_family(), "loans-scoring-2", "cloudformation:stack/x")
    assert again.change == UNCHANGED
    record = reg.get_family("loans")
    assert record.config_version == 2 and record.family.capture_sample_rate == 0.9
    assert record.scoring_function == "loans-scoring-2"
    assert len(reg.family_history("loans").items) == 2


def test_seed_turns_an_unversioned_family_of_an_earlier_deployment_into_version_1(platform):
    # What put_family wrote before versioning: no config_version, on the single GSI1 partition FAMILY.
    import orjson

    client = boto3.client("dynamodb")
    client.put_item(TableName=TABLE, Item={
        "PK": {"S": "FAMILY#legacy"}, "SK": {"S": "META"}, "family": {"S": "legacy"},
        "config_json": {"S": orjson.dumps(_family("legacy").model_dump(mode="json")).decode()},
        "scoring_function": {"S": "old-fn"}, "latest_version": {"N": "4"}, "live_version": {"N": "3"},
        "canary_version": {"N": "0"}, "canary_weight": {"N": "0"}, "updated_at": {"S": "2024-01-01T00:00:00.000000Z"},
        "GSI1PK": {"S": "FAMILY"}, "GSI1SK": {"S": "legacy"}})
    reg = platform.registry
    assert reg.get_family("legacy").config_version == 0
    seeded = reg.seed_family(_family("legacy"), "new-fn", "cloudformation:stack/x")
    assert seeded.change == CREATED and seeded.record.config_version == 1
    assert seeded.record.live_version == 3 and seeded.record.latest_version == 4  # the pointers survive
    item = _raw("META", "legacy")
    assert "GSI1PK" not in item and item["GSI2PK"]["S"] == f"FAMILY#{family_shard('legacy'):02d}"
    assert [f.name for f in reg.iter_families()] == ["credit-risk", "legacy"]


def test_family_index_spreads_families_over_shards_and_projects_only_listing_attributes(platform):
    reg = platform.registry
    for i in range(64):
        reg.register_family(_family(f"family-{i:03d}"), ALICE, "bulk")
    client = boto3.client("dynamodb")
    per_shard = {}
    for shard in range(FAMILY_INDEX_SHARDS):
        items = client.query(TableName=TABLE, IndexName=FAMILY_INDEX, KeyConditionExpression="GSI2PK = :p",
                             ExpressionAttributeValues={":p": {"S": f"FAMILY#{shard:02d}"}})["Items"]
        per_shard[shard] = len(items)
        for item in items:
            assert set(item) <= {"PK", "SK", "GSI2PK", "GSI2SK", *FAMILY_LISTING_ATTRIBUTES}
            assert "config_json" not in item
    assert sum(per_shard.values()) == 65
    assert max(per_shard.values()) < 65 // 2, f"one shard holds most families: {per_shard}"
    assert sum(1 for n in per_shard.values() if n) >= FAMILY_INDEX_SHARDS // 2


def test_listing_pages_merge_shards_in_name_order_and_filter_by_status(platform):
    reg = platform.registry
    names = [f"fam-{i:03d}" for i in range(120)]
    for name in names:
        reg.register_family(_family(name), ALICE, "bulk")
    for name in names[::10]:
        reg.retire_family(name, ALICE, "retired in bulk")
    pages, token = [], None
    while True:
        page = reg.list_families(limit=17, next_token=token)
        pages.append([f.name for f in page.items])
        token = page.next_token
        if not token:
            break
    listed = [n for page in pages for n in page]
    assert listed == sorted([FAMILY, *names])
    assert all(len(p) == 17 for p in pages[:-1])
    retired = [f.name for f in reg.list_families(limit=1000, status=FAMILY_RETIRED).items]
    assert retired == names[::10]
    summary = next(f for f in reg.list_families(limit=5).items if f.name == "fam-001")
    assert (summary.task, summary.algorithm, summary.features, summary.status, summary.config_version) == (
        "binary_classification", credit_risk_family().algorithm, len(credit_risk_family().features), "active", 1)
    with pytest.raises(ValidationError, match="not a token"):
        reg.list_families(next_token="bm90IGEgdG9rZW4=")
    with pytest.raises(ValidationError, match="status"):
        reg.list_families(status="gone")


@pytest.mark.slow
def test_listing_2000_families_registered_at_run_time_across_shards(platform):
    reg = platform.registry
    names = [f"model-{i:04d}" for i in range(2000)]
    for name in names:
        reg.register_family(_family(name), ALICE, "bulk registration")
    everything = [f.name for f in reg.iter_families()]
    assert everything == sorted([FAMILY, *names])
    listed, token, pages = [], None, 0
    while True:
        page = reg.list_families(limit=250, next_token=token)
        listed += [f.name for f in page.items]
        pages += 1
        token = page.next_token
        if not token:
            break
    assert listed == everything and pages == 9
    shards = Counter(family_shard(n) for n in everything)
    assert len(shards) == FAMILY_INDEX_SHARDS and max(shards.values()) < 2 * 2001 / FAMILY_INDEX_SHARDS


def test_run_drift_and_upload_items_expire_and_family_items_do_not(platform):
    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    reg = ModelRegistry(TABLE, clock=lambda: at)
    reg.start_run(FAMILY, "run-1", dataset={"key": "k"}, trigger={"source": "s3"})
    started = int(_raw("RUN#run-1", FAMILY)[TTL_ATTRIBUTE]["N"])
    assert started == int((at + timedelta(days=RUN_TTL_DAYS)).timestamp())
    later = at + timedelta(hours=5)
    ModelRegistry(TABLE, clock=lambda: later).record_run(FAMILY, "run-1", "promoted", step="Promote", reason="ok")
    assert int(_raw("RUN#run-1", FAMILY)[TTL_ATTRIBUTE]["N"]) == int((later + timedelta(days=RUN_TTL_DAYS)).timestamp())
    reg.record_drift(FAMILY, {"verdict": "stable", "report_key": "reports/drift/x.json"})
    reg.record_upload(FAMILY, "run-1", {"bucket": "b", "key": "datasets/credit-risk/a.csv", "version_id": "v1"})
    items = boto3.client("dynamodb").query(
        TableName=TABLE, KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": f"FAMILY#{FAMILY}"}}
    )["Items"]
    kinds = {i["SK"]["S"].split("#")[0]: TTL_ATTRIBUTE in i for i in items}
    assert kinds == {"META": False, "CONFIG": False, "RUN": True, "DRIFT": True, "UPLOAD": True}


def test_rejection_and_rollback_mark_their_data_set_unusable_in_the_same_transaction(platform):
    reg = platform.registry

    def version(key: str) -> int:
        lineage = {"artifact_sha256": "0" * 64, "dataset": {"bucket": "b", "key": key, "version_id": "v1"}}
        return reg.allocate_version(FAMILY, lineage, actor="t").version

    assert reg.dataset_unusable(FAMILY, "datasets/credit-risk/a.csv", "v1") is None
    rejected = version("datasets/credit-risk/a.csv")
    reg.transition(FAMILY, rejected, REJECTED, "t", "gate")
    marker = reg.dataset_unusable(FAMILY, "datasets/credit-risk/a.csv", "v1")
    assert marker["version"] == rejected and marker["status"] == REJECTED
    assert reg.dataset_unusable(FAMILY, "datasets/credit-risk/a.csv", "v2") is None
    first = version("datasets/credit-risk/b.csv")
    reg.transition(FAMILY, first, "live", "t", "first")
    canary = version("datasets/credit-risk/c.csv")
    reg.transition(FAMILY, canary, "canary", "t", "canary")
    reg.transition(FAMILY, canary, ROLLED_BACK, "t", "errors")
    assert reg.dataset_unusable(FAMILY, "datasets/credit-risk/c.csv", "v1")["status"] == ROLLED_BACK
    assert reg.dataset_unusable(FAMILY, "datasets/credit-risk/b.csv", "v1") is None


def test_capture_marks_and_drift_checks_tell_the_listing_which_families_are_idle(platform):
    """`last_capture_at` (written by capture writers) and `drift_checked_until` (written by drift checks) are
    only ever raised, travel in the family index, and decide FamilySummary.idle_since_drift_check."""
    reg = platform.registry
    reg.register_family(_family("quiet"), ALICE, "idle test")

    def summary():
        return next(s for s in reg.iter_families() if s.name == "quiet")

    assert summary().idle_since_drift_check is False  # never checked: its first check establishes the mark
    reg.set_drift_checked("quiet", 1_000.0)
    assert summary().drift_checked_until == 1_000.0 and summary().idle_since_drift_check  # no capture since
    assert reg.mark_captured("quiet", 1_200.5) is True
    assert summary().last_capture_at == 1_200.5 and not summary().idle_since_drift_check
    assert reg.mark_captured("quiet", 1_100.0) is False  # a sandbox writing late never lowers the mark
    assert summary().last_capture_at == 1_200.5
    reg.set_drift_checked("quiet", 1_300.0)
    reg.set_drift_checked("quiet", 1_250.0)  # nor does an older check's end
    assert summary().drift_checked_until == 1_300.0 and summary().idle_since_drift_check
    assert reg.mark_captured("no-such-family", 1.0) is False  # nothing created for an unknown name
    assert _raw("META", "no-such-family") is None


def test_a_capture_writer_marks_its_family_after_each_object_it_writes(platform):
    """The scoring functions' writers call mark_captured with the newest record's time once the object is in S3;
    a failing mark is counted and loses no capture."""
    from mlops.serving.capture import CaptureWriter

    from .conftest import BUCKET

    reg = platform.registry
    reg.register_family(_family("marked"), ALICE, "writer test")
    writer = CaptureWriter(BUCKET, "marked", 1, 1.0, frozenset(), flush_records=2,
                           on_written=lambda at: reg.mark_captured("marked", at))
    writer.record("r1", [{"age": 30}], [0], [[0.6, 0.4]])
    writer.record("r2", [{"age": 31}], [1], [[0.2, 0.8]])  # the second record flushes the batch
    assert writer.flush()
    newest = next(s for s in reg.iter_families() if s.name == "marked").last_capture_at
    assert newest is not None and abs(newest - datetime.now(UTC).timestamp()) < 60

    def broken(at: float) -> None:
        raise RuntimeError("throttled")

    failing = CaptureWriter(BUCKET, "marked", 1, 1.0, frozenset(), flush_records=1, on_written=broken)
    failing.record("r3", [{"age": 40}], [0], [[0.5, 0.5]])
    assert failing.flush() and failing.mark_failures == 1 and failing.failures == 0
    keys = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="captures/family=marked/")["Contents"]
    assert len(keys) == 2  # both objects written, the failed mark notwithstanding
