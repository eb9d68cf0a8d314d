"""A multiclass family may declare its classes (`mlops families infer` writes them): a data set with another class,
or without one of them, is refused with counts and lines; the schema keeps the list to multiclass families."""

from __future__ import annotations

import numpy as np
import pytest
from mlops.core.errors import DataSetError
from mlops.data import synthetic
from mlops.data.datasets import parse_dataset
from mlops.training.evaluation import class_set_check
from pydantic import ValidationError

from mlops_local.infer import infer_family


def _csv(rename: dict[str, str] | None = None, drop: str | None = None) -> bytes:
    columns = synthetic.credit_task_columns("multiclass_classification", 800, 4)
    if rename:
        columns["grade"] = np.asarray([rename.get(g, g) for g in columns["grade"]])
    if drop:
        keep = columns["grade"] != drop
        columns = {name: values[keep] for name, values in columns.items()}
    return synthetic.to_csv(columns)


def _family(**overrides):
    return synthetic.risk_grade_family(**{"sensitive_attribute": None, **overrides})


def test_declared_classes_read_the_data_set_as_before():
    data = parse_dataset(_csv(), _family(classes=["D", "C", "B", "A"]))
    assert data.classes == ("A", "B", "C", "D")


def test_a_class_the_family_does_not_declare_is_refused_with_counts_and_lines():
    body = _csv(rename={"D": "d"})
    with pytest.raises(DataSetError) as caught:
        parse_dataset(body, _family(classes=["A", "B", "C", "D"]))
    message = caught.value.message
    count = body.decode().count(",d\n")
    assert f"{count} rows of 800 hold classes the family does not declare: 'd' ({count} rows)" in message
    first_line = next(i for i, line in enumerate(body.decode().splitlines(), start=1) if line.endswith(",d"))
    assert f"First: line {first_line}: 'd'" in message
    assert parse_dataset(body, _family()).classes == ("A", "B", "C", "d")  # undeclared: read as found


def test_a_declared_class_without_rows_is_refused():
    with pytest.raises(DataSetError, match="declared classes without a row in the data set: 'D'"):
        parse_dataset(_csv(drop="D"), _family(classes=["A", "B", "C", "D"]))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"classes": ["A", "B"]}, "a multiclass family has 3 to 100"),
    ({"classes": ["A", "B", "B", "C"]}, "names the same class more than once: \\['B'\\]"),
    ({"classes": [1, "1.0", 2, 3]}, "names the same class more than once: \\['1.0'\\]"),
    ({"classes": ["A", "B", "C"], "sensitive_attribute": "sex", "favorable_label": "D"},
     "favorable_label 'D' is not one of the declared classes"),
])
def test_the_schema_refuses_a_malformed_class_list(overrides, message):
    with pytest.raises(ValidationError, match=message):
        _family(**overrides)


def test_classes_apply_to_multiclass_families_only():
    with pytest.raises(ValidationError, match="classes applies to multiclass_classification families only"):
        synthetic.loss_given_default_family(classes=["a", "b", "c"])


def test_infer_writes_the_classes_of_a_multiclass_target(tmp_path):
    path = tmp_path / "grades.csv"
    path.write_bytes(_csv())
    family, _ = infer_family(path, "grade", "grades")
    assert family.task == "multiclass_classification" and family.classes == ("A", "B", "C", "D")


@pytest.mark.parametrize(("candidate", "declared", "passed", "value"), [
    (["A", "B", "C", "D"], None, True, "unchanged"),
    ([1, 2, 3], None, True, "unchanged"),  # live [1.0, 2, "3"]: the same classes in the target's terms
    (["A", "B", "C"], None, False, "changed"),
    (["A", "B", "C", "d"], None, False, "changed"),
    (["A", "B", "C", "d"], ("A", "B", "C", "d"), True, "changed as declared"),
    (["A", "B", "C", "d"], ("A", "B", "C", "D"), False, "changed"),
])
def test_class_set_check_against_the_live_models_classes(candidate, declared, passed, value):
    live = [1.0, 2, "3"] if candidate == [1, 2, 3] else ["A", "B", "C", "D"]
    check = class_set_check(candidate, live, 3, declared)
    assert (check["passed"], check["value"]) == (passed, value)
    assert class_set_check(candidate, None, 0, declared) is None
