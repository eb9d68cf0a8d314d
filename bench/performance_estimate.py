"""How far the CBPE estimate lands from the realised metrics, on simulated data (docs/performance.md).

Rows (figures, not assertions):
- calibrated probabilities (p ~ Beta(2, 5), outcomes drawn from p): mean and 95th-percentile |estimate - realised| of
  AUC, accuracy, precision and recall per window size (500, 2,000, 10,000 decisions);
- a model trained the platform's way (logistic regression on the synthetic credit data, served through its ONNX
  graph) scoring fresh windows whose outcomes follow the data's known model: the same errors, with its training-time
  calibration check;
- the same family trained with class_weight "balanced" (probabilities overstated): its check flags it and the error
  shows why;
- a changed world (every outcome reversed, inputs unchanged): CBPE cannot see it, the realised AUC does.
`--quick` runs a few windows as a smoke test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Row = Callable[..., None]
METRICS = ("auc", "accuracy", "precision", "recall")


def _realised(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    from mlops.stats.metrics import classification_metrics

    figures = classification_metrics(y, p, threshold=threshold)
    return {m: figures[m] for m in METRICS}


def _errors(windows: list[tuple[np.ndarray, np.ndarray]], threshold: float) -> dict[str, np.ndarray]:
    from mlops.stats.cbpe import estimate_binary

    out: dict[str, list[float]] = {m: [] for m in METRICS}
    for y, p in windows:
        estimate, realised = estimate_binary(p, threshold), _realised(y, p, threshold)
        for m in METRICS:
            out[m].append(estimate[m] - realised[m])
    return {m: np.asarray(v) for m, v in out.items()}


def _report(row: Row, label: str, errors: dict[str, np.ndarray], limit: float | None, **extra: Any) -> None:
    """Rows of mean |error| per metric; `limit` None: an estimate the platform flags as untrusted (no target)."""
    for m in ("auc", "accuracy"):
        values = np.abs(errors[m])
        row(f"CBPE {m} error, {label}", float(values.mean()), "abs",
            "flagged untrusted" if limit is None else f"mean < {limit}",
            None if limit is None else bool(values.mean() < limit), p95=round(float(np.percentile(values, 95)), 4),
            bias=round(float(errors[m].mean()), 4), windows=int(values.size), **extra)
    # Precision and recall rest on the predicted (or truly) positive rows only: a wider target.
    precision, recall = np.abs(errors["precision"]).mean(), np.abs(errors["recall"]).mean()
    worst = float(max(precision, recall))
    row(f"CBPE precision/recall error, {label}", worst, "abs",
        "flagged untrusted" if limit is None else f"max mean < {2 * limit:g}",
        None if limit is None else worst < 2 * limit, precision=round(float(precision), 4),
        recall=round(float(recall), 4), windows=int(errors["precision"].size))


def simulated(row: Row, quick: bool) -> None:
    rng = np.random.default_rng(16)
    windows = 10 if quick else 300
    for n, limit in ((500, 0.03), (2_000, 0.015), (10_000, 0.008)):
        data = []
        for _ in range(windows if n < 10_000 else max(2, windows // 5)):
            p = rng.beta(2, 5, n)
            data.append(((rng.random(n) < p).astype(np.int64), p))
        _report(row, f"calibrated p, {n:,} decisions", _errors(data, 0.5), limit)


def trained(row: Row, quick: bool) -> None:
    from mlops.data import synthetic
    from mlops.data.datasets import parse_dataset
    from mlops.serving.scoring import ScoringModel
    from mlops.stats.calibration import calibration_check
    from mlops.training.fit import train

    windows, size = (3, 2_000) if quick else (40, 2_000)
    columns = synthetic.credit_risk_columns(windows * size, 77)
    for label, hyperparameters in (("trained LR", {}), ("trained LR class_weight=balanced", {"class_weight":
                                                                                              "balanced"})):
        family = synthetic.credit_risk_family(name="bench-cbpe", hyperparameters=hyperparameters)
        data = parse_dataset(synthetic.credit_risk_csv(20_000, 5), family, "bench.csv")
        model = train(family, data.X, data.y, seed=1, classes=data.classes)
        served = ScoringModel(model.onnx_bytes)
        holdout = model.holdout_index
        check = calibration_check(data.y[holdout], served.predict_matrix(data.X[holdout])[1][:, 1].astype(np.float64),
                                  max_error=family.performance.max_calibration_error,
                                  p_value=family.performance.calibration_pvalue)
        X = served.exact_matrix(synthetic.to_instances(columns, family))
        p = served.predict_matrix(X)[1][:, 1].astype(np.float64)
        y = np.asarray(columns["default"], dtype=np.int64)
        pieces = [(y[i:i + size], p[i:i + size]) for i in range(0, y.size, size)]
        limit = 0.02 if check["trusted"] else None
        _report(row, f"{label} ({check['status']}, holdout ECE {check['ece']:.3f}), {size:,} decisions",
                _errors(pieces, served.threshold), limit, trusted=check["trusted"])
        if not hyperparameters:
            flipped = _errors([(1 - yy, pp) for yy, pp in pieces], served.threshold)
            auc = np.abs(flipped["auc"])
            row(f"CBPE auc error, {label}, outcomes reversed (concept drift)", float(auc.mean()), "abs",
                "large: only labels see it", None, windows=int(auc.size),
                note="inputs unchanged: drift and CBPE both stay quiet; the realised AUC falls")


def run(row: Row, quick: bool) -> None:
    """The estimate's error against realised metrics (bench/run.py's `row`)."""
    simulated(row, quick)
    trained(row, quick)
