"""The model side on real data: missing values imputed inside the ONNX graph, unknown and 60-level categories,
original class labels and thresholds, double precision where float32 loses splits, the trivial-model and
leakage gate, and scoring that treats `null` exactly as training treated NaN."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mlops.core.errors import DataSetError, ValidationError
from mlops.core.schemas import Feature, GatePolicy, ModelFamily
from mlops.core.settings import Env, ScoringSettings
from mlops.serving.api import ScoringService
from mlops.serving.scoring import ScoringModel
from mlops.training import fit
from mlops.training.evaluation import gate_decision, label_metric, leakage_warnings, trivial_model_comparison
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score, roc_auc_score

from mlops_local.apigw import proxy_event

ROOT = Path(__file__).resolve().parents[2]
ALGORITHMS = ("logistic_regression", "random_forest", "hist_gradient_boosting")
STATES = tuple(f"S{i:02d}" for i in range(60))
GRADES = ("A", "B", "C", "D")
OK_PARITY = {"ok": True, "max_abs_diff": 0.0, "label_mismatches": 0}


def _family(algorithm: str, **overrides) -> ModelFamily:
    """Every missing-value strategy the algorithm can take, a 60-level categorical with "other", a rejecting
    numeric feature, string labels and a non-0.5 threshold."""
    features = [
        Feature(name="age", missing="median"),
        Feature(name="annual income", missing="mean"),
        Feature(name="months.employed", missing="constant", fill_value=-1),
        Feature(name="grade", kind="categorical", categories=GRADES, missing="most_frequent"),
        Feature(name="home-ownership", kind="categorical", categories=("rent", "own", "mortgage"),
                missing="constant", fill_value="own"),
        Feature(name="state", kind="categorical", categories=STATES, unknown="other",
                missing="most_frequent"),
        Feature(name="debt_ratio"),
    ]
    if algorithm == "hist_gradient_boosting":
        features.append(Feature(name="utilization", missing="native"))
    spec = {"name": "real-data", "algorithm": algorithm, "target": "loan_status", "positive_label": "bad",
            "favorable_label": "good", "threshold": 0.35, "features": tuple(features),
            "hyperparameters": {"n_estimators": 40} if algorithm == "random_forest" else {}}
    spec.update(overrides)
    return ModelFamily.model_validate(spec)


def _data(family: ModelFamily, rows: int, seed: int, missing: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """X float64 in schema order as a parsed data set holds it (NaN missing, index k = "other") and y."""
    rng = np.random.default_rng(seed)
    columns, logit = [], np.full(rows, -0.8)
    state_effect = rng.normal(0, 0.8, len(STATES) + 1)
    for feature in family.features:
        if feature.kind == "categorical":
            k = len(feature.categories)
            # Index k ("other") appears for features that map unknown categories to it.
            column = rng.integers(0, k + (feature.unknown == "other"), rows).astype(np.float64)
            logit += (state_effect[column.astype(int)] if feature.name == "state" else 0.3 * (column - k / 2))
        else:
            column = rng.normal(0, 1, rows) * 10 + 40
            logit += 0.08 * (column - 40)
        if feature.accepts_missing:
            column[rng.random(rows) < missing] = np.nan
        columns.append(column)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return np.column_stack(columns), y


def _onnx_vs_sklearn(model: fit.TrainedModel, X: np.ndarray) -> tuple[float, int]:
    served = ScoringModel(model.onnx_bytes)
    graph_labels, proba = served.predict_matrix(X)
    expected = model.estimator.predict_proba(X)
    flips = int((served.decide(proba) != (expected[:, 1] >= served.threshold)).sum())
    assert (graph_labels == np.argmax(expected, axis=1)).sum() >= len(X) - flips
    return float(np.max(np.abs(proba - expected))), flips


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_onnx_reproduces_sklearn_with_missing_values_unknown_and_60_level_categories(algorithm):
    family = _family(algorithm)
    X, y = _data(family, 2500, seed=1)
    model = fit.train(family, X, y, classes=("good", "bad"))
    assert np.max(np.abs(model.sklearn_holdout_proba - model.estimator.predict_proba(X[model.holdout_index]))) == 0
    # Scoring rows the holdout may lack: missing in every feature that accepts it at once, and "other" for the
    # 60-level feature.
    score_X, _ = _data(family, 1500, seed=2, missing=0.4)
    score_X[:50, [j for j, f in enumerate(family.features) if f.accepts_missing]] = np.nan
    score_X[50:100, family.feature_names.index("state")] = len(STATES)
    gap, flips = _onnx_vs_sklearn(model, np.vstack([X[model.holdout_index], score_X]))
    assert gap <= 1e-5 and flips == 0, (gap, flips)
    expected_dtype = "float64" if algorithm == "hist_gradient_boosting" else "float32"
    assert model.input_dtype == expected_dtype and ScoringModel(model.onnx_bytes).input_dtype == np.dtype(
        expected_dtype)


def test_imputation_is_fitted_on_training_rows_only():
    family = _family("logistic_regression")
    X, y = _data(family, 1000, seed=3)
    model = fit.train(family, X, y, classes=("good", "bad"))
    fill = model.estimator.named_steps["impute"].fill_
    train_rows = np.setdiff1d(np.arange(len(y)), model.holdout_index)
    age, income = family.feature_names.index("age"), family.feature_names.index("annual income")
    assert fill[age] == np.nanmedian(X[train_rows, age]) != np.nanmedian(X[:, age])
    assert fill[income] == pytest.approx(np.nanmean(X[train_rows, income]), rel=1e-12)
    assert fill[family.feature_names.index("months.employed")] == -1
    assert fill[family.feature_names.index("home-ownership")] == 1.0  # the index of "own"
    assert np.isnan(fill[family.feature_names.index("debt_ratio")])  # reject: nothing to fill


def _epoch_data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds over one day and amounts near 1e9 a few hundred apart: float32 holds neither (its spacing
    is 128 at 1.7e9 and 64 at 1e9)."""
    rng = np.random.default_rng(seed)
    seconds = 1.7e9 + rng.uniform(0, 86_400, rows)
    amount = 1e9 + rng.normal(0, 400, rows)
    other = rng.normal(0, 1, rows)
    logit = np.sin((seconds - 1.7e9) / 3_600) + (amount - 1e9) / 250 + other
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return np.column_stack([seconds, amount, other]), y


