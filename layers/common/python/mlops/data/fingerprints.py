"""Row fingerprints: 64-bit BLAKE2b digests of a row's canonical feature and target values, so a gate can tell
which holdout rows a live model was trained on without storing those rows."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from mlops.core.categories import category_text
from mlops.core.schemas import REGRESSION, ModelFamily, label_text

FORMAT = "blake2b-64/v1"
_MISSING = b"\x00missing"
_OTHER = b"\x00other"


def _digest(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _text_codes(texts: Sequence[bytes]) -> np.ndarray:
    return np.array([_digest(t) for t in texts], dtype=np.uint64)


def row_fingerprints(family: ModelFamily, X: np.ndarray, y: np.ndarray,
                     classes: Sequence[object] | None = None) -> np.ndarray:
    """One uint64 per row of X [rows, features] (the DataSet encoding, schema order) and y [rows] (class index,
    or the regression target): the 64-bit BLAKE2b digest (hashlib, RFC 7693) of the row's canonical bytes.

    Canonical per column, 8 bytes each: a numeric value as its float64 bits (-0.0 as 0.0, every NaN as one
    missing code); a categorical value as the 64-bit digest of its category text (`category_text`, so the
    fingerprint does not depend on the order of the declared categories), of "other" for index k, or of the
    missing code; the target as the digest of its label text (`label_text` of `classes[y]`) or, for a
    regression, its float64 bits. Two rows get the same fingerprint exactly when they hold the same values
    (up to a 2^-64 collision chance per pair). Raises ValueError on a shape mismatch."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(family.features) or X.shape[0] != np.size(y):
        raise ValueError(f"X {X.shape} and y ({np.size(y)},) do not match {len(family.features)} features")
    rows = X.shape[0]
    words = np.empty((rows, X.shape[1] + 1), dtype=np.uint64)
    missing = _text_codes([_MISSING])[0]
    for j, feature in enumerate(family.features):
        column = X[:, j]
        nan = np.isnan(column)
        if feature.kind == "categorical":
            lookup = _text_codes([category_text(c).encode() for c in feature.categories] + [_OTHER])
            codes = np.where(nan, 0, column).astype(np.int64)
            words[:, j] = np.where(nan, missing, lookup[np.clip(codes, 0, len(lookup) - 1)])
        else:
            values = np.where(column == 0.0, 0.0, column)  # -0.0 and 0.0: one value
            words[:, j] = np.where(nan, missing, values.view(np.uint64))
    if family.task == REGRESSION:
        words[:, -1] = np.asarray(y, dtype=np.float64).view(np.uint64)
    else:
        labels = list(classes) if classes is not None else [0, 1]
        lookup = _text_codes([label_text(c).encode() for c in labels])  # type: ignore[arg-type]
        words[:, -1] = lookup[np.asarray(y, dtype=np.int64)]
    data = words.astype("<u8").tobytes()
    width = words.shape[1] * 8
    blake = hashlib.blake2b
    out = np.fromiter((int.from_bytes(blake(data[i:i + width], digest_size=8).digest(), "little")
                       for i in range(0, rows * width, width)), dtype=np.uint64, count=rows)
    return out


def fingerprint_set_bytes(fingerprints: np.ndarray) -> bytes:
    """The distinct fingerprints, sorted, as little-endian uint64 bytes (what is stored as an artifact)."""
    return np.unique(np.asarray(fingerprints, dtype=np.uint64)).astype("<u8").tobytes()


def fingerprint_set(data: bytes) -> np.ndarray:
    """The sorted uint64 array stored by `fingerprint_set_bytes`. Raises ValueError on a torn artifact."""
    if len(data) % 8:
        raise ValueError(f"a fingerprint set holds a multiple of 8 bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


def seen_in(fingerprints: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Boolean mask: which of `fingerprints` are in the sorted set `known` (binary search, O(n log m))."""
    if known.size == 0:
        return np.zeros(np.shape(fingerprints), dtype=bool)
    position = np.clip(np.searchsorted(known, fingerprints), 0, known.size - 1)
    return known[position] == fingerprints
