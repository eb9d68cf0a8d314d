"""Training data sets as published (CSV, plain or gzip) validated against a family's schema, or rejected early
with a reason that names the problem, the physical lines and how many rows it affects."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter
from typing import BinaryIO

import numpy as np

from mlops.core.categories import category_text
from mlops.core.errors import DataSetError
from mlops.core.schemas import MAX_CLASSES, Feature, ModelFamily, label_text, same_label

MIN_ROWS = 50
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
SUPPORTED_SUFFIXES = (".csv", ".csv.gz")
DELIMITERS = (",", ";", "\t", "|")
# A header wider than this is refused before any row is read (a family has at most a few hundred features).
MAX_COLUMNS = 2_000
MAX_ERRORS_REPORTED = 5
MAX_QUOTED_CHARS = 40
FLOAT32_MAX = 3.4028234663852886e38  # a feature without a declared domain accepts what a 32-bit float holds
# A sensitive attribute names a group ("F", "age 25-34"); longer values are refused rather than cut (cutting
# could merge groups) and would bloat the fixed-width holdout arrays.
MAX_SENSITIVE_CHARS = 100
MISSING_GROUP = "(missing)"
# Undeclared categorical values counted per feature for the unknown-share message (a free-text column stops there).
MAX_UNKNOWN_VALUES = 1_000
_INTEGER_TEXT = re.compile(r"^-?\d+$")
# Rows are decoded in blocks: the cells of one block at a time are held as Python strings.
CHUNK_ROWS = 8_192
SNIFF_BYTES = 64 * 1024
GZIP_MAGIC = b"\x1f\x8b"
_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")
_DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}
# Readers beyond CSV by key suffix, registered by the engine that has them: the SageMaker training job registers
# ".parquet" (mlops.data.columnar, pyarrow); the Lambda engine has none and refuses such keys.
EXTRA_READERS: dict[str, Callable[..., DataSet]] = {}


@dataclass(frozen=True)
class DataSet:
    """A data set decoded in the family's schema.

    X: float64 [rows, features] in schema order: numeric values as published; a categorical feature as its category
    index 0..k-1 (k = len(categories)), index k = "other" (an undeclared category, for `unknown: other`); NaN =
    missing (only for features that accept missing values). y: int64 [rows] class index, 0 = negative, 1 = positive.
    classes: the original labels in index order (negative, positive), as the file spells them ("good", "bad").
    Multiclass: y is the index into classes, the labels in sorted order (`task_target`). Regression: y is float64,
    the target's values, and classes is empty.
    sensitive: str [rows] (a missing cell is the group "(missing)"), or None when the family declares none.
    row_ids: int64 [rows], 0..rows-1 in file order. line_numbers: int64 [rows], the physical line where each row
    starts (line 1 is the header); for a Parquet file, the row number from 1 (mlops.data.columnar).
    warnings: non-fatal findings (blank rows skipped, columns ignored...).
    """

    X: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    sensitive: np.ndarray | None
    row_ids: np.ndarray
    line_numbers: np.ndarray
    columns: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    delimiter: str = ","

    @property
    def rows(self) -> int:
        return int(self.y.shape[0])


def is_supported_key(key: str) -> bool:
    """Whether an object key names a file type the platform reads (.csv, .csv.gz; any case)."""
    return key.lower().endswith(SUPPORTED_SUFFIXES)


def unsupported_key_reason(key: str) -> str:
    """Why a key's file type is refused, naming what is read instead (empty when the key is supported)."""
    if is_supported_key(key):
        return ""
    name = key.rsplit("/", 1)[-1].lower()
    suffix = "." + name.split(".", 1)[1] if "." in name else "(no suffix)"
    return f"unsupported file type {quote(suffix)}: the platform reads .csv and .csv.gz, and .parquet on the " \
           "sagemaker training engine"


def quote(value: object, limit: int = MAX_QUOTED_CHARS) -> str:
    """repr() of a value from a file, cut to `limit` characters with '...' so a huge cell never lands whole in a
    message, a log line, the state or the registry."""
    text = str(value)
    if len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


def parse_dataset(data: bytes | BinaryIO, family: ModelFamily, key: str = "") -> DataSet:
    """Decode a data set as published against the family's schema.

    data: the file's bytes, or a seekable binary file holding them (read as a stream: the Lambda engine spools the
    object to a temporary file so its bytes are never held in memory). CSV, plain or gzip: by the `.gz` suffix of
    `key` or gzip's magic bytes. Dialect: the
    delimiter is family.delimiter, else detected among , ; tab |; quoted fields may hold delimiters, quotes ("")
    and newlines; a UTF-8 BOM and CRLF line ends are accepted. Header names are trimmed; columns the family does
    not use are ignored (a warning names them). Cells are trimmed; a cell equal to one of family.missing_markers is
    missing (for a categorical feature a declared category wins over a marker).

    Raises DataSetError (never a raw parser or scikit-learn error) for: an unsupported file type, a file over
    family.max_dataset_bytes (compressed or decompressed), no header or rows, more than MAX_COLUMNS columns,
    required columns absent or repeated, invalid rows (wrong field count, not a number, outside the domain,
    missing where the feature has no missing strategy, an undeclared category with `unknown: reject`, no target):
    the message gives the total count of invalid rows, counts per column and the first MAX_ERRORS_REPORTED
    problems with their physical line numbers; a target without exactly two labels or without the positive label;
    a favorable_label (declared with a sensitive attribute) that is not one of the labels; fewer than MIN_ROWS rows;
    a class with fewer rows than the class-count rule (see `min_rows_per_class`); a categorical feature with
    `unknown: other` whose undeclared values exceed its max_unknown_share (`check_unknown_shares`).
    """
    for suffix, reader in EXTRA_READERS.items():
        if key.lower().endswith(suffix):
            return reader(data, family, key)
    if key and not is_supported_key(key):
        raise DataSetError(unsupported_key_reason(key), key=key[:300])
    size = _size(data)
    if size > family.max_dataset_bytes:
        raise DataSetError(f"data set is {size} bytes, over the limit of {family.max_dataset_bytes}")
    table = _Table.open(data, key, family.delimiter, family.max_dataset_bytes)
    header = table.header
    positions = _required_positions(header, family, table)
    return _decode(table, family, positions)


parse_csv = parse_dataset