def _epoch_family(algorithm: str) -> ModelFamily:
    return ModelFamily(name="epoch", algorithm=algorithm, target="y", features=(
        Feature(name="application_time"), Feature(name="amount"), Feature(name="score")))


def test_hist_gradient_boosting_keeps_parity_on_epoch_seconds_and_1e9_amounts():
    family = _epoch_family("hist_gradient_boosting")
    X, y = _epoch_data(6000, seed=4)
    model = fit.train(family, X, y)
    # Before: the same fitted model with float32 input and thresholds (skl2onnx's default) breaks parity.
    float32_bytes = fit.to_onnx_bytes(model.estimator, family, model.hyperparameters, double=False)
    float32 = ScoringModel(float32_bytes)
    expected = model.estimator.predict_proba(X)
    _, float32_proba = float32.predict_matrix(X)
    assert np.max(np.abs(float32_proba - expected)) > 0.05
    assert ((float32_proba[:, 1] >= 0.5) != (expected[:, 1] >= 0.5)).sum() > 10
    # After: double-precision input, thresholds and leaf values.
    gap, flips = _onnx_vs_sklearn(model, X)
    assert model.input_dtype == "float64" and gap <= 1e-5 and flips == 0, (gap, flips)


def test_logistic_regression_reads_float64_only_when_float32_inputs_move_its_probabilities():
    epoch = fit.train(_epoch_family("logistic_regression"), *_epoch_data(4000, seed=5))
    gap, flips = _onnx_vs_sklearn(epoch, _epoch_data(2000, seed=6)[0])
    assert epoch.input_dtype == "float64" and gap <= 1e-5 and flips == 0
    family = _family("logistic_regression")
    ordinary = fit.train(family, *_data(family, 1000, seed=7), classes=("good", "bad"))
    assert ordinary.input_dtype == "float32"


