"""Scoring core: one onnxruntime session per process, records validated against the model's own schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .errors import ValidationError

FLOAT32_LIMIT = 3.4028234663852886e38


@dataclass(frozen=True)
class ServedFeature:
    """A feature as the artifact declares it. Plain data, no pydantic: the cold start of the scoring function
    does not build the family schema models (the artifact's metadata was validated when it was trained)."""

    name: str
    kind: str
    categories: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    @classmethod
    def from_metadata(cls, entry: dict[str, Any]) -> ServedFeature:
        return cls(name=str(entry["name"]), kind=str(entry.get("kind", "numeric")),
                   categories=tuple(entry.get("categories") or ()), minimum=entry.get("minimum"),
                   maximum=entry.get("maximum"))

    def bounds(self) -> tuple[float, float]:
        return (-FLOAT32_LIMIT if self.minimum is None else float(self.minimum),
                FLOAT32_LIMIT if self.maximum is None else float(self.maximum))

MAX_RECORDS = 1000
_NUMERIC_TYPES = frozenset({int, float})
FAST_PATH_MIN_RECORDS = 12


class ScoringModel:
    """An ONNX model ready to serve. The feature schema and classes come from the artifact's metadata, so what
    is validated is exactly what the model was trained on."""

    def __init__(self, onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.features = tuple(ServedFeature.from_metadata(f) for f in orjson.loads(meta["mlops.features"]))
            self.classes = [int(c) for c in orjson.loads(meta["mlops.classes"])]
        except KeyError as exc:
            raise ValidationError(f"ONNX artifact lacks metadata {exc.args[0]!r}; it was not built here") from None
        self.family = meta.get("mlops.family", "")
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.feature_names = tuple(f.name for f in self.features)
        self._name_set = frozenset(self.feature_names)
        self._categorical = {
            i: {c: float(k) for k, c in enumerate(f.categories)}
            for i, f in enumerate(self.features) if f.kind == "categorical"
        }
        self._bounds = [f.bounds() for f in self.features]
        # Category codes (0..k-1) always sit inside a categorical feature's default float32 bounds.
        self._low, self._high = (np.array(column) for column in zip(*self._bounds, strict=True))
        self._numeric = tuple(i for i, f in enumerate(self.features) if f.kind == "numeric")
        self._categorical_items = tuple(self._categorical.items())
        self.predict_matrix(np.zeros((1, len(self.features)), dtype=np.float32))  # warm-up run

    def predict_matrix(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels, proba = self.session.run(self.output_names, {self.input_name: X})
        return labels, proba

    def matrix(self, instances: Any) -> np.ndarray:
        """Validate API records and build the float32 input. Raises ValidationError naming the problem.

        Fast path for well-formed records (one list comprehension per record, one numpy conversion, vectorised
        domain check); anything it cannot vouch for goes through the exact, slower validator for the message."""
        if not isinstance(instances, list):
            raise ValidationError("'instances' must be a list of records")
        n = len(instances)
        if n == 0:
            raise ValidationError("'instances' is empty; send 1 to 1000 records")
        if n > MAX_RECORDS:
            raise ValidationError(f"'instances' has {n} records; the limit is {MAX_RECORDS}")
        # numpy's fixed costs only pay off from a dozen records on; below, the exact loop is also the fastest.
        fast = self._fast_matrix(instances) if n >= FAST_PATH_MIN_RECORDS else None
        return fast if fast is not None else self._checked_matrix(instances)

    def _fast_matrix(self, instances: list) -> np.ndarray | None:
        names = self.feature_names
        name_set = self._name_set
        categorical = self._categorical_items
        numeric_types = _NUMERIC_TYPES
        rows = []
        try:
            for record in instances:
                if type(record) is not dict or record.keys() != name_set:
                    return None
                row = [record[name] for name in names]
                for j, mapping in categorical:
                    row[j] = mapping[row[j]]
                rows.append(row)
            # bool is an int subclass and numpy would read it as 1.0: only exact int/float pass.
            for row in rows:
                for j in self._numeric:
                    if type(row[j]) not in numeric_types:
                        return None
            X = np.array(rows, dtype=np.float64)
        except (KeyError, TypeError, ValueError, OverflowError):
            return None
        if not ((X >= self._low) & (X <= self._high)).all():
            return None  # NaN, infinities or out-of-domain values: the checked path names them
        return X.astype(np.float32)

    def _checked_matrix(self, instances: list) -> np.ndarray:
        n = len(instances)
        names = self.feature_names
        name_set = self._name_set
        categorical = self._categorical
        bounds = self._bounds
        X = np.empty((n, len(names)), dtype=np.float32)
        for r, record in enumerate(instances):
            if type(record) is not dict:
                raise ValidationError(f"instances[{r}] must be an object of feature values")
            if record.keys() != name_set:
                self._raise_key_problem(r, record)
            values = []
            for j, name in enumerate(names):
                value = record[name]
                mapping = categorical.get(j)
                if mapping is None:
                    kind = type(value)
                    if kind is not float and kind is not int:
                        raise ValidationError(
                            f"instances[{r}].{name} must be a number, got {_json_type(value)}")
                    # One comparison rejects NaN, infinities and anything outside the feature's domain.
                    low, high = bounds[j]
                    if not low <= value <= high:
                        raise ValidationError(
                            f"instances[{r}].{name} must be a finite number in [{low:g}, {high:g}], got {value!r:.40}")
                    values.append(value)
                else:
                    code = mapping.get(value) if type(value) is str else None
                    if code is None:
                        raise ValidationError(
                            f"instances[{r}].{name} must be one of {list(mapping)}, got {_short(value)}")
                    values.append(code)
            X[r] = values
        return X

    def _raise_key_problem(self, r: int, record: dict) -> None:
        missing = [n for n in self.feature_names if n not in record]
        unknown = sorted(str(k) for k in record if k not in self._name_set)
        parts = []
        if missing:
            parts.append(f"missing features {missing}")
        if unknown:
            parts.append(f"unknown features {[u[:40] for u in unknown[:10]]}")
        raise ValidationError(f"instances[{r}]: " + " and ".join(parts), missing=missing, unknown=unknown[:10])


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {_short(value)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
