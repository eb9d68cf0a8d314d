"""Scoring core: one onnxruntime session per process, records validated against the model's own schema."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import orjson

from mlops.core.categories import category_code
from mlops.core.errors import ValidationError

FLOAT32_LIMIT = 3.4028234663852886e38


def value_text(value: Any) -> str | None:
    """The text a JSON input value is compared with missing-value markers by, as a CSV cell would be: a string
    trimmed, an integer in decimal, a float as Python writes it (-999.5); None for anything else (null, booleans,
    arrays, objects). A marker spelled as a number ("-999") matches the integer -999 only, as in a data set
    where "-999.0" is a number and not the marker."""
    kind = type(value)
    if kind is str:
        return value.strip()
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value)
    return None


def marker_numbers(markers: frozenset[str]) -> frozenset[float]:
    """The finite numbers among missing-value marker texts ("-999" -> -999.0): values to look at more closely."""
    numbers = set()
    for marker in markers:
        try:
            number = float(marker)
        except ValueError:
            continue
        if math.isfinite(number):
            numbers.add(number)
    return frozenset(numbers)


@dataclass(frozen=True)
class ServedFeature:
    """A feature as the artifact declares it. Plain data, no pydantic: the cold start of the scoring function
    does not build the family schema models (the artifact's metadata was validated when it was trained)."""

    name: str
    kind: str
    categories: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    missing: str = "reject"
    unknown: str = "reject"

    @classmethod
    def from_metadata(cls, entry: dict[str, Any]) -> ServedFeature:
        return cls(name=str(entry["name"]), kind=str(entry.get("kind", "numeric")),
                   categories=tuple(entry.get("categories") or ()), minimum=entry.get("minimum"),
                   maximum=entry.get("maximum"), missing=str(entry.get("missing") or "reject"),
                   unknown=str(entry.get("unknown") or "reject"))

    @property
    def accepts_missing(self) -> bool:
        """JSON null is valid input (scored as NaN: imputed inside the graph, or HistGradientBoosting's own)."""
        return self.missing != "reject"

    @property
    def other_code(self) -> float | None:
        """The code of an undeclared category: index k ("other") when the feature maps unknown categories to
        it, None when they are refused."""
        return float(len(self.categories)) if self.kind == "categorical" and self.unknown == "other" else None

    def bounds(self) -> tuple[float, float]:
        return (-FLOAT32_LIMIT if self.minimum is None else float(self.minimum),
                FLOAT32_LIMIT if self.maximum is None else float(self.maximum))


MAX_RECORDS = 1000
MAX_WARNINGS = 100  # unknown-category warnings in one answer; `warnings_omitted` counts the rest
_NUMERIC_TYPES = frozenset({int, float})
FAST_PATH_MIN_RECORDS = 12


BINARY = "binary_classification"
MULTICLASS = "multiclass_classification"
REGRESSION = "regression"


class ScoringModel:
    """An ONNX model ready to serve. The task, feature schema, classes and decision threshold come from the
    artifact's metadata, so what is validated is exactly what the model was trained on.

    The input matrix is built in the dtype the graph declares (float32, or float64 for models that need double
    precision); NaN stands for a missing value and index k for an undeclared category mapped to "other".

    Missing values are read as training read them: JSON null, and a value equal to one of the family's missing
    markers (`mlops.missing_markers`: "NA", "" or a declared "-999"; compared by `value_text`) unless it is a
    declared category. Such a value is scored as missing where the feature has a missing strategy, and refused
    (naming the marker) where it has none. Artifacts trained before the markers were recorded have none: only
    null is missing there.

    What a scored batch is, per task (`predict_instances`, `predict_lists`): binary, the class index at the
    threshold and [p0, p1] per row; multiclass, the index of the most probable class and one probability per
    class; regression, the predicted value per row and no probabilities (None)."""

    def __init__(self, onnx_bytes: bytes, memory_arena: bool = True) -> None:
        """`memory_arena`: onnxruntime's CPU memory arena (its first chunk reserves about 1 MiB per session, mostly
        never touched); the shared tier, holding hundreds of sessions, turns it off (docs/benchmarks.md)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = memory_arena
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        # Built once: without it onnxruntime builds default run options on every call (~0.7 us of a 4 us call).
        self._run_options = ort.RunOptions()
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.features = tuple(ServedFeature.from_metadata(f) for f in orjson.loads(meta["mlops.features"]))
            # Original labels in class-index order [negative, positive] ("good", "bad"; 0, 1; false, true).
            self.classes = list(orjson.loads(meta["mlops.classes"]))
        except KeyError as exc:
            raise ValidationError(f"ONNX artifact lacks metadata {exc.args[0]!r}; it was not built here") from None
        self.missing_markers = frozenset(orjson.loads(meta.get("mlops.missing_markers", "[]")))
        self._marker_numbers = marker_numbers(self.missing_markers)
        # Artifacts trained before tasks existed are binary; before thresholds existed they decided at 0.5.
        self.task = meta.get("mlops.task", BINARY)
        self.threshold = float(meta.get("mlops.threshold", 0.5))
        if self.task not in (BINARY, MULTICLASS, REGRESSION):
            raise ValidationError(f"ONNX artifact declares task {self.task[:40]!r}; this platform serves binary, "
                                  "multiclass and regression models")
        if self.task == MULTICLASS:
            self._score_bound = self._score_bound_multiclass
            self.decide = self._argmax
        elif self.task == REGRESSION:
            self._score_bound = self._score_bound_regression
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_dtype = _ORT_TYPES.get(model_input.type)
        if self.input_dtype not in (np.float32, np.float64):
            raise ValidationError(f"ONNX artifact input {model_input.type} is not a float tensor; not built here")
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.feature_names = tuple(f.name for f in self.features)
        # The feature names as a set: record checks, and the client `id` field (mlops.serving.decision_ids).
        self.feature_set = self._name_set = frozenset(self.feature_names)
        categorical = {
            i: {c: float(k) for k, c in enumerate(f.categories)}
            for i, f in enumerate(self.features) if f.kind == "categorical"
        }
        bounds = [f.bounds() for f in self.features]
        # Category codes (0..k) always sit inside a categorical feature's default float32 bounds.
        self._low, self._high = (np.array(column) for column in zip(*bounds, strict=True))
        self._numeric = tuple(i for i, f in enumerate(self.features) if f.kind == "numeric")
        self._categorical_items = tuple(categorical.items())
        # Per feature, in schema order: name, domain, category codes (None for numeric features), and what a
        # value the quick checks refuse becomes (NaN for null, "other" for an unknown category) or the error.
        self._plan = tuple((f.name, *bounds[j], categorical.get(j), self._fallback(f))
                           for j, f in enumerate(self.features))
        # Categorical features that score an undeclared category as "other": the answer names such values.
        self._other_features = tuple((f.name, categorical[j]) for j, f in enumerate(self.features)
                                     if f.other_code is not None)
        if self._marker_numbers:  # a number may be a marker: every numeric value is looked at (not the default)
            self._row = self._row_with_marker_numbers
            self._marker_array = np.array(sorted(self._marker_numbers))
        self._bind_single_row(np.zeros((1, len(self.features)), dtype=self.input_dtype))

    def unknown_categories(self, instances: list, limit: int = MAX_WARNINGS) -> tuple[list[dict[str, Any]], int]:
        """The values of already validated records that were scored as the "other" category (undeclared in a
        feature with `unknown: other`): up to `limit` entries {record, field, value, treated_as: "other"} in
        record order, and how many there were in all. Empty (and free) when no feature maps unknown values to
        "other"; null and missing markers are missing values, not unknown categories."""
        found: list[dict[str, Any]] = []
        total = 0
        if not self._other_features:
            return found, total
        markers = self.missing_markers
        for r, record in enumerate(instances):
            for name, mapping in self._other_features:
                value = record[name]
                if type(value) is not str or value in mapping or category_code(value, mapping) is not None:
                    continue
                if markers and value_text(value) in markers:
                    continue
                total += 1
                if len(found) < limit:
                    found.append({"record": r, "field": name, "value": value[:200], "treated_as": "other"})
        return found, total

    def predict_matrix(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A classifier graph's own outputs for X [rows, features] (any float dtype; cast to the graph's):
        `label`, the class index of the largest probability, and `probabilities` [rows, k] in class-index order."""
        if X.dtype != self.input_dtype:
            X = X.astype(self.input_dtype)
        labels, proba = self.session.run(self.output_names, {self.input_name: X}, self._run_options)
        return labels, proba

    def predict_values(self, X: np.ndarray) -> np.ndarray:
        """A regression graph's predictions for X [rows, features], (rows,) float64 on the target's scale
        (clipped inside the graph to the family's prediction_range, when it declares one)."""
        if X.dtype != self.input_dtype:
            X = X.astype(self.input_dtype)
        (values,) = self.session.run(self.output_names, {self.input_name: X}, self._run_options)
        return values.reshape(-1).astype(np.float64)

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Class index per row at the family's threshold: 1 (positive) when p[1] >= threshold. Multiclass
        models decide by the largest probability instead (ties: the lowest index)."""
        return (proba[:, 1] >= self.threshold).astype(np.int64)

    @staticmethod
    def _argmax(proba: np.ndarray) -> np.ndarray:
        return np.argmax(proba, axis=1).astype(np.int64)

    def predict_instances(self, instances: Any) -> tuple[list, list[list[float]] | None]:
        """Validate API records and score them: class indices and probabilities as plain lists (regression: the
        predicted values and None). One record is validated straight into the pre-bound input buffer (no
        intermediate matrix)."""
        if type(instances) is list and len(instances) == 1 and self._binding is not None:
            scored = self._score_bound(self._row(instances[0], 0))
            if scored is not None:
                return scored
        return self.predict_lists(self.matrix(instances))

    def _score_bound(self, row: Any) -> tuple[list, list[list[float]]] | None:
        """One row (values or a 1-row matrix) through the pre-bound session; None when another thread holds it."""
        if not self._bound_lock.acquire(False):
            return None
        try:
            self._bound_input[0] = row
            self._bound_run()
            proba = self._bound_proba.tolist()
        finally:
            self._bound_lock.release()
        positive = proba[0][1]
        if not math.isfinite(positive + proba[0][0]):  # NaN or infinity
            raise _not_finite([0])
        return [1 if positive >= self.threshold else 0], proba

    def _score_bound_multiclass(self, row: Any) -> tuple[list, list[list[float]]] | None:
        if not self._bound_lock.acquire(False):
            return None
        try:
            self._bound_input[0] = row
            self._bound_run()
            proba = self._bound_proba.tolist()
        finally:
            self._bound_lock.release()
        if not math.isfinite(math.fsum(proba[0])):
            raise _not_finite([0])
        return [int(self._bound_proba[0].argmax())], proba

    def _score_bound_regression(self, row: Any) -> tuple[list, None] | None:
        if not self._bound_lock.acquire(False):
            return None
        try:
            self._bound_input[0] = row
            self._bound_run()
            value = float(self._bound_proba[0, 0])
        finally:
            self._bound_lock.release()
        if not math.isfinite(value):
            raise _not_finite([0])
        return [value], None

    def predict_lists(self, X: np.ndarray) -> tuple[list, list[list[float]] | None]:
        """Class indices at the threshold (multiclass: the most probable class) and probabilities as plain lists
        (what the API returns); regression: the predicted values and None. Refuses non-finite outputs (they would
        serialise as null) with a message naming the rows.

        A single row runs through a pre-bound session (input and outputs in fixed buffers): the call skips
        building feeds and allocating outputs (HistGradientBoosting: 5.3 us instead of 7 us). Concurrent callers
        (never two in one Lambda sandbox; possible locally) take the ordinary path instead of waiting."""
        if len(X) == 1 and self._binding is not None:
            scored = self._score_bound(X)
            if scored is not None:
                return scored
        if self.task == REGRESSION:
            values = self.predict_values(X)
            if not np.isfinite(values).all():
                raise _not_finite(np.flatnonzero(~np.isfinite(values))[:10].tolist())
            return values.tolist(), None
        _, proba_array = self.predict_matrix(X)
        if not np.isfinite(proba_array).all():
            raise _not_finite(sorted({int(i) for i in np.argwhere(~np.isfinite(proba_array))[:, 0]})[:10])
        return self.decide(proba_array).tolist(), proba_array.tolist()

    def _bind_single_row(self, probe: np.ndarray) -> None:
        """Warm the session up on `probe`, then set up the single-row binding and keep it only if it answers
        exactly as session.run did. A regression graph's one output [1, 1] is bound to `_bound_proba`."""
        regression = self.task == REGRESSION
        expected = self.session.run(self.output_names, {self.input_name: probe}, self._run_options)
        self._binding = None
        self._bound_lock = threading.Lock()
        outputs = self.session.get_outputs()
        dtypes = [_ORT_TYPES.get(o.type) for o in outputs]
        if len(outputs) != (1 if regression else 2) or None in dtypes:
            return
        self._bound_input = np.zeros(probe.shape, dtype=self.input_dtype)
        self._bound_labels = np.zeros((1,), dtype=dtypes[0])
        self._bound_proba = np.zeros((1, 1 if regression else len(self.classes)), dtype=dtypes[-1])
        buffers = (self._bound_proba,) if regression else (self._bound_labels, self._bound_proba)
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cpu", 0, self.input_dtype, list(probe.shape),
                           self._bound_input.ctypes.data)
        for output, buffer in zip(outputs, buffers, strict=True):
            binding.bind_output(output.name, "cpu", 0, buffer.dtype, list(buffer.shape), buffer.ctypes.data)
        # The binding's own entry point, past the Python wrapper: the wrapper costs ~0.3 us, and ~28 us when given
        # run options (onnxruntime 1.32 looks up a GPU-graph entry that raises when absent). The public method,
        # without run options, when an onnxruntime release moves the entry point.
        native = getattr(getattr(self.session, "_sess", None), "run_with_iobinding", None)
        raw = getattr(binding, "_iobinding", None)
        run = partial(native, raw, self._run_options) if native is not None and raw is not None else partial(
            self.session.run_with_iobinding, binding)
        self._bound_input[...] = probe
        try:
            run()
        except Exception:  # noqa: BLE001 - an exotic graph the binding cannot serve: keep the ordinary path
            return
        if all(np.array_equal(value.reshape(buffer.shape), buffer) for value, buffer in zip(expected, buffers,
                                                                                            strict=True)):
            self._binding, self._bound_run = binding, run

    def matrix(self, instances: Any) -> np.ndarray:
        """Validate API records and build the input matrix in the graph's dtype. Raises ValidationError naming
        the problem.

        Fast path for well-formed records (one list comprehension per record, one numpy conversion, vectorised
        domain check); anything it cannot vouch for (nulls, unknown categories included) goes through the exact,
        slower validator, which also maps those or names the problem."""
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
        if self._marker_numbers and np.isin(X[:, self._numeric], self._marker_array).any():
            return None  # a value that may be a missing marker: the checked path decides
        return X if self.input_dtype is np.float64 else X.astype(self.input_dtype)

    def exact_matrix(self, instances: list) -> np.ndarray:
        """The records' values as float64 [rows, features] in schema order, exactly as sent (NaN = missing,
        category index, k = "other"), validated like `matrix`: what explanations read and report."""
        return self._checked_matrix(instances, np.float64)

    def _checked_matrix(self, instances: list, dtype: Any = None) -> np.ndarray:
        X = np.empty((len(instances), len(self.feature_names)), dtype=dtype or self.input_dtype)
        row = self._row
        for r, record in enumerate(instances):
            X[r] = row(record, r)
        return X

    def _row(self, record: Any, r: int) -> list:
        """One record's values in schema order, validated exactly; the first problem found is explained."""
        if type(record) is not dict or record.keys() != self._name_set:
            self._explain(record, r)
        values = []
        append = values.append
        numeric_types = _NUMERIC_TYPES
        for name, low, high, mapping, fallback in self._plan:
            value = record[name]
            if mapping is None:
                # Exact int/float only (bool is an int subclass); one comparison rejects NaN, infinities and
                # anything outside the feature's domain.
                if type(value) not in numeric_types or not low <= value <= high:
                    value = fallback(value, record, r)
                append(value)
            else:
                code = mapping.get(value) if type(value) is str else None
                if code is None:
                    code = fallback(value, record, r)
                append(code)
        return values

    def _row_with_marker_numbers(self, record: Any, r: int) -> list:
        """`_row` for artifacts whose missing markers include numbers: a numeric value equal to one goes through
        the fallback, which tells a marker ("-999" sent as -999) from the same number spelled otherwise."""
        values = ScoringModel._row(self, record, r)
        numbers = self._marker_numbers
        for j in self._numeric:
            if values[j] in numbers:
                values[j] = self._plan[j][4](values[j], record, r)
        return values

    def _fallback(self, feature: ServedFeature) -> Any:
        """What a value the quick checks refused becomes: NaN for null, or for a missing marker that is not a
        declared category, where the feature accepts missing values; index k for an undeclared category where
        it maps them to "other"; a number in the domain stays itself (a marker's number spelled otherwise);
        otherwise the explained error."""
        missing = feature.accepts_missing
        other = feature.other_code
        markers = self.missing_markers
        numeric = feature.kind == "numeric"
        low, high = feature.bounds()
        index = {c: float(k) for k, c in enumerate(feature.categories)}

        def fallback(value: Any, record: Any, r: int) -> float:
            if value is None and missing:
                return math.nan
            # A declared category spelled with the whitespace training trims (" Male"): the same category.
            if index and type(value) is str and (code := category_code(value, index)) is not None:
                return code
            if markers and value_text(value) in markers:
                if missing:
                    return math.nan
                self._explain(record, r)
            if other is not None and type(value) is str:
                return other
            if numeric and type(value) in _NUMERIC_TYPES and low <= value <= high:
                return value
            self._explain(record, r)
            raise AssertionError("unreachable: _explain raises")  # pragma: no cover

        return fallback

    def _explain(self, record: Any, r: int) -> None:
        """Raise the ValidationError that names the first problem of a record the fast checks refused."""
        if type(record) is not dict:
            raise ValidationError(f"instances[{r}] must be an object of feature values")
        if record.keys() != self._name_set:
            self._raise_key_problem(r, record)
        for feature, (name, low, high, mapping, _) in zip(self.features, self._plan, strict=True):
            value = record[name]
            if value is None:
                if feature.accepts_missing:
                    continue
                raise ValidationError(f"instances[{r}].{name} is null, but this feature does not accept missing "
                                      "values (its family declares missing: reject)")
            declared = mapping is not None and type(value) is str and category_code(value, mapping) is not None
            if value_text(value) in self.missing_markers and not declared:
                if feature.accepts_missing:
                    continue
                raise ValidationError(f"instances[{r}].{name} is {_short(value)}, one of the family's missing-value "
                                      "markers, but this feature does not accept missing values (its family "
                                      "declares missing: reject)")
            if mapping is None:
                if type(value) not in _NUMERIC_TYPES:
                    raise ValidationError(f"instances[{r}].{name} must be a number, got {_json_type(value)}")
                if not low <= value <= high:
                    raise ValidationError(
                        f"instances[{r}].{name} must be a finite number {_domain(feature)}, got {value!r:.40}")
            elif type(value) is not str:
                raise ValidationError(f"instances[{r}].{name} must be a string, one of {_allowed(mapping)}, "
                                      f"got {_json_type(value)}")
            elif not declared and feature.other_code is None:
                raise ValidationError(f"instances[{r}].{name} must be one of {_allowed(mapping)}, got {_short(value)}")
        raise AssertionError(f"instances[{r}] was refused without a reason")  # unreachable: the checks agree

    def _raise_key_problem(self, r: int, record: dict) -> None:
        missing = [n for n in self.feature_names if n not in record]
        unknown = sorted(str(k) for k in record if k not in self._name_set)
        parts = []
        if missing:
            parts.append(f"missing features {missing}")
        if unknown:
            parts.append(f"unknown features {[u[:40] for u in unknown[:10]]}")
        raise ValidationError(f"instances[{r}]: " + " and ".join(parts), missing=missing, unknown=unknown[:10])