def test_hist_gradient_boosting_native_categoricals_are_refused_in_favour_of_the_ordinal_index():
    family = _family("hist_gradient_boosting", hyperparameters={"categorical_features": "from_dtype"})
    with pytest.raises(fit.ConfigurationError, match="categorical_features"):
        fit.build_estimator(family, 1)


def _handler(onnx_bytes: bytes, family_name: str):
    spec = importlib.util.spec_from_file_location(f"score_handler_{id(onnx_bytes)}",
                                                  ROOT / "functions/score/handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    service = ScoringService(ScoringSettings.model_validate({
        Env.ARTIFACT_BUCKET: "bucket", Env.REGISTRY_TABLE: "table", Env.MODEL_FAMILY: family_name,
        Env.MODEL_VERSION: "1", Env.MODEL_SHA256: "0" * 64, Env.CAPTURE_SAMPLE_RATE: "0"}))
    service.model = ScoringModel(onnx_bytes)
    module._service = service
    return module


def _predict(module, family: ModelFamily, records: list[dict]) -> tuple[int, dict]:
    event = proxy_event("POST", f"/models/{family.name}/predict", json.dumps({"instances": records}))
    response = module.lambda_handler(event, SimpleNamespace(aws_request_id="test"))
    return response["statusCode"], json.loads(response["body"])


def _record(family: ModelFamily, row: np.ndarray) -> dict:
    record = {}
    for feature, value in zip(family.features, row, strict=True):
        if np.isnan(value):
            record[feature.name] = None
        elif feature.kind == "categorical":
            record[feature.name] = feature.categories[int(value)] if value < len(feature.categories) else "ZZ"
        else:
            record[feature.name] = float(value)
    return record


@pytest.fixture(scope="module", params=["logistic_regression", "hist_gradient_boosting"])
def served(request):
    family = _family(request.param)
    X, y = _data(family, 2000, seed=8)
    model = fit.train(family, X, y, classes=("good", "bad"))
    return family, model, _handler(model.onnx_bytes, family.name)


def test_null_for_imputed_features_scores_200_with_original_labels_as_sklearn_on_nan(served):
    family, model, handler = served
    rows, _ = _data(family, 40, seed=9, missing=0.5)
    rows[:, family.feature_names.index("debt_ratio")] = 12.5  # the one feature without a strategy
    rows[3, family.feature_names.index("state")] = len(STATES)  # an unknown state: "other"
    expected = model.estimator.predict_proba(rows)
    # One record (the pre-bound single-row path), then all 40 (the batch path).
    for records, proba in (([_record(family, rows[0])], expected[:1]), ([_record(family, r) for r in rows], expected)):
        assert any(v is None for v in records[0].values())
        status, body = _predict(handler, family, records)
        assert status == 200, body
        assert body["classes"] == ["good", "bad"]
        assert np.max(np.abs(np.asarray(body["probabilities"]) - proba)) <= 1e-5
        assert body["predictions"] == ["bad" if p >= family.threshold else "good" for p in proba[:, 1]]


def test_threshold_decides_labels_where_argmax_would_not(served):
    family, model, handler = served
    rows, _ = _data(family, 400, seed=10, missing=0.0)
    p1 = model.estimator.predict_proba(rows)[:, 1]
    between = np.flatnonzero((p1 >= family.threshold + 1e-4) & (p1 < 0.5))
    assert between.size >= 5
    status, body = _predict(handler, family, [_record(family, rows[i]) for i in between[:20]])
    assert status == 200 and set(body["predictions"]) == {"bad"}


def test_null_for_a_feature_without_a_strategy_is_refused_naming_it(served):
    family, _, handler = served
    record = _record(family, _data(family, 1, seed=11, missing=0.0)[0][0])
    record["debt_ratio"] = None
    status, body = _predict(handler, family, [record])
    assert status == 400 and "instances[0].debt_ratio is null" in body["message"]
    assert "does not accept missing values" in body["message"]


