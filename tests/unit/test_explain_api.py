"""`"explain": true` through the real scoring handler (functions/score/handler.py) on artifacts trained by the
platform (training.train stores the explanation background): contributions equal to the `shap` library on the
scikit-learn model (TreeExplainer tree_path_dependent / LinearExplainer on the training rows) within 1e-6, base
value plus contributions equal to onnxruntime's raw output, reason codes with the family's descriptions; refusals
with clear 4xx answers; the request without `explain` never builds an explainer; every answer leaves a decision."""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
from mlops.core.settings import Env, ScoringSettings
from mlops.serving.api import ScoringService
from mlops.serving.decisions import DecisionLog
from mlops.serving.explanations import ServedExplainer
from mlops.serving.scoring import ScoringModel
from mlops.training.fit import build_estimator, to_onnx_bytes, train
from threadpoolctl import threadpool_limits

from mlops_local.apigw import proxy_event

from .test_explain_reference import ROWS, TOLERANCE, credit_data, credit_family, onnxruntime_raw, with_metadata

shap = pytest.importorskip("shap")

ROOT = Path(__file__).resolve().parents[2]
FAMILY = "explain-test"


class Handler:
    """The real scoring handler module, warm, serving `onnx_bytes`; decision lines collected in `self.lines`."""

    def __init__(self, onnx_bytes: bytes) -> None:
        spec = importlib.util.spec_from_file_location(f"score_handler_{id(self)}",
                                                      ROOT / "functions" / "score" / "handler.py")
        self.module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)
        service = ScoringService(ScoringSettings.model_validate({
            Env.ARTIFACT_BUCKET: "unit-bucket", Env.REGISTRY_TABLE: "unit-table", Env.MODEL_FAMILY: FAMILY,
            Env.MODEL_VERSION: "4", Env.MODEL_SHA256: "a" * 64, Env.CAPTURE_SAMPLE_RATE: "0"}))
        service.model = ScoringModel(onnx_bytes)
        service.explainer = ServedExplainer(onnx_bytes, FAMILY, 4)
        self.objects: list[tuple[str, bytes]] = []
        service.decisions = DecisionLog("unit-bucket", FAMILY, 4, function_version="7", model_sha256="a" * 64,
                                        classes=service.model.classes, threshold=service.model.threshold,
                                        put=lambda key, body: self.objects.append((key, body)))
        self.module._service = self.service = service

    def post(self, body: Any) -> tuple[int, dict[str, Any]]:
        event = proxy_event("POST", f"/models/{FAMILY}/predict", body if isinstance(body, str) else json.dumps(body))
        response = self.module.lambda_handler(event, SimpleNamespace(aws_request_id="lambda-request"))
        return response["statusCode"], json.loads(response["body"])

    def decisions(self) -> list[dict[str, Any]]:
        assert self.service.decisions.flush(5)
        return [orjson.loads(line) for _, body in self.objects for line in gzip.decompress(body).splitlines()]


class Trained:
    """A family trained the platform's way (training.train): artifact with background, fitted estimator."""

    def __init__(self, algorithm: str, **hyperparameters: object) -> None:
        self.family = credit_family(algorithm, **hyperparameters)
        X, y = credit_data(ROWS, 11)
        with threadpool_limits(1):
            self.model = train(self.family, X, y, seed=42)
        self.X_train = X[np.setdiff1d(np.arange(len(X)), self.model.holdout_index)]
        self.estimator = self.model.estimator
        self.classifier = self.estimator.steps[-1][1] if hasattr(self.estimator, "steps") else self.estimator
        self.rows = credit_data(60, 12)[0]
        self.rows[0, 1], self.rows[1, 1], self.rows[2, 2] = 5, np.nan, np.nan  # "other", missing, missing

    def transformed(self, X: np.ndarray) -> np.ndarray:
        return self.estimator[:-1].transform(X) if hasattr(self.estimator, "steps") else X

    def records(self, X: np.ndarray) -> list[dict[str, Any]]:
        """JSON records as a client sends them: category names (an undeclared one for "other"), null if missing."""
        out = []
        for x in X:
            record: dict[str, Any] = {}
            for value, feature in zip(x, self.family.features, strict=True):
                if math.isnan(value):
                    record[feature.name] = None
                elif feature.kind == "categorical":
                    index = int(value)
                    record[feature.name] = feature.categories[index] if index < len(feature.categories) else "mars"
                else:
                    record[feature.name] = float(value)
            out.append(record)
        return out

    def shap_reference(self, X: np.ndarray) -> tuple[np.ndarray, float]:
        """shap on the scikit-learn model, summed back to the family's features (one-hot columns per feature)."""
        if self.family.algorithm == "logistic_regression":
            background = self.transformed(self.X_train)
            reference = shap.LinearExplainer(self.classifier, shap.maskers.Independent(
                background, max_samples=len(background)))
            values = np.asarray(reference.shap_values(self.transformed(X)))
            prepare = self.estimator.named_steps["prepare"]
            out, column = np.zeros((len(X), len(self.family.features))), 0
            for _, transformer, features in prepare.transformers_:
                widths = [len(c) for c in transformer.categories_] if hasattr(transformer, "categories_") else \
                    [1] * len(features)
                for feature, width in zip(features, widths, strict=True):
                    out[:, feature] += values[:, column:column + width].sum(axis=1)
                    column += width
            return out, float(np.ravel(reference.expected_value)[0])
        reference = shap.TreeExplainer(self.classifier, feature_perturbation="tree_path_dependent")
        values = np.asarray(reference.shap_values(self.transformed(X)))
        if values.ndim == 3:
            values = values[..., 1]
        return values, float(np.ravel(reference.expected_value)[-1])