_ORT_TYPES = {"tensor(int64)": np.int64, "tensor(float)": np.float32, "tensor(double)": np.float64}


def _not_finite(rows: list[int]) -> ValidationError:
    return ValidationError(
        f"instances {rows}: the model cannot score these values (numeric overflow); check their units and "
        "magnitudes", instances=rows)


def _domain(feature: ServedFeature) -> str:
    """A numeric feature's accepted values in words: its declared domain, and where a side is not declared the
    32-bit float range the schema accepts by default (never quoted as if it were declared)."""
    low, high = feature.minimum, feature.maximum
    if low is not None and high is not None:
        return f"in [{float(low):g}, {float(high):g}]"
    limit = f"within the 32-bit float range (|x| <= {FLOAT32_LIMIT:.4g})"
    if low is not None:
        return f">= {float(low):g}, {limit}"
    if high is not None:
        return f"<= {float(high):g}, {limit}"
    return limit


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


def _allowed(mapping: dict[str, float], shown: int = 10) -> str:
    """The declared categories for an error message; a long list is cut after `shown` (a 60-level feature)."""
    names = [_short(c, 40) for c in mapping]
    if len(names) <= shown:
        return "[" + ", ".join(names) + "]"
    return "[" + ", ".join(names[:shown]) + f", ... ({len(names)} categories)]"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
