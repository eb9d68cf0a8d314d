"""Training: fit the family's scikit-learn model, convert it to ONNX, keep the holdout and a baseline profile.

Imports scikit-learn and skl2onnx, so only the training function (training layer) imports this module.

What the ONNX graph holds, per algorithm (one input "X" in schema order: numeric values, categorical features as
category index 0..k-1, index k = "other", NaN = missing):
- Missing values: a `FeatureImputer` step whose per-feature fill values are fitted by scikit-learn's SimpleImputer
  on the training rows only, converted to `Where(IsNaN(X), fill, X)`. skl2onnx's own Imputer conversion writes the
  fill values as float32 and onnxruntime has no double-precision Imputer kernel, so neither serves a float64 graph.
  Features with `native` (HistGradientBoosting) or `reject` keep NaN (fill value NaN).
- Categorical features: one-hot (k columns, k+1 with `unknown: other`) for logistic regression; the category index
  as an ordinal value for the tree ensembles. HistGradientBoosting's native `categorical_features` is not used:
  skl2onnx 1.20 converts its bitset splits as numeric thresholds (measured on a 60-level feature: max |dp| 0.99,
  2,715 of 5,000 labels flipped; the ordinal index: max |dp| 1.5e-7, no flip, holdout AUC 0.869 vs 0.872).
- Input precision: HistGradientBoosting reads float64 (its split thresholds are float64; as float32 they fail
  parity on epoch seconds or amounts near 1e9), through ONNX-ML's TreeEnsembleClassifier v3 with double
  thresholds (`nodes_values_as_tensor`). Random forests read float32, as scikit-learn's trees do. Logistic
  regression reads float32 unless rounding the training inputs to float32 moves its probabilities by more than a
  tenth of the parity tolerance; then float64 (about 4 us slower a call, measured).
"""

from __future__ import annotations

import io
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sklearn.base import BaseEstimator, TransformerMixin

from .errors import ConfigurationError, DataSetError
from .profile import baseline_profile
from .schemas import Label, ModelFamily

ONNX_INPUT = "X"
ONNX_OPSET = 17
# TreeEnsembleClassifier v3 is the first with double-precision thresholds and leaf weights.
ONNX_ML_OPSET_DOUBLE_TREES = 3
DEFAULT_CLASSES: tuple[Label, Label] = (0, 1)

DEFAULT_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "logistic_regression": {"C": 1.0, "max_iter": 1000},
    "random_forest": {"n_estimators": 100, "max_depth": 10, "min_samples_leaf": 5},
    "hist_gradient_boosting": {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 31},
}
_INTEGER = re.compile(r"^-?(0|[1-9][0-9]{0,17})$")


@dataclass(frozen=True)
class TrainedModel:
    """A fitted model, its ONNX artifact and what evaluation needs.

    `sklearn_holdout_proba` is [holdout rows, 2] in class-index order; `sklearn_holdout_labels` the class index of
    the larger probability (what the graph's `label` output reproduces; decisions use `threshold` instead).
    `single_feature_auc` maps each feature to max(AUC, 1 - AUC) of that feature alone on the holdout."""

    onnx_bytes: bytes
    hyperparameters: dict[str, Any]
    holdout_index: np.ndarray
    sklearn_holdout_proba: np.ndarray
    sklearn_holdout_labels: np.ndarray
    profile: dict[str, Any]
    fit_seconds: float
    library_versions: dict[str, str]
    input_dtype: str
    classes: tuple[Label, ...]
    threshold: float
    training_positive_rate: float
    single_feature_auc: dict[str, float | None]
    estimator: Any = None  # the fitted scikit-learn estimator (in-process use: tests, benchmarks)


