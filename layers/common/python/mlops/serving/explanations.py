"""Explanations where the platform uses them: the scoring API's `explain` option (the served artifact's explainer,
built on the first explain request of a sandbox), the background stored at training, and global importance.

The numbers come from mlops.serving.explain (exact TreeSHAP / linear SHAP read from the ONNX graph); this module decides
when they are asked for, which artifacts can answer, and how a refusal reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from mlops.core.errors import ConfigurationError, ExplanationUnavailableError, ValidationError

BINARY, MULTICLASS = "binary_classification", "multiclass_classification"
REQUEST_FIELDS = ("instances", "explain", "top")
# Global importance: holdout rows explained at training (a seeded sample beyond this). Exact TreeSHAP costs about
# 50 ns per tree node and row: 2,000 rows of a 66-tree boosting model take 0.5 s, of a 100-tree depth-10 forest
# (~150k nodes) 21 s, so forests explain 300 rows (about 3 s; measured on the bench machine).
IMPORTANCE_MAX_ROWS = 2000
# Explanation vs served answer on probe rows: float32 graphs round their output (2^-20 relative, 16 ulps).
SERVED_TOLERANCE = 1e-5
IMPORTANCE_MAX_ROWS_BY_ALGORITHM = {"random_forest": 300}


@dataclass(frozen=True)
class ExplainRequest:
    """A predict body's explanation options: `top` reason codes per record (None: every feature pushing toward
    the unfavourable outcome)."""

    top: int | None = None


def explain_request(payload: dict[str, Any]) -> ExplainRequest | None:
    """The `explain` and `top` fields of a predict body that holds more than `instances`; None when explanations
    are not asked for. Raises ValidationError naming an unknown field or a malformed value."""
    unknown = [k for k in payload if k not in REQUEST_FIELDS]
    if unknown:
        raise ValidationError(f"request body has unknown fields {[str(k)[:40] for k in unknown[:5]]}; accepted "
                              "fields are 'instances', 'explain' (true/false) and 'top' (reasons per record)")
    explain = payload.get("explain", False)
    if type(explain) is not bool:
        raise ValidationError(f"'explain' must be true or false, got {_json_text(explain)}")
    top = payload.get("top")
    if top is not None:
        if type(top) is not int or top < 0:
            raise ValidationError(f"'top' must be a non-negative integer (reason codes per record), got "
                                  f"{_json_text(top)}")
        if not explain:
            raise ValidationError("'top' sets how many reason codes each explanation lists; send it with "
                                  "\"explain\": true")
    return ExplainRequest(top) if explain else None


def _json_text(value: Any) -> str:
    text = repr(value) if not isinstance(value, bool | type(None)) else {True: "true", False: "false",
                                                                        None: "null"}[value]
    return text if len(text) <= 40 else text[:37] + "..."


class ServedExplainer:
    """The explainer of the artifact a scoring sandbox serves, built once on its first explain request (load:
    LR about 1 ms, HGB 7 ms, a 100-tree forest 0.2 s), or the refusal, kept so an artifact that cannot explain
    is not parsed again on every request."""

    def __init__(self, onnx_bytes: bytes, family: str, version: int) -> None:
        self._onnx_bytes = onnx_bytes
        self.family, self.version = family, version
        self._explainer: Any = None
        self._refusal: ExplanationUnavailableError | None = None

    def explainer(self, task: str, model: Any = None) -> Any:
        """The engine's Explainer, or ExplanationUnavailableError (old artifact, multiclass model, or a graph
        whose explanation does not add up to what `model`, the ScoringModel serving it, answers)."""
        if self._explainer is not None:
            return self._explainer
        if self._refusal is None:
            self._refusal = self._build(task, model)
        if self._refusal is not None:
            raise self._refusal
        return self._explainer

    def _build(self, task: str, model: Any) -> ExplanationUnavailableError | None:
        name = f"{self.family} v{self.version}"
        if task == MULTICLASS:
            return ExplanationUnavailableError(
                f"explanations are not available for multiclass models ({name}); send the request without "
                "\"explain\"", family=self.family, version=self.version)
        from mlops.serving.explain import Explainer

        try:
            self._explainer = Explainer.from_onnx(self._onnx_bytes)
        except ConfigurationError as exc:
            return ExplanationUnavailableError(
                f"explanations are unavailable for {name}: {exc.message}. Retrain the family (upload its data set "
                "again) for a version that explains; predictions without \"explain\" are unaffected",
                family=self.family, version=self.version)
        self._onnx_bytes = b""  # parsed: the session keeps its own copy
        gap = served_gap(self._explainer, model, task) if model is not None else 0.0
        if gap > SERVED_TOLERANCE:
            self._explainer = None
            return ExplanationUnavailableError(
                f"explanations are not available for {name}: base value plus contributions differ from the served "
                f"prediction by {gap:.3g} on probe rows (its graph transforms the ensemble's output in a way the "
                "explainer does not follow); send the request without \"explain\"",
                family=self.family, version=self.version)
        return None

    def explain(self, model: Any, instances: list, request: ExplainRequest) -> list[dict[str, Any]]:
        """One explanation per record of a request `model` (a ScoringModel) has just scored: {"output",
        "base_value", "contributions", "reasons"} on the model's raw output, from the records' exact values."""
        explainer = self.explainer(getattr(model, "task", BINARY), model)
        explanations = explainer.explain(model.exact_matrix(instances), top=request.top)
        low, high = prediction_range(model)
        if low is not None or high is not None:  # a regression clipped inside its graph: say where it applied
            for explanation in explanations:
                unclipped = explanation["base_value"] + sum(explanation["contributions"].values())
                bound = low if low is not None and unclipped < low else high \
                    if high is not None and unclipped > high else None
                if bound is not None and abs(unclipped - bound) <= 1e-6 * max(1.0, abs(bound)):
                    bound = None  # at the bound to float precision: nothing was cut off
                if bound is not None:
                    explanation["clipped_to"] = bound
                    explanation["note"] = (f"the prediction was clipped to {bound:g} (the family's "
                                           f"prediction_range); base_value plus contributions explain the unclipped "
                                           f"output {unclipped:.6g}")
        return explanations


def probe_rows(features: Any) -> np.ndarray:
    """Three valid rows from the served schema: each feature at its declared minimum (else 0), the middle, and its
    maximum (else 1); categorical features at their first and last category. float64 [3, features]."""
    rows = np.zeros((3, len(features)))
    for j, feature in enumerate(features):
        if feature.kind == "categorical":
            rows[:, j] = (0, 0, len(feature.categories) - 1)
        else:
            low = 0.0 if feature.minimum is None else float(feature.minimum)
            high = max(low + 1.0, 1.0) if feature.maximum is None else float(feature.maximum)
            rows[:, j] = (low, (low + high) / 2, high)
    return rows


def prediction_range(model: Any) -> tuple[float | None, float | None]:
    """The (low, high) a regression's graph clips its predictions to (its `mlops.prediction_range` metadata; a
    None side is open), or (None, None)."""
    session = getattr(model, "session", None)
    if session is None:
        return None, None
    meta = session.get_modelmeta().custom_metadata_map
    if "mlops.prediction_range" not in meta:
        return None, None
    low, high = orjson.loads(meta["mlops.prediction_range"])
    return low, high


def served_gap(explainer: Any, model: Any, task: str) -> float:
    """The largest difference on `probe_rows` between what the explanation adds up to (base value plus
    contributions, through the logistic function for log-odds) and what the served graph answers: the positive
    class's probability, or a regression's value (rows the graph clips to its prediction_range left out, relative
    to max(1, |value|)). What is explained must be what is served."""
    X = probe_rows(model.features)
    raw = explainer.raw_output(X)
    values, proba = model.predict_lists(X.astype(model.input_dtype))
    if proba is not None:
        served = np.asarray(proba, dtype=np.float64)[:, -1]
        with np.errstate(over="ignore"):  # probe rows at a feature's bounds may saturate the logistic function
            mapped = 1.0 / (1.0 + np.exp(-raw)) if explainer.output == "log_odds" else raw
        return float(np.max(np.abs(served - mapped)))
    served = np.asarray(values, dtype=np.float64)
    low, high = prediction_range(model)
    if low is not None or high is not None:
        # Clipped values sit at a bound (to float32's precision: 0.3 is served as 0.30000001): left out.
        at_bound = np.zeros(served.shape, dtype=bool)
        for bound in (low, high):
            if bound is not None:
                at_bound |= np.isclose(served, bound, rtol=1e-6, atol=1e-7)
        inside = (served > (-np.inf if low is None else low)) & (served < (np.inf if high is None else high)) \
            & ~at_bound
        served, raw = served[inside], raw[inside]
    return float(np.max(np.abs(served - raw) / np.maximum(1.0, np.abs(served)), initial=0.0))


# ---- training ---------------------------------------------------------------------------------------------------

def with_background(onnx_bytes: bytes, X_train: np.ndarray, task: str = BINARY) -> bytes:
    """The artifact with what explanations need from the training rows (node covers, or the linear model's mean
    input), stored in its metadata before it is hashed; unchanged for multiclass models (not explained)."""
    if task == MULTICLASS:
        return onnx_bytes
    from mlops.serving.explain import with_background as store

    return store(onnx_bytes, X_train)


def feature_importance(onnx_bytes: bytes, X_holdout: np.ndarray, seed: int, algorithm: str = "",
                       max_rows: int | None = None, task: str = BINARY) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Global importance: mean |SHAP value| per feature over the holdout rows (at most `max_rows`, default per
    algorithm, a seeded sample), on the model's raw output (Lundberg et al. 2020). Returns ([{feature, importance}]
    largest first, basis {rows, holdout_rows, output, method}); ([], {"unavailable": reason}) when the artifact
    cannot explain."""
    from mlops.serving.explain import Explainer

    if task == MULTICLASS:
        return [], {"unavailable": "multiclass models are not explained"}
    if max_rows is None:
        max_rows = IMPORTANCE_MAX_ROWS_BY_ALGORITHM.get(algorithm, IMPORTANCE_MAX_ROWS)
    rows = np.asarray(X_holdout, dtype=np.float64)
    total = len(rows)
    if total > max_rows:
        rows = rows[np.sort(np.random.default_rng(seed).choice(total, max_rows, replace=False))]
    try:
        explainer = Explainer.from_onnx(onnx_bytes)
        importance = explainer.global_importance(rows) if len(rows) else {}
    except ConfigurationError as exc:
        return [], {"unavailable": exc.message}
    ranked = sorted(importance.items(), key=lambda item: -item[1])
    return ([{"feature": name, "importance": round(value, 8)} for name, value in ranked],
            {"rows": int(len(rows)), "holdout_rows": int(total), "output": explainer.output,
             "method": "mean |SHAP value| on the holdout (exact TreeSHAP / linear SHAP of the served artifact)"})
