"""Regression targets: values beyond what the graph computes in are refused with their lines, values outside a
declared prediction_range are noted (validate and Train's warnings), a one-sided range clips one side only, and
target figures are written with the digits that tell them apart."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from mlops.core.errors import DataSetError
from mlops.core.schemas import ModelFamily
from mlops.data import synthetic
from mlops.data.datasets import distinct_figures, parse_dataset
from mlops.serving.openapi import response_schema
from mlops.serving.scoring import ScoringModel
from mlops.training import fit
from pydantic import ValidationError

from mlops_local.cli import cli
from mlops_local.infer import infer_family


def _lgd_csv(rows: int = 400, edit=None) -> bytes:
    columns = synthetic.credit_task_columns("regression", rows, 5)
    columns["lgd"] = columns["lgd"].astype(object)
    if edit:
        edit(columns["lgd"])
    return synthetic.to_csv(columns)


@pytest.mark.parametrize("value", ["1e300", "-4e38", "inf", "1e309"])
def test_a_target_beyond_the_float32_range_or_not_finite_is_refused_with_its_line(value):
    def edit(lgd):
        lgd[3] = value

    with pytest.raises(DataSetError) as caught:
        parse_dataset(_lgd_csv(edit=edit), synthetic.loss_given_default_family(prediction_range=None))
    message = caught.value.message
    assert "1 row of 400" in message and "line 5:" in message, message
    assert value in message or "inf" in message


def test_a_target_outside_the_declared_range_is_noted_with_counts_and_lines():
    def edit(lgd):
        lgd[3], lgd[4], lgd[10] = 1.7, -0.2, 2.5

    data = parse_dataset(_lgd_csv(edit=edit), synthetic.loss_given_default_family())
    (note,) = [w for w in data.warnings if "prediction_range" in w]
    assert "3 rows of 400 outside the declared prediction_range [0, 1]" in note
    assert "1 below, 2 above" in note and "line 5: 1.7; line 6: -0.2; line 12: 2.5" in note
    assert not [w for w in parse_dataset(_lgd_csv(), synthetic.loss_given_default_family()).warnings
                if "prediction_range" in w]


def test_validate_with_data_prints_the_range_note(tmp_path):
    def edit(lgd):
        lgd[3] = 1.7

    family = tmp_path / "lgd.yaml"
    import yaml

    family.write_text(yaml.safe_dump(synthetic.loss_given_default_family().model_dump(mode="json")))
    data = tmp_path / "lgd.csv"
    data.write_bytes(_lgd_csv(edit=edit))
    result = CliRunner().invoke(cli, ["families", "validate", str(family), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "outside the declared prediction_range [0, 1]" in result.output


@pytest.mark.parametrize(("bounds", "message"), [
    ([None, None], "bounds nothing"), ([1.0, 0.0], "low < high"), ([float("inf"), None], "finite number or null")])
def test_prediction_range_refuses_empty_inverted_or_infinite_bounds(bounds, message):
    with pytest.raises(ValidationError, match=message):
        synthetic.loss_given_default_family(prediction_range=bounds)


@pytest.mark.parametrize("algorithm", ["ridge", "random_forest", "hist_gradient_boosting"])
def test_a_one_sided_range_clips_below_only_in_the_graph_and_in_scikit_learn(algorithm):
    family = synthetic.loss_given_default_family(
        algorithm=algorithm, prediction_range=[0.15, None],
        hyperparameters={"n_estimators": 20} if algorithm == "random_forest" else {})
    data = parse_dataset(_lgd_csv(800), family)
    model = fit.train(family, data.X, data.y)
    served = ScoringModel(model.onnx_bytes).predict_values(data.X[model.holdout_index])
    assert served.min() == pytest.approx(0.15) and model.sklearn_holdout_predictions.min() == 0.15
    assert served.max() > 0.3  # no upper clip
    assert np.max(np.abs(served - model.sklearn_holdout_predictions)) < 1e-5
    schema = response_schema(family)["properties"]["predictions"]["items"]
    assert schema == {"type": "number", "minimum": 0.15}
    assert ModelFamily.model_validate(family.model_dump(mode="json")) == family


def test_figures_of_a_large_offset_target_show_its_spread():
    assert distinct_figures([1e9 + 0.01, 1e9 + 9.99, 1e9 + 4.5]) == ["1000000000.01", "1000000009.99",
                                                                      "1000000004.5"]
    assert distinct_figures([0.0, 1.0]) == ["0", "1"]


def test_infer_notes_a_1e9_offset_target_with_distinct_figures(tmp_path):
    columns = synthetic.credit_task_columns("regression", 300, 2)
    columns["ead"] = 1e9 + 10 * columns.pop("lgd")
    path = tmp_path / "ead.csv"
    path.write_bytes(synthetic.to_csv(columns))
    _, notes = infer_family(path, "ead", "ead")
    (note,) = [n for n in notes if "values from" in n]
    assert "1e+09" not in note and "values from 10000000" in note, note
