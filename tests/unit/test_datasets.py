"""Data set validation: every unusable data set is rejected early with a reason that names the problem."""

from __future__ import annotations

import numpy as np
import pytest
from mlops.core.errors import DataSetError
from mlops.data.datasets import parse_csv
from mlops.data.synthetic import credit_risk_csv, credit_risk_family

FAMILY = credit_risk_family()
GOOD = credit_risk_csv(200, 1)
HEADER = GOOD.split(b"\n", 1)[0]


def test_valid_data_set_decodes_features_in_schema_order():
    dataset = parse_csv(GOOD, FAMILY)
    assert dataset.X.shape == (200, len(FAMILY.features)) and dataset.X.dtype == np.float64
    assert set(np.unique(dataset.X[:, -1])) <= set(range(5))
    assert set(np.unique(dataset.y)) == {0, 1}


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (HEADER + b"\n", "no data rows"),
    (GOOD.replace(b",default\n", b",outcome\n", 1), "'default' (target)"),
    (GOOD.replace(b",income,", b",salary,", 1), "'income' (feature)"),
    (HEADER.replace(b"income", b"age") + b"\n" + GOOD.split(b"\n", 1)[1], "repeats columns"),
    (b"\xff\xfe" + GOOD, "UTF-16"),
    (GOOD.replace(b"north", b"n\xe9rth", 1), "not UTF-8"),
    (HEADER + b"\n" + b"\n".join([b"x,1,0.2,3,0,1,4,north,F,0"] * 60), "'x' is not a number"),
    (HEADER + b"\n" + b"\n".join([b"30,1,0.2,3,0,1,4,mars,F,0"] * 60), "'mars' is not one of"),
    (HEADER + b"\n" + b"\n".join([b"30,1,0.2,3,0,1,4,north,F,2", b"30,1,0.2,3,0,1,4,north,F,0"] * 30),
     "positive label '1' (positive_label) is not among"),
    (HEADER + b"\n" + b"\n".join([b"30,1,0.2,3,0,1,4,north,F,1"] * 60), "constant"),
    (HEADER + b"\n" + b"\n".join([b"30,inf,0.2,3,0,1,4,north,F,1"] * 60), "not finite"),
    (HEADER + b"\n" + b"\n".join([b"30,nan,0.2,3,0,1,4,north,F,1"] * 60), "'income': 60 rows missing a value"),
    (HEADER + b"\n" + b"\n".join([b"30,1,0.2"] * 60), "fields, the header has"),
    (b"\n".join(GOOD.split(b"\n")[:20]), "at least 50"),
])
def test_unusable_data_set_is_rejected_with_reason(data, reason):
    with pytest.raises(DataSetError) as raised:
        parse_csv(data, FAMILY)
    assert reason in raised.value.message


def test_data_set_over_the_size_limit_is_rejected():
    small = credit_risk_family(max_dataset_bytes=1000)
    with pytest.raises(DataSetError, match="over the limit"):
        parse_csv(GOOD, small)
