"""Explanation figures: exact SHAP from the served ONNX artifact (mlops.serving.explain) next to the `shap` library
on the same scikit-learn model, measured in the same run (`make bench`, section "explain").

Per algorithm (the bench's models: logistic regression, the 66-tree HistGradientBoosting, the 100-tree depth-10
random forest, trained on the bench's 100k rows): single-record latency p50/p99 over distinct rows in rotation,
ours and shap's alternating in blocks (shap's C++ TreeExplainer with tree_path_dependent for the trees, its
LinearExplainer for logistic regression); logistic regression also against the platform's plain prediction (the
pre-bound onnxruntime call). Batch throughput on the same rows, the explainer's load time and what its background
adds to the artifact. Exactness at scale: max |ours - shap| with scikit-learn's own node weights as covers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

Row = Callable[..., None]
ROUNDS = 10
QUICK_ROUNDS = 2
SHORT = {"logistic_regression": "lr", "hist_gradient_boosting": "hgb", "random_forest": "rf"}


def _time_rows(fn: Callable[[np.ndarray], Any], rows: list[np.ndarray], block: int, count: int) -> list[int]:
    """Time fn on `count` single-record matrices in rotation (each block starts further along), after a few
    untimed calls (the other side's block has just evicted this side's tables from the caches)."""
    for x in rows[-5:]:
        fn(x)
    out = []
    for i in range(block * count, (block + 1) * count):
        x = rows[i % (len(rows) - 5)]
        started = time.perf_counter_ns()
        fn(x)
        out.append(time.perf_counter_ns() - started)
    return out


def _p50_p99(samples_ns: list[int]) -> tuple[float, float]:
    values = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def _rate(fn: Callable[[], Any], rows: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return rows / float(np.median(times))


def _reference(algorithm: str, estimator: Any, X_train: np.ndarray) -> tuple[Callable[[np.ndarray], Any], Any]:
    """shap on the scikit-learn model: a function of raw rows (scikit-learn's preprocessing included), and the
    classifier it explains."""
    import shap

    classifier = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    prepare = estimator[:-1].transform if hasattr(estimator, "steps") else (lambda X: X)
    if algorithm == "logistic_regression":
        background = prepare(X_train)
        explainer = shap.LinearExplainer(classifier, shap.maskers.Independent(background,
                                                                              max_samples=len(background)))
    else:
        explainer = shap.TreeExplainer(classifier, feature_perturbation="tree_path_dependent")
    return (lambda X: explainer.shap_values(prepare(X))), classifier


def _sklearn_covers(classifier: Any) -> list[np.ndarray] | None:
    if hasattr(classifier, "estimators_"):
        return [tree.tree_.weighted_n_node_samples for tree in classifier.estimators_]
    if hasattr(classifier, "_predictors"):
        return [predictor.nodes["count"].astype(np.float64) for (predictor,) in classifier._predictors]
    return None


def run(row: Row, quick: bool, fitted: Callable[[str], tuple[Any, Any, bytes, Any]]) -> None:
    """One set of rows per algorithm (bench/run.py's `row`; `fitted(algorithm)` -> (family, estimator, onnx
    bytes, data set) trains the bench's model)."""
    from mlops.serving import explain
    from mlops.serving.scoring import ScoringModel

    rounds = QUICK_ROUNDS if quick else ROUNDS
    for algorithm, short in SHORT.items():
        _, estimator, onnx_bytes, data = fitted(algorithm)
        started = time.perf_counter()
        artifact = explain.with_background(onnx_bytes, data.X)
        background_s = time.perf_counter() - started
        started = time.perf_counter()
        explainer = explain.Explainer.from_onnx(artifact)
        load_ms = (time.perf_counter() - started) * 1000
        reference, classifier = _reference(algorithm, estimator, data.X)
        rows = [data.X[i:i + 1] for i in range(min(1005, len(data.X)))]

        count = {"logistic_regression": 500, "hist_gradient_boosting": 200, "random_forest": 30}[algorithm]
        count = max(1, count // 10) if quick else count
        ours_ns, shap_ns, plain_ns = [], [], []
        model = ScoringModel(artifact) if algorithm == "logistic_regression" else None
        for block in range(rounds):
            ours_ns += _time_rows(explainer.explain, rows, block, count)
            shap_ns += _time_rows(reference, rows, block, count)
            if model is not None:
                plain_ns += _time_rows(model.predict_lists, rows, block, count)
        ours50, ours99 = _p50_p99(ours_ns)
        shap50, shap99 = _p50_p99(shap_ns)

        sample = data.X[:200]
        covers = _sklearn_covers(classifier)
        exact = explain.Explainer.from_onnx(onnx_bytes, covers=covers) if covers is not None else explainer
        theirs = np.asarray(reference(sample))
        theirs = theirs[..., 1] if theirs.ndim == 3 else theirs
        if algorithm == "logistic_regression":  # one-hot columns back to their feature (the last one here)
            theirs = np.column_stack([theirs[:, :sample.shape[1] - 1], theirs[:, sample.shape[1] - 1:].sum(axis=1)])
        max_diff = float(np.max(np.abs(exact.contributions(sample) - theirs)))
        detail = {"p99_us": round(ours99, 1), "shap_p50_us": round(shap50, 1), "shap_p99_us": round(shap99, 1),
                  "speedup_vs_shap": round(shap50 / ours50, 2), "max_abs_diff_vs_shap": max_diff,
                  "explainer_load_ms": round(load_ms, 1), "background_s": round(background_s, 2),
                  "background_bytes": len(artifact) - len(onnx_bytes), "output": explainer.output,
                  "rows": "1,000 distinct one-record matrices in rotation"}
        name = f"explanation latency, 1 record, {short}: p50"
        if algorithm == "logistic_regression":
            plain50, _ = _p50_p99(plain_ns)
            ratio = ours50 / plain50
            row(f"explanation latency, 1 record, {short}: ours / plain prediction p50", ratio, "x", "<= 10",
                ratio <= 10, baseline=round(plain50, 2), ours_p50_us=round(ours50, 1), **detail)
        elif algorithm == "hist_gradient_boosting":
            row(name, ours50, "us", "<= 1000", ours50 <= 1000, baseline=round(shap50, 1), trees=len(covers or ()),
                **detail)
        else:
            ratio = shap50 / ours50
            row(f"explanation latency, 1 record, {short}: shap / ours p50", ratio, "x", "> 1 (ahead of shap)",
                ratio > 1, baseline=round(shap50, 1), ours_p50_us=round(ours50, 1), trees=len(covers or ()),
                **detail)

        batch = data.X[:200] if algorithm == "random_forest" else data.X[:1000]
        repeats = 1 if quick or algorithm == "random_forest" else 3
        ours_rate = _rate(partial(explainer.explain, batch), len(batch), repeats)
        numbers_rate = _rate(partial(explainer.contributions, batch), len(batch), repeats)
        shap_rate = _rate(partial(reference, batch), len(batch), repeats)
        row(f"explanation batch of {len(batch):,} rows, {short}", ours_rate, "rows/s", "stated", None,
            baseline=round(shap_rate, 1), ratio=round(ours_rate / shap_rate, 2),
            contributions_only_rows_per_s=round(numbers_rate, 1),
            note="ours: response dicts with reason codes; shap: the contribution matrix")