def min_rows_per_class(family: ModelFamily) -> int:
    """The class-count rule of the stratified holdout: every class needs at least this many rows, the family's
    `min_rows_per_class` and at least ceil(1 / holdout_fraction), so that the holdout holds a row of each class
    and training keeps the rest."""
    return max(family.min_rows_per_class, math.ceil(1 / family.holdout_fraction - 1e-9))


@dataclass
class Table:
    """A published table read as text: trimmed header, delimiter, and per-column cells (trimmed) of the rows that
    have as many fields as the header; for inference and inspection, not for training (which streams)."""

    header: tuple[str, ...]
    delimiter: str
    delimiter_detected: bool
    columns: dict[str, list[str]]
    line_numbers: list[int]
    warnings: list[str] = field(default_factory=list)


def read_table(data: bytes, *, key: str = "", delimiter: str | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES) -> Table:
    """Read a CSV (plain or gzip) with the reader training uses: same detection, BOM, quoting and limits.
    Rows with a wrong number of fields raise DataSetError (with line numbers and the total count). Columns with
    an empty or repeated name are dropped with a warning."""
    if key and not is_supported_key(key):
        raise DataSetError(unsupported_key_reason(key))
    if len(data) > max_bytes:
        raise DataSetError(f"data set is {len(data)} bytes, over the limit of {max_bytes}")
    table = _Table.open(data, key, delimiter, max_bytes)
    counts = Counter(table.header)
    keep = [i for i, name in enumerate(table.header) if name and counts[name] == 1]
    if not keep:
        raise DataSetError("the header names no column (every name is empty or repeated)")
    warnings = list(table.warnings)
    kept = set(keep)
    dropped = [name for i, name in enumerate(table.header) if i not in kept]
    if dropped:
        warnings.append(f"{_count(len(dropped), 'column')} with an empty or repeated name ignored: "
                        + ", ".join(quote(n) for n in dropped[:10]))
    cells: list[list[str]] = [[] for _ in keep]
    lines: list[int] = []
    problems = _Problems()
    getter = itemgetter(*keep) if len(keep) > 1 else (lambda row: (row[keep[0]],))
    for line, row in table.rows(problems):
        for column, value in zip(cells, getter(row), strict=True):
            column.append(value.strip())
        lines.append(line)
    problems.raise_if_any(len(lines) + problems.rejected_rows)
    if not lines:
        raise DataSetError("data set has a header but no data rows")
    return Table(header=tuple(table.header[i] for i in keep), delimiter=table.delimiter,
                 delimiter_detected=table.detected, columns={table.header[i]: c for i, c in zip(keep, cells,
                                                                                                strict=True)},
                 line_numbers=lines, warnings=warnings + table.warnings_after_rows())


class _TooBig(Exception):
    pass


class _CappedReader(io.RawIOBase):
    """A raw stream that fails once more than `limit` bytes have been read (a decompression bomb stops early)."""

    def __init__(self, source: io.BufferedIOBase, limit: int) -> None:
        self._source = source
        self._limit = limit
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        n = self._source.readinto(buffer)
        self.total += n
        if self.total > self._limit:
            raise _TooBig
        return n


class _Table:
    """The streaming CSV reader behind parse_dataset and read_table."""

    def __init__(self, data: bytes | BinaryIO, compressed: bool, delimiter: str, detected: bool,
                 max_bytes: int) -> None:
        self.compressed = compressed
        self.delimiter = delimiter
        self.detected = detected
        self.max_bytes = max_bytes
        self._data = data
        self.warnings: list[str] = []
        self.blank_lines: list[int] = []
        self.blank_count = 0
        self._stream = self._text_stream()
        self.reader = csv.reader(self._stream, delimiter=delimiter)
        self.header = self._read_header()

    @classmethod
    def open(cls, data: bytes | BinaryIO, key: str, delimiter: str | None, max_bytes: int) -> _Table:
        name = key.lower()
        whole = isinstance(data, bytes | bytearray)
        head = data[:SNIFF_BYTES] if whole else _binary(data).read(SNIFF_BYTES)
        compressed = head[:2] == GZIP_MAGIC
        if name.endswith(".gz") and not compressed and head:
            raise DataSetError(f"file {quote(key.rsplit('/', 1)[-1])} is named .gz but is not gzip data")
        if not compressed:
            _check_plain_content(data if whole else head, complete=whole or len(head) < SNIFF_BYTES)
        sample = _sample_text(data, head, compressed)
        if delimiter is None:
            chosen = _detect_delimiter(sample)
            return cls(data, compressed, chosen, True, max_bytes)
        return cls(data, compressed, delimiter, False, max_bytes)

    def expected_rows(self, rows_read: int) -> int | None:
        """Rows the whole file holds, extrapolated from the share of its bytes (compressed bytes for gzip) read
        so far; None before any is read."""
        done = self._source.tell() / self._source_size if self._source_size else 0.0
        return int(rows_read / done) if done > 0 else None

    def _text_stream(self) -> io.TextIOWrapper:
        raw: io.BufferedIOBase = _binary(self._data)
        self._source, self._source_size = raw, _size(raw)
        raw.seek(0)
        if self.compressed:
            raw = io.BufferedReader(_CappedReader(gzip.GzipFile(fileobj=raw, mode="rb"), self.max_bytes))
        return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")

    def _read_header(self) -> list[str]:
        header: list[str] | None = None
        try:
            for row in self.reader:
                if row and any(cell.strip() for cell in row):
                    header = row
                    break
                self.blank_count += 1
                if len(self.blank_lines) < MAX_ERRORS_REPORTED:
                    self.blank_lines.append(self.reader.line_num)
        except csv.Error as exc:
            raise DataSetError(f"data set has no readable header (line {self.reader.line_num}: {exc})") from None
        except (UnicodeDecodeError, _TooBig, EOFError, OSError, zlib.error) as exc:
            raise DataSetError(self._stream_error(exc)) from None
        if header is None:
            raise DataSetError("data set is empty")
        if len(header) > MAX_COLUMNS:
            raise DataSetError(f"the header has {len(header)} columns, over the limit of {MAX_COLUMNS}")
        return [name.strip() for name in header]

    def rows(self, problems: _Problems) -> Iterator[tuple[int, list[str]]]:
        """(start line, fields) for each non-blank row with as many fields as the header; others are recorded."""
        reader = self.reader
        width = len(self.header)
        last = reader.line_num
        try:
            for row in reader:
                start = last + 1
                last = reader.line_num
                if len(row) == width and any(row):
                    yield start, row
                elif not any(cell.strip() for cell in row):
                    self.blank_count += 1
                    if len(self.blank_lines) < MAX_ERRORS_REPORTED:
                        self.blank_lines.append(start)
                else:
                    problems.row_problem("fields", start,
                                         f"{len(row)} fields, the header has {width}"
                                         + self._hint_for_width(row, last - start + 1))
        except csv.Error as exc:
            problems.stop(last + 1, f"CSV syntax: {exc}")
        except (UnicodeDecodeError, _TooBig, EOFError, OSError, zlib.error) as exc:
            problems.stop(last + 1, self._stream_error(exc))

    def warnings_after_rows(self) -> list[str]:
        if not self.blank_count:
            return []
        lines = ", ".join(str(n) for n in self.blank_lines)
        return [f"{_count(self.blank_count, 'blank row')} skipped (first at line{'s' if self.blank_count > 1 else ''} "
                f"{lines})"]

    def _hint_for_width(self, row: list[str], lines: int) -> str:
        if lines > 1:
            return f" (a quoted field runs over {lines} lines: a quote left open?)"
        if len(row) == 1 and len(self.header) > 1:
            others = [d for d in DELIMITERS if d != self.delimiter and d in row[0]]
            if others:
                return f" (the row holds {_DELIMITER_NAMES[others[0]]}: another delimiter?)"
        return ""

    def _stream_error(self, exc: BaseException) -> str:
        if isinstance(exc, _TooBig):
            return f"data set decompresses to more than the limit of {self.max_bytes} bytes"
        if isinstance(exc, UnicodeDecodeError):
            found = None if self.compressed else _invalid_utf8(self._data)
            if found is not None:
                offset, line, byte = found
                return (f"data set is not UTF-8 text (invalid byte 0x{byte:02x} at line {line}, offset {offset}); "
                        "save it as UTF-8")
            return "data set is not UTF-8 text; save it as UTF-8"
        return f"gzip data is corrupt or truncated ({type(exc).__name__}: {str(exc)[:100]})"


