"""A random forest regression on a target with a large offset (an exposure near 1e9 plus a small loss): fitted on
the centred target it learns what it learns without the offset, and the served graph adds the offset back."""

from __future__ import annotations

import numpy as np
import pytest
from mlops.core.schemas import ModelFamily
from mlops.serving.scoring import ScoringModel
from mlops.training import fit
from mlops.training.evaluation import regression_parity
from sklearn.metrics import r2_score

OFFSET = 1e9


def _family(**overrides) -> ModelFamily:
    return ModelFamily.model_validate({
        "name": "exposure", "task": "regression", "algorithm": "random_forest", "target": "ead",
        "hyperparameters": {"n_estimators": 30}, "features": [{"name": "a"}, {"name": "b"}], **overrides})


def _data(rows: int = 3000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    # The tester's exposure-at-default shape: 1e9 + 10 x a loss given default in [0, 1] driven by two features.
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 2))
    lgd = 1 / (1 + np.exp(-(1.5 * X[:, 0] - X[:, 1]))) + rng.normal(scale=0.08, size=rows)
    return X, 10 * lgd


def test_forest_on_a_1e9_offset_target_fits_as_well_as_without_the_offset():
    X, small = _data()
    without = fit.train(_family(), X, small)
    with_offset = fit.train(_family(), X, small + OFFSET)
    holdout = with_offset.holdout_index
    r2_without = r2_score(small[holdout], without.sklearn_holdout_predictions)
    r2_with = r2_score(small[holdout] + OFFSET, with_offset.sklearn_holdout_predictions)
    # Uncentred, scikit-learn's squared-error impurity cancels at 1e9 and the splits are noise (R^2 near 0).
    assert r2_without > 0.7
    assert r2_with == pytest.approx(r2_without, abs=0.01)


def test_centred_forest_graph_adds_the_offset_back_with_parity_on_the_target_scale():
    X, small = _data()
    model = fit.train(_family(prediction_range=[OFFSET, OFFSET + 12]), X, small + OFFSET)
    served = ScoringModel(model.onnx_bytes).predict_values(X[model.holdout_index])
    parity = regression_parity(served, model.sklearn_holdout_predictions, model.training_target_std, 1e-5)
    assert parity["ok"], parity
    assert abs(float(np.mean(served)) - OFFSET) < 20
    regressor = model.estimator
    assert isinstance(regressor, fit.CenteredRandomForestRegressor)
    assert regressor.target_center_ == pytest.approx(float(np.mean((small + OFFSET)[np.setdiff1d(
        np.arange(small.size), model.holdout_index)])))


def test_centred_forest_converts_around_any_declared_centre():
    """to_onnx_bytes' target_center (the bench passes the whole data set's mean) moves only where the float32 sums
    are taken: the served values stay scikit-learn's."""
    X, small = _data(1000)
    family = _family()
    estimator, params = fit.build_estimator(family, 42)
    estimator.fit(X, small + OFFSET)
    onnx_bytes = fit.to_onnx_bytes(estimator, family, params, target_center=OFFSET + 3.0)
    served = ScoringModel(onnx_bytes).predict_values(X)
    assert np.max(np.abs(served - estimator.predict(X))) < 1e-4
