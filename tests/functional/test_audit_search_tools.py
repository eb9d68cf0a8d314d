"""The decision search uses the key layout (hour partitions nearest to `at`, newest first otherwise), reports its
progress and what it scanned; request ids in uppercase UUID form are found; an unknown family is said so."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime

import boto3
import pytest
from mlops.core.errors import DecisionNotFoundError, UnknownFamilyError, ValidationError
from mlops.serving.audit import Auditor
from mlops.serving.decisions import DecisionStore, check_request_id, key_for

from .conftest import BUCKET

FAMILY = "credit-risk"
DAY = datetime(2025, 3, 14, tzinfo=UTC)


def _put_batches(hour: int, objects: int, day: datetime = DAY) -> list[list[str]]:
    """`objects` decision objects in `hour` of `day`, 3 request ids each; returns the ids per object."""
    s3 = boto3.client("s3")
    written = []
    for i in range(objects):
        first_ms = int(day.replace(hour=hour, minute=i).timestamp() * 1000)
        ids = [str(uuid.uuid4()) for _ in range(3)]
        lines = [json.dumps({"request_id": r, "at": first_ms / 1000, "family": FAMILY, "version": 1}) for r in ids]
        s3.put_object(Bucket=BUCKET, Key=key_for(FAMILY, first_ms, first_ms + 500, ids),
                      Body=gzip.compress("\n".join(lines).encode()))
        written.append(ids)
    return written


@pytest.fixture()
def day_of_decisions(platform):
    """Hour 03 and hour 15 of one day, 10 objects each, and 4 objects the day before."""
    _put_batches(3, 10, DAY.replace(day=13))
    return {"early": _put_batches(3, 10), "late": _put_batches(15, 10)}


def test_search_near_a_time_lists_only_the_hour_that_holds_the_request(day_of_decisions):
    store = DecisionStore(BUCKET)
    seen = []
    target = day_of_decisions["late"][4][1]
    found = store.find(target, [FAMILY], DAY.replace(hour=15, minute=20), progress=seen.append)
    assert found.line["request_id"] == target
    assert store.listed == 10 and store.partitions == 1 and store.read >= 1
    assert [(p.family, p.date, p.hour, p.listed) for p in seen] == [(FAMILY, "2025-03-14", "15", 10)]


def test_search_without_a_time_goes_newest_hour_first_and_reports_each_partition(day_of_decisions):
    store = DecisionStore(BUCKET)
    seen = []
    target = day_of_decisions["early"][0][0]
    found = store.find(target, [FAMILY], progress=seen.append)
    assert found.line["request_id"] == target
    assert [p.hour for p in seen] == ["15", "03"] and store.listed == 20 and store.partitions == 2
    assert [p.partitions_done for p in seen] == [1, 2] and seen[-1].partitions >= 2


def test_an_unknown_id_says_how_many_objects_were_scanned_and_read(day_of_decisions):
    store = DecisionStore(BUCKET)
    with pytest.raises(DecisionNotFoundError) as raised:
        store.find(str(uuid.uuid4()), [FAMILY])
    assert "30 object(s) scanned by key" in raised.value.message and store.partitions == 3


def test_an_uppercase_uuid_is_the_lowercase_id_the_platform_wrote(day_of_decisions):
    target = day_of_decisions["late"][2][0]
    assert check_request_id(target.upper()) == target
    assert DecisionStore(BUCKET).find(target.upper(), [FAMILY]).line["request_id"] == target
    assert check_request_id(" Route-1 ") == "Route-1", "ids that are not UUIDs are kept as written"
    with pytest.raises(ValidationError):
        check_request_id("a/b")


def test_audit_of_an_unknown_family_says_the_family_is_not_registered(platform, day_of_decisions):
    auditor = Auditor(BUCKET, platform.registry)
    with pytest.raises(UnknownFamilyError) as raised:
        auditor.audit(day_of_decisions["late"][0][0], "nope")
    assert "model family 'nope' is not registered" in raised.value.message