def _size(data: bytes | BinaryIO) -> int:
    if isinstance(data, bytes | bytearray):
        return len(data)
    return data.seek(0, io.SEEK_END)


def _binary(data: bytes | BinaryIO) -> BinaryIO:
    """A binary stream over the data from its first byte (a file is rewound, never copied)."""
    if isinstance(data, bytes | bytearray):
        return io.BytesIO(data)
    data.seek(0)
    return data


def _invalid_utf8(data: bytes | BinaryIO) -> tuple[int, int, int] | None:
    """(offset, line, byte) of the first byte that is not UTF-8, read in 1 MiB blocks; None if all of it is."""
    stream = _binary(data)
    offset, lines, carry = 0, 1, b""
    while block := stream.read(1 << 20):
        text = carry + block
        try:
            text.decode("utf-8")
            carry = b""
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data" and exc.start >= len(text) - 3:
                carry = text[exc.start:]
                text = text[:exc.start]
            else:
                return offset + exc.start, lines + text.count(b"\n", 0, exc.start), text[exc.start]
        offset += len(text)
        lines += text.count(b"\n")
    return (offset, lines, carry[0]) if carry else None


def _check_plain_content(data: bytes, complete: bool = True) -> None:
    """Refuse what is not CSV text from its first bytes (`data`: the whole file, or its head when `complete` is
    False: a NUL further on then stops the CSV reader with its line)."""
    if not data or (complete and data.isspace()):
        raise DataSetError("data set is empty")
    if data[:4] == b"PAR1":
        raise DataSetError("data set is a Parquet file named as CSV; name it .parquet (Parquet trains on the "
                           "sagemaker engine)")
    if data[:4] == b"PK\x03\x04":
        raise DataSetError("data set is a ZIP archive (an Excel workbook?); export it as CSV")
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        raise DataSetError("data set is UTF-16 text; save it as UTF-8")
    if b"\x00" in data:
        raise DataSetError("data set contains NUL bytes; it is not a CSV text file")


def _sample_text(data: bytes | BinaryIO, head: bytes, compressed: bool) -> str:
    """The first SNIFF_BYTES of text, cut after the last complete line when there is one."""
    if compressed:
        try:
            with gzip.GzipFile(fileobj=_binary(data), mode="rb") as gz:
                head = gz.read(SNIFF_BYTES)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataSetError(f"gzip data is corrupt or truncated ({type(exc).__name__}: {str(exc)[:100]})") \
                from None
        if not head.strip():
            raise DataSetError("data set is empty")
        if b"\x00" in head:
            raise DataSetError("data set contains NUL bytes; it is not a CSV text file")
    cut = head.rfind(b"\n")
    if cut > 0 and len(head) == SNIFF_BYTES:
        head = head[:cut + 1]
    return head.decode("utf-8-sig", errors="replace")


def _detect_delimiter(sample: str) -> str:
    """The candidate delimiter that splits the header into the most columns while the rows of the sample keep that
    count (csv's own quoting applies); ',' when none splits the header."""
    best, best_score = ",", (0, 0.0, 0)
    for candidate in DELIMITERS:
        rows: list[list[str]] = []
        try:
            for row in islice(csv.reader(io.StringIO(sample, newline=""), delimiter=candidate), 50):
                if row:
                    rows.append(row)
        except csv.Error:
            pass
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        body = rows[1:-1] if len(rows) > 2 else rows[1:]  # the last row of a sample may be cut
        consistent = sum(len(r) == width for r in body) / len(body) if body else 1.0
        score = (1 if consistent >= 0.9 else 0, consistent, width)
        if score > best_score:
            best, best_score = candidate, score
    return best


def _required_positions(header: list[str], family: ModelFamily, table: _Table) -> dict[str, int]:
    required = [*family.feature_names, family.target]
    if family.sensitive_attribute is not None:
        required.append(family.sensitive_attribute)
    counts = Counter(header)
    repeated = [name for name in dict.fromkeys(required) if counts[name] > 1]
    if repeated:
        raise DataSetError(f"header repeats columns {[n for n in repeated[:10]]}", repeated=repeated[:10])
    missing = [c for c in dict.fromkeys(required) if c not in counts]
    if missing:
        raise DataSetError(_missing_columns_message(header, missing, family, table), missing=missing[:20])
    other_repeats = [name for name, n in counts.items() if n > 1]
    if other_repeats:
        table.warnings.append(f"header repeats unused columns {', '.join(quote(n) for n in other_repeats[:10])}")
    wanted = set(required)
    positions = {name: i for i, name in enumerate(header) if name in wanted}
    unused = [name for name in header if name not in positions]
    if unused:
        table.warnings.append(f"{_count(len(unused), 'column')} not in the family ignored: "
                              + ", ".join(quote(n) for n in unused[:10]) + (" ..." if len(unused) > 10 else ""))
    return positions


