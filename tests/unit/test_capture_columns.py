"""The columnar capture format: what the scoring functions write is what drift and canary checks read, value for
value; the drift window keeps the newest rows; the vectorised encoding equals the per-record one it replaced."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlops.data.synthetic import credit_risk_family
from mlops.monitoring import drift
from mlops.serving.capture_columns import (
    JSON,
    MAGIC,
    NUMERIC,
    TEXT,
    CapturedColumns,
    concat,
    decode,
    decode_jsonl,
    encode,
    read_window,
)

ROWS = [
    (100.0, "r1", 0, {"age": 30, "income": 1500.5, "home": "own", "flag": True}, 1, [0.2, 0.8]),
    (100.0, "r1", 1, {"age": None, "income": -999, "home": None, "flag": "yes"}, 0, [0.7, 0.3]),
    (101.5, "r2", 0, {"age": 41.0, "home": "Rent "}, 1, [0.4, 0.6]),
]


def test_a_batch_round_trips_value_for_value_and_keeps_integers_apart_from_floats():
    stored = decode(encode(CapturedColumns.from_rows(ROWS, never_capture=frozenset({"income"}))))
    assert {n: c.kind for n, c in stored.fields.items()} == {"age": NUMERIC, "home": TEXT, "flag": JSON}
    records = list(stored.records())
    assert [r.request_id for r in records] == ["r1", "r1", "r2"] and list(stored.index) == [0, 1, 0]
    assert [r.label for r in records] == [1, 0, 1] and records[0].probabilities == [0.2, 0.8]
    assert records[0].inputs == {"age": 30, "home": "own", "flag": True}
    assert type(records[0].inputs["age"]) is int and type(records[2].inputs["age"]) is float
    assert records[1].inputs == {"age": None, "home": None, "flag": "yes"}
    assert records[2].inputs == {"age": 41.0, "home": "Rent ", "flag": None}  # absent reads as null
    body = encode(CapturedColumns.from_rows(ROWS))
    assert body.startswith(MAGIC) and len(body) % 8 == 0  # every array 8-byte aligned
    assert all(c.values.dtype != object for c in stored.fields.values())  # nothing pickled: fixed-width arrays


def test_a_regression_batch_has_no_probabilities_and_keeps_its_predicted_values():
    stored = decode(encode(CapturedColumns.from_rows([(1.0, "r", 0, {"x": 1.5}, 0.4375, ())])))
    (record,) = stored.records()
    assert record.label == 0.4375 and record.probabilities == [] and stored.probabilities.shape == (1, 0)


def test_older_jsonl_objects_read_into_the_same_shape():
    lines = b"\n".join(orjson.dumps({"at": r[0], "request_id": r[1], "index": r[2], "inputs": r[3], "label": r[4],
                                     "probabilities": r[5]}) for r in ROWS)
    old = decode_jsonl(lines + b"\n")
    new = decode(encode(CapturedColumns.from_rows(ROWS)))
    assert [r.inputs for r in old.records()] == [r.inputs for r in new.records()]


def test_parts_with_different_kinds_and_fields_concatenate_without_losing_a_value():
    a = CapturedColumns.from_rows([(1.0, "a", 0, {"home": "own", "x": 1}, 0, [1.0, 0.0])])
    b = CapturedColumns.from_rows([(2.0, "b", 0, {"home": "rent", "y": "t"}, 1, [0.0, 1.0])])
    c = CapturedColumns.from_rows([(3.0, "c", 0, {"home": 5, "x": 2.5}, 1, [0.0, 1.0])])
    merged = concat([a, b, c])
    assert [r.inputs for r in merged.records()] == [
        {"home": "own", "x": 1, "y": None}, {"home": "rent", "x": None, "y": "t"},
        {"home": 5, "x": 2.5, "y": None}]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.fixed_dictionaries({}, optional={"home": st.one_of(st.none(), st.sampled_from(
    ["own", "rent", "other", ""])), "x": st.one_of(st.none(), st.integers(-5, 5), st.floats(-1e3, 1e3))}),
    min_size=1, max_size=6), min_size=1, max_size=6))
def test_concatenating_parts_equals_building_one_batch_from_all_their_rows(parts):
    """The preallocated concatenation (TEXT codes remapped through a lookup table, nulls and absent fields kept)
    reads back exactly like one batch built from every row, whatever each part's dictionary holds."""
    rows = [[(float(p), f"r{p}", i, inputs, 0, [0.5, 0.5]) for i, inputs in enumerate(part)]
            for p, part in enumerate(parts)]
    merged = concat([decode(encode(CapturedColumns.from_rows(r))) for r in rows])
    whole = CapturedColumns.from_rows([r for part in rows for r in part])
    assert [r.inputs for r in merged.records()] == [r.inputs for r in whole.records()]


