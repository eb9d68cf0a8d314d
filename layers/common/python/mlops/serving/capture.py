"""Sampled capture of scoring inputs and outputs to S3, for drift checks, canary checks and audit.

The hot path only appends a reference to an in-memory buffer (well under a microsecond when nothing is sampled,
a few when a record is); serialising and the S3 put happen on a background thread. Records are sampled one by one
(`sampled_indices`): each record of a batch request independently at the capture sample rate, deterministically
from the request id and its index, so a few large batches cannot fill a drift window with clustered rows.
Objects are keyed `captures/family=<f>/version=<v>/date=<YYYY-MM-DD>/hour=<HH>/<epoch_ms>-<id>.cap`, so a time
window is a key range and the layout works as Hive partitions; each object is one batch in the columnar format of
`mlops.serving.capture_columns` (objects of the older `.jsonl` format are still read).

Trade-off: records buffered in a sandbox that Lambda reclaims before the next flush are lost. Captures are a
sample, so this is accepted; `flush_records` (default `mlops.core.settings.CAPTURE_FLUSH_RECORDS`) and
`max_age_seconds` bound the exposure.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlops.core import aws
from mlops.core.settings import CAPTURE_FLUSH_RECORDS, CAPTURE_MAX_AGE_SECONDS
from mlops.serving.capture_columns import (
    COLUMNAR_SUFFIX,
    JSONL_SUFFIX,
    CapturedColumns,
    decode,
    decode_jsonl,
    encode,
    read_window,
)

CAPTURE_PREFIX = "captures/"
WRITER_IDLE_SECONDS = 30.0
_writers: weakref.WeakSet[CaptureWriter] = weakref.WeakSet()


def version_prefix(family: str, version: int) -> str:
    return f"{CAPTURE_PREFIX}family={family}/version={version}/"


ARRIVAL_MARK = "w"  # the id of an object keyed by its write time starts with it (hex ids never do)


def key_for(family: str, version: int, epoch_ms: int, suffix: str, extension: str = COLUMNAR_SUFFIX) -> str:
    """The key of a batch at `epoch_ms`: the writers use the time they write it (and an id starting with
    ARRIVAL_MARK); objects written before that were keyed by their first record's time."""
    return f"{start_after_key(family, version, epoch_ms)}-{suffix}{extension}"


def arrival_keyed(key: str) -> bool:
    """Whether the object's key time is when it was written (the writers now), not its first record's time."""
    return key.rsplit("/", 1)[-1][14:15] == ARRIVAL_MARK


def key_seconds(key: str) -> float:
    """The time in a capture object's key, epoch seconds."""
    return int(key.rsplit("/", 1)[-1][:13]) / 1000


def start_after_key(family: str, version: int, epoch_ms: int) -> str:
    """A key that sorts just before every capture object written at or after `epoch_ms` (and after every one
    written before it)."""
    at = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return f"{version_prefix(family, version)}date={at:%Y-%m-%d}/hour={at:%H}/{epoch_ms:013d}"


_MASK = (1 << 64) - 1


def sampled_indices(request_id: str, count: int, rate: float) -> list[int]:
    """Which of a request's `count` records are captured at `rate`: each independently with probability `rate`,
    decided by a uniform number from the request id and the record's index (BLAKE2b of the id as the seed, then
    SplitMix64 per index; Steele, Lea & Flood 2014), so a retried request samples the same records. All records
    at rate >= 1, none at rate <= 0."""
    if rate <= 0.0 or count <= 0:
        return []
    if rate >= 1.0:
        return list(range(count))
    seed = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "little")
    cut = int(rate * 2.0 ** 64)
    chosen = []
    for i in range(count):
        z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        if (z ^ (z >> 31)) < cut:
            chosen.append(i)
    return chosen


class CaptureWriter:
    """Buffers sampled requests and writes them to S3 in batches from a daemon thread. After each object is
    written, `on_written(newest)` is called with the newest record's time (epoch seconds): the scoring functions
    pass `ModelRegistry.mark_captured`, which tells the drift fan-out the family has new traffic. A failure there
    is counted in `mark_failures` (the capture itself is in S3; the family is then checked at the next mark)."""

    def __init__(self, bucket: str, family: str, version: int, sample_rate: float, never_capture: frozenset[str],
                 flush_records: int = CAPTURE_FLUSH_RECORDS, max_age_seconds: float = CAPTURE_MAX_AGE_SECONDS,
                 on_written: Callable[[float], Any] | None = None) -> None:
        self.bucket, self.family, self.version = bucket, family, version
        self.sample_rate = sample_rate
        self.never_capture = never_capture
        self.flush_records = flush_records
        self.max_age_seconds = max_age_seconds
        self._buffer: list[tuple[float, str, list, list, list, list[int]]] = []
        self._first_at = 0.0
        self._buffered_records = 0
        self._queue: queue.Queue[list] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._idle = threading.Condition()
        self.failures = 0
        self.on_written = on_written
        self.mark_failures = 0
        _writers.add(self)

    def record(self, request_id: str, instances: list, labels: list, probabilities: list) -> list[int]:
        """Hot path: sample each record (`sampled_indices`), then keep references only. Returns the indices of
        the captured records (empty: none)."""
        chosen = sampled_indices(request_id, len(instances), self.sample_rate)
        if not chosen:
            return chosen
        now = time.time()
        if not self._buffer:
            self._first_at = now
            self._buffered_records = 0
        self._buffer.append((now, request_id, instances, labels, probabilities, chosen))
        self._buffered_records += len(chosen)
        if self._buffered_records >= self.flush_records or now - self._first_at >= self.max_age_seconds:
            self._hand_off()
        return chosen

    def _hand_off(self) -> None:
        batch, self._buffer = self._buffer, []
        with self._idle:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
                self._thread.start()
        self._queue.put(batch)

    def close(self) -> None:
        """The model is no longer served here (the shared tier's cache evicted it): hand what is buffered to the
        writer thread, which writes it and ends."""
        if self._buffer:
            self._hand_off()

    def flush(self, timeout: float = 10.0) -> bool:
        """Write what is buffered and wait until every batch is in S3 (tests, shutdown, local runs)."""
        if self._buffer:
            self._hand_off()
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _run(self) -> None:
        """The writer: ends after WRITER_IDLE_SECONDS without work (the shared tier serves many models per
        sandbox; only those with recent traffic keep a thread); `_hand_off` starts a new one."""
        while True:
            try:
                batch = self._queue.get(timeout=WRITER_IDLE_SECONDS)
            except queue.Empty:
                with self._idle:
                    if not self._pending:
                        self._thread = None
                        return
                continue
            try:
                self._write(batch)
            except Exception:
                self.failures += 1
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _write(self, batch: list[tuple[float, str, list, list, list, list[int]]]) -> None:
        rows = [(at, request_id, i, instances[i], labels[i], probabilities[i])
                for at, request_id, instances, labels, probabilities, chosen in batch
                for i in chosen]
        body = encode(CapturedColumns.from_rows(rows, self.never_capture))
        # Keyed by the time it is written, not its first record's: a drift check's window is the objects written
        # in it (CaptureReader.columns(arrived=True)), so records buffered across a check are judged by the next.
        written_ms = int(time.time() * 1000)
        key = key_for(self.family, self.version, written_ms, ARRIVAL_MARK + uuid.uuid4().hex[:12])
        aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/octet-stream")
        if self.on_written is not None:
            try:
                self.on_written(written_ms / 1000)
            except Exception:  # noqa: BLE001 - the object is written; the mark only saves idle checks
                self.mark_failures += 1