def _missing_columns_message(header: list[str], missing: list[str], family: ModelFamily, table: _Table) -> str:
    kinds = {family.target: "target"}
    if family.sensitive_attribute is not None:
        kinds[family.sensitive_attribute] = "sensitive attribute"
    named = ", ".join(f"{quote(c)} ({kinds.get(c, 'feature')})" for c in missing[:10])
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    if getattr(table, "location", "line") == "row":  # a Parquet file: its schema names the columns, no delimiter
        return (f"data set lacks required columns: {named}{more}; the Parquet file's columns are "
                f"{', '.join(quote(h) for h in header[:10])}{' ...' if len(header) > 10 else ''}")
    how = "detected" if table.detected else "declared"
    read_as = (f"; the header was read as {len(header)} column{'s' if len(header) != 1 else ''} "
               f"{', '.join(quote(h) for h in header[:3])}{' ...' if len(header) > 3 else ''} "
               f"with delimiter {_DELIMITER_NAMES[table.delimiter]} ({how})")
    message = f"data set lacks required columns: {named}{more}{read_as}"
    joined = table.delimiter.join(header)
    wanted = set(missing)
    best = max(DELIMITERS, key=lambda d: len(wanted & {p.strip() for p in joined.split(d)}))
    if best != table.delimiter and wanted & {p.strip() for p in joined.split(best)}:
        message += (f"; the file looks {_DELIMITER_NAMES[best]}-separated: declare "
                    f"delimiter: {_yaml_delimiter(best)} in the family")
    else:
        lowered = {h.lower(): h for h in header}
        near = [f"{quote(c)} ~ {quote(lowered[c.lower()])}" for c in missing if c.lower() in lowered]
        if near:
            message += "; names are case-sensitive: " + ", ".join(near[:5])
    return message


def _yaml_delimiter(delimiter: str) -> str:
    return '"\\t"' if delimiter == "\t" else repr(delimiter)


class _Problems:
    """Invalid rows: the total count, counts and examples per problem, the first problems by line (`location`:
    "line" for CSV, "row" for Parquet)."""

    def __init__(self, location: str = "line") -> None:
        self.location = location
        self.first: list[tuple[int, str]] = []
        self.kinds: dict[tuple[str, str], list] = {}
        self.bad_rows = 0
        # Rows refused before decoding (wrong field count): not among the decoded rows.
        self.rejected_rows = 0
        self.stopped: str | None = None

    def row_problem(self, kind: str, line: int, text: str, column: str = "", value: str | None = None) -> None:
        self.bad_rows += 1
        self.rejected_rows += 1
        self.add(kind, column, [(line, text)], 1, [] if value is None else [value])

    def add(self, kind: str, column: str, firsts: list[tuple[int, str]], count: int, values: list[str]) -> None:
        entry = self.kinds.setdefault((kind, column), [0, []])
        entry[0] += count
        for value in values:
            if len(entry[1]) < MAX_ERRORS_REPORTED and value not in entry[1]:
                entry[1].append(value)
        if len(self.first) < MAX_ERRORS_REPORTED or firsts and firsts[0][0] < self.first[-1][0]:
            self.first = sorted(self.first + firsts[:MAX_ERRORS_REPORTED])[:MAX_ERRORS_REPORTED]

    def stop(self, line: int, text: str) -> None:
        self.stopped = f"{self.location} {line}: {text}; reading stopped there"

    def raise_if_any(self, rows: int) -> None:
        if self.stopped and not self.kinds:
            raise DataSetError(f"data set could not be read: {self.stopped}", errors=[self.stopped])
        if not self.kinds:
            return
        summary = "; ".join(_kind_summary(kind, column, count, values)
                            for (kind, column), (count, values) in self.kinds.items())
        firsts = [f"{self.location} {line}: {text}" for line, text in self.first]
        message = (f"data set has {_count(self.bad_rows, 'invalid row')} of {rows}: {summary}. "
                   f"First {'problem' if len(firsts) == 1 else f'{len(firsts)} problems'}: " + "; ".join(firsts))
        if self.stopped:
            message += f". {self.stopped}"
        raise DataSetError(message, errors=firsts, invalid_rows=self.bad_rows, rows=rows,
                           counts={f"{column or kind}": count for (kind, column), (count, _) in self.kinds.items()})


def _kind_summary(kind: str, column: str, count: int, values: list[str]) -> str:
    rows = _count(count, "row")
    examples = ", ".join(quote(v) for v in values)
    if kind == "fields":
        return f"{rows} with a different number of fields than the header"
    if kind == "missing":
        return (f"{quote(column)}: {rows} missing a value (the feature declares missing: reject; "
                "declare median, most_frequent, constant... to accept them)")
    if kind == "number":
        hint = "; decimal commas are not read, use '.'" if any(_DECIMAL_COMMA.match(v) for v in values) else ""
        return f"{quote(column)}: {rows} not a number ({examples}){hint}"
    if kind == "finite":
        return f"{quote(column)}: {rows} not finite ({examples})"
    if kind == "domain":
        return f"{quote(column)}: {rows} outside the declared domain ({examples})"
    if kind == "range":
        return f"{quote(column)}: {rows} beyond the 32-bit float range, |x| > {FLOAT32_MAX:.4g} ({examples})"
    if kind == "unknown":
        return (f"{quote(column)}: {rows} with undeclared categories ({examples}); add them to the categories "
                "or declare unknown: other")
    if kind == "target":
        return f"target {quote(column)}: {rows} without a label"
    if kind == "sensitive":
        return f"sensitive attribute {quote(column)}: {rows} longer than {MAX_SENSITIVE_CHARS} characters"
    return f"{quote(column)}: {rows} {kind}"


