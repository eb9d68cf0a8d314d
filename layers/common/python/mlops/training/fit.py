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
  parity on epoch seconds or amounts near 1e9), through ONNX-ML's TreeEnsembleClassifier/Regressor v3 with double
  thresholds (`nodes_values_as_tensor`). Random forests read float32, as scikit-learn's trees do. The linear
  models (logistic regression, Ridge) read float32 unless rounding the training inputs (and, for Ridge, its
  output) to float32 moves a prediction by more than a tenth of the parity tolerance (for a regression: of the
  target's standard deviation); then float64 (about 4 us slower a call, measured).

Per task (`ModelFamily.task`):
- binary_classification: outputs `label` (int64 class index) and `probabilities` [N, 2].
- multiclass_classification: the same outputs with [N, k] probabilities, classes in the data set's sorted order.
- regression: one output `prediction` [N, 1] on the target's scale. The tree ensembles' sums are taken around
  the training target's mean (HistGradientBoosting: its baseline; forests: the mean, subtracted from every leaf
  in float64), and the mean is added back in float64 after the operator, whose output is float32: so the served
  value keeps float32's precision relative to the target's spread, not to its magnitude (a target near 1e9 with a
  spread of 10 stays exact to about 1e-6). A declared `prediction_range` is a Clip at the end of the graph.
  Random forests are also FITTED on the centred target (`CenteredRandomForestRegressor`): scikit-learn's
  squared-error criterion computes a node's impurity as sum(y^2)/n - mean^2, which cancels catastrophically for
  a target with a large offset (exposure 1e9 + 10 x lgd: holdout R^2 0.02 uncentred, 0.75 centred, the same as
  without the offset). HistGradientBoosting fits gradients around its baseline and Ridge centres the target for
  its intercept, so neither needs it (measured: equal R^2 with and without the 1e9 offset).