def flush_all(timeout: float = 10.0) -> bool:
    """Flush every live writer in this process (local runtime and tests)."""
    return all(w.flush(timeout) for w in list(_writers))


@dataclass(frozen=True)
class CapturedRecord:
    """One scored record as captured: `inputs` as the client sent them (null for a missing value, the raw text
    of an unknown category), `label` the predicted class index (0 negative, 1 positive; the response carried the
    original label), `probabilities` in class-index order (the last one is the positive class's). A regression's
    record holds the predicted value in `label` and no probabilities (mlops.stats.tasks.captured_predictions)."""

    at: float
    request_id: str
    inputs: dict[str, Any]
    label: int
    probabilities: list[float]


class CaptureReader:
    """Reads captures of one model version in a time window, by key range (no full listing)."""

    # A batch that started before `since` may hold records after it: listing starts one flush window earlier.
    LOOKBACK_SECONDS = 120

    def __init__(self, bucket: str, workers: int = 16) -> None:
        self.bucket = bucket
        self.workers = workers
        self.objects_read = 0

    def keys(self, family: str, version: int, since: float, until: float | None = None) -> list[str]:
        """The capture objects that may hold records in [since, until], oldest first (one listing of the key
        range; objects begun after `until` are not listed)."""
        s3 = aws.client("s3")
        start = start_after_key(family, version, max(0, int((since - self.LOOKBACK_SECONDS) * 1000)))
        stop = start_after_key(family, version, int(until * 1000) + 1) if until is not None else None
        keys: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=version_prefix(family, version), StartAfter=start):
            for obj in page.get("Contents", []):
                if stop is not None and obj["Key"] >= stop:
                    return keys
                if obj["Key"].endswith((COLUMNAR_SUFFIX, JSONL_SUFFIX)):
                    keys.append(obj["Key"])
        return keys

    def _fetch(self, key: str) -> bytes:
        return aws.client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def columns(self, family: str, version: int, since: float, until: float | None = None,
                max_rows: int | None = None, request_ids: bool = True, arrived: bool = False,
                floor: float | None = None) -> CapturedColumns:
        """Every captured record in [since, until] as columns, oldest first; above `max_rows`, the NEWEST
        `max_rows` (objects are read newest first, in parallel, and reading stops there). `request_ids=False`:
        without them (`read_window`).

        `arrived=True` (drift checks): the window is the objects WRITTEN in (since, until], all their records at
        or after `floor` (the version's start), whenever they were captured. A record a sandbox still buffered
        when one check ran is then judged by the next one instead of falling between two windows. Objects of the
        older keying (first record's time) keep the record-time window [since, until]."""
        keys = self.keys(family, version, since, until)
        bounds = None
        if arrived:
            high = until if until is not None else float("inf")
            keys = [k for k in keys if not arrival_keyed(k) or since < key_seconds(k) <= high]
            low = floor if floor is not None else float("-inf")
            bounds = lambda key: (low, None) if arrival_keyed(key) else (since, until)  # noqa: E731
        window, read = read_window(keys, self._fetch, since, until, max_rows, self.workers,
                                   request_ids=request_ids, bounds=bounds)
        self.objects_read += read
        return window

    def records(self, family: str, version: int, since: float, until: float | None = None,
                limit: int | None = None) -> Iterator[CapturedRecord]:
        """The captured records in [since, until], oldest first, at most `limit` (the oldest ones)."""
        count = 0
        for key in self.keys(family, version, since, until):
            body = self._fetch(key)
            part = decode(body) if key.endswith(COLUMNAR_SUFFIX) else decode_jsonl(body)
            keep = part.at >= since
            if until is not None:
                keep &= part.at <= until
            for record in part.take(keep).records():
                yield record
                count += 1
                if limit is not None and count >= limit:
                    return