# scikit-learn's node weights are training-row counts here (no bootstrap, no early-stopping split), as the covers
# the platform stores are: shap's path-dependent TreeSHAP and ours weigh paths identically.
ALGORITHMS = {
    "logistic_regression": {},
    "random_forest": {"n_estimators": 20, "max_depth": 7, "min_samples_leaf": 3, "bootstrap": False},
    "hist_gradient_boosting": {"max_iter": 30, "early_stopping": False},
}


@pytest.fixture(scope="module", params=list(ALGORITHMS))
def trained(request: pytest.FixtureRequest) -> Trained:
    return Trained(request.param, **ALGORITHMS[request.param])


def test_explanations_through_the_handler_equal_shap_and_add_up_to_the_served_raw_output(trained: Trained) -> None:
    handler = Handler(trained.model.onnx_bytes)
    status, body = handler.post({"instances": trained.records(trained.rows), "explain": True})
    assert status == 200, body
    explanations = body["explanations"]
    names = trained.family.feature_names
    ours = np.asarray([[e["contributions"][name] for name in names] for e in explanations])
    reference, base = trained.shap_reference(trained.rows)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=TOLERANCE)
    bases = {e["base_value"] for e in explanations}
    assert len(bases) == 1 and bases.pop() == pytest.approx(base, abs=TOLERANCE)
    # Additivity against what is served: onnxruntime's raw score of the same artifact on the same rows.
    raw, exact = onnxruntime_raw(trained.model.onnx_bytes, trained.rows)
    tolerance = TOLERANCE if exact else TOLERANCE + 2.0**-20 * np.maximum(1.0, np.abs(raw))
    gap = np.abs(explanations[0]["base_value"] + ours.sum(axis=1) - raw)
    assert np.all(gap <= tolerance), gap.max()
    expected_output = "probability" if trained.family.algorithm == "random_forest" else "log_odds"
    assert {e["output"] for e in explanations} == {expected_output}
    # The probabilities answered are the served model's: the raw output maps onto them.
    positive = np.asarray(body["probabilities"])[:, 1]
    mapped = raw if expected_output == "probability" else 1 / (1 + np.exp(-raw))
    np.testing.assert_allclose(positive, mapped, atol=1e-6)


def test_reasons_are_the_features_pushing_toward_the_positive_class_with_declared_descriptions(
        trained: Trained) -> None:
    handler = Handler(trained.model.onnx_bytes)
    records = trained.records(trained.rows[:12])
    status, body = handler.post({"instances": records, "explain": True, "top": 2})
    assert status == 200, body
    for record, explanation in zip(records, body["explanations"], strict=True):
        pushing_up = sorted(((v, k) for k, v in explanation["contributions"].items() if v > 0), reverse=True)
        assert [(r["contribution"], r["feature"]) for r in explanation["reasons"]] == pushing_up[:2]
        for reason in explanation["reasons"]:
            feature = trained.family.feature(reason["feature"])
            assert reason.get("description") == feature.description
            sent = record[feature.name]
            assert reason["value"] == ("other" if sent == "mars" else sent)
    described = {f.name for f in trained.family.features if f.description}
    assert described and any(r["feature"] in described for e in body["explanations"] for r in e["reasons"])


def test_request_without_explain_answers_as_before_and_never_builds_the_explainer(trained: Trained) -> None:
    handler = Handler(trained.model.onnx_bytes)
    records = trained.records(trained.rows[:3])
    status, body = handler.post({"instances": records})
    assert status == 200 and "explanations" not in body
    # `warnings` names the undeclared categories (the sample's "mars") scored as "other".
    assert set(body) - {"warnings"} == {"model", "version", "predictions", "probabilities", "classes", "request_id",
                                        "decision_ids"}
    assert all(w["treated_as"] == "other" for w in body.get("warnings", []))
    status, declined = handler.post({"instances": records, "explain": False})
    assert status == 200 and "explanations" not in declined and declined["probabilities"] == body["probabilities"]
    assert handler.service.explainer._explainer is None and handler.service.explainer._refusal is None


