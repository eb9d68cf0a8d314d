"""Training: fit the family's scikit-learn model, convert it to ONNX, keep the holdout and a baseline profile.

Imports scikit-learn and skl2onnx, so only the training function (training layer) imports this module.
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .errors import ConfigurationError
from .profile import baseline_profile
from .schemas import ModelFamily

ONNX_INPUT = "X"
ONNX_OPSET = 17

DEFAULT_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "logistic_regression": {"C": 1.0, "max_iter": 1000},
    "random_forest": {"n_estimators": 100, "max_depth": 10, "min_samples_leaf": 5},
    "hist_gradient_boosting": {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 31},
}


@dataclass(frozen=True)
class TrainedModel:
    onnx_bytes: bytes
    hyperparameters: dict[str, Any]
    holdout_index: np.ndarray
    sklearn_holdout_proba: np.ndarray
    sklearn_holdout_labels: np.ndarray
    profile: dict[str, Any]
    fit_seconds: float
    library_versions: dict[str, str]


def build_estimator(family: ModelFamily, seed: int):
    """The scikit-learn estimator for the family's algorithm, defaults overridden by its hyperparameters."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    params = {**DEFAULT_HYPERPARAMETERS[family.algorithm], **family.hyperparameters}
    try:
        if family.algorithm == "logistic_regression":
            numeric = [i for i, f in enumerate(family.features) if f.kind == "numeric"]
            categorical = [i for i, f in enumerate(family.features) if f.kind == "categorical"]
            transformers: list[tuple[str, Any, list[int]]] = []
            if numeric:
                transformers.append(("numeric", StandardScaler(), numeric))
            if categorical:
                categories = [[float(c) for c in range(len(family.features[i].categories))] for i in categorical]
                transformers.append(("categorical", OneHotEncoder(categories=categories, handle_unknown="ignore",
                                                                  sparse_output=False), categorical))
            estimator = Pipeline([
                ("prepare", ColumnTransformer(transformers)),
                ("classifier", LogisticRegression(random_state=seed, **params)),
            ])
        elif family.algorithm == "random_forest":
            estimator = RandomForestClassifier(random_state=seed, n_jobs=1, **params)
        else:
            estimator = HistGradientBoostingClassifier(random_state=seed, **params)
    except TypeError as exc:
        raise ConfigurationError(f"family {family.name!r}: invalid hyperparameters for {family.algorithm}: {exc}"
                                 ) from None
    return estimator, params


def holdout_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split of row indices into (train, holdout)."""
    rng = np.random.default_rng(seed)
    train_parts, holdout_parts = [], []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        rng.shuffle(rows)
        cut = max(1, int(round(rows.size * fraction)))
        holdout_parts.append(rows[:cut])
        train_parts.append(rows[cut:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(holdout_parts))


def train(family: ModelFamily, X: np.ndarray, y: np.ndarray, seed: int | None = None) -> TrainedModel:
    """Fit, convert to ONNX (ZipMap off, one float tensor `X` in schema order) and profile. Deterministic for
    a given data set and seed."""
    import sklearn

    seed = family.seed if seed is None else seed
    X = np.ascontiguousarray(X, dtype=np.float32)
    train_index, holdout_index = holdout_split(y, family.holdout_fraction, seed)
    estimator, params = build_estimator(family, seed)
    started = time.perf_counter()
    estimator.fit(X[train_index], y[train_index])
    fit_seconds = time.perf_counter() - started

    onnx_bytes = to_onnx_bytes(estimator, family, params)
    holdout_X = X[holdout_index]
    proba = estimator.predict_proba(holdout_X)
    labels = estimator.classes_[np.argmax(proba, axis=1)]
    profile = baseline_profile(family, X[train_index], estimator.predict_proba(X[train_index])[:, 1])
    import onnx
    import skl2onnx

    return TrainedModel(
        onnx_bytes=onnx_bytes, hyperparameters=params, holdout_index=holdout_index,
        sklearn_holdout_proba=proba, sklearn_holdout_labels=labels, profile=profile, fit_seconds=fit_seconds,
        library_versions={"scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__,
                          "onnx": onnx.__version__, "numpy": np.__version__},
    )


def to_onnx_bytes(estimator: Any, family: ModelFamily, params: dict[str, Any]) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    classifier = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    with warnings.catch_warnings():
        # skl2onnx 1.20 hands booleans to int fields; protobuf 6 accepts them (protobuf 7 would not: pinned <7).
        warnings.filterwarnings("ignore", message="Field onnx.AttributeProto.ints", category=DeprecationWarning)
        model = to_onnx(
            estimator,
            initial_types=[(ONNX_INPUT, FloatTensorType([None, len(family.features)]))],
            options={id(classifier): {"zipmap": False}},
            target_opset=ONNX_OPSET,
        )
    metadata = {
        "mlops.family": family.name,
        "mlops.features": orjson.dumps([f.model_dump(mode="json") for f in family.features]).decode(),
        "mlops.target": family.target,
        "mlops.classes": orjson.dumps([int(c) for c in classifier.classes_]).decode(),
        "mlops.algorithm": family.algorithm,
        "mlops.hyperparameters": orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode(),
    }
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"{family.name} {family.algorithm}"
    return model.SerializeToString()


def holdout_bytes(X: np.ndarray, y: np.ndarray, sensitive: np.ndarray, row_ids: np.ndarray,
                  sklearn_proba: np.ndarray, sklearn_labels: np.ndarray) -> bytes:
    """The holdout and the sklearn model's predictions on it, as an .npz of plain arrays (no pickles)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, X=X.astype(np.float32), y=y.astype(np.int64), sensitive=sensitive.astype(str),
                        row_ids=row_ids.astype(np.int64), sklearn_proba=sklearn_proba.astype(np.float64),
                        sklearn_labels=sklearn_labels.astype(np.int64))
    return buffer.getvalue()