class _Labels:
    """Target values grouped into classes: 1, 1.0 and " 1" are one class (numbers compare as numbers), other
    text compares exactly after trimming. Group ids follow first appearance in the file."""

    def __init__(self, markers: frozenset[str]) -> None:
        self.markers = markers
        self.group_of: dict[str, int] = {}
        self.group_by_key: dict[object, int] = {}
        self.texts: list[str] = []

    def codes(self, cells: tuple[str, ...]) -> np.ndarray:
        group_of = self.group_of
        for raw in dict.fromkeys(cells):
            if raw not in group_of:
                group_of[raw] = self._group(raw)
        return np.fromiter((group_of[c] for c in cells), dtype=np.int64, count=len(cells))

    def _group(self, raw: str) -> int:
        text = raw.strip()
        if text in self.markers:
            return -1
        try:
            number = float(text)
            key: object = ("number", number) if number == number else ("text", text)
        except ValueError:
            key = ("text", text)
        group = self.group_by_key.get(key)
        if group is None:
            group = self.group_by_key[key] = len(self.texts)
            self.texts.append(text)
        return group


def _decode(table: _Table, family: ModelFamily, positions: dict[str, int]) -> DataSet:
    features = family.features
    names = [*family.feature_names, family.target]
    if family.sensitive_attribute is not None:
        names.append(family.sensitive_attribute)
    getter = itemgetter(*(positions[n] for n in names))
    markers = frozenset(m.strip() for m in family.missing_markers)
    converters = [_converter(f, markers) for f in features]
    labels = _Labels(markers)
    location = getattr(table, "location", "line")
    problems = _Problems(location)
    n_features = len(features)
    blocks = _Rows(np.float64, n_features)
    targets = _Rows(np.int64)
    sensitive_blocks: list[np.ndarray] = []
    line_blocks = _Rows(np.int64)
    rows = table.rows(problems)
    total = 0
    while True:
        chunk: list[tuple[str, ...]] = []
        lines: list[int] = []
        for line, row in islice(rows, CHUNK_ROWS):
            chunk.append(getter(row))
            lines.append(line)
        if not chunk:
            break
        line_array = np.asarray(lines, dtype=np.int64)
        cells = list(zip(*chunk, strict=True))
        del chunk
        bad = np.zeros(len(lines), dtype=bool)
        X = np.empty((len(lines), n_features), dtype=np.float64)
        for j, convert in enumerate(converters):
            X[:, j] = convert(cells[j], line_array, bad, problems)
        y = labels.codes(cells[n_features])
        no_label = np.flatnonzero(y < 0)
        if no_label.size:
            bad[no_label] = True
            problems.add("target", family.target,
                         [(int(line_array[i]), f"target {family.target}={quote(cells[n_features][i])} is missing")
                          for i in no_label[:MAX_ERRORS_REPORTED]], int(no_label.size), [])
        if family.sensitive_attribute is not None:
            sensitive_blocks.append(_sensitive(cells[n_features + 1], markers, line_array, bad, problems,
                                               family.sensitive_attribute))
        problems.bad_rows += int(bad.sum())
        total += len(lines)
        expected = table.expected_rows(total)
        blocks.append(X, expected)
        targets.append(y, expected)
        line_blocks.append(line_array, expected)
    problems.raise_if_any(total + problems.rejected_rows)
    if total == 0:
        raise DataSetError("data set has a header but no data rows")
    if total < MIN_ROWS:
        raise DataSetError(f"data set has {total} rows; at least {MIN_ROWS} are needed to train and hold out")
    check_unknown_shares(converters, family, getattr(table, "integer_columns", frozenset()))
    line_numbers = line_blocks.result()
    # The group codes are freed once y is built.
    if family.task == "binary_classification":
        y, classes = _classes(labels, targets.result(), family)
        _check_class_counts(y, classes, family)
    else:  # regression and multiclass targets: see task_target
        y, classes = task_target(labels, targets.result(), family, [line_numbers], location)
    notes = [] if family.task != "regression" else prediction_range_notes(family, y, line_numbers, location)
    X = blocks.result()
    return DataSet(
        X=X,
        y=y,
        classes=classes,
        sensitive=None if family.sensitive_attribute is None else np.concatenate(sensitive_blocks),
        row_ids=np.arange(total, dtype=np.int64),
        line_numbers=line_numbers,
        columns=tuple(family.feature_names),
        warnings=tuple(table.warnings + table.warnings_after_rows() + notes),
        delimiter=table.delimiter,
    )


class _Rows:
    """Blocks of rows appended into one array that grows in place (`ndarray.resize`, a realloc: for arrays this
    large glibc moves the pages with mremap, nothing is copied), so a column is never held twice, as blocks and as
    their concatenation. numpy zero-fills what a resize adds, so growth goes to the expected row count (from the
    share of the file read) plus 5%, not to twice the capacity: the memory touched stays near the rows held."""

    def __init__(self, dtype: type, width: int | None = None) -> None:
        self._shape = () if width is None else (width,)
        self._array = np.empty((16 * CHUNK_ROWS, *self._shape), dtype=dtype)
        self._rows = 0

    def append(self, block: np.ndarray, expected: int | None = None) -> None:
        end = self._rows + block.shape[0]
        if end > self._array.shape[0]:
            grown = int(expected * 1.05) if expected and expected > end else int(self._array.shape[0] * 1.25)
            self._array.resize((max(end, grown), *self._shape), refcheck=False)
        self._array[self._rows:end] = block
        self._rows = end

    def result(self) -> np.ndarray:
        """The rows appended, once (this buffer lets go of them: the caller's reference is the only one)."""
        array, self._array = self._array, np.empty((0, *self._shape), dtype=self._array.dtype)
        array.resize((self._rows, *self._shape), refcheck=False)
        return array


def _classes(labels: _Labels, groups: np.ndarray, family: ModelFamily) -> tuple[np.ndarray, tuple[str, str]]:
    texts = labels.texts
    shown = [text[:MAX_QUOTED_CHARS] for text in texts[:10]]
    counts = np.bincount(groups, minlength=len(texts))
    found = ", ".join(f"{quote(texts[g])} ({_count(int(counts[g]), 'row')})"
                      for g in np.argsort(-counts, kind="stable")[:10])
    if len(texts) > 10:
        found += f" ... ({len(texts)} distinct labels)"
    target = quote(family.target)
    positive = quote(label_text(family.positive_label))
    if len(texts) == 1:
        raise DataSetError(f"target {target} is constant ({found}); a binary family needs two labels, the "
                           f"positive label {positive} and one other")
    if len(texts) > 2:
        raise DataSetError(f"target {target} has {len(texts)} distinct labels; a binary family needs exactly two, "
                           f"the positive label {positive} and one other. Found: {found}", labels=shown)
    matches = [g for g, text in enumerate(texts) if same_label(text, family.positive_label)]
    if not matches:
        raise DataSetError(f"the positive label {positive} (positive_label) is not among the labels of target "
                           f"{target}: {found}", labels=shown)
    if len(matches) == 2:
        raise DataSetError(f"both labels of target {target} match the positive label {positive}: {found}",
                           labels=shown)
    if family.sensitive_attribute is not None and not any(same_label(t, family.favorable_label) for t in texts):
        raise DataSetError(f"the favorable_label {quote(label_text(family.favorable_label))} (the outcome fairness "
                           f"is judged on, for sensitive_attribute {quote(family.sensitive_attribute)}) is not "
                           f"among the labels of target {target}: {found}", labels=shown)
    positive_group = matches[0]
    y = (groups == positive_group).astype(np.int64)
    return y, (texts[1 - positive_group], texts[positive_group])


