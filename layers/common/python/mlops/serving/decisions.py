"""Decision records: one line per scored request, batched to S3, found again by request id (docs/audit.md).

Every request the scoring API answers leaves a record (never sampled): request id, time, family, model version,
function version, artifact, decision threshold, per record the prediction and the positive-class probability, the
reason codes when the request asked for explanations, and the inputs only when the family's capture policy
captured the request (its sample) minus the never-captured fields. The hot path appends a tuple to a list under an
uncontended lock; the request that completes a batch serialises and compresses it (about 2 ms for 512 decisions),
and a daemon thread writes it.

Objects are keyed `decisions/family=<f>/date=<YYYY-MM-DD>/hour=<HH>/<first_ms>-<last_ms>-<id>.<bloom>.jsonl.gz`
(gzip JSON lines, Hive partitions for Athena). `<bloom>` is a Bloom filter of the batch's request ids (base64url,
1% false positives; Bloom 1970, double hashing per Kirsch & Mitzenmacher 2006), so finding a
request id costs listings (1,000 keys per call) and a GET of the objects whose filter matches, with no index
written per decision.

Durability: a batch is written when it holds MAX_BATCH records or its oldest record is `max_age_seconds` old (on
the next request), at shutdown of the sandbox (SIGTERM, see `flush_on_shutdown`) and on `flush`. A failed write is
retried with the next batch; held batches beyond MAX_HELD decisions are dropped oldest first, counted in `dropped`.
"""

from __future__ import annotations

import base64
import math
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from mlops.core import aws
from mlops.core.errors import DecisionNotFoundError, ValidationError

DECISION_PREFIX = "decisions/"
MAX_BATCH = 512  # records per object: keeps the Bloom filter in the key (S3 keys: 1,024 bytes), see BLOOM_BITS_PER_ID
MAX_HELD = 20_000  # decisions kept in memory while S3 refuses writes (whole batches dropped beyond, oldest first)
BLOOM_BITS_PER_ID = 9.6  # 1% false positives with BLOOM_HASHES hashes (m/n = -ln p / ln^2 2 = 9.59)
BLOOM_HASHES = 7  # round(m/n x ln 2)
BLOOM_MARK = "b1"  # filter format in the key: version 1 (blake2b-128 double hashing, 7 hashes, 9.6 bits per id)
MAX_REQUEST_ID = 128
READERS = 8  # objects read at once when a day holds several whose filter matches
WRITER_IDLE_SECONDS = 30.0  # a writer thread with nothing to write for this long ends (see DecisionLog._run)
SHUTDOWN_BUDGET_SECONDS = 0.45  # Lambda gives the runtime 500 ms after SIGTERM when an internal extension exists
# Strong references: a log dropped with records still buffered must be flushed, not collected (every decision counts).
_writers: set[DecisionLog] = set()


def _log() -> Any:
    # logging (3 ms), like hashlib and gzip (4 ms, the writer thread's), is imported on first use: not on the cold
    # start of the scoring function.
    import logging

    return logging.getLogger(__name__)


def family_prefix(family: str) -> str:
    return f"{DECISION_PREFIX}family={family}/"


def key_for(family: str, first_ms: int, last_ms: int, request_ids: Sequence[str]) -> str:
    at = datetime.fromtimestamp(first_ms / 1000, UTC)
    return (f"{family_prefix(family)}date={at:%Y-%m-%d}/hour={at:%H}/{first_ms:013d}-{last_ms:013d}-"
            f"{uuid.uuid4().hex[:12]}.{BLOOM_MARK}{bloom_filter(request_ids)}.jsonl.gz")


# ---- Bloom filter of a batch's request ids -----------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def _positions(request_id: str, bits: int) -> list[int]:
    """Bit i of the filter: (h1 + i x h2) mod 2^64 mod bits, h1 and h2 (odd) the halves of blake2b-128."""
    import hashlib

    digest = hashlib.blake2b(request_id.encode(), digest_size=16).digest()
    h1, h2 = int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little") | 1
    return [((h1 + i * h2) & _MASK64) % bits for i in range(BLOOM_HASHES)]


