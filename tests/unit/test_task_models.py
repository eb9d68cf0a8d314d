"""Regression and multiclass families: the schema's per-task rules, numeric and multiclass targets read from
CSV, every algorithm converted to ONNX with parity (regressions on the target's scale, large magnitudes
included), scoring per task, the gate on the primary metric, and the family's OpenAPI document."""

from __future__ import annotations

import numpy as np
import pytest
from mlops.core.errors import DataSetError
from mlops.core.schemas import GatePolicy, ModelFamily
from mlops.data import synthetic
from mlops.data.datasets import parse_dataset
from mlops.serving.openapi import family_openapi
from mlops.serving.scoring import ScoringModel
from mlops.training import fit
from mlops.training.evaluation import regression_parity, task_gate_decision, task_metrics, task_trivial_comparison
from pydantic import ValidationError

FEATURES = [{"name": "x", "missing": "median"}, {"name": "epoch"},
            {"name": "kind", "kind": "categorical", "categories": ["a", "b", "c"]}]


def family(task: str, **overrides) -> ModelFamily:
    return ModelFamily.model_validate({"name": "task-family", "task": task, "target": "y", "features": FEATURES,
                                       **overrides})


# ---- schema --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "overrides", "message"), [
    ("regression", {"positive_label": "bad"}, "positive_label and threshold apply to binary_classification only"),
    ("multiclass_classification", {"threshold": 0.3}, "apply to binary_classification only"),
    ("regression", {"algorithm": "logistic_regression"}, "is a classifier"),
    ("binary_classification", {"algorithm": "ridge"}, "is a regressor"),
    ("binary_classification", {"prediction_range": [0, 1]}, "regression families only"),
    ("regression", {"prediction_range": [1, 0]}, "low < high"),
    ("regression", {"favorable_label": "good"}, "favorable_label applies to classification"),
    ("multiclass_classification", {"sensitive_attribute": "sex"}, "declares favorable_label"),
    ("regression", {"gate": {"primary_metric": "macro_auc"}}, "does not apply to regression"),
    ("multiclass_classification", {"gate": {"primary_metric": "rmse"}}, "does not apply to multiclass"),
    ("ranking", {}, "task"),
])
def test_family_refuses_fields_that_do_not_fit_its_task(task, overrides, message):
    with pytest.raises(ValidationError, match=message):
        family(task, **overrides)


def test_regression_defaults_to_ridge_and_round_trips_through_its_dump():
    regression = family("regression", prediction_range=[0, 1])
    assert regression.algorithm == "ridge" and regression.is_linear and not regression.is_classifier
    assert ModelFamily.model_validate(regression.model_dump(mode="json")) == regression
    multiclass = family("multiclass_classification", sensitive_attribute="sex", favorable_label="A")
    assert ModelFamily.model_validate(multiclass.model_dump(mode="json")) == multiclass
    assert multiclass.gate.metric_for("multiclass_classification") == "macro_auc"
    assert GatePolicy(min_auc_margin=0.01).margin_for("macro_auc") == 0.01
    assert GatePolicy(min_auc_margin=0.01).margin_for("rmse") == 0.0


# ---- data sets -------------------------------------------------------------------------------------------------


def _csv(rows: list[str], header: str = "x,epoch,kind,y") -> bytes:
    return (header + "\n" + "\n".join(rows) + "\n").encode()


def _rows(targets: list[str]) -> list[str]:
    return [f"{i % 7},{1.7e9 + i},{'abc'[i % 3]},{t}" for i, t in enumerate(targets)]


def test_regression_target_is_read_as_numbers_and_missing_or_text_targets_are_counted():
    data = parse_dataset(_csv(_rows([str(v / 10) for v in range(60)])), family("regression"))
    assert data.y.dtype == np.float64 and data.classes == () and data.y[:3].tolist() == [0.0, 0.1, 0.2]
    targets = [str(v) for v in range(60)]
    targets[3], targets[8] = "NA", ""
    with pytest.raises(DataSetError, match="2 rows without a label") as missing:
        parse_dataset(_csv(_rows(targets)), family("regression"))
    assert "line 5" in str(missing.value)
    targets = [str(v) for v in range(60)]
    targets[4], targets[9], targets[10] = "high", "inf", "1e400"
    with pytest.raises(DataSetError, match=r"3 rows of 60 without a finite number.*line 6: 'high'"):
        parse_dataset(_csv(_rows(targets)), family("regression"))
    with pytest.raises(DataSetError, match="constant"):
        parse_dataset(_csv(_rows(["2.5"] * 60)), family("regression"))


