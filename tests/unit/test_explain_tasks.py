"""Explanations and decision records per task, through the real scoring handler: a linear regression is explained
(equal to shap's LinearExplainer on the Ridge model, adding up to the served value); a tree regression whose graph
re-centres the ensemble's output and a multiclass model answer 409; decision records name each task's prediction."""

from __future__ import annotations

import numpy as np
import pytest
from mlops.core.schemas import MULTICLASS, REGRESSION
from mlops.data import synthetic
from mlops.training.fit import train
from threadpoolctl import threadpool_limits

from .test_explain_api import Handler

shap = pytest.importorskip("shap")


def _matrix(family, columns) -> np.ndarray:
    return np.column_stack([
        np.asarray([f.categories.index(v) for v in columns[f.name]], dtype=float) if f.kind == "categorical"
        else np.asarray(columns[f.name], dtype=float) for f in family.features])


def _trained(task: str, **overrides):
    family = (synthetic.loss_given_default_family if task == REGRESSION else synthetic.risk_grade_family)(
        name="explain-test", **overrides)
    columns = synthetic.credit_task_columns(task, 2500, 3)
    X = _matrix(family, columns)
    labels = np.asarray(columns[family.target])
    with threadpool_limits(1):
        if task == REGRESSION:
            model = train(family, X, labels.astype(float))
        else:
            classes = sorted(set(labels.tolist()), key=str)
            model = train(family, X, np.asarray([classes.index(v) for v in labels]), classes=classes)
    return family, model, X, columns


def test_linear_regression_explanations_equal_shap_and_add_up_to_the_served_value():
    family, model, X, columns = _trained(REGRESSION)
    handler = Handler(model.onnx_bytes)
    records = synthetic.to_instances(columns, family, limit=40)
    status, body = handler.post({"instances": records, "explain": True, "top": 3})
    assert status == 200, body
    explanations = body["explanations"]
    assert {e["output"] for e in explanations} == {"value"}
    ours = np.asarray([[e["contributions"][f] for f in family.feature_names] for e in explanations])
    estimator = model.estimator
    train_rows = np.setdiff1d(np.arange(len(X)), model.holdout_index)
    background = estimator[:-1].transform(X[train_rows])
    reference = shap.LinearExplainer(estimator.steps[-1][1], shap.maskers.Independent(background,
                                                                                      max_samples=len(background)))
    values = np.asarray(reference.shap_values(estimator[:-1].transform(X[:40])))
    prepare = estimator.named_steps["prepare"]
    expected, column = np.zeros_like(ours), 0
    for _, transformer, features in prepare.transformers_:
        widths = [len(c) for c in transformer.categories_] if hasattr(transformer, "categories_") else [1] * len(
            features)
        for feature, width in zip(features, widths, strict=True):
            expected[:, feature] += values[:, column:column + width].sum(axis=1)
            column += width
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
    low, high = family.prediction_range
    served = np.asarray(body["predictions"])
    inside = (served > low) & (served < high)  # the graph clips to the prediction range; inside it, it adds up
    assert inside.sum() > 30
    added = explanations[0]["base_value"] + ours.sum(axis=1)
    np.testing.assert_allclose(added[inside], served[inside], rtol=0, atol=1e-5)
    assert all("clipped_to" not in e for e in explanations)  # nothing clipped: nothing said


def test_a_clipped_regression_explanation_says_the_clip_applied_and_explains_the_unclipped_output():
    # A narrow declared range: many predictions are clipped inside the graph.
    family, model, _, columns = _trained(REGRESSION, prediction_range=[0.3, 0.35])
    handler = Handler(model.onnx_bytes)
    status, body = handler.post({"instances": synthetic.to_instances(columns, family, limit=60), "explain": True})
    assert status == 200, body
    served = np.asarray(body["predictions"])
    for explanation, value in zip(body["explanations"], served, strict=True):
        unclipped = explanation["base_value"] + sum(explanation["contributions"].values())
        if 0.3 - 1e-6 <= unclipped <= 0.35 + 1e-6:
            assert "clipped_to" not in explanation and abs(unclipped - value) < 1e-5
        else:
            assert abs(explanation["clipped_to"] - value) < 1e-6 and "unclipped output" in explanation["note"]
    assert sum("clipped_to" in e for e in body["explanations"]) > 10
    (line,) = handler.decisions()
    assert line["predictions"] == body["predictions"] and line["probabilities"] is None


def test_tree_regression_whose_explanation_would_not_add_up_to_the_served_value_answers_409():
    family, model, _, columns = _trained(REGRESSION, algorithm="random_forest",
                                         hyperparameters={"n_estimators": 10, "max_depth": 5})
    handler = Handler(model.onnx_bytes)
    records = synthetic.to_instances(columns, family, limit=2)
    status, body = handler.post({"instances": records, "explain": True})
    assert status == 409 and "differ from the served prediction" in body["message"]
    assert handler.post({"instances": records})[0] == 200


def test_multiclass_model_answers_409_and_its_decision_records_every_class_probability():
    family, model, _, columns = _trained(MULTICLASS)
    assert model.feature_importance == ([], {"unavailable": "multiclass models are not explained"})
    handler = Handler(model.onnx_bytes)
    records = synthetic.to_instances(columns, family, limit=3)
    status, body = handler.post({"instances": records, "explain": True})
    assert status == 409 and "not available for multiclass models" in body["message"]
    status, body = handler.post({"instances": records})
    assert status == 200
    (line,) = handler.decisions()
    assert line["predictions"] == body["predictions"] and line["probabilities"] == body["probabilities"]