def bloom_filter(request_ids: Sequence[str]) -> str:
    """The Bloom filter of `request_ids` as base64url text without padding: ceil(n x 9.6 / 8) bytes, 7 hashes
    from one blake2b-128 digest by double hashing (Kirsch & Mitzenmacher, "Less hashing, same performance", 2006):
    about 1% false positives, no false negatives. Same bits as `_positions` (uint64 arithmetic wraps mod 2^64)."""
    import hashlib

    import numpy as np

    size = max(1, math.ceil(len(request_ids) * BLOOM_BITS_PER_ID / 8))
    digests = np.frombuffer(b"".join(hashlib.blake2b(r.encode(), digest_size=16).digest() for r in request_ids),
                            dtype="<u8").reshape(-1, 2)
    h1, h2 = digests[:, :1], digests[:, 1:] | np.uint64(1)
    with np.errstate(over="ignore"):
        positions = (h1 + np.arange(BLOOM_HASHES, dtype=np.uint64) * h2) % np.uint64(size * 8)
    field = np.zeros(size * 8, dtype=bool)
    field[positions.ravel()] = True
    return base64.urlsafe_b64encode(np.packbits(field, bitorder="little").tobytes()).decode().rstrip("=")


def bloom_may_contain(encoded: str, request_id: str) -> bool:
    """False only when `request_id` is certainly not in the filter; True for malformed filters (read the object)."""
    try:
        field = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (ValueError, TypeError):
        return True
    if not field:
        return True
    return all(field[p >> 3] & (1 << (p & 7)) for p in _positions(request_id, len(field) * 8))


@dataclass(frozen=True)
class BatchKey:
    """What a decision object's key says: family, first and last decision time (epoch ms), the id filter."""

    key: str
    family: str
    first_ms: int
    last_ms: int
    bloom: str | None

    @classmethod
    def parse(cls, key: str) -> BatchKey | None:
        if not key.startswith(DECISION_PREFIX) or not key.endswith(".jsonl.gz"):
            return None
        parts = key[len(DECISION_PREFIX):].split("/")
        if len(parts) != 4 or not parts[0].startswith("family="):
            return None
        name = parts[3][: -len(".jsonl.gz")]
        stem, _, bloom = name.partition(".")
        fields = stem.split("-")
        try:
            first_ms, last_ms = int(fields[0]), int(fields[1])
        except (IndexError, ValueError):
            return None
        return cls(key, parts[0][len("family="):], first_ms, last_ms,
                   bloom[len(BLOOM_MARK):] if bloom.startswith(BLOOM_MARK) else None)

    def may_hold(self, request_id: str) -> bool:
        return self.bloom is None or bloom_may_contain(self.bloom, request_id)


# ---- writing --------------------------------------------------------------------------------------------------

