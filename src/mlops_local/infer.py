"""A starting family from a data set: feature kinds, categories, domains, missing-value handling, positive label.

The rules (also in docs/families.md):
- Every column but the target and the sensitive attribute is a feature, except: ID-like columns (text with a
  distinct value on every row, or integers counting rows 1, 2, 3...), constant or empty columns, free text (over
  MAX_LEVELS levels) and names the schema cannot hold; each is left out with a note. A categorical column with
  values over MAX_CATEGORY_CHARS characters is kept, and a note says so (the value shown truncated).
- Numeric when every non-missing value is a finite number, else categorical with its categories ordered by
  frequency (most frequent first; ties by value) and `unknown: other`. A column numeric but for a few stray values
  (at most 1% of its values, 10 distinct: "12a") stays numeric, and a PROBLEM note names the values and lines.
- A binary target whose positive class is under 10% of the rows gets a HINT: the prior as `threshold`, or class
  weights.
- Domain: minimum 0 when no value is negative; no maximum (the data seen is not the domain).
- Missing values (cells equal to a missing marker): `median` for numeric columns, `most_frequent` for categorical
  ones; columns without missing values keep `reject`.
- Positive label: as given; else a label whose name says it is the event of interest (bad, yes, 1, true,
  default...), else the minority class; the guess is stated in the notes. The other label is the favourable one.
- Task (`infer_task`): as given; else two labels make a binary classification; a numeric target with
  fractional values or more than MAX_CLASS_LEVELS distinct values a regression (with prediction_range [0, 1]
  when every value lies in [0, 1]: a rate or a share); 3 or more labels otherwise a multiclass classification
  (its favourable class for fairness, with --sensitive, guessed as the most frequent). The guess is stated.
- Classes (multiclass): the target's labels, written as `classes` in the reader's order, so that a later data set
  that drops or renames a class is refused instead of silently changing the classes the API answers.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from mlops.core.errors import DataSetError
from mlops.core.schemas import DEFAULT_MISSING_MARKERS, FEATURE_NAME, Label, ModelFamily, label_text, same_label
from mlops.data.datasets import distinct_figures, min_rows_per_class, parse_dataset, quote, read_table
from pydantic import ValidationError as PydanticValidationError

DEFAULT_ALGORITHM = "hist_gradient_boosting"
MAX_LEVELS = 1_000
MAX_CATEGORY_CHARS = 100
# A column is ID-like only with enough rows to tell (on 10 rows every column may be all distinct).
MIN_ROWS_FOR_ID = 20
POSITIVE_NAMES = ("bad", "yes", "y", "1", "true", "t", "default", "defaulted", "positive", "pos", "+", "fraud",
                  "churn", "churned", "fail", "failed", "failure")
_INTEGER = re.compile(r"^-?\d{1,15}$")


# A column that is numeric but for at most this share (and this many distinct) stray values stays numeric; the
# stray values are named as a data problem instead of silently turning the column into categories.
MAX_STRAY_SHARE = 0.01
MAX_STRAY_DISTINCT = 10
# A positive class under this share of the labelled rows gets a threshold / class weight hint.
RARE_POSITIVE_SHARE = 0.10

# A numeric target with more distinct values than this (or any fractional value) is a regression.
MAX_CLASS_LEVELS = 20
TASKS = ("binary_classification", "multiclass_classification", "regression")


class InferenceError(ValueError):
    """The data set cannot give a family (no such target, not two labels, ...); the message says why."""


def infer_family(path: Path | str, target: str, name: str, positive_label: str | None = None,
                 sensitive: str | None = None, *, delimiter: str | None = None,
                 task: str | None = None) -> tuple[ModelFamily, list[str]]:
    """A starting family for a CSV (plain or gzip) and the notes a person should read (guesses, columns left
    out, missing values, problems the platform would refuse the data set for).

    Raises InferenceError (bad target/label/sensitive column, invalid family name) or DataSetError (unreadable
    file: see mlops.data.datasets.read_table)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InferenceError(f"cannot read {path}: {exc.strerror}") from None
    table = read_table(data, key=path.name, delimiter=delimiter)
    notes: list[str] = list(table.warnings)
    rows = len(table.line_numbers)
    if table.delimiter_detected and table.delimiter != ",":
        notes.append(f"delimiter {quote(table.delimiter)} detected")
    _require_column(table.header, target, "target")
    if sensitive is not None:
        _require_column(table.header, sensitive, "sensitive attribute")
        if sensitive == target:
            raise InferenceError("the sensitive attribute cannot be the target")
    markers = frozenset(DEFAULT_MISSING_MARKERS)
    task, task_spec, task_notes = infer_task(table.columns[target], target, task, positive_label, sensitive, markers)
    notes += task_notes
    if task == "binary_classification":
        positive, negative, label_notes = _labels(table.columns[target], target, positive_label, markers)
        notes += label_notes
        task_spec = {"positive_label": positive, "favorable_label": negative}
        notes += _rare_positive_hint(table.columns[target], positive, markers)
    features: list[dict[str, Any]] = []
    for column in table.header:
        if column in (target, sensitive):
            continue
        feature, note = _feature(column, table.columns[column], markers, rows, table.line_numbers)
        if feature is not None:
            features.append(feature)
        if note:
            notes.append(note)
    if not features:
        raise InferenceError("no column can be a feature: " + "; ".join(notes[-5:]))
    spec: dict[str, Any] = {
        "name": name, "task": task, "algorithm": DEFAULT_ALGORITHM, "target": target, **task_spec,
        "sensitive_attribute": sensitive, "features": features,
    }
    if not table.delimiter_detected:
        spec["delimiter"] = table.delimiter
    try:
        family = ModelFamily.model_validate(spec)
    except PydanticValidationError as exc:
        raise InferenceError("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from None
    if sensitive is not None and task == "binary_classification":
        notes.append(f"fairness: favorable_label is {quote(label_text(negative))} (the negative class); change it "
                     "if the positive class is the favourable outcome")
    notes += _check(data, path.name, family)
    return family, notes


def infer_task(cells: list[str], target: str, given: str | None, positive_label: str | None,
               sensitive: str | None, markers: frozenset[str]) -> tuple[str, dict[str, Any], list[str]]:
    """The family's task for a target column (see the module docstring), the task's own fields (regression:
    prediction_range when it applies; multiclass with a sensitive attribute: favorable_label) and the notes.
    Raises InferenceError for a task that the target cannot have, or a target that has none."""
    if given is not None and given not in TASKS:
        raise InferenceError(f"--task {quote(given)} is not one of {', '.join(TASKS)}")
    present = [c for c in cells if c not in markers]
    labels = Counter(_label_key(c) for c in present)
    numbers = _numbers(present) if present else None
    fractional = numbers is not None and not np.all(numbers == np.round(numbers))
    if given is None:
        if len(labels) == 2:
            return "binary_classification", {}, []
        if numbers is not None and len(labels) > 2 and (fractional or len(labels) > MAX_CLASS_LEVELS):
            task, why = "regression", f"a numeric target with {len(labels)} distinct values"
        elif len(labels) > 2:
            task, why = "multiclass_classification", f"{len(labels)} distinct labels"
        else:
            found = _plural(len(labels), "distinct label", "distinct labels")
            raise InferenceError(f"target {quote(target)} has {found}; a family needs two labels (binary), three or "
                                 "more (multiclass) or varying numbers (regression)")
        notes = [f"task GUESSED: {task} ({why}); pass --task to choose"]
    else:
        task, notes = given, [f"task {given} (as given)"]
    if positive_label is not None and task != "binary_classification":
        raise InferenceError(f"--positive-label applies to binary_classification; the task is {task}")
    if task == "binary_classification":
        return task, {}, notes
    if task == "regression":
        if numbers is None:
            bad = next(c for c in present if _numbers([c]) is None)
            raise InferenceError(f"target {quote(target)} is not numeric ({quote(bad)}); a regression predicts "
                                 "numbers")
        spec: dict[str, Any] = {}
        if numbers.min() >= 0 and numbers.max() <= 1:
            spec["prediction_range"] = [0, 1]
            notes.append("prediction_range [0, 1]: every target value lies in [0, 1] (a rate or a share); the "
                         "model's predictions are clipped to it")
        low, high, mean = distinct_figures([numbers.min(), numbers.max(), numbers.mean()])
        notes.append(f"target {quote(target)}: values from {low} to {high}, mean {mean}")
        return task, spec, notes
    texts = _first_spellings(cells, markers)
    shown = ", ".join(f"{quote(texts[k])} ({n})" for k, n in labels.most_common(10))
    notes.append(f"classes of {quote(target)}: {shown}" + (" ..." if len(labels) > 10 else ""))
    # The class list as the data set reader orders it (by value when every label is a number, else by text).
    spellings = [texts[k] for k in labels]
    numeric = _numbers(spellings) is not None
    ordered = sorted(spellings, key=lambda t: (float(t), t) if numeric else (0.0, t))
    spec: dict[str, Any] = {"classes": [_typed(t) for t in ordered]}
    notes.append("classes: the class list is written to the family; a data set with another class or without "
                 "one of them is refused, and a model whose classes differ from the live one's does not pass the "
                 "gate unless the list is changed here")
    if sensitive is None:
        return task, spec, notes
    favorable = _typed(texts[labels.most_common(1)[0][0]])
    notes.append(f"fairness: favorable_label GUESSED as {quote(label_text(favorable))} (the most frequent class); "
                 "set the class whose rate is compared across groups")
    return task, {**spec, "favorable_label": favorable}, notes


def _require_column(header: tuple[str, ...], column: str, role: str) -> None:
    if column in header:
        return
    near = [h for h in header if h.lower() == column.lower()]
    hint = f" (names are case-sensitive: did you mean {quote(near[0])}?)" if near else ""
    shown = ", ".join(quote(h) for h in header[:20]) + (" ..." if len(header) > 20 else "")
    raise InferenceError(f"the {role} column {quote(column)} is not in the data set{hint}; columns: {shown}")


def _labels(cells: list[str], target: str, given: str | None,
            markers: frozenset[str]) -> tuple[Label, Label, list[str]]:
    notes: list[str] = []
    unlabeled = sum(1 for c in cells if c in markers)
    labels = Counter(_label_key(c) for c in cells if c not in markers)
    texts = _first_spellings(cells, markers)
    if len(labels) != 2:
        found = ", ".join(f"{quote(texts[k])} ({_plural(n, 'row', 'rows')})" for k, n in labels.most_common(10))
        raise InferenceError(f"target {quote(target)} has {_plural(len(labels), 'distinct label', 'distinct labels')}; "
                             "a binary family needs "
                             f"exactly two. Found: {found or 'none'}")
    (first, first_n), (second, second_n) = sorted(labels.items(), key=lambda kv: texts[kv[0]])
    pair = {first: first_n, second: second_n}
    if given is not None:
        matches = [k for k in pair if same_label(texts[k], given)]
        if not matches:
            raise InferenceError(f"--positive-label {quote(given)} is not a label of {quote(target)}; labels: "
                                 f"{quote(texts[first])} ({_plural(first_n, 'row', 'rows')}), "
                                 f"{quote(texts[second])} ({_plural(second_n, 'row', 'rows')})")
        positive = matches[0]
        notes.append(f"positive label {quote(texts[positive])} (as given)")
    else:
        named = [k for k in pair if texts[k].lower() in POSITIVE_NAMES]
        minority = min(pair, key=lambda k: (pair[k], texts[k]))
        if len(named) == 1:
            positive = named[0]
            why = "its name suggests the event to predict"
        else:
            positive = minority
            why = "the minority class"
        share = pair[positive] / (first_n + second_n)
        notes.append(f"positive label GUESSED: {quote(texts[positive])} ({why}, {share:.1%} of labelled rows); "
                     "pass --positive-label to choose")
    negative = second if positive == first else first
    if unlabeled:
        notes.append(f"PROBLEM: {unlabeled} rows have no target value; the platform refuses a data set with "
                     "unlabelled rows: remove them before uploading")
    return _typed(texts[positive]), _typed(texts[negative]), notes


def _label_key(text: str) -> object:
    try:
        number = float(text)
    except ValueError:
        return ("text", text)
    return ("number", number) if number == number else ("text", text)


def _first_spellings(cells: list[str], markers: frozenset[str]) -> dict[object, str]:
    texts: dict[object, str] = {}
    for cell in dict.fromkeys(cells):
        if cell not in markers:
            texts.setdefault(_label_key(cell), cell)
    return texts


def _typed(text: str) -> Label:
    """A label as the family file writes it: integers as numbers, other text as is (same_label matches both)."""
    return int(text) if _INTEGER.match(text) else text


def _rare_positive_hint(cells: list[str], positive: Label, markers: frozenset[str]) -> list[str]:
    """A hint when the positive class is rare (under RARE_POSITIVE_SHARE of the labelled rows): at the default
    threshold 0.5 a model will seldom predict it; the prior as the threshold, or class weights, are the usual
    remedies (scikit-learn's class_weight="balanced")."""
    labelled = [c for c in cells if c not in markers]
    if not labelled:
        return []
    share = sum(1 for c in labelled if same_label(c, positive)) / len(labelled)
    if share >= RARE_POSITIVE_SHARE:
        return []
    return [f"HINT: the positive class {quote(label_text(positive))} is {share:.1%} of the labelled rows; at the "
            f"default threshold 0.5 a model will seldom predict it. Consider `threshold: {share:.3g}` (the prior) "
            "or class weights (`hyperparameters: {class_weight: balanced}` for random_forest, "
            "hist_gradient_boosting or logistic_regression)"]


def _stray_values(present: list[str], lines: list[int]) -> tuple[np.ndarray, list[tuple[str, int]]] | None:
    """A column of numbers but for a few stray values ("12a"): at most MAX_STRAY_SHARE of the present values and
    MAX_STRAY_DISTINCT distinct ones, with at least two distinct numbers. Returns the numbers and the stray values
    with their lines (`lines`: the physical line of each present value), or None."""
    numbers, stray = [], []
    for text, line in zip(present, lines, strict=True):
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if np.isfinite(value):
            numbers.append(value)
        else:
            stray.append((text, line))
    if (not stray or len(stray) > max(1, MAX_STRAY_SHARE * len(present))
            or len({t for t, _ in stray}) > MAX_STRAY_DISTINCT or len(set(numbers)) < 2):
        return None
    return np.asarray(numbers), stray


def _feature(column: str, cells: list[str], markers: frozenset[str],
             rows: int, lines: list[int] | None = None) -> tuple[dict[str, Any] | None, str | None]:
    lines = list(range(2, len(cells) + 2)) if lines is None else lines
    present_lines = [line for c, line in zip(cells, lines, strict=True) if c not in markers]
    present = [c for c in cells if c not in markers]
    missing = len(cells) - len(present)
    label = quote(column)
    notes: list[str] = []
    if not present:
        return None, f"{label} left out: every value is missing"
    if not FEATURE_NAME.match(column):
        return None, (f"{label} left out: the name cannot be a feature name (letters, digits, _ . - and inner "
                      "spaces, up to 64 characters); rename the column to use it")
    counts = Counter(present)
    if len(counts) == 1:
        return None, f"{label} left out: constant ({quote(present[0])})"
    numbers = _numbers(present)
    stray = None if numbers is not None else _stray_values(present, present_lines)
    if stray is not None:  # numbers with a typo or two: kept numeric, the values named as a data problem
        numbers, bad = stray
        shown = ", ".join(f"{quote(t)} (line {line})" for t, line in bad[:10])
        notes.append(f"PROBLEM: {label} is numeric but for {_plural(len(bad), 'value', 'values')}: {shown}; kept "
                     "numeric: the platform refuses rows with such values, so fix them or make them a missing-value "
                     "marker (missing_markers) before uploading")
    if numbers is not None:
        if (len(present) >= MIN_ROWS_FOR_ID and len(counts) == len(present)
                and np.all(numbers == np.round(numbers)) and np.all(np.diff(numbers) == 1)):
            return None, f"{label} left out: it counts rows ({quote(present[0])}, {quote(present[1])}, ...)"
        feature: dict[str, Any] = {"name": column, "kind": "numeric"}
        if numbers.min() >= 0:
            feature["minimum"] = 0
        strategy = "median"
    else:
        if len(present) >= MIN_ROWS_FOR_ID and len(counts) == len(present):
            return None, f"{label} left out: a distinct value on every row (an identifier?)"
        if len(counts) > MAX_LEVELS:
            return None, f"{label} left out: {len(counts)} distinct values, over {MAX_LEVELS} (free text?)"
        long = sorted((c for c in counts if len(c) > MAX_CATEGORY_CHARS), key=len, reverse=True)
        if long:
            notes.append(f"{label}: {_plural(len(long), 'category', 'categories')} over {MAX_CATEGORY_CHARS} "
                         f"characters kept (longest: {len(long[0])} characters, {quote(long[0])}); if the column "
                         "is free text, leave it out")
        categories = [value for value, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        feature = {"name": column, "kind": "categorical", "categories": categories, "unknown": "other"}
        strategy = "most_frequent"
    if missing:
        feature["missing"] = strategy
        notes.append(f"{label}: {missing} missing values ({missing / rows:.1%}) -> missing: {strategy}")
    return feature, "; ".join(notes) or None


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _numbers(values: list[str]) -> np.ndarray | None:
    try:
        numbers = np.array(values, dtype=np.float64)
    except ValueError:
        return None
    return numbers if np.isfinite(numbers).all() else None


def _check(data: bytes, key: str, family: ModelFamily) -> list[str]:
    """Problems the platform would refuse this data set for with this family (empty when it parses)."""
    try:
        dataset = parse_dataset(data, family, key)
    except DataSetError as exc:
        return [f"PROBLEM: with this family the data set is refused: {exc.message}"]
    if family.task == "regression":
        return [f"{dataset.rows} rows read as a regression of {quote(family.target)}"]
    if family.task == "multiclass_classification":
        counts = np.bincount(dataset.y, minlength=len(dataset.classes))
        listed = ", ".join(f"{quote(c)} {n}" for c, n in zip(dataset.classes, counts, strict=True))
        return [f"classes in sorted order: {listed} rows; each class needs at least {min_rows_per_class(family)}"]
    counts = np.bincount(dataset.y, minlength=2)
    needed = min_rows_per_class(family)
    return [f"classes: {quote(dataset.classes[0])} {counts[0]} rows (negative), {quote(dataset.classes[1])} "
            f"{counts[1]} rows (positive); each class needs at least {needed}"]