"""

from __future__ import annotations

import io
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
import orjson
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import RandomForestRegressor

from mlops.core.errors import ConfigurationError, DataSetError
from mlops.core.schemas import BINARY, REGRESSION, Label, ModelFamily, same_label
from mlops.serving import explanations
from mlops.stats.profile import baseline_profile
from mlops.stats.tasks import prediction_profile

ONNX_INPUT = "X"
ONNX_OPSET = 17
# TreeEnsembleClassifier v3 is the first with double-precision thresholds and leaf weights.
ONNX_ML_OPSET_DOUBLE_TREES = 3
DEFAULT_CLASSES: tuple[Label, Label] = (0, 1)

REGRESSION_OUTPUT = "prediction"
DEFAULT_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "logistic_regression": {"C": 1.0, "max_iter": 1000},
    "ridge": {"alpha": 1.0},
    "random_forest": {"n_estimators": 100, "max_depth": 10, "min_samples_leaf": 5},
    "hist_gradient_boosting": {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 31},
}
_INTEGER = re.compile(r"^-?(0|[1-9][0-9]{0,17})$")


@dataclass(frozen=True)
class TrainedModel:
    """A fitted model, its ONNX artifact and what evaluation needs.

    Classifiers: `sklearn_holdout_proba` is [holdout rows, k] in class-index order; `sklearn_holdout_labels` the
    class index of the largest probability (what the graph's `label` output reproduces; binary decisions use
    `threshold` instead). Regressions: `sklearn_holdout_predictions` [holdout rows] (clipped to the family's
    prediction_range), the two above None. `single_feature_auc` (binary only, else empty) maps each feature to
    max(AUC, 1 - AUC) of that feature alone on the holdout. The trivial model's parameters, from the training
    rows: `training_positive_rate` (binary), `training_class_prior` (classifiers, [k]), `training_target_mean`
    and `training_target_std` (regression)."""

    onnx_bytes: bytes
    hyperparameters: dict[str, Any]
    holdout_index: np.ndarray
    sklearn_holdout_proba: np.ndarray | None
    sklearn_holdout_labels: np.ndarray | None
    profile: dict[str, Any]
    fit_seconds: float
    library_versions: dict[str, str]
    input_dtype: str
    classes: tuple[Label, ...]
    threshold: float | None
    training_positive_rate: float | None
    single_feature_auc: dict[str, float | None]
    estimator: Any = None  # the fitted scikit-learn estimator (in-process use: tests, benchmarks)
    task: str = BINARY
    sklearn_holdout_predictions: np.ndarray | None = None
    training_class_prior: tuple[float, ...] | None = None
    training_target_mean: float | None = None
    training_target_std: float | None = None
    # Mean |SHAP value| per feature on the holdout ([{feature, importance}], largest first) and how it was computed.
    feature_importance: tuple[list[dict[str, Any]], dict[str, Any]] = ([], {})


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


class CenteredRandomForestRegressor(RandomForestRegressor):
    """scikit-learn's RandomForestRegressor fitted on the target minus its (weighted) training mean,
    `target_center_`; `predict` adds it back, so it answers on the target's scale. The trees' leaf values are
    then deviations from the mean: the squared-error impurity (sum(y^2)/n - mean^2 in float64) keeps its
    precision for a target far from 0, and the ONNX graph sums the leaves in float32 before adding the centre in
    float64 (`to_onnx_bytes`). Converted by skl2onnx's RandomForestRegressor converter."""

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> CenteredRandomForestRegressor:
        y = np.asarray(y, dtype=np.float64)
        self.target_center_ = float(np.average(y, weights=sample_weight))
        return super().fit(X, y - self.target_center_, sample_weight=sample_weight)

    def predict(self, X: Any) -> np.ndarray:
        return super().predict(X) + self.target_center_


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
    """The scikit-learn estimator for the family's algorithm and task, defaults overridden by its
    hyperparameters: a Pipeline [impute (when a feature imputes), prepare (the linear models), model], or the bare
    model. Classifiers: LogisticRegression, RandomForestClassifier, HistGradientBoostingClassifier; regressions:
    Ridge, RandomForestRegressor, HistGradientBoostingRegressor. Raises ConfigurationError for hyperparameters the
    algorithm does not take."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression, Ridge
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
    regression = family.task == REGRESSION
    step = "regressor" if regression else "classifier"
    try:
        if family.is_linear:
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
            steps.append((step, Ridge(random_state=seed, **params) if regression
                          else LogisticRegression(random_state=seed, **params)))
        elif family.algorithm == "random_forest":
            forest = CenteredRandomForestRegressor if regression else RandomForestClassifier
            # n_jobs unset: the fit uses every core (train's parallel_config), predictions one thread (a threaded
            # predict_proba sums the trees in finishing order: the last bits of the holdout would vary).
            steps.append((step, forest(random_state=seed, n_jobs=None, **params)))
        else:
            boosting = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
            steps.append((step, boosting(random_state=seed, categorical_features=None, **params)))
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


def regression_holdout_split(rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of row indices into (train, holdout) for a regression: round(rows x fraction) rows, at least 1
    and at most rows - 2, drawn uniformly. Raises DataSetError below 3 rows."""
    if rows < 3:
        raise DataSetError(f"a regression needs at least 3 rows to train and hold out, got {rows}")
    order = np.random.default_rng(seed).permutation(rows)
    cut = min(rows - 2, max(1, int(round(rows * fraction))))
    return np.sort(order[cut:]), np.sort(order[:cut])