class FeatureImputer(TransformerMixin, BaseEstimator):
    """Fills missing values (NaN) per feature with a statistic fitted on the training rows by scikit-learn's
    SimpleImputer (strategies median, mean, most_frequent, constant).

    `strategies` holds one (strategy, fill_value) pair per input column; strategy None leaves that column's NaN
    in place (for `native` or `reject`). A column with no training value gets 0 (SimpleImputer's
    keep_empty_features). X: float array [rows, columns]; transform returns float64 of the same shape."""

    def __init__(self, strategies: tuple[tuple[str | None, float | None], ...] = ()) -> None:
        self.strategies = strategies

    def fit(self, X: np.ndarray, y: Any = None) -> FeatureImputer:
        from sklearn.impute import SimpleImputer

        X = np.asarray(X, dtype=np.float64)
        if X.shape[1] != len(self.strategies):
            raise ValueError(f"FeatureImputer has {len(self.strategies)} strategies for {X.shape[1]} columns")
        fill = np.full(X.shape[1], np.nan)
        groups: dict[tuple[str, float | None], list[int]] = {}
        for j, (strategy, value) in enumerate(self.strategies):
            if strategy is not None:
                groups.setdefault((strategy, value), []).append(j)
        for (strategy, value), columns in groups.items():
            imputer = SimpleImputer(strategy=strategy, fill_value=value, keep_empty_features=True)
            fill[columns] = imputer.fit(X[:, columns]).statistics_
        self.fill_ = fill
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return np.where(np.isnan(X), self.fill_, X)


def imputation_strategies(family: ModelFamily) -> tuple[tuple[str | None, float | None], ...]:
    """Per feature, the SimpleImputer strategy and fill value (a categorical's constant is its category index);
    (None, None) where NaN is kept (`native`) or cannot occur (`reject`)."""
    out: list[tuple[str | None, float | None]] = []
    for feature in family.features:
        if feature.missing in ("reject", "native"):
            out.append((None, None))
        elif feature.missing == "constant":
            value = feature.fill_value
            fill = float(feature.categories.index(str(value))) if feature.kind == "categorical" else float(value)
            out.append(("constant", fill))
        else:
            out.append((feature.missing, None))
    return tuple(out)