def test_every_answer_leaves_a_decision_record_with_the_reason_codes_it_returned(trained: Trained) -> None:
    handler = Handler(trained.model.onnx_bytes)
    records = trained.records(trained.rows[:2])
    _, plain = handler.post({"instances": records})
    _, explained = handler.post({"instances": records, "explain": True, "top": 1})
    lines = handler.decisions()
    assert [line["request_id"] for line in lines] == [plain["request_id"], explained["request_id"]]
    for line, body in zip(lines, (plain, explained), strict=True):
        assert line["family"] == FAMILY and line["version"] == 4 and line["function_version"] == "7"
        assert line["predictions"] == body["predictions"] and line["records"] == 2
        assert line["probabilities"] == [p[1] for p in body["probabilities"]]
        assert line["inputs_captured"] is False and "inputs" not in line  # capture sample rate 0
    assert "explanations" not in lines[0]
    assert [e["reasons"] for e in lines[1]["explanations"]] == [e["reasons"] for e in explained["explanations"]]


# ---- refusals ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def logistic() -> Trained:
    return Trained("logistic_regression")


def test_artifact_trained_before_explanations_answers_409_naming_the_version_and_scores_without_explain(
        logistic: Trained) -> None:
    estimator, params = build_estimator(logistic.family, 42)
    X, y = credit_data(800, 3)
    estimator.fit(X, y)
    old = to_onnx_bytes(estimator, logistic.family, params)  # no `mlops.explainer` background
    handler = Handler(old)
    records = logistic.records(logistic.rows[:2])
    status, body = handler.post({"instances": records, "explain": True})
    assert status == 409 and body["error"] == "ExplanationUnavailableError"
    assert "explanations are unavailable for explain-test v4" in body["message"] and "Retrain" in body["message"]
    assert "no training baseline" in body["message"] and body["request_id"]
    status, scored = handler.post({"instances": records})
    assert status == 200
    refusal = handler.service.explainer._refusal
    assert handler.post({"instances": records, "explain": True})[0] == 409
    assert handler.service.explainer._refusal is refusal  # kept: the artifact is not parsed again
    # Only the answered request was decided: a refused one returned no prediction.
    assert [line["request_id"] for line in handler.decisions()] == [scored["request_id"]]


def test_multiclass_artifact_answers_409_and_says_multiclass_is_not_explained(logistic: Trained) -> None:
    artifact = with_metadata(logistic.model.onnx_bytes, **{"mlops.task": "multiclass_classification"})
    status, body = Handler(artifact).post({"instances": logistic.records(logistic.rows[:1]), "explain": True})
    assert status == 409 and "not available for multiclass models" in body["message"]


@pytest.mark.parametrize(("extra", "needle"), [
    ({"explain": "yes"}, "'explain' must be true or false, got 'yes'"),
    ({"explain": 1}, "'explain' must be true or false, got 1"),
    ({"explain": True, "top": -1}, "'top' must be a non-negative integer"),
    ({"explain": True, "top": 2.5}, "'top' must be a non-negative integer"),
    ({"explain": True, "top": True}, "'top' must be a non-negative integer"),
    ({"top": 3}, "send it with \"explain\": true"),
    ({"explain": False, "top": 3}, "send it with \"explain\": true"),
    ({"explain": True, "reasons": 3}, "unknown fields ['reasons']"),
])
def test_malformed_explanation_options_get_a_400_naming_the_field(logistic: Trained, extra: dict,
                                                                   needle: str) -> None:
    status, body = Handler(logistic.model.onnx_bytes).post({"instances": logistic.records(logistic.rows[:1]),
                                                            **extra})
    assert status == 400 and body["error"] == "ValidationError" and needle in body["message"], body


def test_top_null_or_zero_with_explain_lists_all_or_no_reasons(logistic: Trained) -> None:
    handler = Handler(logistic.model.onnx_bytes)
    records = logistic.records(logistic.rows[:4])
    _, every = handler.post({"instances": records, "explain": True, "top": None})
    _, none = handler.post({"instances": records, "explain": True, "top": 0})
    for full, empty in zip(every["explanations"], none["explanations"], strict=True):
        assert len(full["reasons"]) == sum(v > 0 for v in full["contributions"].values())
        assert empty["reasons"] == [] and empty["contributions"] == full["contributions"]


def test_invalid_records_are_refused_before_any_explanation(logistic: Trained) -> None:
    handler = Handler(logistic.model.onnx_bytes)
    record = logistic.records(logistic.rows[:1])[0]
    status, body = handler.post({"instances": [{**record, "debt ratio": None}], "explain": True})
    assert status == 400 and "debt ratio" in body["message"]
    assert handler.service.explainer._explainer is None