def _check_class_counts(y: np.ndarray, classes: tuple[str, str], family: ModelFamily) -> None:
    needed = min_rows_per_class(family)
    counts = np.bincount(y, minlength=2)
    short = [f"{quote(classes[i])} has {counts[i]}" for i in (0, 1) if counts[i] < needed]
    if short:
        raise DataSetError(
            f"target {quote(family.target)}: every class needs at least {needed} rows for the stratified holdout "
            f"(min_rows_per_class {family.min_rows_per_class}, and at least 1/holdout_fraction = "
            f"{1 / family.holdout_fraction:g} so the holdout holds a row of each class); " + ", ".join(short),
            class_counts={classes[0][:MAX_QUOTED_CHARS]: int(counts[0]), classes[1][:MAX_QUOTED_CHARS]: int(counts[1])})


def _converter(feature: Feature, markers: frozenset[str]):  # type: ignore[no-untyped-def]
    if feature.kind == "categorical":
        return _CategoricalColumn(feature, markers)
    return _NumericColumn(feature, markers)


class _NumericColumn:
    """Cells to float64: C-speed conversion of the whole block, per-cell work only where it fails or where a
    value could be a missing marker (markers win over numbers: '-999' declared as a marker is missing)."""

    def __init__(self, feature: Feature, markers: frozenset[str]) -> None:
        self.feature = feature
        self.markers = markers
        self.numeric_markers = {float(m) for m in markers if _is_number(m)}
        self.low, self.high = feature.bounds()

    def __call__(self, cells: tuple[str, ...], lines: np.ndarray, bad: np.ndarray, problems: _Problems) -> np.ndarray:
        try:
            values = np.array(cells, dtype=np.float64)
        except ValueError:
            values = self._slow(cells)
        unsure = ~np.isfinite(values)
        for marker in self.numeric_markers:
            if marker == marker:
                unsure |= values == marker
        missing = np.zeros(len(cells), dtype=bool)
        not_number: list[int] = []
        not_finite: list[int] = []
        for i in np.flatnonzero(unsure):
            text = cells[i].strip()
            if text in self.markers:
                missing[i] = True
                values[i] = np.nan
            elif values[i] != values[i] and not _is_number(text):
                not_number.append(int(i))
            elif not math.isfinite(values[i]):
                not_finite.append(int(i))
        name = self.feature.name
        if not_number:
            self._report(problems, "number", not_number, cells, lines, bad, "is not a number")
        if not_finite:
            self._report(problems, "finite", not_finite, cells, lines, bad, "is not finite")
        if missing.any() and not self.feature.accepts_missing:
            idx = np.flatnonzero(missing)
            bad[idx] = True
            problems.add("missing", name,
                         [(int(lines[i]), f"{name} is missing ({quote(cells[i].strip())})")
                          for i in idx[:MAX_ERRORS_REPORTED]], int(idx.size), [])
        # Finite values only: an infinity is reported once, as not finite, and NaN is missing or not a number.
        finite = np.isfinite(values)
        for side, outside in (("minimum", finite & (values < self.low)), ("maximum", finite & (values > self.high))):
            index = np.flatnonzero(outside)
            if not index.size:
                continue
            if getattr(self.feature, side) is not None:
                self._report(problems, "domain", index.tolist(), cells, lines, bad,
                             f"is {'below' if side == 'minimum' else 'above'} the declared {side} "
                             f"{self.low if side == 'minimum' else self.high:g}")
            else:  # no declared bound on that side: the limit is what the model's float32 input holds
                self._report(problems, "range", index.tolist(), cells, lines, bad,
                             f"is beyond the 32-bit float range the model reads (|x| <= {FLOAT32_MAX:.4g})")
        return values

    def _slow(self, cells: tuple[str, ...]) -> np.ndarray:
        out = np.empty(len(cells), dtype=np.float64)
        for i, cell in enumerate(cells):
            try:
                out[i] = float(cell)
            except ValueError:
                out[i] = np.nan
        return out

    def _report(self, problems: _Problems, kind: str, index: list[int], cells: tuple[str, ...], lines: np.ndarray,
                bad: np.ndarray, text: str) -> None:
        bad[index] = True
        name = self.feature.name
        problems.add(kind, name, [(int(lines[i]), f"{name}={quote(cells[i].strip())} {text}")
                                  for i in index[:MAX_ERRORS_REPORTED]], len(index),
                     [cells[i].strip() for i in index[:MAX_ERRORS_REPORTED]])


class _CategoricalColumn:
    """Cells to category index (k = "other"), NaN for missing; a declared category wins over a missing marker."""

    def __init__(self, feature: Feature, markers: frozenset[str]) -> None:
        self.feature = feature
        self.markers = markers
        self.index = {c: float(i) for i, c in enumerate(feature.categories)}
        self.other = float(len(feature.categories))
        # Undeclared values mapped to "other" (counts kept for the first MAX_UNKNOWN_VALUES distinct ones) and the
        # values present, for the training data set's unknown-share bound (`check_unknown_shares`).
        self.unknown_count = 0
        self.unknown_values: Counter[str] = Counter()
        self.present = 0

    def __call__(self, cells: tuple[str, ...], lines: np.ndarray, bad: np.ndarray, problems: _Problems) -> np.ndarray:
        get = self.index.get
        values = np.fromiter((get(c, -1.0) for c in cells), dtype=np.float64, count=len(cells))
        missing: list[int] = []
        unknown: list[int] = []
        for i in np.flatnonzero(values < 0):
            text = category_text(cells[i])
            code = get(text)
            if code is not None:
                values[i] = code
            elif text in self.markers:
                values[i] = np.nan
                missing.append(int(i))
            elif self.feature.unknown == "other":
                values[i] = self.other
                self.unknown_count += 1
                if text in self.unknown_values or len(self.unknown_values) < MAX_UNKNOWN_VALUES:
                    self.unknown_values[text] += 1
            else:
                unknown.append(int(i))
        self.present += len(cells) - len(missing)
        name = self.feature.name
        if missing and not self.feature.accepts_missing:
            bad[missing] = True
            problems.add("missing", name, [(int(lines[i]), f"{name} is missing ({quote(cells[i].strip())})")
                                           for i in missing[:MAX_ERRORS_REPORTED]], len(missing), [])
        if unknown:
            bad[unknown] = True
            shown = list(self.feature.categories[:5]) + (["..."] if len(self.feature.categories) > 5 else [])
            problems.add("unknown", name,
                         [(int(lines[i]), f"{name}={quote(cells[i].strip())} is not one of {shown}")
                          for i in unknown[:MAX_ERRORS_REPORTED]], len(unknown),
                         [cells[i].strip() for i in unknown[:50]])
        return values