def build_estimator(family: ModelFamily, seed: int) -> tuple[Any, dict[str, Any]]:
    """The scikit-learn estimator for the family's algorithm, defaults overridden by its hyperparameters: a
    Pipeline [impute (when a feature imputes), prepare (logistic regression), classifier], or the bare classifier.
    Raises ConfigurationError for hyperparameters the algorithm does not take."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    params = {**DEFAULT_HYPERPARAMETERS[family.algorithm], **family.hyperparameters}
    if "categorical_features" in params:
        raise ConfigurationError(f"family {family.name!r}: hyperparameter 'categorical_features' is not supported; "
                                 "categorical features are declared in the feature schema (kind: categorical)")
    steps: list[tuple[str, Any]] = []
    strategies = imputation_strategies(family)
    if any(strategy is not None for strategy, _ in strategies):
        steps.append(("impute", FeatureImputer(strategies)))
    try:
        if family.algorithm == "logistic_regression":
            numeric = [i for i, f in enumerate(family.features) if f.kind == "numeric"]
            categorical = [i for i, f in enumerate(family.features) if f.kind == "categorical"]
            transformers: list[tuple[str, Any, list[int]]] = []
            if numeric:
                transformers.append(("numeric", StandardScaler(), numeric))
            if categorical:
                # Index k ("other") gets its own column when the feature maps unknown categories to it.
                levels = [len(family.features[i].categories) + (family.features[i].unknown == "other")
                          for i in categorical]
                categories = [[float(c) for c in range(k)] for k in levels]
                transformers.append(("categorical", OneHotEncoder(categories=categories, handle_unknown="ignore",
                                                                  sparse_output=False), categorical))
            steps.append(("prepare", ColumnTransformer(transformers)))
            steps.append(("classifier", LogisticRegression(random_state=seed, **params)))
        elif family.algorithm == "random_forest":
            steps.append(("classifier", RandomForestClassifier(random_state=seed, n_jobs=1, **params)))
        else:
            steps.append(("classifier", HistGradientBoostingClassifier(random_state=seed, categorical_features=None,
                                                                       **params)))
    except TypeError as exc:
        raise ConfigurationError(f"family {family.name!r}: invalid hyperparameters for {family.algorithm}: {exc}"
                                 ) from None
    estimator = Pipeline(steps) if len(steps) > 1 else steps[0][1]
    return estimator, params


def holdout_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split of row indices into (train, holdout): per class, round(rows x fraction) rows
    held out, at least 1 and at most rows - 1, so each class is in both parts.

    Raises DataSetError when fewer than two classes are present or a class has fewer than 2 rows."""
    y = np.asarray(y)
    labels, counts = np.unique(y, return_counts=True)
    if labels.size < 2:
        raise DataSetError(f"the target has {labels.size} class(es); two are needed to train and hold out")
    if counts.min() < 2:
        small = [f"class {label!r}: {count} row" for label, count in zip(labels, counts, strict=True) if count < 2]
        raise DataSetError(f"every class needs at least 2 rows for the stratified holdout ({', '.join(small)})")
    rng = np.random.default_rng(seed)
    train_parts, holdout_parts = [], []
    for label in labels:
        rows = np.flatnonzero(y == label)
        rng.shuffle(rows)
        cut = min(rows.size - 1, max(1, int(round(rows.size * fraction))))
        holdout_parts.append(rows[:cut])
        train_parts.append(rows[cut:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(holdout_parts))


def train(family: ModelFamily, X: np.ndarray, y: np.ndarray, seed: int | None = None,
          classes: Sequence[Label] | None = None) -> TrainedModel:
    """Fit on the training rows, convert to ONNX and profile. Deterministic for a given data set and seed.

    X: float64 [rows, features] in schema order (NaN = missing, categorical = category index, k = "other");
    y: class index per row (0 = negative, 1 = positive); classes: the original labels in index order
    [negative, positive] (default 0, 1). The baseline profile is computed from the float64 training values.
    Raises DataSetError (holdout impossible), ConfigurationError (hyperparameters)."""
    import onnx
    import skl2onnx
    import sklearn

    seed = family.seed if seed is None else seed
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    classes = tuple(DEFAULT_CLASSES if classes is None else classes)
    if len(classes) != 2:
        raise DataSetError(f"a binary family needs exactly 2 classes, got {len(classes)}: {list(classes)[:5]}")
    train_index, holdout_index = holdout_split(y, family.holdout_fraction, seed)
    estimator, params = build_estimator(family, seed)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, message=".*[Ff]ound unknown categories.*")
        estimator.fit(X[train_index], y[train_index])
    fit_seconds = time.perf_counter() - started

    train_proba = estimator.predict_proba(X[train_index])
    double = needs_double_precision(family, estimator, X[train_index], train_proba)
    onnx_bytes = to_onnx_bytes(estimator, family, params, classes=classes, double=double)
    proba = estimator.predict_proba(X[holdout_index])
    labels = np.argmax(proba, axis=1).astype(np.int64)
    profile = baseline_profile(family, X[train_index], train_proba[:, 1])
    return TrainedModel(
        onnx_bytes=onnx_bytes, hyperparameters=params, holdout_index=holdout_index,
        sklearn_holdout_proba=proba, sklearn_holdout_labels=labels, profile=profile, fit_seconds=fit_seconds,
        library_versions={"scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__,
                          "onnx": onnx.__version__, "numpy": np.__version__},
        input_dtype="float64" if double else "float32", classes=tuple(json_label(c) for c in classes),
        threshold=family.threshold, training_positive_rate=float(y[train_index].mean()),
        single_feature_auc=single_feature_auc(family, X, y, train_index, holdout_index), estimator=estimator,
    )


def needs_double_precision(family: ModelFamily, estimator: Any, X: np.ndarray, proba: np.ndarray) -> bool:
    """Whether the served graph must read float64. Always for HistGradientBoosting (float64 split thresholds),
    never for random forests (scikit-learn's trees compare float32 values). Logistic regression: when rounding
    the training inputs to float32 moves any predicted probability by more than a tenth of the parity tolerance
    (epoch seconds, amounts near 1e9 with a small spread)."""
    if family.algorithm == "hist_gradient_boosting":
        return True
    if family.algorithm == "random_forest":
        return False
    rounded = X.astype(np.float32).astype(np.float64)
    with np.errstate(all="ignore"):
        gap = float(np.max(np.abs(estimator.predict_proba(rounded)[:, 1] - proba[:, 1]), initial=0.0))
    return not gap <= family.gate.parity_tolerance / 10  # NaN (overflow) counts as a gap too


