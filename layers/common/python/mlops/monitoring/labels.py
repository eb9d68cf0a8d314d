"""Ground truth that arrives late: labels files in, checked and kept, one record per upload (docs/performance.md).

Users put `labels/<family>/<file>.csv` (or `mlops labels upload FILE --family F`): a header naming `request_id` (or
`decision_id`) and `label`, optionally `event_time` (when the outcome happened: ISO 8601 or epoch seconds) and the
family's sensitive attribute (the group, for fairness by group). The id names a scored record
(mlops.serving.decision_ids): a one-record request's request id, `<request id>:<index>` in a batch, or the client's own
`id`. The label is in the family's own terms ("bad", 1, true; a number for a regression).

Every upload leaves a record, accepted or rejected, at
`labels-ingested/family=<f>/<uploaded ms>-<ingested ms>-<upload id>.json` (the upload id is derived from the object
version: a redelivered notification rewrites the same record), and the accepted rows, one per id, beside it
(`.rows.jsonl.gz`). Keys sort in upload order, and a later upload's label for an id replaces an earlier one's.
Problems inside a file are counted and reported, never fatal: rows without an id or a label, duplicated ids (the
last line wins), labels outside the classes. A file that cannot be read as a table at all (not CSV text, no id or
label column) is rejected with the reason. Joining the rows to decision records (unknown and ambiguous ids) is
mlops.monitoring.performance's part.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from mlops.core import aws
from mlops.core.schemas import REGRESSION, ModelFamily, label_text, same_label
from mlops.data.datasets import DataSetError, is_supported_key, quote, read_table

LABELS_PREFIX = "labels/"
INGESTED_PREFIX = "labels-ingested/"
# When a file has both columns (a response log export), the decision id is the exact one: a batch's request id
# names no single decision.
ID_COLUMNS = ("decision_id", "request_id")
# Outcome times outside [EARLIEST_EVENT_TIME, now + FUTURE_SLACK_SECONDS] are counted as bad_event_time (a typo, or
# epoch milliseconds read as seconds), never used for label delays.
EARLIEST_EVENT_TIME = 946_684_800.0  # 2000-01-01T00:00:00Z
FUTURE_SLACK_SECONDS = 86_400.0
LABEL_COLUMN = "label"
TIME_COLUMN = "event_time"
MAX_LABELS_BYTES = 100 * 1024 * 1024
MAX_EXAMPLES = 10  # problem examples kept per kind in a record
RECORD_FORMAT = 1
ACCEPTED, REJECTED = "accepted", "rejected"
NO_FAMILY = "-"
# A decision id: a request id (API Gateway's or Lambda's), `<request id>:<index>`, or a client's id.
_DECISION_ID = re.compile(r"[A-Za-z0-9._:/-]{1,200}")
_FAMILY_SAFE = re.compile(r"[^a-z0-9-]")


class LabelsFileError(Exception):
    """A labels file that cannot be read as a table of ids and labels; the message names the problem."""


@dataclass(frozen=True)
class LabelRow:
    """One accepted label: the decision id it names, the label as text in the family's terms, when the outcome
    happened (epoch seconds, or None), the group (the sensitive attribute's value, or None) and its line."""

    decision_id: str
    label: str
    event_time: float | None
    group: str | None
    line: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.decision_id, "label": self.label, "event_time": self.event_time, "group": self.group,
                "line": self.line}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> LabelRow:
        return cls(str(row["id"]), str(row["label"]), row.get("event_time"), row.get("group"), int(row["line"]))


@dataclass
class ParsedLabels:
    """A labels file read: its accepted rows (one per id, the last line winning), the columns used, counts of
    every problem and a few examples of each (line numbers and values)."""

    rows: list[LabelRow]
    columns: dict[str, str | None]
    counts: dict[str, int]
    examples: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _example(examples: dict[str, list[str]], kind: str, text: str) -> None:
    kept = examples.setdefault(kind, [])
    if len(kept) < MAX_EXAMPLES:
        kept.append(text)


def parse_event_time(text: str, now: float | None = None) -> float | None:
    """Epoch seconds from ISO 8601 (a date, or a time with Z or an offset; naive is UTC) or a number of epoch
    seconds (a number above 1e11 is read as epoch milliseconds: seconds that large are past the year 5000); None
    when the text is neither, or the time is before 2000 or more than a day after `now` (default: the clock)."""
    text = text.strip()
    try:
        value: float | None = float(text)
    except ValueError:
        value = None
    if value is not None:
        if not math.isfinite(value):
            return None
        if value > 1e11:
            value /= 1000.0
    else:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        value = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    latest = (time.time() if now is None else now) + FUTURE_SLACK_SECONDS
    return value if EARLIEST_EVENT_TIME <= value <= latest else None


