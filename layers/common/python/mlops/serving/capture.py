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

import numpy as np

from mlops.core import aws
from mlops.core.settings import CAPTURE_FLUSH_RECORDS, CAPTURE_MAX_AGE_SECONDS
from mlops.serving.capture_columns import (
    COLUMNAR_SUFFIX,
    JSONL_SUFFIX,
    CapturedColumns,
    concat,
    decode,
    decode_jsonl,
    encode,
    read_parts,
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
        # in it (CaptureReader.written), so records buffered across a check are judged by the next.
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
                max_rows: int | None = None, request_ids: bool = True) -> CapturedColumns:
        """Every captured record of one version in [since, until] by record time, as columns, oldest first;
        above `max_rows`, the NEWEST `max_rows` (objects are read newest first, in parallel, and reading stops
        there). `request_ids=False`: without them (`read_window`). Canary checks: one version's records."""
        keys = self.keys(family, version, since, until)
        window, read = read_window(keys, self._fetch, since, until, max_rows, self.workers, request_ids=request_ids)
        self.objects_read += read
        return window

    def versions(self, family: str) -> list[int]:
        """The model versions that have captures (one listing of the family's version prefixes), ascending."""
        s3 = aws.client("s3")
        found: list[int] = []
        for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{CAPTURE_PREFIX}family={family}/", Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                tail = common["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                if tail.startswith("version=") and tail[8:].isdigit():
                    found.append(int(tail[8:]))
        return sorted(found)

    def written(self, family: str, versions: list[int], since: float, until: float,
                max_rows: int | None = None, request_ids: bool = True,
                unreadable: list[dict[str, str]] | None = None) -> dict[int, CapturedColumns]:
        """The records of the capture objects WRITTEN in (since, until] (epoch seconds), of each of `versions`,
        whenever each record was captured: version -> columns (oldest first; versions without rows left out).
        Drift checks: consecutive windows then judge every written record exactly once, including records a
        sandbox still held when one check ran, and whichever version served them. Above `max_rows` in all, the
        NEWEST `max_rows` by capture time (objects of every version read newest first, in parallel, reading
        stopping there). Objects of the older keying (by their first record's time, before writers keyed them by
        write time) keep the record-time window [since, until]. Objects that cannot be decoded are skipped and
        appended to `unreadable` (`read_parts`)."""
        keys: list[tuple[float, str, int]] = []
        for version in versions:
            for key in self.keys(family, version, since, until):
                if arrival_keyed(key) and not since < key_seconds(key) <= until:
                    continue
                keys.append((key_seconds(key), key, version))
        keys.sort()
        origin = {key: version for _, key, version in keys}
        bounds = lambda key: (float("-inf"), None) if arrival_keyed(key) else (since, until)  # noqa: E731
        parts, read = read_parts([key for _, key, _ in keys], self._fetch, since, until, max_rows, self.workers,
                                 request_ids=request_ids, bounds=bounds, unreadable=unreadable)
        self.objects_read += read
        by_version: dict[int, list[CapturedColumns]] = {}
        for key, part in reversed(parts):  # oldest first
            by_version.setdefault(origin[key], []).append(part)
        merged = {version: concat(chunks) for version, chunks in by_version.items()}
        total = sum(len(m) for m in merged.values())
        if max_rows is not None and total > max_rows:  # exactly the newest max_rows over every version
            keep = np.zeros(total, dtype=bool)
            keep[np.argsort(np.concatenate([m.at for m in merged.values()]), kind="stable")[total - max_rows:]] = True
            offsets = np.cumsum([0] + [len(m) for m in merged.values()])
            merged = {v: m.take(keep[offsets[i]:offsets[i + 1]]) for i, (v, m) in enumerate(merged.items())}
        return {v: m for v, m in sorted(merged.items()) if len(m)}

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