def single_feature_auc(family: ModelFamily, X: np.ndarray, y: np.ndarray, train_index: np.ndarray,
                       holdout_index: np.ndarray) -> dict[str, float | None]:
    """Per feature, how well it alone separates the classes on the holdout: max(AUC, 1 - AUC) with scikit-learn's
    roc_auc_score, rows where the feature is missing left out. A numeric feature scores by its value; a
    categorical one by its category's positive rate on the training rows (categories unseen there: the training
    prior). None when the remaining holdout rows hold one class only. Used as a sign of target leakage."""
    from sklearn.metrics import roc_auc_score

    y_train, y_holdout = y[train_index], y[holdout_index]
    prior = float(y_train.mean())
    out: dict[str, float | None] = {}
    for j, feature in enumerate(family.features):
        column = X[holdout_index, j]
        present = ~np.isnan(column)
        if feature.kind == "categorical":
            codes = X[train_index, j]
            seen = ~np.isnan(codes)
            levels = len(feature.categories) + 1
            counts = np.bincount(codes[seen].astype(np.int64), minlength=levels)[:levels]
            positives = np.bincount(codes[seen].astype(np.int64), weights=y_train[seen], minlength=levels)[:levels]
            rate = np.where(counts > 0, positives / np.maximum(counts, 1), prior)
            score = rate[np.clip(column[present], 0, levels - 1).astype(np.int64)]
        else:
            score = column[present]
        truth = y_holdout[present]
        if truth.size == 0 or truth.min() == truth.max():
            out[feature.name] = None
            continue
        auc = float(roc_auc_score(truth, score))
        out[feature.name] = round(max(auc, 1.0 - auc), 6)
    return out


def json_label(label: Label) -> Label:
    """A class label as the registry and the scoring response carry it: integers and booleans as JSON numbers and
    booleans ("1" -> 1, "True" -> true), any other text as it appears in the data set ("bad", "1.5")."""
    if isinstance(label, bool | int):
        return label
    if isinstance(label, float):
        return int(label) if label.is_integer() else label
    text = str(label).strip()
    if _INTEGER.match(text):
        return int(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def to_onnx_bytes(estimator: Any, family: ModelFamily, params: dict[str, Any],
                  classes: Sequence[Label] | None = None, double: bool | None = None) -> bytes:
    """The fitted estimator as ONNX bytes: input "X" [N, features] float32 or float64 (`double`; default per
    algorithm, see the module docstring), outputs `label` (int64 class index) and `probabilities` [N, 2] (ZipMap
    off), metadata mlops.* (features, classes as original labels in index order, positive_label, threshold,
    task, algorithm, hyperparameters)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    _register_converters()
    if double is None:
        double = family.algorithm == "hist_gradient_boosting"
    classes = [json_label(c) for c in (DEFAULT_CLASSES if classes is None else classes)]
    classifier = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    tensor = DoubleTensorType if double else FloatTensorType
    with warnings.catch_warnings():
        # skl2onnx 1.20 hands booleans to int fields; protobuf 6 accepts them (protobuf 7 would not: pinned <7).
        warnings.filterwarnings("ignore", message="Field onnx.AttributeProto.ints", category=DeprecationWarning)
        model = to_onnx(
            estimator,
            initial_types=[(ONNX_INPUT, tensor([None, len(family.features)]))],
            options={id(classifier): {"zipmap": False}},
            target_opset=ONNX_OPSET,
        )
    if double and family.algorithm == "hist_gradient_boosting":
        _double_precision_trees(model, classifier)
    metadata = {
        "mlops.family": family.name,
        "mlops.task": family.task,
        "mlops.features": orjson.dumps([f.model_dump(mode="json") for f in family.features]).decode(),
        "mlops.target": family.target,
        "mlops.classes": orjson.dumps(classes).decode(),
        "mlops.positive_label": orjson.dumps(classes[1]).decode(),
        "mlops.threshold": repr(float(family.threshold)),
        "mlops.algorithm": family.algorithm,
        "mlops.hyperparameters": orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode(),
    }
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"{family.name} {family.algorithm}"
    return model.SerializeToString()


def _double_precision_trees(model: Any, classifier: Any) -> None:
    """Rewrite skl2onnx's TreeEnsembleClassifier (float32 thresholds, op v1) with the HistGradientBoosting
    model's float64 thresholds, leaf values and baseline as ONNX-ML v3 `*_as_tensor` attributes. The node order
    is skl2onnx's (trees in iteration order, nodes in each predictor's order); the float32 values it wrote are
    checked against ours first, so a converter change fails loudly instead of serving a different model."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"]
    if len(nodes) != 1 or len(classifier._predictors[0]) != 1:
        raise ConfigurationError("double-precision conversion expects one binary HistGradientBoosting ensemble")
    node = nodes[0]
    thresholds, leaves = [], []
    for (predictor,) in classifier._predictors:
        for tree_node in predictor.nodes:
            if tree_node["is_leaf"]:
                thresholds.append(0.0)
                leaves.append(float(tree_node["value"]))
            else:
                thresholds.append(float(tree_node["num_threshold"]))
    attributes = {a.name: a for a in node.attribute}
    written = np.asarray(attributes["nodes_values"].floats, dtype=np.float32)
    if not (np.array_equal(written, np.asarray(thresholds, dtype=np.float32))
            and len(attributes["class_weights"].floats) == len(leaves)):
        raise ConfigurationError("skl2onnx's tree layout changed; the double-precision rewrite cannot map it")
    replacements = {"nodes_values": thresholds, "class_weights": leaves,
                    "base_values": np.ravel(classifier._baseline_prediction)}
    for name, values in replacements.items():
        node.attribute.remove(attributes[name])
        tensor = numpy_helper.from_array(np.asarray(values, dtype=np.float64), name=f"{name}_as_tensor")
        node.attribute.append(helper.make_attribute(f"{name}_as_tensor", tensor))
    for opset in model.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = max(opset.version, ONNX_ML_OPSET_DOUBLE_TREES)
    # The operator's probabilities are float32 whatever its input; skl2onnx declared the input's type.
    for output in model.graph.output:
        if output.type.tensor_type.elem_type == TensorProto.DOUBLE:
            output.type.tensor_type.elem_type = TensorProto.FLOAT


