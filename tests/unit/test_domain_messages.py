"""Values outside what a feature accepts are named once and correctly (fresh-user pass on issue 11): an infinity
is "not finite" only, a declared bound is quoted as declared, and the 32-bit float limit of a feature without a
declared domain is never called its "declared domain", in data sets and at scoring."""

from __future__ import annotations

import numpy as np
import pytest
from mlops.core.errors import DataSetError, ValidationError
from mlops.core.schemas import Feature, ModelFamily
from mlops.data.datasets import parse_dataset
from mlops.serving.scoring import ScoringModel
from mlops.training import fit

FEATURES = (Feature(name="age", minimum=0, maximum=130), Feature(name="income", minimum=0), Feature(name="delta"))


def family() -> ModelFamily:
    return ModelFamily.model_validate({"name": "loans", "algorithm": "logistic_regression", "target": "status",
                                       "positive_label": "bad", "features": FEATURES})


def csv(rows: int = 120, **cells: str) -> bytes:
    """rows of age,income,delta,status; `cells` maps "column@row" to a replacement value."""
    rng = np.random.default_rng(0)
    lines = ["age,income,delta,status"]
    for i in range(rows):
        row = {"age": str(int(rng.integers(18, 90))), "income": f"{rng.uniform(1000, 9000):.2f}",
               "delta": f"{rng.normal():.3f}", "status": "bad" if i % 3 == 0 else "good"}
        for key, value in cells.items():
            column, at = key.split("_at_")
            if int(at) == i:
                row[column] = value
        lines.append(",".join(row[c] for c in ("age", "income", "delta", "status")))
    return ("\n".join(lines) + "\n").encode()


def error(data: bytes) -> DataSetError:
    with pytest.raises(DataSetError) as raised:
        parse_dataset(data, family(), "loans.csv")
    return raised.value


def test_an_infinity_is_reported_once_as_not_finite():
    refused = error(csv(age_at_3="inf", income_at_5="-inf"))
    assert refused.details["invalid_rows"] == 2
    assert "'age': 1 row not finite ('inf')" in refused.message and "'income': 1 row not finite" in refused.message
    assert "domain" not in refused.message and "range" not in refused.message


def test_a_declared_bound_is_quoted_as_declared_and_the_float32_limit_as_what_it_is():
    refused = error(csv(age_at_2="131", income_at_4="-5", delta_at_6="1e39"))
    message = refused.message
    assert "'age': 1 row outside the declared domain ('131')" in message
    assert "line 4: age='131' is above the declared maximum 130" in message
    assert "line 6: income='-5' is below the declared minimum 0" in message
    assert "'delta': 1 row beyond the 32-bit float range, |x| > 3.403e+38 ('1e39')" in message
    assert "declared domain ('1e39')" not in message and "[-3.40282e+38" not in message


@pytest.fixture(scope="module")
def served() -> ScoringModel:
    fam = family()
    dataset = parse_dataset(csv(300), fam, "loans.csv")
    return ScoringModel(fit.train(fam, dataset.X, dataset.y, classes=dataset.classes).onnx_bytes)


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("age", 131, "instances[0].age must be a finite number in [0, 130], got 131"),
    ("income", -5, "instances[0].income must be a finite number >= 0, within the 32-bit float range "
                   "(|x| <= 3.403e+38), got -5"),
    ("delta", 1e39, "instances[0].delta must be a finite number within the 32-bit float range (|x| <= 3.403e+38), "
                    "got 1e+39"),
])
def test_scoring_names_the_declared_domain_or_the_float32_range(served, field, value, expected):
    record = {"age": 40, "income": 2000.0, "delta": 0.1, field: value}
    with pytest.raises(ValidationError) as raised:
        served.predict_instances([record])
    assert raised.value.message == expected
