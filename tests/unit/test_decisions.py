"""Decision records (mlops.serving.decisions): the Bloom filter in the object key, the key layout, what a record keeps
and leaves out, batching, failed writes kept and retried, concurrent writers, and the shutdown flush."""

from __future__ import annotations

import gzip
import random
import threading
import uuid
from typing import Any

import orjson
import pytest
from mlops.serving import decisions
from mlops.serving.decisions import BatchKey, DecisionLog, bloom_filter, bloom_may_contain, key_for


def _ids(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


class Sink:
    """Stands in for S3: keeps every object written, or fails the first `failures` writes."""

    def __init__(self, failures: int = 0) -> None:
        self.objects: list[tuple[str, bytes]] = []
        self.failures = failures
        self.lock = threading.Lock()

    def __call__(self, key: str, body: bytes) -> None:
        with self.lock:
            if self.failures > 0:
                self.failures -= 1
                raise ConnectionError("S3 is unreachable")
            self.objects.append((key, body))

    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for _, body in self.objects for line in gzip.decompress(body).splitlines()]


def _log(sink: Sink, **overrides: Any) -> DecisionLog:
    options: dict[str, Any] = {"function_version": "12", "model_sha256": "b" * 64, "classes": ["good", "bad"],
                               "threshold": 0.35, "put": sink, **overrides}
    return DecisionLog("bucket", "credit-risk", 3, **options)


# ---- the Bloom filter and the key --------------------------------------------------------------------------------

def test_bloom_filter_has_no_false_negatives_and_about_one_percent_false_positives():
    members = _ids(decisions.MAX_BATCH, 1)
    encoded = bloom_filter(members)
    assert all(bloom_may_contain(encoded, m) for m in members)
    others = _ids(50_000, 2)
    rate = sum(bloom_may_contain(encoded, o) for o in others) / len(others)
    assert 0.005 < rate < 0.02, rate  # 1% by design (9.6 bits per id, 7 hashes)


def test_a_one_id_filter_still_separates_ids():
    encoded = bloom_filter(["only-one"])
    assert bloom_may_contain(encoded, "only-one")
    assert sum(bloom_may_contain(encoded, o) for o in _ids(2000, 3)) < 2000 * 0.3


def test_malformed_filter_reads_the_object_rather_than_skip_it():
    assert bloom_may_contain("", "x") and bloom_may_contain("!!", "x")


def test_key_encodes_family_time_and_filter_and_stays_under_s3s_limit():
    ids = _ids(decisions.MAX_BATCH, 4)
    family = "f" + "x" * 62
    key = key_for(family, 1_741_944_600_123, 1_741_944_659_999, ids)
    assert len(key.encode()) < 1024
    assert key.startswith(f"decisions/family={family}/date=2025-03-14/hour=09/1741944600123-1741944659999-")
    parsed = BatchKey.parse(key)
    assert (parsed.family, parsed.first_ms, parsed.last_ms) == (family, 1_741_944_600_123, 1_741_944_659_999)
    assert all(parsed.may_hold(i) for i in ids)
    assert BatchKey.parse("decisions/family=x/date=2025-03-14/hour=09/readme.txt") is None
    assert BatchKey.parse("captures/family=x/version=1/date=2025-03-14/hour=09/1-a.jsonl") is None


# ---- what a decision record holds ------------------------------------------------------------------------------

def test_record_names_prediction_and_probability_as_answered_and_keeps_inputs_only_when_captured():
    sink = Sink()
    log = _log(sink)
    log.record("r-1", [1, 0], [[0.3, 0.7], [0.9, 0.1]])
    log.record("r-2", [0], [[0.8, 0.2]], inputs=[{"age": 30, "income": 1000}])
    assert log.flush(5)
    first, second = sink.lines()
    assert first["predictions"] == ["bad", "good"] and first["probabilities"] == [0.7, 0.1]
    assert first["inputs_captured"] is False and "inputs" not in first
    assert (first["family"], first["version"], first["function_version"], first["threshold"], first["records"]) == (
        "credit-risk", 3, "12", 0.35, 2)
    assert first["model_sha256"] == "b" * 64 and first["at"] <= second["at"]
    assert second["inputs"] == [{"age": 30, "income": 1000}] and second["inputs_captured"] is True


