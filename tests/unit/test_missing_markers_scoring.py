"""A value equal to one of the family's missing markers is missing at scoring (and in drift captures) as it was
when the data set was read for training: "NA" in a categorical with `unknown: other` is not a new category, and
a declared numeric sentinel ("-999") is not a number (fresh-user pass on issue 10)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from mlops.core.errors import DataSetError, ValidationError
from mlops.core.schemas import DEFAULT_MISSING_MARKERS, Feature, ModelFamily
from mlops.data.datasets import parse_dataset
from mlops.monitoring.drift import captured_columns
from mlops.serving.scoring import ScoringModel
from mlops.training import fit

FEATURES = (
    Feature(name="home", kind="categorical", categories=("rent", "own"), unknown="other", missing="most_frequent"),
    Feature(name="grade", kind="categorical", categories=("A", "B"), unknown="other"),  # missing: reject
    Feature(name="income", missing="median"),
    Feature(name="age"),  # missing: reject
)
MARKERS = (*DEFAULT_MISSING_MARKERS, "-999")


def family(**overrides) -> ModelFamily:
    # A third of `home` is the undeclared "boat" (the "other" level): above the default max_unknown_share.
    spec = {"name": "markers", "algorithm": "logistic_regression", "target": "status", "positive_label": "bad",
            "features": FEATURES, "missing_markers": MARKERS, "max_unknown_share": 0.5, **overrides}
    return ModelFamily.model_validate(spec)


def csv_bytes(rows: int = 400, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    lines = ["home,grade,income,age,status"]
    for i in range(rows):
        home = "NA" if i % 9 == 0 else ("-999" if i % 13 == 0 else ["rent", "own", "boat"][i % 3])
        income = "-999" if i % 7 == 0 else ("NA" if i % 11 == 0 else f"{rng.normal(50, 10):.1f}")
        lines.append(f"{home},{'AB'[i % 2]},{income},{rng.integers(20, 70)},{'bad' if rng.random() < 0.3 else 'good'}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def trained():
    fam = family()
    dataset = parse_dataset(csv_bytes(), fam, "train.csv")
    model = fit.train(fam, dataset.X, dataset.y, classes=dataset.classes)
    return fam, dataset, ScoringModel(model.onnx_bytes), model.onnx_bytes


def record(home="rent", grade="A", income=50.0, age=40) -> dict:
    return {"home": home, "grade": grade, "income": income, "age": age}


def test_training_reads_markers_as_missing_and_refuses_them_where_a_feature_rejects_missing(trained):
    fam, dataset, _, _ = trained
    home, income = dataset.X[:, 0], dataset.X[:, 2]
    assert np.isnan(home[0]) and np.isnan(home[13]) and home[2] == 2.0  # "NA", "-999" missing; "boat" other
    assert np.isnan(income[7]) and np.isnan(income[11])
    refused = csv_bytes().replace(b"\nrent,B,", b"\nrent,NA,", 1)
    with pytest.raises(DataSetError, match="'grade': 1 row missing"):
        parse_dataset(refused, fam, "train.csv")


@pytest.mark.parametrize("home", ["NA", "-999", "null", " N/A "])
def test_a_categorical_marker_scores_as_missing_like_null_not_as_other(trained, home):
    _, _, served, _ = trained
    X = served.exact_matrix([record(home=home), record(home=None), record(home="boat")])
    assert np.isnan(X[0, 0]) and np.isnan(X[1, 0]) and X[2, 0] == 2.0
    # one record (pre-bound session) and a batch past the fast path's size give the same answer as null
    single = served.predict_instances([record(home=home)])
    assert single == served.predict_instances([record(home=None)])
    batch = served.predict_instances([record(home=home)] * 20)
    assert batch[1][0] == single[1][0] and batch[1][0] != served.predict_instances([record(home="boat")])[1][0]


def test_numeric_markers_are_missing_but_the_same_number_spelled_otherwise_is_a_number(trained):
    _, _, served, _ = trained
    X = served.exact_matrix([record(income=-999), record(income="NA"), record(income=-999.0), record(income=None)])
    assert np.isnan(X[0, 2]) and np.isnan(X[1, 2]) and X[2, 2] == -999.0 and np.isnan(X[3, 2])
    assert served.predict_instances([record(income=-999)] * 20)[1] == served.predict_instances(
        [record(income=None)] * 20)[1]


@pytest.mark.parametrize(("field", "value"), [("grade", "NA"), ("age", -999), ("age", "NA")])
def test_a_marker_where_the_feature_rejects_missing_values_is_refused_naming_it(trained, field, value):
    _, _, served, _ = trained
    for instances in ([record(**{field: value})], [record(**{field: value})] * 20):
        with pytest.raises(ValidationError, match=rf"instances\[0\]\.{field} is .*one of the family's missing-value "
                                                  r"markers, but this feature does not accept missing values"):
            served.predict_instances(instances)


def test_the_same_rows_encode_alike_from_the_file_and_from_the_api(trained):
    fam, dataset, served, _ = trained
    lines = csv_bytes().decode().splitlines()[1:41]
    records = []
    for line in lines:
        home, grade, income, age, _ = line.split(",")
        records.append({"home": home, "grade": grade, "income": int(income) if income == "-999" else
                        (income if income == "NA" else float(income)), "age": int(age)})
    np.testing.assert_array_equal(served.exact_matrix(records), dataset.X[:40])


def test_an_artifact_without_recorded_markers_keeps_reading_only_null_as_missing(trained):
    _, _, _, onnx_bytes = trained
    model = onnx.load_from_string(onnx_bytes)
    kept = [p for p in model.metadata_props if p.key != "mlops.missing_markers"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    old = ScoringModel(model.SerializeToString())
    assert old.exact_matrix([record(home="NA")])[0, 0] == 2.0  # "other", as such artifacts always scored it


def test_drift_captures_read_markers_as_missing(trained):
    fam, _, _, _ = trained
    records = [SimpleNamespace(inputs=record(home="NA", income=-999), probabilities=[0.5, 0.5]),
               SimpleNamespace(inputs=record(home="boat", income=-999.0), probabilities=[0.5, 0.5])]
    columns, _ = captured_columns(fam, records)
    assert np.isnan(columns["home"][0]) and columns["home"][1] == 2.0
    assert np.isnan(columns["income"][0]) and columns["income"][1] == -999.0