def train(family: ModelFamily, X: np.ndarray, y: np.ndarray, seed: int | None = None,
          classes: Sequence[Label] | None = None) -> TrainedModel:
    """Fit on the training rows, convert to ONNX and profile. Deterministic for a given data set and seed.

    X: float64 [rows, features] in schema order (NaN = missing, categorical = category index, k = "other");
    y: binary, the class index per row (0 = negative, 1 = positive); multiclass, the index into `classes`;
    regression, the float64 target values. classes: the original labels in index order (binary: [negative,
    positive], default 0, 1; multiclass: at least 3; regression: none). The baseline profile is computed from the
    float64 training values. Raises DataSetError (holdout impossible, class count), ConfigurationError
    (hyperparameters)."""
    if family.task == REGRESSION:
        return _train_regression(family, X, y, family.seed if seed is None else seed)
    import onnx
    import skl2onnx
    import sklearn

    seed = family.seed if seed is None else seed
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    binary = family.task == BINARY
    classes = tuple(DEFAULT_CLASSES if classes is None and binary else classes or ())
    if binary and len(classes) != 2:
        raise DataSetError(f"a binary family needs exactly 2 classes, got {len(classes)}: {list(classes)[:5]}")
    if not binary and len(classes) < 3:
        raise DataSetError(f"a multiclass family needs at least 3 classes, got {len(classes)}: {list(classes)[:5]}")
    train_index, holdout_index = holdout_split(y, family.holdout_fraction, seed)
    if np.unique(y[train_index]).size != len(classes):
        raise DataSetError(f"the training rows hold {np.unique(y[train_index]).size} of the {len(classes)} classes; "
                           "every class needs rows in training")
    estimator, params = build_estimator(family, seed)
    started = time.perf_counter()
    # The fit gets every core the engine has, in threads (Lambda has no /dev/shm for worker processes).
    with warnings.catch_warnings(), joblib.parallel_config(backend="threading", n_jobs=-1):
        warnings.filterwarnings("ignore", category=UserWarning, message=".*[Ff]ound unknown categories.*")
        estimator.fit(X[train_index], y[train_index])
    fit_seconds = time.perf_counter() - started

    train_proba = estimator.predict_proba(X[train_index])
    double = needs_double_precision(family, estimator, X[train_index], train_proba)
    onnx_bytes = to_onnx_bytes(estimator, family, params, classes=classes, double=double)
    # Explanation background (node covers / mean input of the training rows) in the artifact, before it is hashed.
    onnx_bytes = explanations.with_background(onnx_bytes, X[train_index], family.task)
    proba = estimator.predict_proba(X[holdout_index])
    labels = np.argmax(proba, axis=1).astype(np.int64)
    # The profile's prediction: the positive-class probability (binary), the predicted class (multiclass).
    profile = baseline_profile(family, X[train_index], train_proba[:, -1])
    if not binary:
        profile["prediction"] = prediction_profile(family.task, np.argmax(train_proba, axis=1), classes=classes)
    prior = np.bincount(y[train_index], minlength=len(classes)) / train_index.size
    return TrainedModel(
        onnx_bytes=onnx_bytes, hyperparameters=params, holdout_index=holdout_index,
        sklearn_holdout_proba=proba, sklearn_holdout_labels=labels, profile=profile, fit_seconds=fit_seconds,
        library_versions=_library_versions(sklearn, skl2onnx, onnx),
        input_dtype="float64" if double else "float32", classes=tuple(json_label(c) for c in classes),
        threshold=family.threshold if binary else None,
        training_positive_rate=float(y[train_index].mean()) if binary else None,
        single_feature_auc=single_feature_auc(family, X, y, train_index, holdout_index) if binary else {},
        estimator=estimator, task=family.task, training_class_prior=tuple(float(p) for p in prior),
        feature_importance=explanations.feature_importance(onnx_bytes, X[holdout_index], seed, family.algorithm,
                                                           task=family.task),
    )


def _library_versions(sklearn: Any, skl2onnx: Any, onnx: Any) -> dict[str, str]:
    return {"scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__,
            "numpy": np.__version__}