def test_unknown_category_without_other_is_refused_with_a_truncated_list():
    family = _family("logistic_regression", features=(
        Feature(name="state", kind="categorical", categories=STATES), Feature(name="debt_ratio")))
    X, y = _data(family, 600, seed=12)
    handler = _handler(fit.train(family, X, y).onnx_bytes, family.name)
    status, body = _predict(handler, family, [{"state": "ZZ", "debt_ratio": 1.0}])
    assert status == 400 and "instances[0].state must be one of" in body["message"]
    assert "(60 categories)" in body["message"] and "S59" not in body["message"] and len(body["message"]) < 300


@pytest.mark.parametrize("algorithm", ["logistic_regression", "hist_gradient_boosting"])
def test_single_row_bound_path_answers_as_session_run_for_both_input_dtypes(algorithm):
    family = _family(algorithm)
    X, y = _data(family, 800, seed=13, missing=0.3)
    served = ScoringModel(fit.train(family, X, y, classes=("good", "bad")).onnx_bytes)
    assert served._binding is not None and served._bound_input.dtype == served.input_dtype
    for i in range(100):  # distinct rows, NaN included: a stale buffer or a missed copy would show
        row = X[i:i + 1]
        _, proba = served.predict_matrix(row)
        assert served.predict_lists(row) == (served.decide(proba).tolist(), proba.tolist())
        assert served.predict_instances([_record(family, X[i])]) == (served.decide(proba).tolist(), proba.tolist())


@pytest.mark.parametrize(("classes", "expected"), [
    (("good", "bad"), ["good", "bad"]),
    (("False", "True"), [False, True]),
    (("false", "true"), [False, True]),
    (("0", "1"), [0, 1]),
    (("No", "Yes"), ["No", "Yes"]),
    (("1.5", "007"), ["1.5", "007"]),
])
def test_classes_are_carried_as_original_labels_in_index_order(classes, expected):
    X, y = _epoch_data(300, seed=14)
    family = ModelFamily(name="labels", target="y", features=(Feature(name="score"),), positive_label=classes[1])
    served = ScoringModel(fit.train(family, X[:, 2:], y, classes=classes).onnx_bytes)
    assert served.classes == expected
    meta = served.session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["mlops.positive_label"]) == expected[1] and meta["mlops.task"] == family.task


def test_holdout_split_refuses_a_single_minority_row_with_a_data_set_error():
    y = np.array([0] * 60 + [1])
    with pytest.raises(DataSetError, match="at least 2 rows"):
        fit.holdout_split(y, 0.2, 1)
    with pytest.raises(DataSetError, match="1 class"):
        fit.holdout_split(np.zeros(50, dtype=int), 0.2, 1)


def test_holdout_split_keeps_every_class_in_both_parts():
    y = np.array([0] * 97 + [1] * 2 + [2] * 3)
    train_rows, holdout_rows = fit.holdout_split(y, 0.45, 3)
    for label in (0, 1, 2):
        assert (y[train_rows] == label).any() and (y[holdout_rows] == label).any()
    assert np.intersect1d(train_rows, holdout_rows).size == 0 and train_rows.size + holdout_rows.size == y.size


def test_single_feature_auc_matches_scikit_learn_is_symmetric_and_skips_missing_rows():
    rng = np.random.default_rng(15)
    rows = 2000
    y = (rng.random(rows) < 0.3).astype(np.int64)
    inverse = -y * 3.0 + rng.normal(0, 1, rows)
    inverse[rng.random(rows) < 0.2] = np.nan
    leaky = np.where(y == 1, 1.0, 0.0)  # a categorical that copies the target
    X = np.column_stack([inverse, leaky])
    family = ModelFamily(name="leaky", target="y", features=(
        Feature(name="inverse", missing="median"), Feature(name="copy", kind="categorical", categories=("n", "y"))))
    train_rows, holdout_rows = fit.holdout_split(y, 0.3, 1)
    aucs = fit.single_feature_auc(family, X, y, train_rows, holdout_rows)
    present = ~np.isnan(X[holdout_rows, 0])
    reference = roc_auc_score(y[holdout_rows][present], X[holdout_rows, 0][present])
    assert reference < 0.5 and aucs["inverse"] == pytest.approx(1 - reference, abs=1e-6)
    assert aucs["copy"] == 1.0
    warnings = leakage_warnings(GatePolicy(), 0.97, aucs)
    assert len(warnings) == 1 and "'copy'" in warnings[0]


