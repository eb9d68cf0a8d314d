"""Training data sets: CSV bytes validated against a family's schema, or rejected early with the reason."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

from .errors import DataSetError
from .schemas import ModelFamily

MIN_ROWS = 50
SUPPORTED_SUFFIXES = (".csv",)
MAX_ERRORS_REPORTED = 5


@dataclass(frozen=True)
class DataSet:
    """Model inputs in schema order (categoricals as category indices), labels and the sensitive column."""

    X: np.ndarray
    y: np.ndarray
    sensitive: np.ndarray
    row_ids: np.ndarray
    columns: tuple[str, ...]

    @property
    def rows(self) -> int:
        return int(self.y.shape[0])


def encode_category(value: str, categories: tuple[str, ...]) -> int:
    try:
        return categories.index(value)
    except ValueError:
        return -1


def parse_csv(data: bytes, family: ModelFamily) -> DataSet:
    """Validate and decode a CSV data set. Every problem raises DataSetError naming the column and row."""
    if len(data) > family.max_dataset_bytes:
        raise DataSetError(f"data set is {len(data)} bytes, over the limit of {family.max_dataset_bytes}")
    if not data.strip():
        raise DataSetError("data set is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataSetError(f"data set is not UTF-8 text (invalid byte at offset {exc.start})") from None
    if "\x00" in text:
        raise DataSetError("data set contains NUL bytes; it is not a CSV text file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except (StopIteration, csv.Error) as exc:
        raise DataSetError(f"data set has no readable header: {exc}") from None
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise DataSetError(f"header repeats columns {duplicates}")
    required = [*family.feature_names, family.target, family.sensitive_attribute]
    missing = [c for c in dict.fromkeys(required) if c not in header]
    if missing:
        kinds = {family.target: "target", family.sensitive_attribute: "sensitive attribute"}
        named = ", ".join(f"{c!r} ({kinds.get(c, 'feature')})" for c in missing)
        raise DataSetError(f"data set lacks required columns: {named}", missing=missing)
    index = {name: header.index(name) for name in required}

    n_features = len(family.features)
    X_rows: list[list[float]] = []
    y: list[int] = []
    sensitive: list[str] = []
    errors: list[str] = []
    try:
        for line_no, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                errors.append(f"line {line_no}: {len(row)} fields, header has {len(header)}")
            else:
                values = _decode_row(row, index, family, line_no, errors)
                if values is not None:
                    X_rows.append(values[0])
                    y.append(values[1])
                    sensitive.append(values[2])
            if len(errors) >= MAX_ERRORS_REPORTED:
                break
    except csv.Error as exc:
        errors.append(f"CSV syntax: {exc}")
    if errors:
        raise DataSetError("data set has invalid rows: " + "; ".join(errors[:MAX_ERRORS_REPORTED]),
                           errors=errors[:MAX_ERRORS_REPORTED])
    if not y:
        raise DataSetError("data set has a header but no data rows")
    if len(y) < MIN_ROWS:
        raise DataSetError(f"data set has {len(y)} rows; at least {MIN_ROWS} are needed to train and hold out")
    labels = np.asarray(y, dtype=np.int64)
    if len(np.unique(labels)) < 2:
        raise DataSetError(f"target {family.target!r} is constant ({labels[0]}); nothing to learn")
    return DataSet(
        X=np.asarray(X_rows, dtype=np.float32).reshape(len(y), n_features),
        y=labels,
        sensitive=np.asarray(sensitive),
        row_ids=np.arange(len(y), dtype=np.int64),
        columns=tuple(family.feature_names),
    )


def _decode_row(row: list[str], index: dict[str, int], family: ModelFamily, line_no: int,
                errors: list[str]) -> tuple[list[float], int, str] | None:
    values: list[float] = []
    ok = True
    for feature in family.features:
        raw = row[index[feature.name]].strip()
        if feature.kind == "categorical":
            code = encode_category(raw, feature.categories)
            if code < 0:
                errors.append(f"line {line_no}: {feature.name}={raw!r} is not one of {list(feature.categories)}")
                ok = False
            values.append(float(code))
        else:
            try:
                number = float(raw)
            except ValueError:
                errors.append(f"line {line_no}: {feature.name}={raw!r} is not a number")
                ok = False
                continue
            low, high = feature.bounds()
            if not math.isfinite(number):
                errors.append(f"line {line_no}: {feature.name}={raw!r} is not finite")
                ok = False
            elif not low <= number <= high:
                errors.append(f"line {line_no}: {feature.name}={raw!r} is outside its domain [{low:g}, {high:g}]")
                ok = False
            values.append(number)
    raw_target = row[index[family.target]].strip()
    if raw_target not in ("0", "1", "0.0", "1.0"):
        errors.append(f"line {line_no}: target {family.target}={raw_target!r} must be 0 or 1")
        ok = False
    return (values, int(float(raw_target)), row[index[family.sensitive_attribute]].strip()) if ok else None


def is_supported_key(key: str) -> bool:
    return key.lower().endswith(SUPPORTED_SUFFIXES)