def _train_regression(family: ModelFamily, X: np.ndarray, y: np.ndarray, seed: int) -> TrainedModel:
    """`train` for a regression: y float64 target values, a uniform seeded holdout, predictions clipped to the
    family's prediction_range (as the graph clips them), the profile's prediction a numeric profile."""
    import onnx
    import skl2onnx
    import sklearn

    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or y.size != X.shape[0] or not np.isfinite(y).all():
        raise DataSetError("a regression target must hold one finite number per row")
    train_index, holdout_index = regression_holdout_split(y.size, family.holdout_fraction, seed)
    estimator, params = build_estimator(family, seed)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, message=".*[Ff]ound unknown categories.*")
        estimator.fit(X[train_index], y[train_index])
    fit_seconds = time.perf_counter() - started
    mean, std = float(y[train_index].mean()), float(y[train_index].std())
    train_predictions = clip_predictions(family, estimator.predict(X[train_index]))
    double = needs_double_precision(family, estimator, X[train_index], train_predictions, target_std=std)
    onnx_bytes = to_onnx_bytes(estimator, family, params, double=double, target_center=mean)
    onnx_bytes = explanations.with_background(onnx_bytes, X[train_index], REGRESSION)
    profile = baseline_profile(family, X[train_index], np.zeros(0))
    profile["prediction"] = prediction_profile(REGRESSION, train_predictions, target_std=std)
    return TrainedModel(
        onnx_bytes=onnx_bytes, hyperparameters=params, holdout_index=holdout_index, sklearn_holdout_proba=None,
        sklearn_holdout_labels=None, profile=profile, fit_seconds=fit_seconds,
        library_versions=_library_versions(sklearn, skl2onnx, onnx), input_dtype="float64" if double else "float32",
        classes=(), threshold=None, training_positive_rate=None, single_feature_auc={}, estimator=estimator,
        task=REGRESSION, sklearn_holdout_predictions=clip_predictions(family, estimator.predict(X[holdout_index])),
        training_target_mean=mean, training_target_std=std,
        feature_importance=explanations.feature_importance(onnx_bytes, X[holdout_index], seed, family.algorithm),
    )


def clip_predictions(family: ModelFamily, predictions: np.ndarray) -> np.ndarray:
    """Regression predictions (float64) clipped to the family's prediction_range (a null side is open), as the
    served graph clips them."""
    predictions = np.asarray(predictions, dtype=np.float64).ravel()
    if family.prediction_range is None:
        return predictions
    return np.clip(predictions, *family.prediction_range)