def test_multiclass_classes_are_sorted_numbers_by_value_text_by_text_with_the_class_count_rule_per_class():
    numbers = parse_dataset(_csv(_rows(["10", "2", "1"] * 20)), family("multiclass_classification"))
    assert numbers.classes == ("1", "2", "10") and numbers.y[:3].tolist() == [2, 1, 0]
    text = parse_dataset(_csv(_rows(["b", "B", "a"] * 20)), family("multiclass_classification"))
    assert text.classes == ("B", "a", "b")
    with pytest.raises(DataSetError, match=r"every class needs at least 10 rows.*'rare' has 2"):
        parse_dataset(_csv(_rows(["a", "b", "c"] * 20 + ["rare"] * 2)), family("multiclass_classification"))
    with pytest.raises(DataSetError, match="needs at least 3"):
        parse_dataset(_csv(_rows(["a", "b"] * 30)), family("multiclass_classification"))
    grades = family("multiclass_classification", sensitive_attribute="sex", favorable_label="A")
    rows = [f"{row},{'FM'[i % 2]}" for i, row in enumerate(_rows(["b", "c", "d"] * 20))]
    with pytest.raises(DataSetError, match="favorable_label 'A' is not among the classes"):
        parse_dataset(_csv(rows, header="x,epoch,kind,y,sex"), grades)


# ---- training, ONNX and parity -----------------------------------------------------------------------------------


def _regression_data(n: int, offset: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=n), 1.7e9 + rng.integers(0, 10_000, n).astype(float),
                         rng.integers(0, 3, n).astype(float)])
    X[rng.random(n) < 0.05, 0] = np.nan
    y = offset + 3 * np.nan_to_num(X[:, 0]) + (X[:, 1] - 1.7e9) / 1000 + X[:, 2] + rng.normal(size=n)
    return X, y


def _served(model: fit.TrainedModel, X: np.ndarray) -> np.ndarray:
    return ScoringModel(model.onnx_bytes).predict_values(X[model.holdout_index])


@pytest.mark.parametrize("algorithm", ["ridge", "random_forest", "hist_gradient_boosting"])
@pytest.mark.parametrize("offset", [0.0, 1e9])
def test_every_regressor_reproduces_scikit_learn_on_the_target_scale_even_near_1e9(algorithm, offset):
    X, y = _regression_data(1500, offset)
    fam = family("regression", algorithm=algorithm,
                 hyperparameters={"n_estimators": 20} if algorithm == "random_forest" else {})
    model = fit.train(fam, X, y)
    served = _served(model, X)
    result = regression_parity(served, model.sklearn_holdout_predictions, model.training_target_std, 1e-5)
    assert result["ok"], result
    assert result["max_rel_diff"] < 1e-6 and model.classes == () and model.threshold is None
    assert model.profile["prediction"]["task"] == "regression" and model.profile["prediction"]["n"] == 1200