def test_the_drift_check_histograms_reuse_the_tests_counts_and_equal_binning_again():
    """compare_with_baseline hands its current counts to current_histograms: the histograms stored with a report
    are those a fresh binning of the same values gives."""
    from mlops.reports.drift_report import current_histograms
    from mlops.stats.profile import baseline_profile

    family = credit_risk_family()
    rng = np.random.default_rng(3)
    n = 3_000
    train = {f.name: (rng.integers(0, len(f.categories) + 1, n).astype(float) if f.kind == "categorical"
                      else rng.normal(size=n)) for f in family.features}
    profile = baseline_profile(family, np.column_stack([train[f.name] for f in family.features]), rng.random(n))
    now = {name: np.where(rng.random(n) < 0.05, np.nan, v + (0.3 if name == "age" else 0.0))
           for name, v in train.items()}
    counts: dict[str, np.ndarray] = {}
    drift.compare_with_baseline(family, profile, now, rng.random(n), family.drift, counts)
    assert set(counts) == {f.name for f in family.features}
    assert current_histograms(family, profile, now, None, counts) == current_histograms(family, profile, now, None)


def _batches(count: int, rows: int) -> dict[str, bytes]:
    objects = {}
    for b in range(count):
        at = 1000.0 + b
        objects[f"k{b:04d}.cap"] = encode(CapturedColumns.from_rows(
            [(at, f"r{b}-{i}", i, {"x": float(b)}, 0, [0.5, 0.5]) for i in range(rows)]))
    return objects


def test_the_window_keeps_the_newest_rows_and_reads_no_more_objects_than_it_needs():
    objects = _batches(200, 10)  # 2,000 rows, one second per object
    fetched: list[str] = []

    def fetch(key: str) -> bytes:
        fetched.append(key)
        return objects[key]

    window, read = read_window(sorted(objects), fetch, since=1000.0, until=None, max_rows=95, chunk=4)
    assert len(window) == 95 and np.all(np.diff(window.at) >= 0)  # oldest first, as records are
    assert window.at.min() == 1000.0 + 190 and window.at.max() == 1199.0  # the newest 95 rows
    assert read == len(fetched) <= 12  # newest first, stopped at the cap (3 chunks of 4)
    within, _ = read_window(sorted(objects), objects.__getitem__, since=1010.0, until=1019.5, max_rows=None)
    assert set(np.unique(within.at)) == {1000.0 + s for s in range(10, 20)}


values = st.one_of(st.none(), st.integers(-10**6, 10**6), st.floats(-1e9, 1e9, allow_nan=False),
                   st.sampled_from(["north", "south", " North", "NA", "", "-999", "zebra"]), st.booleans())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({}, optional={"income": values, "region": values}), min_size=1,
                max_size=30))
def test_vectorised_drift_encoding_equals_the_per_record_one(inputs):
    family = credit_risk_family(missing_markers=["", "NA", "-999"])
    records = [SimpleNamespace(inputs=i, label=1, probabilities=[0.3, 0.7]) for i in inputs]
    columns, predictions = drift.captured_columns(family, decode(encode(CapturedColumns.from_records(records))))
    by_feature = {f.name: f for f in family.features}
    markers = frozenset(family.missing_markers)
    for name, column in columns.items():
        feature = by_feature[name]
        if feature.kind == "categorical":
            index = {c: float(i) for i, c in enumerate(feature.categories)}
            expected = [drift._category(i.get(name), index, float(len(feature.categories)), markers) for i in inputs]
        else:
            expected = [drift._number(i.get(name), markers) for i in inputs]
        np.testing.assert_array_equal(column, np.asarray(expected, dtype=np.float64))
    assert predictions.tolist() == [0.7] * len(inputs)


def test_a_feature_sent_as_an_integer_marker_is_missing_but_the_same_float_is_a_value():
    family = credit_risk_family(missing_markers=["-999"])
    rows = [(1.0, "r", 0, {"income": -999}, 1, [0.5, 0.5]), (1.0, "r", 1, {"income": -999.0}, 1, [0.5, 0.5])]
    columns, _ = drift.captured_columns(family, decode(encode(CapturedColumns.from_rows(rows))))
    assert np.isnan(columns["income"][0]) and columns["income"][1] == -999.0


@pytest.mark.parametrize("bad", [b"not a batch", b"", MAGIC + b"\x05\x00\x00\x00{bad}",
                                 MAGIC + b"\x02\x00\x00\x00{}"])
def test_an_object_that_is_not_a_capture_batch_is_refused_with_a_reason(bad):
    with pytest.raises(ValueError, match="capture"):
        decode(bad)


def test_a_header_pointing_past_the_end_is_refused():
    body = bytearray(encode(CapturedColumns.from_rows(ROWS)))
    with pytest.raises(ValueError, match="malformed"):
        decode(bytes(body[:-16]))