_registered = False


def _register_converters() -> None:
    global _registered
    if _registered:
        return
    from skl2onnx import update_registered_converter

    update_registered_converter(FeatureImputer, IMPUTER_ALIAS, _imputer_shape, _convert_imputer,
                                parser=_parse_imputer)
    _registered = True


IMPUTER_ALIAS = "MlopsFeatureImputer"


def _parse_imputer(scope: Any, model: FeatureImputer, inputs: list, custom_parsers: Any = None) -> list:
    # The output is declared with its shape at parse time: a ColumnTransformer that follows reads it then.
    operator = scope.declare_local_operator(IMPUTER_ALIAS, model)
    operator.inputs = inputs
    operator.outputs.append(scope.declare_local_variable("imputed", _imputed_type(inputs[0].type, model)))
    return operator.outputs


def _imputed_type(source: Any, model: FeatureImputer) -> Any:
    return source.__class__([None, model.n_features_in_])


def _imputer_shape(operator: Any) -> None:
    operator.outputs[0].type = _imputed_type(operator.inputs[0].type, operator.raw_operator)


def _convert_imputer(scope: Any, operator: Any, container: Any) -> None:
    """FeatureImputer as Where(IsNaN(X), fill, X), in the input's precision (float32 or float64)."""
    from skl2onnx.common.data_types import guess_numpy_type, guess_proto_type

    source = operator.inputs[0]
    dtype = guess_numpy_type(source.type)
    fill = scope.get_unique_variable_name("fill_values")
    values = operator.raw_operator.fill_.astype(dtype)
    container.add_initializer(fill, guess_proto_type(source.type), [values.size], values.tolist())
    missing = scope.get_unique_variable_name("is_missing")
    container.add_node("IsNaN", [source.full_name], [missing], name=scope.get_unique_operator_name("IsNaN"))
    container.add_node("Where", [missing, fill, source.full_name], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Where"))


def holdout_bytes(X: np.ndarray, y: np.ndarray, sensitive: np.ndarray | None, row_ids: np.ndarray,
                  sklearn_proba: np.ndarray, sklearn_labels: np.ndarray,
                  line_numbers: np.ndarray | None = None) -> bytes:
    """The holdout and the sklearn model's predictions on it, as an .npz of plain arrays (no pickles). X stays
    float64 (NaN = missing); `sensitive` and `line_numbers` are stored only when given."""
    arrays: dict[str, np.ndarray] = {
        "X": np.asarray(X, dtype=np.float64), "y": y.astype(np.int64), "row_ids": row_ids.astype(np.int64),
        "sklearn_proba": sklearn_proba.astype(np.float64), "sklearn_labels": sklearn_labels.astype(np.int64)}
    if sensitive is not None:
        arrays["sensitive"] = np.asarray(sensitive).astype(str)
    if line_numbers is not None:
        arrays["line_numbers"] = np.asarray(line_numbers, dtype=np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()