@pytest.mark.parametrize("algorithm", ["random_forest", "hist_gradient_boosting"])
def test_skl2onnx_alone_loses_a_1e9_target_that_the_centred_graph_keeps(algorithm):
    """The float32 tree operator's output rounds a prediction near 1e9 to a multiple of 64: without taking the
    sums around the mean, parity fails on the target's scale."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    X, y = _regression_data(1500, 1e9)
    fam = family("regression", algorithm=algorithm, hyperparameters={"n_estimators": 20}
                 if algorithm == "random_forest" else {})
    model = fit.train(fam, X, y)
    regressor = model.estimator.steps[-1][1]
    tensor = DoubleTensorType if algorithm == "hist_gradient_boosting" else FloatTensorType
    Xi = model.estimator.steps[0][1].transform(X[model.holdout_index])
    plain = to_onnx(regressor, initial_types=[("X", tensor([None, 3]))], target_opset=17)
    if algorithm == "hist_gradient_boosting":  # the output skl2onnx declares double is float32 in onnxruntime
        plain.graph.output[0].type.tensor_type.elem_type = 1
    import onnxruntime as ort

    session = ort.InferenceSession(plain.SerializeToString(), providers=["CPUExecutionProvider"])
    naive = session.run(None, {"X": Xi.astype(np.float64 if algorithm == "hist_gradient_boosting" else np.float32)})
    naive_gap = np.max(np.abs(naive[0].ravel() - model.sklearn_holdout_predictions)) / model.training_target_std
    ours = regression_parity(_served(model, X), model.sklearn_holdout_predictions, model.training_target_std, 1e-5)
    assert naive_gap > 1e-3 and ours["ok"]


def test_prediction_range_is_applied_inside_the_graph():
    X, y = _regression_data(1000, 0.0)
    low, high = float(np.quantile(y, 0.2)), float(np.quantile(y, 0.8))
    model = fit.train(family("regression", prediction_range=[low, high]), X, y)
    served = _served(model, X)
    assert served.min() == low and served.max() == high
    assert np.array_equal(model.sklearn_holdout_predictions, np.clip(model.estimator.predict(X[model.holdout_index]),
                                                                     low, high))


@pytest.mark.parametrize("algorithm", ["logistic_regression", "random_forest", "hist_gradient_boosting"])
def test_every_multiclass_classifier_reproduces_scikit_learn(algorithm):
    fam = synthetic.risk_grade_family(algorithm=algorithm, sensitive_attribute=None,
                                      hyperparameters={"n_estimators": 20} if algorithm == "random_forest" else {})
    data = parse_dataset(synthetic.credit_task_csv("multiclass_classification", 1500, 3), fam)
    model = fit.train(fam, data.X, data.y, classes=data.classes)
    served = ScoringModel(model.onnx_bytes)
    labels, proba = served.predict_matrix(data.X[model.holdout_index])
    assert served.task == "multiclass_classification" and served.classes == ["A", "B", "C", "D"]
    assert np.max(np.abs(proba - model.sklearn_holdout_proba)) < 1e-5
    assert np.array_equal(labels, model.sklearn_holdout_labels)
    assert model.profile["prediction"]["classes"] == ["A", "B", "C", "D"]
    assert sum(model.training_class_prior) == pytest.approx(1.0)


# ---- scoring -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["regression", "multiclass_classification"])
def test_scoring_answers_in_the_task_terms_the_same_for_one_record_and_a_batch(task):
    factory = synthetic.loss_given_default_family if task == "regression" else synthetic.risk_grade_family
    fam = factory(sensitive_attribute=None, **({} if task == "regression" else {"favorable_label": 0}))
    data = parse_dataset(synthetic.credit_task_csv(task, 1200, 4), fam)
    served = ScoringModel(fit.train(fam, data.X, data.y, classes=data.classes).onnx_bytes)
    records = synthetic.to_instances(synthetic.credit_risk_columns(30, 8), fam)
    batch, batch_proba = served.predict_instances(records)
    one, one_proba = served.predict_instances(records[:1])
    if task == "regression":
        assert batch_proba is None and one_proba is None and all(0 <= v <= 1 for v in batch)
        assert one[0] == pytest.approx(batch[0], rel=1e-6)
    else:
        assert len(batch_proba[0]) == 4 and batch == [int(np.argmax(p)) for p in batch_proba]
        assert one == batch[:1] and one_proba[0] == pytest.approx(batch_proba[0], abs=1e-6)
    assert served._binding is not None, "single rows go through the pre-bound session for every task"


# ---- gate ---------------------------------------------------------------------------------------------------------


def _gate(task: str, metrics: dict, live: dict | None, **policy) -> dict:
    trivial = {"metric": "rmse", "candidate": 0.5, "trivial": 1.0, "lift": 0.5}
    parity = {"ok": True, "max_abs_diff": 0.0, "max_rel_diff": 0.0, "label_mismatches": 0}
    return task_gate_decision(GatePolicy(**policy), task, metrics, {"checked": False}, parity, live, trivial=trivial)


def test_regression_gate_ranks_on_rmse_lower_is_better_with_the_declared_margin():
    passed = _gate("regression", {"rmse": 0.9, "mae": 0.7, "r2": 0.5}, {"version": 1, "rmse": 1.0})
    assert passed["passed"] and passed["primary_metric"] == {
        "name": "rmse", "direction": "lower", "candidate": 0.9, "required_margin": 0.0, "live": 1.0, "margin": 0.1}
    worse = _gate("regression", {"rmse": 1.1, "mae": 0.7, "r2": 0.5}, {"version": 1, "rmse": 1.0})
    assert not worse["passed"] and "lower is better" in worse["reasons"][0]
    not_enough = _gate("regression", {"rmse": 0.9, "mae": 0.7, "r2": 0.5}, {"version": 1, "rmse": 1.0},
                       min_primary_margin=0.2)
    assert not not_enough["passed"]
    on_r2 = _gate("regression", {"rmse": 1.1, "mae": 0.7, "r2": 0.6}, {"version": 1, "rmse": 1.0, "r2": 0.5},
                  primary_metric="r2")
    assert on_r2["passed"] and on_r2["primary_metric"]["direction"] == "higher"


def test_multiclass_gate_checks_the_auc_floor_and_log_loss_lower_is_better():
    metrics = {"macro_auc": 0.6, "accuracy": 0.5, "macro_f1": 0.4, "log_loss": 0.9}
    low = _gate("multiclass_classification", metrics, None)
    assert not low["passed"] and any("macro one-vs-rest AUC 0.6000" in r for r in low["reasons"])
    on_loss = _gate("multiclass_classification", {**metrics, "macro_auc": 0.8}, {"version": 3, "log_loss": 0.8},
                    primary_metric="log_loss")
    assert not on_loss["passed"] and on_loss["primary_metric"]["margin"] == pytest.approx(-0.1)


def test_trivial_model_lift_is_a_relative_error_reduction_for_rmse_and_a_difference_for_auc():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    candidate = task_metrics("regression", y, y + 0.5)
    trivial = task_trivial_comparison("regression", "rmse", y, candidate, target_mean=2.5)
    assert trivial["trivial"] == pytest.approx(np.sqrt(1.25)) and trivial["lift"] == pytest.approx(
        1 - 0.5 / np.sqrt(1.25), abs=1e-6)
    labels = np.array([0, 1, 2, 0, 1, 2])
    proba = np.eye(3)[labels] * 0.7 + 0.1
    multi = task_metrics("multiclass_classification", labels, proba)
    prior = task_trivial_comparison("multiclass_classification", "macro_auc", labels, multi,
                                    class_prior=[0.5, 0.3, 0.2])
    assert prior["trivial"] == 0.5 and prior["lift"] == pytest.approx(0.5)


# ---- OpenAPI --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["binary_classification", "multiclass_classification", "regression"])
def test_family_openapi_document_is_valid_and_reflects_the_task(task):
    from openapi_spec_validator import validate

    overrides = {"prediction_range": [0, 1]} if task == "regression" else {}
    fam = family(task, **overrides)
    classes = {"binary_classification": [0, 1], "multiclass_classification": ["A", "B", "C"]}.get(task)
    document = family_openapi(fam, classes)
    validate(document)
    response = document["components"]["schemas"]["PredictResponse"]["properties"]
    record = document["components"]["schemas"]["TaskFamilyRecord"]
    assert record["properties"]["x"] == {"type": "number", "nullable": True, "minimum": -3.4028234663852886e38,
                                         "maximum": 3.4028234663852886e38}  # the API's float32 range
    assert record["properties"]["kind"] == {"type": "string", "enum": ["a", "b", "c"]}
    assert set(document["paths"]) == {"/models/task-family/predict", "/models/task-family",
                                      "/models/task-family/openapi.json"}
    if task == "regression":
        assert set(response) == {"model", "version", "predictions", "request_id", "explanations", "decision_ids"}
        assert response["predictions"]["items"] == {"type": "number", "minimum": 0, "maximum": 1}
    else:
        assert response["classes"]["items"] == {"enum": classes}
        assert response["probabilities"]["items"]["minItems"] == len(classes)