def needs_double_precision(family: ModelFamily, estimator: Any, X: np.ndarray, proba: np.ndarray,
                           target_std: float | None = None) -> bool:
    """Whether the served graph must read float64. Always for HistGradientBoosting (float64 split thresholds),
    never for random forests (scikit-learn's trees compare float32 values). The linear models: when rounding the
    training inputs to float32 moves any prediction by more than a tenth of the parity tolerance (epoch seconds,
    amounts near 1e9 with a small spread). Classifiers compare every class probability (`proba` [rows, k]);
    Ridge compares predictions (`proba` is then the [rows] predictions) relative to `target_std`, including the
    rounding of its float32 output."""
    if family.algorithm == "hist_gradient_boosting":
        return True
    if family.algorithm == "random_forest":
        return False
    rounded = X.astype(np.float32).astype(np.float64)
    with np.errstate(all="ignore"):
        if family.task == REGRESSION:
            served = clip_predictions(family, estimator.predict(rounded)).astype(np.float32).astype(np.float64)
            scale = target_std if target_std and target_std > 0 else 1.0
            gap = float(np.max(np.abs(served - proba), initial=0.0)) / scale
        else:
            gap = float(np.max(np.abs(estimator.predict_proba(rounded) - proba), initial=0.0))
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
                  classes: Sequence[Label] | None = None, double: bool | None = None,
                  target_center: float | None = None) -> bytes:
    """The fitted estimator as ONNX bytes: input "X" [N, features] float32 or float64 (`double`; default per
    algorithm, see the module docstring). Classifiers: outputs `label` (int64 class index) and `probabilities`
    [N, k] (ZipMap off). Regressions: output `prediction` [N, 1], the tree ensembles' sums taken around
    `target_center` (default: HistGradientBoosting's baseline, 0 for a forest) and clipped to the family's
    prediction_range. Metadata mlops.* (task, features, classes as original labels in index order, for a binary
    family positive_label and threshold, for a regression prediction_range, algorithm, hyperparameters)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    _register_converters()
    if double is None:
        double = family.algorithm == "hist_gradient_boosting"
    regression = family.task == REGRESSION
    binary = family.task == BINARY
    classes = [] if regression else [json_label(c) for c in (DEFAULT_CLASSES if classes is None else classes)]
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    tensor = DoubleTensorType if double else FloatTensorType
    with warnings.catch_warnings():
        # skl2onnx 1.20 hands booleans to int fields; protobuf 6 accepts them (protobuf 7 would not: pinned <7).
        warnings.filterwarnings("ignore", message="Field onnx.AttributeProto.ints", category=DeprecationWarning)
        model = to_onnx(
            estimator,
            initial_types=[(ONNX_INPUT, tensor([None, len(family.features)]))],
            options={} if regression else {id(final): {"zipmap": False}},
            target_opset=ONNX_OPSET,
        )
    if regression:
        _regression_output(model, final, family, double, target_center)
    elif double and family.algorithm == "hist_gradient_boosting":
        _double_precision_trees(model, final)
    metadata = {
        "mlops.family": family.name,
        "mlops.task": family.task,
        "mlops.features": orjson.dumps([f.model_dump(mode="json") for f in family.features]).decode(),
        "mlops.target": family.target,
        "mlops.classes": orjson.dumps(classes).decode(),
        "mlops.algorithm": family.algorithm,
        "mlops.hyperparameters": orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode(),
        # Scoring reads a value equal to one of these as missing, as the data set parser did (mlops.serving.scoring).
        "mlops.missing_markers": orjson.dumps(sorted({m.strip() for m in family.missing_markers})).decode(),
    }
    if binary:
        metadata["mlops.positive_label"] = orjson.dumps(classes[1]).decode()
        metadata["mlops.threshold"] = repr(float(family.threshold))
        # Reasons point away from the favourable label (mlops.serving.explain).
        if any(same_label(family.favorable_label, c) for c in classes):
            metadata["mlops.favorable_label"] = orjson.dumps(json_label(family.favorable_label)).decode()
    if family.prediction_range is not None:
        metadata["mlops.prediction_range"] = orjson.dumps(list(family.prediction_range)).decode()
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"{family.name} {family.algorithm}"
    canonical_opset_order(model)
    return model.SerializeToString()


def canonical_opset_order(model: Any) -> None:
    """Sort the model's opset imports by domain, in place. skl2onnx collects them in a set, so their order (and
    the artifact's bytes and sha256) followed Python's per-process string hash seed: `mlops reproduce` found the
    same logistic regression serialized two ways."""
    imports = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    for domain, version in imports:
        model.opset_import.add(domain=domain, version=version)


def _double_precision_trees(model: Any, ensemble: Any, base_values: np.ndarray | None = None) -> None:
    """Rewrite skl2onnx's TreeEnsembleClassifier or TreeEnsembleRegressor (float32 thresholds, op v1) with the
    HistGradientBoosting model's float64 thresholds, leaf values and baseline (`base_values`, default the
    model's own) as ONNX-ML v3 `*_as_tensor` attributes. The node order is skl2onnx's (trees in iteration order,
    one tree per class per iteration for a multiclass model, nodes in each predictor's order); the float32
    values it wrote are checked against ours first, so a converter change fails loudly instead of serving a
    different model."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [n for n in model.graph.node if n.op_type in ("TreeEnsembleClassifier", "TreeEnsembleRegressor")]
    if len(nodes) != 1:
        raise ConfigurationError("double-precision conversion expects one HistGradientBoosting tree ensemble")
    node = nodes[0]
    weights = "class_weights" if node.op_type == "TreeEnsembleClassifier" else "target_weights"
    thresholds, leaves = [], []
    for predictors in ensemble._predictors:
        for predictor in predictors:
            for tree_node in predictor.nodes:
                if tree_node["is_leaf"]:
                    thresholds.append(0.0)
                    leaves.append(float(tree_node["value"]))
                else:
                    thresholds.append(float(tree_node["num_threshold"]))
    attributes = {a.name: a for a in node.attribute}
    written = np.asarray(attributes["nodes_values"].floats, dtype=np.float32)
    if not (np.array_equal(written, np.asarray(thresholds, dtype=np.float32))
            and len(attributes[weights].floats) == len(leaves)):
        raise ConfigurationError("skl2onnx's tree layout changed; the double-precision rewrite cannot map it")
    base = np.ravel(ensemble._baseline_prediction) if base_values is None else np.ravel(base_values)
    replacements = {"nodes_values": thresholds, weights: leaves, "base_values": base}
    for name, values in replacements.items():
        if name in attributes:
            node.attribute.remove(attributes[name])
        tensor = numpy_helper.from_array(np.asarray(values, dtype=np.float64), name=f"{name}_as_tensor")
        node.attribute.append(helper.make_attribute(f"{name}_as_tensor", tensor))
    for opset in model.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = max(opset.version, ONNX_ML_OPSET_DOUBLE_TREES)
    # The operator's outputs are float32 whatever its input; skl2onnx declared the input's type.
    for output in model.graph.output:
        if output.type.tensor_type.elem_type == TensorProto.DOUBLE:
            output.type.tensor_type.elem_type = TensorProto.FLOAT


def _centered_forest(model: Any, forest: Any, center: float) -> None:
    """Rewrite skl2onnx's TreeEnsembleRegressor of a random forest so that it sums leaf values minus `center` (the
    centre added after the operator less the one the forest was fitted around; 0 leaves the weights as written):
    each weight becomes (value - center) / trees, computed in float64 from scikit-learn's tree values and then
    stored as float32 (the operator's type for float32 inputs). The (tree, node) pairs skl2onnx wrote are checked
    against scikit-learn's trees first."""
    (node,) = [n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor"]
    attributes = {a.name: a for a in node.attribute}
    trees, leaf_ids = attributes["target_treeids"].ints, attributes["target_nodeids"].ints
    count = len(forest.estimators_)
    values = np.asarray([forest.estimators_[t].tree_.value[n].ravel()[0] for t, n in zip(trees, leaf_ids,
                                                                                         strict=True)])
    written = np.asarray(attributes["target_weights"].floats, dtype=np.float32)
    if not np.array_equal(written, (values / count).astype(np.float32)):
        raise ConfigurationError("skl2onnx's forest layout changed; the centred rewrite cannot map it")
    del attributes["target_weights"].floats[:]
    attributes["target_weights"].floats.extend(((values - center) / count).astype(np.float32).tolist())


def _regression_output(model: Any, regressor: Any, family: ModelFamily, double: bool,
                       center: float | None) -> None:
    """Finish a regressor's graph: the tree ensembles' sums around `center` with the center added back in
    float64 after the float32 operator, the family's prediction_range as a Clip, the output named
    REGRESSION_OUTPUT [N, 1]."""
    from onnx import TensorProto, helper

    graph = model.graph
    (output,) = graph.output
    producer = next(n for n in graph.node if output.name in n.output)
    current = "raw_prediction"
    producer.output[list(producer.output).index(output.name)] = current
    elem = output.type.tensor_type.elem_type
    added_center: float | None = None
    if family.algorithm == "hist_gradient_boosting":
        if _post_transform(graph) == b"NONE":
            added_center = float(np.ravel(regressor._baseline_prediction)[0]) if center is None else center
            # The baseline moves out of the operator: it sums leaf values only (base 0 when it is the baseline).
            _double_precision_trees(model, regressor,
                                    base_values=np.ravel(regressor._baseline_prediction) - added_center)
        else:  # a loss with a link function (poisson, gamma): the baseline stays inside, before the link
            _double_precision_trees(model, regressor)
    elif family.algorithm == "random_forest":
        # A CenteredRandomForestRegressor's leaves already hold deviations from its fitted centre.
        fitted = float(getattr(regressor, "target_center_", 0.0))
        added_center = fitted if center is None else center
        _centered_forest(model, regressor, added_center - fitted)
    steps: list[tuple[str, list[str], dict[str, Any]]] = []
    if added_center is not None:
        steps.append(("Cast", [], {"to": TensorProto.DOUBLE}))
        elem = TensorProto.DOUBLE
        steps.append(("Add", [_constant(graph, "prediction_center", added_center, np.float64)], {}))
    if family.prediction_range is not None:
        dtype = np.float64 if elem == TensorProto.DOUBLE else np.float32
        low, high = family.prediction_range
        # Clip's bounds are optional inputs: an empty name leaves that side open (a one-sided range).
        steps.append(("Clip", ["" if low is None else _constant(graph, "prediction_low", low, dtype),
                               "" if high is None else _constant(graph, "prediction_high", high, dtype)], {}))
    for i, (op, extra, attrs) in enumerate(steps):
        target = REGRESSION_OUTPUT if i == len(steps) - 1 else f"{current}_{op.lower()}"
        graph.node.append(helper.make_node(op, [current, *extra], [target], name=f"mlops_{op.lower()}", **attrs))
        current = target
    if not steps:
        producer.output[list(producer.output).index(current)] = REGRESSION_OUTPUT
    output.name = REGRESSION_OUTPUT
    output.type.tensor_type.elem_type = elem


def _post_transform(graph: Any) -> bytes:
    node = next(n for n in graph.node if n.op_type == "TreeEnsembleRegressor")
    return next((a.s for a in node.attribute if a.name == "post_transform"), b"NONE")


def _constant(graph: Any, name: str, value: float, dtype: Any) -> str:
    from onnx import numpy_helper

    graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name=name))
    return name


