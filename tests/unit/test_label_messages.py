"""Counts in target messages are pluralised ("1 distinct label", "(1 row)"), in data set errors and in
`mlops families infer` (fresh-user pass on issue 10)."""

from __future__ import annotations

import pytest
from mlops.core.errors import DataSetError
from mlops.core.schemas import ModelFamily
from mlops.data.datasets import parse_dataset

from mlops_local.infer import InferenceError, infer_family


def multiclass() -> ModelFamily:
    return ModelFamily.model_validate({"name": "grades", "task": "multiclass_classification", "target": "grade",
                                       "algorithm": "logistic_regression", "features": [{"name": "x"}]})


def data(labels: list[str]) -> bytes:
    return ("x,grade\n" + "".join(f"{i},{label}\n" for i, label in enumerate(labels))).encode()


@pytest.mark.parametrize(("labels", "expected"), [
    (["a"] * 120, "has 1 distinct label ('a' (120 rows))"),
    (["a"] * 119 + ["b"], "has 2 distinct labels ('a' (119 rows), 'b' (1 row))"),
])
def test_data_set_errors_count_labels_and_rows_in_the_right_number(labels, expected):
    with pytest.raises(DataSetError) as raised:
        parse_dataset(data(labels), multiclass(), "grades.csv")
    assert expected in raised.value.message


def test_infer_counts_labels_and_rows_in_the_right_number(tmp_path):
    path = tmp_path / "grades.csv"
    path.write_bytes(data(["a"] * 40))
    with pytest.raises(InferenceError, match=r"'grade' has 1 distinct label;"):
        infer_family(path, "grade", "grades")
    path.write_bytes(data(["a"] * 39 + ["b"] + ["c"]))
    with pytest.raises(InferenceError, match=r"3 distinct labels; a binary family needs exactly two. Found: "
                                             r"'a' \(39 rows\), 'b' \(1 row\), 'c' \(1 row\)"):
        infer_family(path, "grade", "grades", task="binary_classification")