def check_unknown_shares(converters: list, family: ModelFamily, integer_typed: frozenset[str] = frozenset()) -> None:
    """Refuse a training data set in which a categorical feature with `unknown: other` has more undeclared values
    (mapped to "other") than its bound (`ModelFamily.unknown_share_limit`) among its present values. The message
    names the feature, the share and the most frequent undeclared values with their counts, and hints at a
    recoding (integer codes where text categories are declared; `integer_typed` names columns a Parquet file
    stores as integers). Raises DataSetError."""
    problems = []
    for column in converters:
        if not isinstance(column, _CategoricalColumn) or not column.unknown_count:
            continue
        feature, limit = column.feature, family.unknown_share_limit(column.feature)
        share = column.unknown_count / max(column.present, 1)
        if share <= limit:
            continue
        values = ", ".join(f"{quote(v)} ({n})" for v, n in column.unknown_values.most_common(5))
        more = len(column.unknown_values) - 5
        text = (f"{quote(feature.name)}: {column.unknown_count} of {column.present} values ({share:.1%}) are not "
                f"among its {len(feature.categories)} declared categories and would all be 'other', over "
                f"max_unknown_share {limit:g}: {values}{f' and {more} more' if more > 0 else ''}")
        codes = all(_INTEGER_TEXT.match(v) for v in column.unknown_values)
        declared_codes = all(_INTEGER_TEXT.match(c) for c in feature.categories)
        if (codes or feature.name in integer_typed) and not declared_codes:
            text += (f" (the column holds integer codes where the family declares text categories "
                     f"{list(feature.categories[:3])}: decode the codes, or declare them as the categories)")
        problems.append(text)
    if problems:
        raise DataSetError("data set refused: " + "; ".join(problems) + ". Was the column recoded or renamed? "
                           "Declare the new values as categories (mlops families infer reads them), or raise "
                           "max_unknown_share (the family's, or the feature's) if these values are rare in "
                           "practice.", unknown_share=problems[:10])


def _sensitive(cells: tuple[str, ...], markers: frozenset[str], lines: np.ndarray, bad: np.ndarray,
               problems: _Problems, column: str) -> np.ndarray:
    groups = [c.strip() for c in cells]
    groups = [MISSING_GROUP if g in markers else g for g in groups]
    long = [i for i, g in enumerate(groups) if len(g) > MAX_SENSITIVE_CHARS]
    if long:
        bad[long] = True
        problems.add("sensitive", column, [(int(lines[i]), f"{column}={quote(groups[i])} is too long")
                                           for i in long[:MAX_ERRORS_REPORTED]], len(long), [])
        for i in long:
            groups[i] = ""
    return np.asarray(groups, dtype=str)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def task_target(labels: _Labels, groups: np.ndarray, family: ModelFamily,
                line_blocks: list[np.ndarray], location: str = "line") -> tuple[np.ndarray, tuple[str, ...]]:
    """The target of a regression or multiclass family from its grouped labels (every row labelled); `location`
    names what line_blocks number in messages ("line" of a CSV, "row" of a Parquet file).

    Regression: y float64, each row's number; classes (). Raises DataSetError giving the count of rows whose
    target is not a finite number or lies beyond the 32-bit float range (|y| > FLOAT32_MAX: the graph's tree
    sums and linear outputs are float32), with their first lines, or for a constant target.
    Multiclass: y int64, the index into classes; classes are the labels in sorted order: by value when every
    label is a number (1, 2, 10), else by text (code point order: "A" < "B" < "a"). Raises DataSetError for
    fewer than 3 labels, more than MAX_CLASSES, labels outside the family's declared `classes` (with their row
    counts and first lines) or a declared class without rows, a class with fewer rows than the class-count rule
    (`min_rows_per_class`, checked per class), or a favorable_label (declared with a sensitive attribute) that is
    not one of the classes."""
    texts = labels.texts
    target = quote(family.target)
    if family.task == "regression":
        values = np.full(len(texts), np.nan)
        for group, text in enumerate(texts):
            number = _as_float(text)
            if number is not None and math.isfinite(number):
                values[group] = number
        y = values[groups]
        bad = np.flatnonzero(np.isnan(y))
        if bad.size:
            lines = np.concatenate(line_blocks)[bad[:MAX_ERRORS_REPORTED]]
            examples = "; ".join(f"{location} {line}: {quote(texts[groups[i]])}" for line, i in
                                 zip(lines, bad[:MAX_ERRORS_REPORTED], strict=True))
            raise DataSetError(f"target {target}: {_count(int(bad.size), 'row')} of {y.size} without a finite number "
                               f"(a regression predicts a number). First: {examples}", invalid_rows=int(bad.size),
                               rows=int(y.size))
        huge = np.flatnonzero(np.abs(y) > FLOAT32_MAX)
        if huge.size:
            lines = np.concatenate(line_blocks)[huge[:MAX_ERRORS_REPORTED]]
            examples = "; ".join(f"{location} {line}: {quote(texts[groups[i]])}" for line, i in
                                 zip(lines, huge[:MAX_ERRORS_REPORTED], strict=True))
            raise DataSetError(f"target {target}: {_count(int(huge.size), 'row')} of {y.size} beyond the 32-bit float "
                               f"range the model's graph computes in (|y| <= {FLOAT32_MAX:.4g}; the squared errors "
                               f"of such values overflow float64 too). First: {examples}",
                               invalid_rows=int(huge.size), rows=int(y.size))
        if np.unique(y).size < 2:
            raise DataSetError(f"target {target} is constant ({y[0]:g} on every row); a regression needs values "
                               "that vary")
        return y, ()
    counts = np.bincount(groups, minlength=len(texts))
    found = ", ".join(f"{quote(texts[g])} ({_count(int(counts[g]), 'row')})"
                      for g in np.argsort(-counts, kind="stable")[:10])
    if family.classes is not None:
        _check_declared_classes(texts, counts, groups, family, np.concatenate(line_blocks), location)
    if len(texts) < 3:
        raise DataSetError(f"target {target} has {_count(len(texts), 'distinct label')} ({found}); a multiclass family "
                           "needs at least 3 (two labels: declare task binary_classification)")
    if len(texts) > MAX_CLASSES:
        raise DataSetError(f"target {target} has {len(texts)} distinct labels, over the limit of {MAX_CLASSES} "
                           f"classes (free text or an identifier?). Most frequent: {found}")
    numbers = [_as_float(text) for text in texts]
    if all(n is not None and n == n for n in numbers):
        order = sorted(range(len(texts)), key=lambda g: numbers[g])
    else:
        order = sorted(range(len(texts)), key=lambda g: texts[g])
    rank = np.empty(len(texts), dtype=np.int64)
    rank[order] = np.arange(len(texts))
    classes = tuple(texts[g] for g in order)
    needed = min_rows_per_class(family)
    per_class = counts[order]
    short = [f"{quote(classes[i])} has {per_class[i]}" for i in range(len(classes)) if per_class[i] < needed]
    if short:
        raise DataSetError(
            f"target {target}: every class needs at least {needed} rows for the stratified holdout "
            f"(min_rows_per_class {family.min_rows_per_class}, and at least 1/holdout_fraction = "
            f"{1 / family.holdout_fraction:g}); " + ", ".join(short[:10]) + (" ..." if len(short) > 10 else ""),
            class_counts={c[:MAX_QUOTED_CHARS]: int(n) for c, n in zip(classes[:20], per_class[:20], strict=False)})
    if family.sensitive_attribute is not None and not any(same_label(c, family.favorable_label) for c in classes):
        raise DataSetError(f"the favorable_label {quote(label_text(family.favorable_label))} is not among the "
                           f"classes of target {target}: {found}")
    return rank[groups], classes


