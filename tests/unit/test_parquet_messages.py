"""Parquet data sets are described in Parquet's terms: rows and the file's columns, never CSV lines or a
delimiter (fresh-user pass on issue 15)."""

from __future__ import annotations

import io

import pytest
from mlops.core.errors import DataSetError
from mlops.data import synthetic

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _parquet(columns: dict) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def _parse(columns: dict, family):
    from mlops.data.columnar import parse_parquet

    with pytest.raises(DataSetError) as caught:
        parse_parquet(_parquet(columns), family, "lgd.parquet")
    return caught.value.message


def test_a_missing_column_names_the_files_columns_without_a_delimiter():
    columns = {k: list(v) for k, v in synthetic.credit_task_columns("regression", 200, 1).items()}
    del columns["age"]
    message = _parse(columns, synthetic.loss_given_default_family())
    assert "lacks required columns: 'age' (feature); the Parquet file's columns are 'income'" in message
    assert "delimiter" not in message and "header" not in message


def test_a_bad_regression_target_is_reported_by_row():
    columns = {k: list(v) for k, v in synthetic.credit_task_columns("regression", 200, 1).items()}
    columns["lgd"] = [str(v) for v in columns["lgd"]]
    columns["lgd"][6] = "n/a"
    message = _parse(columns, synthetic.loss_given_default_family())
    assert "First: row 7: 'n/a'" in message and "line" not in message


def test_an_out_of_range_target_note_names_rows():
    from mlops.data.columnar import parse_parquet

    columns = {k: list(v) for k, v in synthetic.credit_task_columns("regression", 200, 1).items()}
    columns["lgd"][0] = 1.5
    data = parse_parquet(_parquet(columns), synthetic.loss_given_default_family(), "lgd.parquet")
    (note,) = [w for w in data.warnings if "prediction_range" in w]
    assert "first row 1: 1.5" in note
    assert data.line_numbers[0] == 1 and data.line_numbers[-1] == 200