_registered = False


def _register_converters() -> None:
    global _registered
    if _registered:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_regressor_converter
    from skl2onnx.shape_calculators.ensemble_shapes import calculate_tree_regressor_output_shapes

    update_registered_converter(FeatureImputer, IMPUTER_ALIAS, _imputer_shape, _convert_imputer,
                                parser=_parse_imputer)
    # The centred forest is a RandomForestRegressor to the converter (its leaves are deviations from the centre,
    # which _regression_output adds back).
    update_registered_converter(CenteredRandomForestRegressor, "MlopsCenteredRandomForestRegressor",
                                calculate_tree_regressor_output_shapes,
                                convert_sklearn_random_forest_regressor_converter,
                                options={"decision_path": [True, False], "decision_leaf": [True, False]})
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
                  sklearn_proba: np.ndarray | None, sklearn_labels: np.ndarray | None,
                  line_numbers: np.ndarray | None = None, sklearn_predictions: np.ndarray | None = None) -> bytes:
    """The holdout and the sklearn model's predictions on it, as an .npz of plain arrays (no pickles). X stays
    float64 (NaN = missing); y is int64 class indices, or float64 for a regression (`sklearn_predictions` given,
    stored instead of probabilities and labels); `sensitive` and `line_numbers` are stored only when given."""
    arrays: dict[str, np.ndarray] = {"X": np.asarray(X, dtype=np.float64), "row_ids": row_ids.astype(np.int64)}
    if sklearn_predictions is not None:
        arrays.update({"y": np.asarray(y, dtype=np.float64),
                       "sklearn_predictions": np.asarray(sklearn_predictions, dtype=np.float64)})
    else:
        arrays.update({"y": y.astype(np.int64), "sklearn_proba": np.asarray(sklearn_proba, dtype=np.float64),
                       "sklearn_labels": np.asarray(sklearn_labels, dtype=np.int64)})
    if sensitive is not None:
        arrays["sensitive"] = np.asarray(sensitive).astype(str)
    if line_numbers is not None:
        arrays["line_numbers"] = np.asarray(line_numbers, dtype=np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()