def prediction_range_notes(family: ModelFamily, y: np.ndarray, line_numbers: np.ndarray,
                           location: str = "line") -> list[str]:
    """A note (empty list when there is nothing to say) for regression target values outside the family's declared
    prediction_range: how many, below and above, and the first ones with their lines. Not an error: the served
    graph clips its predictions to the range, so those rows' errors count in full in the holdout metrics, and a
    range that cuts off real values is probably mis-declared."""
    if family.prediction_range is None:
        return []
    low, high = family.prediction_range
    below = y < low if low is not None else np.zeros(y.shape, dtype=bool)
    above = y > high if high is not None else np.zeros(y.shape, dtype=bool)
    outside = np.flatnonzero(below | above)
    if not outside.size:
        return []
    shown = "; ".join(f"{location} {line_numbers[i]}: {_figure(y[i])}" for i in outside[:MAX_ERRORS_REPORTED])
    return [f"target {quote(family.target)}: {_count(int(outside.size), 'row')} of {y.size} outside the declared "
            f"prediction_range {range_text(family.prediction_range)} ({int(below.sum())} below, {int(above.sum())} "
            f"above; first {shown}): the served model clips its predictions to the range, so these rows' errors "
            "count in full in the holdout metrics; widen the range if these values are real"]


def range_text(bounds: tuple[float | None, float | None]) -> str:
    """A declared range as the family file writes it: [0, 1], [0, null]."""
    return "[" + ", ".join("null" if b is None else _figure(b) for b in bounds) + "]"


def distinct_figures(values: list[float]) -> list[str]:
    """Numbers written with one shared count of significant digits: enough to show the spread between them to 3
    significant digits, at least 6 and at most 17. A target of 1e9 plus a few units reads 1000000000.01 ..
    1000000010, not 1e+09 .. 1e+09."""
    finite = [float(v) for v in values if math.isfinite(v)]
    digits = 6
    if len(finite) > 1:
        spread, magnitude = max(finite) - min(finite), max(abs(v) for v in finite)
        if spread > 0:
            digits = min(17, max(6, math.floor(math.log10(magnitude)) - math.floor(math.log10(spread)) + 3))
    return [f"{float(v):.{digits}g}" for v in values]


def _figure(value: float) -> str:
    """A number with the digits it needs to tell it from its neighbours: 0.5, 1000000008.142, 1e+300."""
    return repr(float(value)).removesuffix(".0") if abs(value) < 1e16 else f"{value:.6g}"


def _check_declared_classes(texts: list[str], counts: np.ndarray, groups: np.ndarray, family: ModelFamily,
                            lines: np.ndarray, location: str) -> None:
    """Refuse a multiclass target whose labels are not the family's declared `classes`: labels it does not
    declare (their row counts and first lines; "e" is not "E"), or declared classes without a row."""
    target = quote(family.target)
    declared = ", ".join(quote(label_text(c)) for c in family.classes or ())
    extra = [g for g, text in enumerate(texts) if not family.declares_class(text)]
    if extra:
        rows = np.flatnonzero(np.isin(groups, extra))
        first = "; ".join(f"{location} {lines[i]}: {quote(texts[groups[i]])}" for i in rows[:MAX_ERRORS_REPORTED])
        listed = ", ".join(f"{quote(texts[g])} ({_count(int(counts[g]), 'row')})" for g in extra[:10])
        raise DataSetError(f"target {target}: {_count(int(rows.size), 'row')} of {groups.size} hold classes the "
                           f"family does not declare: {listed}; declared classes: [{declared}]. First: {first}. "
                           "Fix the labels, or declare the new class list in `classes` (a change of the classes "
                           "the API answers)", undeclared_classes=[texts[g][:MAX_QUOTED_CHARS] for g in extra[:20]])
    absent = [label_text(c) for c in family.classes or () if not any(same_label(c, text) for text in texts)]
    if absent:
        raise DataSetError(f"target {target}: declared classes without a row in the data set: "
                           f"{', '.join(quote(c) for c in absent)}; declared classes: [{declared}]. A model trained "
                           "on it could never predict them: add their rows, or remove them from `classes` (a "
                           "change of the classes the API answers)", absent_classes=absent[:20])


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