class DecisionLog:
    """Buffers the decision of every request one scoring sandbox answers and writes them to S3 in batches.

    `classes` are the original labels in class-index order (a decision names its prediction as the response did;
    empty for a regression, whose predictions are its values); `never_capture` names inputs never stored.
    `put(key, body)` replaces the S3 write (tests, benchmarks). A record's `probabilities` are the positive class's
    (binary), every class's (multiclass) or null (regression)."""

    def __init__(self, bucket: str, family: str, version: int, *, function_version: str, model_sha256: str,
                 classes: Sequence[Any], threshold: float | None, never_capture: frozenset[str] = frozenset(),
                 flush_records: int = MAX_BATCH, max_age_seconds: float = 60.0, put: Any = None) -> None:
        self.bucket, self.family, self.version = bucket, family, version
        self.function_version = function_version
        self.model_sha256 = model_sha256
        self.classes = list(classes)
        self.threshold = threshold
        self.never_capture = never_capture
        self.flush_records = max(1, min(flush_records, MAX_BATCH))
        self.max_age_seconds = max_age_seconds
        self._put = put
        self._lock = threading.Lock()
        self._buffer: list[tuple[float, str, list, list | None, list | None, list | None, list | None]] = []
        self._first_at = 0.0
        self._queue: queue.Queue[tuple[str, bytes, int] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._idle = threading.Condition()
        self._held: list[tuple[str, bytes, int]] = []  # batches whose write failed, oldest first
        self.written = 0
        self.failures = 0
        self.dropped = 0
        self._closed = False
        _writers.add(self)

    def record(self, request_id: str, labels: list, probabilities: list | None, inputs: list | None = None,
               explanations: list | None = None, ids: list | None = None) -> None:
        """Hot path: keep references to what the response carried (labels are class indices, probabilities per
        record in class-index order, `inputs` only when the request was captured, `ids` the client's own id per
        record when it sent them: mlops.serving.decision_ids)."""
        now = time.time()
        with self._lock:
            buffer = self._buffer
            if not buffer:
                self._first_at = now
            buffer.append((now, request_id, labels, probabilities, inputs, explanations, ids))
            if len(buffer) < self.flush_records and now - self._first_at < self.max_age_seconds:
                return
            self._buffer = []
        self._hand_off(buffer)

    def _hand_off(self, batch: list) -> None:
        """Serialise, compress and key the batch in the caller's thread (the request that completes a batch pays
        about 2 ms for 512 decisions, the others nothing: a writer thread doing it would compete for the GIL with
        several requests), then let the writer thread put it."""
        payload = self._payload(batch) if batch else None
        with self._idle:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():  # one writer: it alone touches _held
                self._thread = threading.Thread(target=self._run, name="decision-writer", daemon=True)
                self._thread.start()
        self._queue.put(payload)

    def close(self) -> None:
        """The model is no longer served here (the shared tier's cache evicted it): hand what is buffered to the
        writer; the log leaves the shutdown flush once everything it holds is written."""
        self._closed = True
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch or self._held:
            self._hand_off(batch)
        with self._idle:
            if not self._pending and not self._held:
                _writers.discard(self)

    def flush(self, timeout: float = 10.0) -> bool:
        """Write what is buffered (and what earlier writes could not) and wait until it is in S3."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch or self._held:
            self._hand_off(batch)
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return not self._held

    def _run(self) -> None:
        """The writer: ends after WRITER_IDLE_SECONDS without work (a sandbox serving hundreds of models of the
        shared tier keeps threads only for those with recent traffic); `_hand_off` starts a new one."""
        while True:
            try:
                payload = self._queue.get(timeout=WRITER_IDLE_SECONDS)
            except queue.Empty:
                with self._idle:
                    if not self._pending:
                        self._thread = None
                        if self._closed and not self._held:
                            _writers.discard(self)
                        return
                continue
            try:
                self._put_with_held(payload)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _put_with_held(self, payload: tuple[str, bytes, int] | None) -> None:
        payloads, self._held = [*self._held, *([payload] if payload else [])], []
        for index, (key, body, count) in enumerate(payloads):
            try:
                self._put_object(key, body)
            except Exception as exc:  # noqa: BLE001 - kept and retried with the next batch
                self.failures += 1
                _log().warning("decision batch not written (kept for the next attempt): %s", exc)
                self._hold(payloads[index:])
                return
            self.written += count

    def _hold(self, payloads: list[tuple[str, bytes, int]]) -> None:
        total = sum(count for _, _, count in payloads)
        while payloads and total > MAX_HELD:
            _, _, count = payloads.pop(0)
            total -= count
            self.dropped += count
            _log().error("%d decision records dropped after repeated write failures", count)
        self._held = payloads

    def lines(self, batch: list) -> list[bytes]:
        """The JSON line of each buffered decision (see docs/audit.md for the fields)."""
        out = []
        classes, never = self.classes, self.never_capture
        binary = len(classes) == 2
        # The fields every line of this sandbox shares, serialised once: '{"family":...,' + the line's own fields.
        head = orjson.dumps({"family": self.family, "version": self.version, "function_version": self.function_version,
                             "model_sha256": self.model_sha256, "threshold": self.threshold})[:-1] + b","
        for at, request_id, labels, probabilities, inputs, explanations, ids in batch:
            line: dict[str, Any] = {
                "request_id": request_id, "at": round(at, 3), "records": len(labels),
                "predictions": [classes[i] for i in labels] if classes and probabilities is not None else labels,
                "probabilities": None if probabilities is None else
                [p[-1] for p in probabilities] if binary else probabilities,
                "inputs_captured": inputs is not None,
            }
            if ids is not None:
                line["ids"] = ids
            if inputs is not None:
                line["inputs"] = [{k: v for k, v in r.items() if k not in never} for r in inputs] if never \
                    else inputs
                if never:
                    line["never_captured"] = sorted(never)
            if explanations is not None:
                line["explanations"] = [{
                    "output": e["output"], "base_value": e["base_value"],
                    "reasons": [{k: v for k, v in r.items() if k != "value" or r["feature"] not in never}
                                for r in e["reasons"]]} for e in explanations]
            out.append(head + orjson.dumps(line)[1:])
        return out

    def _payload(self, batch: list) -> tuple[str, bytes, int]:
        """(key, gzip JSON lines, decisions) of one batch (at most MAX_BATCH decisions, oldest first)."""
        import gzip

        body = gzip.compress(b"\n".join(self.lines(batch)) + b"\n", compresslevel=1)
        key = key_for(self.family, int(batch[0][0] * 1000), int(batch[-1][0] * 1000), [b[1] for b in batch])
        return key, body, len(batch)

    def _put_object(self, key: str, body: bytes) -> None:
        if self._put is not None:
            self._put(key, body)
            return
        aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/gzip")


def flush_all(timeout: float = 10.0, bucket: str | None = None) -> bool:
    """Flush every decision log in this process (shutdown, local runtime, tests), or those writing to `bucket`;
    True when all their records are in S3."""
    deadline = time.monotonic() + timeout
    logs = [w for w in list(_writers) if bucket is None or w.bucket == bucket]
    return all([w.flush(max(0.0, deadline - time.monotonic())) for w in logs])


# ---- shutdown: no record left in a reclaimed sandbox ---------------------------------------------------------

def flush_on_shutdown(runtime_api: str | None) -> bool:
    """In Lambda (`runtime_api` = AWS_LAMBDA_RUNTIME_API), register a no-op internal extension so that Lambda sends
    the runtime SIGTERM before reclaiming the sandbox, and flush decision logs and captures then (Lambda allows
    500 ms; Python 3.12 runtime; github.com/aws-samples/graceful-shutdown-with-aws-lambda). Call at import time:
    extensions must register during the Init phase. Returns whether the extension was registered."""
    if not runtime_api:
        return False
    import signal
    import urllib.request

    request = urllib.request.Request(
        f"http://{runtime_api}/2020-01-01/extension/register", data=b'{"events": []}', method="POST",
        headers={"Lambda-Extension-Name": "mlops-decision-flush", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            extension_id = response.headers.get("Lambda-Extension-Identifier")
    except OSError as exc:
        _log().warning("decision flush at shutdown unavailable (extension not registered): %s", exc)
        return False
    if not extension_id:
        return False

    def wait_for_shutdown() -> None:  # the extension reports ready; with no events this blocks until shutdown
        ready = urllib.request.Request(f"http://{runtime_api}/2020-01-01/extension/event/next",
                                       headers={"Lambda-Extension-Identifier": extension_id})
        try:
            urllib.request.urlopen(ready).read()
        except OSError:
            return

    threading.Thread(target=wait_for_shutdown, name="decision-flush-extension", daemon=True).start()
    try:
        signal.signal(signal.SIGTERM, on_shutdown)
    except ValueError:  # not the main thread: Lambda imports handlers in it, so only an embedding host gets here
        return False
    return True


def on_shutdown(signum: int = 15, frame: Any = None) -> None:
    """SIGTERM: write every buffered decision, capture and scoring figure within Lambda's budget, then exit."""
    from mlops.serving.capture import flush_all as flush_captures
    from mlops.serving.metrics import flush_all as flush_metrics

    deadline = time.monotonic() + SHUTDOWN_BUDGET_SECONDS
    flush_metrics()  # a log line each: no network call
    flush_all(SHUTDOWN_BUDGET_SECONDS)
    flush_captures(max(0.0, deadline - time.monotonic()))
    sys.exit(0)


# ---- reading -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DecisionRecord:
    """One request's decision as written (`line`, see DecisionLog.lines) and the object it was found in."""

    line: dict[str, Any]
    key: str

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(float(self.line["at"]), UTC)


def check_request_id(request_id: str) -> str:
    """Request ids are API Gateway's or Lambda's (UUIDs); anything else is refused before any listing. Both write
    UUIDs in lowercase, so a UUID typed or copied in uppercase (a log viewer, a ticket) is lowercased; other ids
    are kept as they are. Raises ValidationError naming the value."""
    text = str(request_id).strip()
    if not text or len(text) > MAX_REQUEST_ID or not all(c.isalnum() or c in "-_" for c in text):
        raise ValidationError(f"request id {text[:60]!r} is not a request id (letters, digits, '-' and '_', at "
                              f"most {MAX_REQUEST_ID} characters)")
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        return text
    return str(parsed) if len(text) == 36 and text.lower() == str(parsed) else text


@dataclass
class SearchProgress:
    """Where a search stands, handed to `DecisionStore.find`'s `progress` callback after each partition: the
    partition (family, date, hour), partitions done of those known so far, keys listed (objects scanned by their
    key's Bloom filter) and objects read."""

    family: str
    date: str
    hour: str
    partitions_done: int
    partitions: int
    listed: int
    read: int


class DecisionStore:
    """Finds a request's decision by the key layout: the date partitions of each family, then their hour
    partitions, nearest to `around` first (newest first without it), stopping at the hour that holds it; in each
    hour only the objects whose key's Bloom filter may hold the id are read."""

    def __init__(self, bucket: str, s3: Any | None = None) -> None:
        self.bucket = bucket
        self._s3 = s3
        self.listed = 0  # keys listed, objects read and hour partitions listed by the last find (figures for people)
        self.read = 0
        self.partitions = 0

    @property
    def s3(self) -> Any:
        return self._s3 or aws.client("s3")

    def families(self) -> list[str]:
        """Families with decision records (the `family=` partitions)."""
        return [p[len("family="):].rstrip("/") for p in self._prefixes(DECISION_PREFIX)
                if p.startswith("family=")]

    def _prefixes(self, prefix: str) -> list[str]:
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix,
                                                                      Delimiter="/"):
            out.extend(p["Prefix"][len(prefix):] for p in page.get("CommonPrefixes", []))
        return out

    def find(self, request_id: str, families: Sequence[str] | None = None, around: datetime | None = None,
             progress: Callable[[SearchProgress], None] | None = None) -> DecisionRecord:
        """The decision of `request_id`. `progress` is called after each hour partition searched. Raises
        DecisionNotFoundError naming what was searched (families, days, objects scanned and read)."""
        request_id = check_request_id(request_id)
        self.listed = self.read = self.partitions = 0
        names = list(families) if families else self.families()
        days = [(name, date) for name in names for date in self._dates(name)]
        anchor = around.astimezone(UTC) if around is not None else None
        if anchor is not None:
            days.sort(key=lambda p: (abs((_date(p[1]) - anchor.date()).days), p[1]))
        else:
            days.sort(key=lambda p: p[1], reverse=True)
        known = len(days)
        for name, date in days:
            hours = self._hours(name, date)
            known += len(hours) - 1
            if anchor is not None:
                hours.sort(key=lambda h: (abs(_hour_start(date, h) - anchor.timestamp()), h))
            else:
                hours.sort(reverse=True)
            for hour in hours:
                prefix = f"{family_prefix(name)}date={date}/" + (f"hour={hour}/" if hour else "")
                candidates = [b.key for b in self._batches(prefix) if b.may_hold(request_id)]
                found = self._read_first(candidates, request_id)
                self.partitions += 1
                if progress is not None:
                    progress(SearchProgress(name, date, hour, self.partitions, known, self.listed, self.read))
                if found is not None:
                    return found
        searched = f"families {names}" if names else "no family has decision records yet"
        span = f", {len(days)} day(s) from {min(d for _, d in days)} to {max(d for _, d in days)}" if days else ""
        raise DecisionNotFoundError(
            f"no decision record holds request id {request_id!r} ({searched}{span}; {self.listed} object(s) "
            f"scanned by key, {self.read} read); records are written within a minute of the request",
            request_id=request_id)

    def _dates(self, family: str) -> list[str]:
        return [p[len("date="):].rstrip("/") for p in self._prefixes(family_prefix(family)) if p.startswith("date=")]

    def _hours(self, family: str, date: str) -> list[str]:
        """The day's hour partitions ("00".."23"); [""] (the whole day) when it has none."""
        hours = [p[len("hour="):].rstrip("/") for p in self._prefixes(f"{family_prefix(family)}date={date}/")
                 if p.startswith("hour=")]
        return hours or [""]

    def _batches(self, prefix: str) -> Iterator[BatchKey]:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                self.listed += 1
                batch = BatchKey.parse(obj["Key"])
                if batch is not None:
                    yield batch

    def _read_first(self, keys: list[str], request_id: str) -> DecisionRecord | None:
        """The decision from the first of `keys` that holds it; false positives (1% of a day's objects) are read
        READERS at a time."""
        if len(keys) <= 1:
            return self._read(keys[0], request_id) if keys else None
        from concurrent.futures import ThreadPoolExecutor

        s3 = self.s3  # one client for the pool: boto3 clients are thread-safe
        with ThreadPoolExecutor(max_workers=min(READERS, len(keys))) as pool:
            for found in pool.map(lambda key: self._read(key, request_id, s3), keys):
                if found is not None:
                    return found
        return None

    def _read(self, key: str, request_id: str, s3: Any = None) -> DecisionRecord | None:
        import gzip

        self.read += 1
        body = (s3 or self.s3).get_object(Bucket=self.bucket, Key=key)["Body"].read()
        for line in gzip.decompress(body).splitlines():
            # Cheap test on the raw bytes before parsing; the parsed field decides.
            if line and request_id.encode() in line:
                row = orjson.loads(line)
                if row.get("request_id") == request_id:
                    return DecisionRecord(row, key)
        return None


def _hour_start(date: str, hour: str) -> float:
    """Epoch seconds of the middle of an hour partition (the whole day's middle for "")."""
    day = datetime.combine(_date(date), datetime.min.time(), UTC).timestamp()
    return day + (int(hour) * 3600 + 1800 if hour.isdigit() else 43_200)


def _date(text: str) -> Any:
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        return datetime(1970, 1, 1).date()