@pytest.mark.parametrize("seed", range(6))
def test_label_metric_equals_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    y = rng.integers(0, 2, n) if seed % 3 else np.zeros(n, dtype=int)
    labels = rng.integers(0, 2, n) if seed % 2 else np.zeros(n, dtype=int)
    assert label_metric("recall", y, labels) == pytest.approx(recall_score(y, labels, zero_division=0))
    assert label_metric("f1", y, labels) == pytest.approx(f1_score(y, labels, zero_division=0))
    if len(np.unique(y)) == 2:
        assert label_metric("balanced_accuracy", y, labels) == pytest.approx(balanced_accuracy_score(y, labels))


def test_gate_rejects_a_model_no_better_than_the_trivial_model_on_imbalanced_data():
    # 5% positives; the candidate labels 0.2% of rows positive (10 right, 10 wrong): its accuracy equals the
    # majority rate, and min_accuracy alone would pass it.
    y = np.zeros(10_000, dtype=np.int64)
    y[:500] = 1
    labels = np.zeros_like(y)
    labels[:10] = 1
    labels[600:610] = 1
    metrics = {"auc": 0.8, "accuracy": float((labels == y).mean())}
    assert metrics["accuracy"] == 0.95
    policy = GatePolicy(min_accuracy=0.9)
    trivial = trivial_model_comparison(policy.trivial_model_metric, y, labels, prior=0.05, threshold=0.5)
    assert trivial["trivial"] == 0.5 and trivial["candidate"] == pytest.approx(balanced_accuracy_score(y, labels))
    decision = gate_decision(policy, metrics, {"checked": False}, OK_PARITY, None, trivial=trivial, threshold=0.5)
    assert not decision["passed"]
    assert [c["check"] for c in decision["checks"] if not c["passed"]] == ["lift_over_trivial_model"]
    assert "trivial model" in decision["reasons"][0]
    # A model that finds most positives passes the same check.
    useful = y.copy()
    useful[:100] = 0
    useful[1000:1200] = 1
    good = trivial_model_comparison(policy.trivial_model_metric, y, useful, prior=0.05, threshold=0.5)
    assert gate_decision(policy, {"auc": 0.9, "accuracy": 0.97}, {"checked": False}, OK_PARITY, None,
                         trivial=good)["passed"]


@pytest.mark.parametrize(("metric", "prior", "threshold", "trivial_value"), [
    ("recall", 0.05, 0.5, 0.0), ("recall", 0.3, 0.2, 1.0), ("f1", 0.3, 0.2, 2 * 50 / (2 * 50 + 150))])
def test_trivial_model_predicts_the_prior_at_the_threshold(metric, prior, threshold, trivial_value):
    y = np.array([1] * 50 + [0] * 150)
    result = trivial_model_comparison(metric, y, y, prior, threshold)
    assert result["trivial"] == pytest.approx(trivial_value, abs=1e-6) and result["candidate"] == 1.0


def test_leakage_is_a_warning_in_the_decision_never_a_failure():
    warnings = leakage_warnings(GatePolicy(), 0.999, {"id": 0.991, "age": 0.6, "empty": None})
    decision = gate_decision(GatePolicy(), {"auc": 0.999, "accuracy": 0.99}, {"checked": False}, OK_PARITY, None,
                             leakage=warnings, threshold=0.4)
    assert decision["passed"] and len(decision["warnings"]) == 2 and decision["threshold"] == 0.4
    assert "holdout AUC 0.9990" in decision["warnings"][0] and "'id'" in decision["warnings"][1]
    assert decision["notes"] == ["fairness not checked: the family declares no sensitive attribute"]
    assert leakage_warnings(GatePolicy(), float("nan"), {"x": float("nan")}) == []


def test_scoring_model_refuses_a_non_float_input_artifact():
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["X"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.INT64, [None, 1])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT64, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in {"mlops.features": '[{"name": "x"}]', "mlops.classes": "[0, 1]"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    with pytest.raises(ValidationError, match="not a float tensor"):
        ScoringModel(model.SerializeToString())