def test_never_captured_fields_are_left_out_of_inputs_and_of_reason_values():
    sink = Sink()
    log = _log(sink, never_capture=frozenset({"income"}))
    explanation = {"output": "log_odds", "base_value": -1.0, "contributions": {"income": 0.5, "age": 0.1},
                   "reasons": [{"feature": "income", "value": 12000, "contribution": 0.5},
                               {"feature": "age", "value": 30, "contribution": 0.1}]}
    log.record("r-1", [1], [[0.4, 0.6]], inputs=[{"age": 30, "income": 12000}], explanations=[explanation])
    assert log.flush(5)
    (line,) = sink.lines()
    assert line["inputs"] == [{"age": 30}] and line["never_captured"] == ["income"]
    assert line["explanations"] == [{"output": "log_odds", "base_value": -1.0, "reasons": [
        {"feature": "income", "contribution": 0.5}, {"feature": "age", "value": 30, "contribution": 0.1}]}]
    assert b"12000" not in gzip.decompress(sink.objects[0][1])


# ---- batching and durability -------------------------------------------------------------------------------------

def test_batches_are_written_at_the_record_limit_and_at_the_age_limit():
    sink = Sink()
    log = _log(sink, flush_records=3, max_age_seconds=3600)
    for i in range(7):
        log.record(f"r-{i}", [0], [[0.9, 0.1]])
    assert log.flush(5)
    sizes = [len(gzip.decompress(body).splitlines()) for _, body in sink.objects]
    assert sizes == [3, 3, 1]
    aged = Sink()
    old = _log(aged, flush_records=100, max_age_seconds=0.0)
    old.record("a", [0], [[0.9, 0.1]])
    old.record("b", [0], [[0.9, 0.1]])
    assert old.flush(5)
    assert [len(gzip.decompress(b).splitlines()) for _, b in aged.objects] == [1, 1]


def test_failed_writes_are_kept_and_written_in_order_with_the_next_batch():
    sink = Sink(failures=1)
    log = _log(sink, flush_records=100)
    for i in range(2):
        log.record(f"r-{i}", [0], [[0.9, 0.1]])
    assert not log.flush(5)  # the write failed: the records are held, and flush says so
    assert log.failures == 1 and not sink.objects
    log.record("r-2", [0], [[0.9, 0.1]])
    assert log.flush(5)
    assert [line["request_id"] for line in sink.lines()] == ["r-0", "r-1", "r-2"]
    assert len(sink.objects) == 2 and log.written == 3 and log.dropped == 0


def test_batches_beyond_the_held_limit_are_dropped_oldest_first_and_counted(monkeypatch):
    monkeypatch.setattr(decisions, "MAX_HELD", 3)
    sink = Sink(failures=10)
    log = _log(sink, flush_records=2)
    for i in range(6):
        log.record(f"r-{i}", [0], [[0.9, 0.1]])
    log.flush(5)
    assert log.dropped == 4  # two batches of two: at most 3 decisions are held
    sink.failures = 0
    assert log.flush(5)
    assert [line["request_id"] for line in sink.lines()] == ["r-4", "r-5"]


def test_concurrent_requests_each_leave_exactly_one_record():
    sink = Sink()
    log = _log(sink, flush_records=7)

    def score(worker: int) -> None:
        for i in range(500):
            log.record(f"w{worker}-{i}", [0], [[0.9, 0.1]])

    threads = [threading.Thread(target=score, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.flush(10)
    ids = [line["request_id"] for line in sink.lines()]
    assert len(ids) == 2000 and len(set(ids)) == 2000


def test_shutdown_flushes_every_log_within_the_budget_and_exits(monkeypatch):
    # Only this test's log: logs other tests left in this process (their writes refused) would spend the budget.
    monkeypatch.setattr(decisions, "_writers", set())
    sink = Sink()
    log = _log(sink, flush_records=100)
    log.record("last-before-reclaim", [1], [[0.2, 0.8]])
    exits = []
    monkeypatch.setattr(decisions.sys, "exit", exits.append)
    decisions.on_shutdown()
    assert exits == [0] and [line["request_id"] for line in sink.lines()] == ["last-before-reclaim"]


def test_outside_lambda_no_extension_is_registered():
    assert decisions.flush_on_shutdown(None) is False and decisions.flush_on_shutdown("") is False


@pytest.mark.parametrize("bad", ["", "a" * 129, "../../etc", "id with space", "x;y"])
def test_malformed_request_ids_are_refused_before_any_listing(bad):
    from mlops.core.errors import ValidationError

    with pytest.raises(ValidationError, match="is not a request id"):
        decisions.check_request_id(bad)