def parse_labels(data: bytes, family: ModelFamily, classes: Sequence[Any] | None = None,
                 key: str = "labels.csv") -> ParsedLabels:
    """Read a labels file (CSV or gzip CSV, the data sets' reader: delimiter detected, BOM and quoting handled).

    data: the file's bytes; family: its family (task, sensitive attribute, missing markers, delimiter); classes:
    the class labels of the family's models in index order (from the newest version's lineage), used to count
    labels outside them (None: not checked here; the join checks each label against its decision's version).
    Counts: `lines` (data rows), `rows` (accepted, one per id), `missing_id`, `bad_id`, `missing_label`,
    `not_a_number` (a regression's label), `outside_classes`, `bad_event_time` (the row is kept without it),
    `duplicates` (rows whose id an earlier row of the file named) and `conflicting_duplicates` (of those, the
    ones with another label). Raises LabelsFileError when the file is not a readable table or lacks an id or
    label column."""
    name = key.rsplit("/", 1)[-1] or "labels.csv"
    if not is_supported_key(key):
        raise LabelsFileError(f"{quote(name)} is not a .csv or .csv.gz file; labels are CSV with a header "
                              f"request_id,label[,event_time]")
    if len(data) > MAX_LABELS_BYTES:
        raise LabelsFileError(f"{quote(name)} is {len(data)} bytes; a labels file holds at most {MAX_LABELS_BYTES} "
                              "(split it)")
    try:
        table = read_table(data, key=key, delimiter=family.delimiter, max_bytes=MAX_LABELS_BYTES)
    except DataSetError as exc:
        raise LabelsFileError(f"{quote(name)}: {exc.message.replace('data set', 'labels file')}") from None
    header = {h.strip().lower(): h for h in table.header}
    id_column = next((header[c] for c in ID_COLUMNS if c in header), None)
    label_column = header.get(LABEL_COLUMN)
    if id_column is None or label_column is None:
        missing = [what for what, found in (("request_id (or decision_id)", id_column), ("label", label_column))
                   if found is None]
        raise LabelsFileError(f"{quote(name)} has no {' and no '.join(missing)} column; its header is "
                              f"{', '.join(quote(h) for h in table.header[:10])}. Expected request_id,label"
                              "[,event_time]")
    time_column = header.get(TIME_COLUMN)
    group_column = None
    if family.sensitive_attribute is not None:
        group_column = next((h for h in table.header if h == family.sensitive_attribute), None)
    ids, labels = table.columns[id_column], table.columns[label_column]
    times = table.columns[time_column] if time_column else None
    groups = table.columns[group_column] if group_column else None
    markers = frozenset(family.missing_markers)
    regression = family.task == REGRESSION
    counts = dict.fromkeys(("lines", "rows", "missing_id", "bad_id", "missing_label", "not_a_number",
                            "outside_classes", "bad_event_time", "duplicates", "conflicting_duplicates"), 0)
    examples: dict[str, list[str]] = {}
    accepted: dict[str, LabelRow] = {}
    for i, line in enumerate(table.line_numbers):
        counts["lines"] += 1
        decision_id, label = ids[i], labels[i]
        if not decision_id or decision_id in markers:
            counts["missing_id"] += 1
            _example(examples, "missing_id", f"line {line}")
            continue
        if not _DECISION_ID.fullmatch(decision_id):
            counts["bad_id"] += 1
            _example(examples, "bad_id", f"line {line}: {quote(decision_id)}")
            continue
        if label in markers:
            counts["missing_label"] += 1
            _example(examples, "missing_label", f"line {line}: {quote(decision_id)}")
            continue
        if regression:
            number = _number(label)
            if number is None:
                counts["not_a_number"] += 1
                _example(examples, "not_a_number", f"line {line}: {quote(label)}")
                continue
            label = repr(number)
        elif classes is not None:
            match = next((c for c in classes if same_label(c, label)), None)
            if match is None:
                counts["outside_classes"] += 1
                folded = next((c for c in classes if label_text(c).strip().casefold() == label.strip().casefold()),
                              None)  # labels are matched exactly, as training read them: name the likely one
                hint = f" (did you mean {quote(label_text(folded))}? labels match case-sensitively)" \
                    if folded is not None else ""
                _example(examples, "outside_classes", f"line {line}: {quote(label)}{hint}")
                continue
            label = label_text(match)
        event_time = None
        if times is not None and times[i] and times[i] not in markers:
            event_time = parse_event_time(times[i])
            if event_time is None:
                counts["bad_event_time"] += 1
                _example(examples, "bad_event_time", f"line {line}: {quote(times[i])} (not ISO 8601 or epoch "
                         "seconds/milliseconds between 2000 and tomorrow)")
        group = None
        if groups is not None:
            group = groups[i] if groups[i] and groups[i] not in markers else "(missing)"
        previous = accepted.get(decision_id)
        if previous is not None:
            counts["duplicates"] += 1
            if previous.label != label:
                counts["conflicting_duplicates"] += 1
            _example(examples, "duplicates", f"line {line}: {quote(decision_id)} (first on line {previous.line})")
            del accepted[decision_id]  # the last line wins, and the order of the file is kept
        accepted[decision_id] = LabelRow(decision_id, label, event_time, group, line)
    counts["rows"] = len(accepted)
    return ParsedLabels(list(accepted.values()), {"id": id_column, "label": label_column, "event_time": time_column,
                                                  "group": group_column}, counts, examples, list(table.warnings))


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# ---- where uploads and their records live --------------------------------------------------------------------

