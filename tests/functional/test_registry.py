"""Registry on moto: atomic version allocation, enforced transitions, complete history, O(1) live reads."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from mlops.core.errors import IllegalTransitionError, UnknownFamilyError
from mlops.data.synthetic import credit_risk_family
from mlops.registry.store import CANARY, LIVE, REJECTED, RETIRED, ROLLED_BACK

FAMILY = "credit-risk"


def _lineage(tag: str) -> dict:
    return {"artifact_sha256": "0" * 64, "tag": tag}


def test_concurrent_allocation_from_20_threads_gives_distinct_consecutive_versions(platform):
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def register(i: int) -> None:
        try:
            barrier.wait()
            results.append(platform.registry.allocate_version(FAMILY, _lineage(str(i)), actor=f"t{i}").version)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == list(range(1, 21))
    assert platform.registry.get_family(FAMILY).latest_version == 20
    stored = platform.registry.list_versions(FAMILY, limit=100).items
    assert sorted(v.version for v in stored) == list(range(1, 21))
    assert sorted(v.lineage["tag"] for v in stored) == sorted(str(i) for i in range(20))


def test_allocation_with_same_run_id_returns_the_version_already_registered(platform):
    first = platform.registry.allocate_version(FAMILY, _lineage("a"), actor="x", run_id="exec-1")
    again = platform.registry.allocate_version(FAMILY, _lineage("a"), actor="x", run_id="exec-1")
    assert first.version == again.version == 1
    assert platform.registry.get_family(FAMILY).latest_version == 1


@pytest.mark.parametrize(("path", "illegal"), [
    ([REJECTED], LIVE),
    ([REJECTED], CANARY),
    ([CANARY, ROLLED_BACK], LIVE),
    ([CANARY], RETIRED),
    ([], RETIRED),
    ([], ROLLED_BACK),
])
def test_illegal_transition_raises_and_leaves_status_unchanged(platform, path, illegal):
    platform.registry.allocate_version(FAMILY, _lineage("x"), actor="t")
    for status in path:
        platform.registry.transition(FAMILY, 1, status, "t", "setup")
    before = platform.registry.get_version(FAMILY, 1).status
    with pytest.raises(IllegalTransitionError):
        platform.registry.transition(FAMILY, 1, illegal, "t", "should fail")
    assert platform.registry.get_version(FAMILY, 1).status == before


def test_candidate_cannot_skip_canary_when_a_model_is_live(platform):
    reg = platform.registry
    reg.allocate_version(FAMILY, _lineage("1"), actor="t")
    reg.transition(FAMILY, 1, LIVE, "t", "first model")
    reg.allocate_version(FAMILY, _lineage("2"), actor="t")
    with pytest.raises(IllegalTransitionError, match="must pass a canary"):
        reg.transition(FAMILY, 2, LIVE, "t", "skip canary")


def test_promotion_retires_previous_and_history_answers_what_was_live_when(platform):
    reg = platform.registry
    reg.allocate_version(FAMILY, _lineage("1"), actor="pipeline")
    reg.transition(FAMILY, 1, LIVE, "pipeline", "first model")
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    reg.allocate_version(FAMILY, _lineage("2"), actor="pipeline")
    reg.transition(FAMILY, 2, CANARY, "pipeline", "canary 10%")
    reg.set_canary_weight(FAMILY, 2, 50)
    assert reg.get_family(FAMILY).canary_weight == 50
    reg.transition(FAMILY, 2, LIVE, "pipeline", "canary healthy")

    family = reg.get_family(FAMILY)
    assert (family.live_version, family.canary_version, family.canary_weight) == (2, 0, 0)
    assert reg.get_version(FAMILY, 1).status == RETIRED
    assert reg.live_at(FAMILY, between) == 1
    assert reg.live_at(FAMILY, datetime.now(UTC)) == 2
    assert reg.live_at(FAMILY, datetime(2000, 1, 1, tzinfo=UTC)) == 0

    # Events sort by time, then version: the promotion's two events share a timestamp, v1's comes first.
    changes = [(e.version, e.from_status, e.to_status) for e in reg.history(FAMILY).items]
    assert changes == [
        (1, "", "candidate"), (1, "candidate", "live"), (2, "", "candidate"), (2, "candidate", "canary"),
        (1, "live", "retired"), (2, "canary", "live"),
    ]
    assert all(e.actor == "pipeline" and e.reason for e in reg.history(FAMILY).items)


def test_manual_restore_brings_back_the_retired_version(platform):
    reg = platform.registry
    for v in (1, 2):
        reg.allocate_version(FAMILY, _lineage(str(v)), actor="t")
    reg.transition(FAMILY, 1, LIVE, "t", "first")
    reg.transition(FAMILY, 2, CANARY, "t", "canary")
    reg.transition(FAMILY, 2, LIVE, "t", "promote")
    assert reg.restore_previous(FAMILY, "operator", "bad complaints") == (2, 1)
    assert reg.get_family(FAMILY).live_version == 1
    assert reg.get_version(FAMILY, 2).status == ROLLED_BACK


def test_only_one_rollout_lock_holder_at_a_time(platform):
    reg = platform.registry
    assert reg.acquire_rollout(FAMILY, "exec-a", ttl_seconds=600)
    assert not reg.acquire_rollout(FAMILY, "exec-b", ttl_seconds=600)
    assert reg.acquire_rollout(FAMILY, "exec-a", ttl_seconds=600)  # re-entrant for the holder's retries
    assert reg.acquire_rollout(FAMILY, "exec-b", 600, is_holder_alive=lambda holder: holder != "exec-a")
    assert not reg.release_rollout(FAMILY, "exec-a")
    assert reg.release_rollout(FAMILY, "exec-b")
    assert reg.acquire_rollout(FAMILY, "exec-c", ttl_seconds=600)


def test_listings_paginate_families_and_versions(platform):
    reg = platform.registry
    for i in range(5):
        reg.put_family(credit_risk_family(name=f"family-{i}"))
    for _ in range(7):
        reg.allocate_version(FAMILY, _lineage("x"), actor="t")
    names, token = [], None
    while True:
        page = reg.list_families(limit=2, next_token=token)
        names += [f.name for f in page.items]
        token = page.next_token
        if not token:
            break
    assert sorted(names) == sorted([FAMILY] + [f"family-{i}" for i in range(5)])
    page = reg.list_versions(FAMILY, limit=3)
    assert [v.version for v in page.items] == [7, 6, 5]
    page = reg.list_versions(FAMILY, limit=3, next_token=page.next_token)
    assert [v.version for v in page.items] == [4, 3, 2]


def test_unknown_family_is_a_named_error(platform):
    with pytest.raises(UnknownFamilyError, match="no-such-family"):
        platform.registry.get_family("no-such-family")


def test_failed_transaction_leaves_every_item_as_it_was_without_copying_the_table(platform, monkeypatch):
    """The local shim snapshots only the items a transaction names: a transaction whose last condition fails
    undoes the update, the overwrite and the creation moto applied before it, and no table is deep-copied."""
    import copy as copy_module

    import boto3
    from moto.dynamodb.models.table import Table

    from mlops_local import moto_shims

    from .conftest import TABLE

    table_copies = []
    real_deepcopy = copy_module.deepcopy

    def counting(value, memo=None):
        if isinstance(value, Table):
            table_copies.append(value.name)
        return real_deepcopy(value, memo)

    monkeypatch.setattr(moto_shims.copy, "deepcopy", counting)
    ddb = boto3.client("dynamodb")
    ddb.put_item(TableName=TABLE, Item={"PK": {"S": "T"}, "SK": {"S": "a"}, "n": {"N": "1"}})
    ddb.put_item(TableName=TABLE, Item={"PK": {"S": "T"}, "SK": {"S": "b"}, "n": {"N": "1"}})
    ddb.put_item(TableName=TABLE, Item={"PK": {"S": "T"}, "SK": {"S": "z"}})
    before = ddb.scan(TableName=TABLE)["Items"]
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=[
            {"Update": {"TableName": TABLE, "Key": {"PK": {"S": "T"}, "SK": {"S": "a"}},
                        "UpdateExpression": "SET n = :v", "ExpressionAttributeValues": {":v": {"N": "2"}}}},
            {"Put": {"TableName": TABLE, "Item": {"PK": {"S": "T"}, "SK": {"S": "b"}, "n": {"N": "9"}}}},
            {"Put": {"TableName": TABLE, "Item": {"PK": {"S": "NEW"}, "SK": {"S": "c"}}}},
            {"ConditionCheck": {"TableName": TABLE, "Key": {"PK": {"S": "T"}, "SK": {"S": "z"}},
                                "ConditionExpression": "attribute_not_exists(PK)"}},
        ])
    after = ddb.scan(TableName=TABLE)["Items"]
    key = lambda item: (item["PK"]["S"], item["SK"]["S"])  # noqa: E731
    assert sorted(after, key=key) == sorted(before, key=key)
    ddb.transact_write_items(TransactItems=[
        {"Update": {"TableName": TABLE, "Key": {"PK": {"S": "T"}, "SK": {"S": "a"}},
                    "UpdateExpression": "SET n = :v", "ExpressionAttributeValues": {":v": {"N": "2"}}}},
        {"Put": {"TableName": TABLE, "Item": {"PK": {"S": "NEW"}, "SK": {"S": "c"}}}},
    ])
    assert ddb.get_item(TableName=TABLE, Key={"PK": {"S": "T"}, "SK": {"S": "a"}})["Item"]["n"] == {"N": "2"}
    assert "Item" in ddb.get_item(TableName=TABLE, Key={"PK": {"S": "NEW"}, "SK": {"S": "c"}})
    platform.registry.allocate_version(FAMILY, _lineage("x"), actor="t", run_id="run-1")
    assert table_copies == []