def family_of_key(key: str) -> str | None:
    """The family a `labels/<family>/<file>` key names, or None when it names none."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] + "/" != LABELS_PREFIX or not parts[1]:
        return None
    return parts[1]


def upload_id(bucket: str, key: str, version: str) -> str:
    """Deterministic per object version: a redelivered notification maps to the same record."""
    return hashlib.sha256(f"{bucket}\n{key}\n{version}".encode()).hexdigest()[:24]


def ingested_prefix(family: str) -> str:
    return f"{INGESTED_PREFIX}family={_FAMILY_SAFE.sub('_', family[:64]) or NO_FAMILY}/"


def record_key(family: str, uploaded_ms: int, ingested_ms: int, upload: str) -> str:
    """Keys sort in upload order: S3's LastModified (whole seconds), then the first ingestion (uploads within the
    same second, in the order their notifications were processed)."""
    return f"{ingested_prefix(family)}{uploaded_ms:013d}-{ingested_ms:013d}-{upload}.json"


def rows_key(record: str) -> str:
    return record.removesuffix(".json") + ".rows.jsonl.gz"


@dataclass(frozen=True)
class Upload:
    """One labels object as S3 notified it (or as the CLI put it)."""

    bucket: str
    key: str
    version_id: str | None
    etag: str
    size: int


class LabelStore:
    """Reads and writes upload records and accepted rows in the artifact bucket; `s3` is a boto3 client (default
    the library's)."""

    def __init__(self, bucket: str, s3: Any | None = None) -> None:
        self.bucket = bucket
        self._s3 = s3

    @property
    def s3(self) -> Any:
        return self._s3 or aws.client("s3")

    def read_upload(self, upload: Upload) -> tuple[bytes, datetime, Upload]:
        """The object's bytes (that version), when it was stored, and the upload with the version read (S3 events
        of some senders omit it); LabelsFileError when it is too large or gone."""
        if upload.size > MAX_LABELS_BYTES:
            raise LabelsFileError(f"{quote(upload.key.rsplit('/', 1)[-1])} is {upload.size} bytes; a labels file "
                                  f"holds at most {MAX_LABELS_BYTES} (split it)")
        kwargs: dict[str, Any] = {"Bucket": upload.bucket, "Key": upload.key}
        if upload.version_id:
            kwargs["VersionId"] = upload.version_id
        try:
            response = self.s3.get_object(**kwargs)
        except Exception as exc:
            if aws.error_code(exc) in ("NoSuchKey", "NoSuchVersion", "404"):
                raise LabelsFileError(f"{upload.key} was deleted before it could be read") from None
            raise
        body = response["Body"].read(MAX_LABELS_BYTES + 1)
        if len(body) > MAX_LABELS_BYTES:
            raise LabelsFileError(f"{upload.key} is over {MAX_LABELS_BYTES} bytes (split it)")
        stored = response.get("LastModified") or datetime.now(UTC)
        if upload.version_id is None and response.get("VersionId") not in (None, "null"):
            upload = Upload(upload.bucket, upload.key, response["VersionId"], upload.etag, upload.size)
        return body, stored, upload

    def write(self, record: dict[str, Any], rows: list[LabelRow] | None) -> dict[str, Any]:
        """Write the accepted rows (when given) and then the record; returns the record with its keys."""
        key = record_key(record["family"], int(record["uploaded_ms"]), int(record["ingested_ms"]), record["upload_id"])
        record = {**record, "record_key": key}
        if rows is not None:
            body = gzip.compress(b"\n".join(orjson.dumps(r.to_json()) for r in rows) + b"\n", compresslevel=6)
            self.s3.put_object(Bucket=self.bucket, Key=rows_key(key), Body=body, ContentType="application/gzip")
            record["rows_key"] = rows_key(key)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=orjson.dumps(record, option=orjson.OPT_SORT_KEYS),
                           ContentType="application/json")
        return record

    def _keys(self, family: str) -> Iterator[str]:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=ingested_prefix(family)):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def records(self, family: str) -> list[dict[str, Any]]:
        """Every upload record of the family, oldest upload first."""
        keys = sorted(k for k in self._keys(family) if k.endswith(".json"))
        return [orjson.loads(self.s3.get_object(Bucket=self.bucket, Key=k)["Body"].read()) for k in keys]

    def find(self, family: str, upload: str) -> dict[str, Any] | None:
        """The record of one upload id, or None (not ingested yet)."""
        for key in self._keys(family):
            if key.endswith(f"-{upload}.json"):
                return orjson.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        return None

    def rows(self, family: str) -> tuple[dict[str, tuple[LabelRow, str]], int]:
        """Every accepted label of the family, by decision id, with the upload that gave it: a later upload's
        label for an id replaces an earlier one's. Returns (labels, replaced: how many were replaced)."""
        labels: dict[str, tuple[LabelRow, str]] = {}
        replaced = 0
        for key in sorted(k for k in self._keys(family) if k.endswith(".rows.jsonl.gz")):
            upload = key.rsplit("/", 1)[-1].removesuffix(".rows.jsonl.gz").rsplit("-", 1)[-1]
            body = gzip.decompress(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            for line in body.splitlines():
                if line:
                    row = LabelRow.from_json(orjson.loads(line))
                    replaced += row.decision_id in labels
                    labels[row.decision_id] = (row, upload)
        return labels, replaced

    def recorded(self, family: str) -> set[str]:
        """The upload ids that have a record (accepted or rejected), from the record keys alone."""
        return {key.rsplit("/", 1)[-1].removesuffix(".json").rsplit("-", 1)[-1] for key in self._keys(family)
                if key.endswith(".json")}

    def uploads(self, family: str) -> list[tuple[Upload, datetime]]:
        """Every labels upload of the family: each stored version of each object under labels/<family>/, with its
        time, oldest first (a file uploaded twice under one name is two uploads)."""
        found: list[tuple[Upload, datetime]] = []
        paginator = self.s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{LABELS_PREFIX}{family}/"):
            for v in page.get("Versions", []):
                version = v.get("VersionId")
                found.append((Upload(self.bucket, v["Key"], None if version in (None, "null") else version,
                                     str(v.get("ETag", "")).strip('"'), int(v.get("Size", 0))), v["LastModified"]))
        return sorted(found, key=lambda item: (item[1], item[0].key))


def upload_id_of(upload: Upload) -> str:
    """The upload id of an object version (its etag when the bucket keeps no versions)."""
    return upload_id(upload.bucket, upload.key, upload.version_id or upload.etag)


def base_record(upload: Upload, family: str | None, uploaded_at: datetime) -> dict[str, Any]:
    """The fields every upload record has, whatever became of the upload."""
    return {"format": RECORD_FORMAT, "upload_id": upload_id_of(upload),
            "family": family or NO_FAMILY, "bucket": upload.bucket, "key": upload.key,
            "version_id": upload.version_id, "etag": upload.etag, "size": upload.size,
            "uploaded_at": uploaded_at.astimezone(UTC).isoformat(), "uploaded_ms": int(uploaded_at.timestamp() * 1000),
            "ingested_at": datetime.now(UTC).isoformat(), "ingested_ms": int(time.time() * 1000)}


def rejected_record(base: dict[str, Any], reason: str) -> dict[str, Any]:
    return {**base, "status": REJECTED, "reason": reason, "counts": {}, "examples": {}}


def accepted_record(base: dict[str, Any], parsed: ParsedLabels, classes_checked: bool) -> dict[str, Any]:
    return {**base, "status": ACCEPTED, "reason": None, "counts": parsed.counts, "examples": parsed.examples,
            "columns": parsed.columns, "warnings": parsed.warnings[:10], "classes_checked": classes_checked}
