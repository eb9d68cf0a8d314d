"""Model cards: one per registered version, as JSON and as a self-contained HTML page.

The JSON follows the sections of Google's Model Card Toolkit schema (model_details, model_parameters,
quantitative_analysis, considerations) with SageMaker model card names where they fit (problem_type,
algorithm_type, hyper_parameters, training_datasets), plus what this platform records and those schemas have no
place for: the lineage, the gate decision with every check, and the status history. The HTML is rendered from the
JSON alone, so a card stored as JSON can be drawn again later and both always agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mlops.core.errors import ValidationError

from . import charts
from .charts import ACCENT, BASELINE, CURRENT, PASS, Series
from .html import number, percent, records, render, require_mapping

CARD_SCHEMA = "mlops.model-card/1"
# Holdout figures shown first, in this order, and their names for people.
METRICS = (
    ("auc", "ROC AUC", "threshold-free"),
    ("balanced_accuracy", "Balanced accuracy", None),
    ("accuracy", "Accuracy", None),
    ("precision", "Precision", None),
    ("recall", "Recall", None),
    ("f1", "F1", None),
    ("log_loss", "Log loss", "lower is better"),
    ("brier", "Brier score", "lower is better"),
    ("positive_rate", "Predicted positive rate", None),
    # multiclass_classification
    ("macro_auc", "Macro AUC", "one-vs-rest, threshold-free"),
    ("macro_f1", "Macro F1", None),
    # regression
    ("rmse", "RMSE", "lower is better"),
    ("mae", "MAE", "lower is better"),
    ("r2", "R\u00b2", None),
)
BINARY = "binary_classification"
REGRESSION = "regression"
MAX_FAIRNESS_BARS = 12  # the largest groups are drawn; the table lists every recorded group
STATUS_BADGES = {"live": "pass", "canary": "info", "candidate": "idle", "retired": "idle", "rejected": "fail",
                 "rolled_back": "fail"}


def build_model_card(version: Any, history: Iterable[Any] | None = None, family: Any | None = None, *,
                     generated_at: str | None = None) -> dict[str, Any]:
    """The model card of one version as a JSON-ready dict.

    version: the registry's version record as a dict (VersionRecord fields: family, version, status, created_at,
    updated_at, status_reason, function_version, lineage) or the VersionRecord itself. history: status events of
    the family (StatusEvent fields: version, from_status, to_status, at, actor, reason, live_version_after; only
    this version's are kept, oldest first). family: the family declaration (ModelFamily dump), optional: feature
    descriptions and policies come from it when the lineage lacks them.

    Lineage keys read when present (all optional but `family`/`version` of the record): dataset, code, algorithm,
    hyperparameters, seed, holdout, artifact_sha256, artifact_key, baseline_profile, metrics, fairness, parity,
    gate, trivial_model, warnings, data_warnings, classes, positive_label, threshold, input_dtype, curves (from
    `curves.curve_data`), feature_importance ({feature: value} or [{feature, importance}]), canary_result,
    trained_at, pipeline_execution, previous_live_version. Raises ValidationError when the record is not a dict or
    lacks its family name or version number."""
    record = require_mapping(version, "the version record")
    family_config = require_mapping(family, "the family declaration") if family is not None else {}
    name = record.get("family") or family_config.get("name")
    number_ = record.get("version")
    if not name or not isinstance(number_, int) or isinstance(number_, bool):
        raise ValidationError("the version record needs `family` (the family name) and `version` (an integer); got "
                              f"family={name!r}, version={number_!r}")
    lineage = require_mapping(record.get("lineage") or {}, "the version's lineage")
    task = lineage.get("task") or family_config.get("task") or BINARY
    events = [e for e in records(history, "the status history") if _same_version(e.get("version"), number_)]
    events.sort(key=lambda e: str(e.get("at", "")))
    binary = task == BINARY
    classes = list(lineage.get("classes") or ([0, 1] if binary else []))
    threshold = lineage.get("threshold", (lineage.get("metrics") or {}).get("threshold", family_config.get(
        "threshold", 0.5))) if binary else None
    positive = lineage.get("positive_label", classes[-1] if classes else 1) if binary else None
    dataset = dict(lineage.get("dataset") or {})
    features = _features(dataset.get("columns"), family_config.get("features"))
    target = next((c.get("name") for c in dataset.get("columns") or [] if c.get("kind") == "target"),
                  family_config.get("target"))
    algorithm = lineage.get("algorithm") or family_config.get("algorithm")
    metrics = dict(lineage.get("metrics") or {})
    return {
        "schema_version": CARD_SCHEMA,
        "generated_at": generated_at,
        "model_details": {
            "name": name,
            "model_id": f"{name}/v{number_}",
            "version": {"name": str(number_), "date": record.get("created_at"),
                        "diff": _diff(lineage, record.get("status"))},
            "overview": _overview(name, algorithm, target, positive, classes, threshold, task,
                                  family_config.get("prediction_range")),
            "status": record.get("status"),
            "status_reason": record.get("status_reason"),
            "updated_at": record.get("updated_at"),
            "function_version": record.get("function_version") or None,
            "references": [{"reference": ref} for ref in _references(lineage, dataset)],
        },
        "model_parameters": {
            "problem_type": task,
            "model_architecture": algorithm,
            "algorithm_type": algorithm,
            "hyper_parameters": [{"name": k, "value": v} for k, v in sorted((lineage.get("hyperparameters")
                                                                             or {}).items())],
            "seed": lineage.get("seed"),
            "input_format": features,
            "output_format": {"classes": classes, "positive_label": positive, "threshold": threshold,
                              "target": target, "decision": _decision(task, positive, threshold),
                              "prediction_range": family_config.get("prediction_range") if task == REGRESSION
                              else None},
            "data": {
                "train": {"name": dataset.get("key"), "bucket": dataset.get("bucket"),
                          "version_id": dataset.get("version_id"), "etag": dataset.get("etag") or None,
                          "sha256": dataset.get("sha256"), "rows": dataset.get("rows"),
                          "link": _s3_uri(dataset)},
                "eval": {"name": "holdout", **dict(lineage.get("holdout") or {})},
            },
        },
        "quantitative_analysis": {
            "performance_metrics": _performance_metrics(metrics, lineage.get("fairness") or {}, threshold),
            "metrics": metrics,
            "curves": lineage.get("curves"),
            "trivial_model": lineage.get("trivial_model"),
            "parity": lineage.get("parity") or None,
            "fairness": _fairness(lineage.get("fairness") or {}, family_config, dataset.get("columns"), task),
            "feature_importance": _importance(lineage.get("feature_importance")),
        },
        "considerations": {
            "warnings": [str(w) for w in lineage.get("warnings") or []],
            "data_warnings": [str(w) for w in lineage.get("data_warnings") or []],
            "limitations": _limitations(lineage, metrics, binary),
        },
        "lineage": {
            "dataset": dataset or None,
            "code": lineage.get("code"),
            "algorithm": algorithm,
            "hyperparameters": lineage.get("hyperparameters"),
            "seed": lineage.get("seed"),
            "holdout": lineage.get("holdout"),
            "artifact": {"sha256": lineage.get("artifact_sha256"), "key": lineage.get("artifact_key"),
                         "input_dtype": lineage.get("input_dtype")},
            "baseline_profile": lineage.get("baseline_profile"),
            "trained_at": lineage.get("trained_at"),
            "pipeline_execution": lineage.get("pipeline_execution"),
            "previous_live_version": lineage.get("previous_live_version"),
            "training": training_engine(lineage.get("training")),
        },
        "gate": lineage.get("gate") or None,
        "canary_result": lineage.get("canary_result"),
        "status_history": [{k: e.get(k) for k in ("at", "from_status", "to_status", "actor", "reason",
                                                   "live_version_after")} for e in events],
    }


def render_model_card(card: Any) -> str:
    """The model card as a self-contained HTML page (inline CSS and SVG, no script, no external reference),
    from `build_model_card`'s dict. Raises ValidationError when `card` is not such a dict."""
    card = require_mapping(card, "the model card")
    if card.get("schema_version") != CARD_SCHEMA:
        raise ValidationError(f"not a model card of schema {CARD_SCHEMA}: schema_version is "
                              f"{card.get('schema_version')!r}")
    details = card["model_details"]
    qa = card["quantitative_analysis"]
    curves = qa.get("curves") if isinstance(qa.get("curves"), dict) else None
    output = card["model_parameters"]["output_format"]
    cid = f"{details['name']}-v{details['version']['name']}"
    context = {
        "card": card, "details": details, "params": card["model_parameters"], "qa": qa,
        "lineage": card["lineage"], "gate": card.get("gate"), "history": card.get("status_history") or [],
        "considerations": card["considerations"], "canary": card.get("canary_result"),
        "status_badge": STATUS_BADGES.get(str(details.get("status")), "idle"),
        "tiles": _tiles(qa.get("metrics") or {}),
        "curves": curves,
        "roc_chart": _roc_chart(curves, cid) if curves and curves.get("roc") else None,
        "calibration_chart": _calibration_chart(curves, cid) if curves and curves.get("calibration") else None,
        "score_chart": _score_chart(curves, output, cid) if curves and curves.get("score_histogram") else None,
        "confusion": _confusion(curves, output) if curves and curves.get("confusion_matrix") else None,
        "fairness_chart": _fairness_chart(qa.get("fairness") or {}, cid),
        "importance_chart": _importance_chart(qa.get("feature_importance"), cid),
        "importance_rows": _importance_rows(qa.get("feature_importance"), card["model_parameters"]["input_format"]),
        "generated_at": card.get("generated_at") or details.get("updated_at"),
    }
    return render("model_card.html.j2", **context)


def model_card(version: Any, history: Iterable[Any] | None = None, family: Any | None = None, *,
               generated_at: str | None = None) -> tuple[str, dict[str, Any]]:
    """(HTML, JSON dict) of a version's model card: `build_model_card` then `render_model_card`."""
    card = build_model_card(version, history, family, generated_at=generated_at)
    return render_model_card(card), card


def _same_version(a: Any, b: int) -> bool:
    try:
        return int(a) == b
    except (TypeError, ValueError):
        return False


def _features(columns: Any, declared: Any) -> list[dict[str, Any]]:
    """The inputs in schema order (lineage columns of kind numeric/categorical, else the family's features)."""
    source = [c for c in (columns or []) if isinstance(c, dict) and c.get("kind") in ("numeric", "categorical")]
    if not source:
        source = [f for f in (declared or []) if isinstance(f, dict)]
    described = {f.get("name"): f.get("description") for f in (declared or []) if isinstance(f, dict)}
    return [{"name": f.get("name"), "kind": f.get("kind", "numeric"), "categories": list(f.get("categories") or []),
             "minimum": f.get("minimum"), "maximum": f.get("maximum"), "missing": f.get("missing", "reject"),
             "unknown": f.get("unknown") if f.get("kind") == "categorical" else None,
             "description": f.get("description") or described.get(f.get("name"))} for f in source]


def _overview(name: str, algorithm: Any, target: Any, positive: Any, classes: list[Any], threshold: Any,
              task: str = BINARY, prediction_range: Any = None) -> str:
    model = algorithm or "unknown algorithm"
    if task == REGRESSION:
        clipped = ""
        if isinstance(prediction_range, list | tuple) and len(prediction_range) == 2:
            low, high = ("no bound" if b is None else number(b) for b in prediction_range)
            clipped = f", clipped to [{low}, {high}]"
        return f"Regression of family {name} ({model}) predicting {target} as a number{clipped}."
    if task != BINARY:
        listed = ", ".join(str(c) for c in classes) or "its classes"
        return (f"Multiclass classifier of family {name} ({model}) predicting {target} among {len(classes)} classes "
                f"({listed}); a request is labelled with the most probable class.")
    negative = next((c for c in classes if str(c) != str(positive)), None)
    what = f"whether {target} is {positive!s}" + (f" (vs {negative!s})" if negative is not None else "")
    return (f"Binary classifier of family {name} ({algorithm or 'unknown algorithm'}) predicting {what}; "
            f"a request is labelled {positive!s} when the predicted probability is at least {threshold}.")


def _decision(task: str, positive: Any, threshold: Any) -> str:
    if task == REGRESSION:
        return "the predicted value"
    if task != BINARY:
        return "the most probable class"
    return f"positive when P({positive}) >= {threshold}"


def training_engine(training: Any) -> dict[str, Any] | None:
    """What trained the version, for people (from the lineage's `training`, mlops.training.engines): {engine,
    text}, e.g. "sagemaker: job loans-1f2e... on ml.m5.xlarge (61 s billed)" or "lambda: 3,008 MB, 12.4 s";
    None when not recorded (versions trained before the engines were recorded)."""
    if not isinstance(training, dict) or not training.get("engine"):
        return None
    engine = str(training["engine"])
    if engine == "sagemaker":
        parts = [f"job {training.get('job_name') or 'unnamed'}"]
        if training.get("instance_type"):
            count = training.get("instance_count")
            parts.append(f"on {training['instance_type']}" + (f" x {count}" if count and count != 1 else ""))
        if training.get("billable_seconds") is not None:
            parts.append(f"({number(training['billable_seconds'])} s billed"
                         + (", managed spot)" if training.get("managed_spot") else ")"))
        return {**training, "text": f"sagemaker: {' '.join(parts)}"}
    details = [f"{number(training['memory_mb'])} MB" for _ in [0] if training.get("memory_mb")]
    if training.get("seconds") is not None:
        details.append(f"{number(training['seconds'])} s")
    return {**training, "text": engine + (f": {', '.join(details)}" if details else "")}


def _diff(lineage: dict[str, Any], status: Any = None) -> str | None:
    """The version's relation to the model that was live when it was trained, in the words of its status now: a
    challenger only while it is one (candidate, canary); a live version replaced it."""
    previous = lineage.get("previous_live_version")
    if not previous:
        return None
    return {"live": f"live, replacing v{previous}", "retired": f"replaced v{previous}; since retired",
            "rejected": f"challenged live v{previous}; rejected at the gate",
            "rolled_back": f"challenged live v{previous}; rolled back"}.get(str(status),
                                                                           f"challenger of live v{previous}")


def _s3_uri(dataset: dict[str, Any]) -> str | None:
    if not dataset.get("bucket") or not dataset.get("key"):
        return None
    uri = f"s3://{dataset['bucket']}/{dataset['key']}"
    return f"{uri}?versionId={dataset['version_id']}" if dataset.get("version_id") else uri


def _references(lineage: dict[str, Any], dataset: dict[str, Any]) -> list[str]:
    refs = [r for r in (_s3_uri(dataset),) if r]
    if lineage.get("artifact_key"):
        refs.append(f"artifact {lineage['artifact_key']}")
    if lineage.get("pipeline_execution"):
        refs.append(f"pipeline run {lineage['pipeline_execution']}")
    return refs


def _performance_metrics(metrics: dict[str, Any], fairness: dict[str, Any], threshold: Any) -> list[dict[str, Any]]:
    """Model Card Toolkit's performance_metrics: {type, value, slice, threshold}; per-group rates as slices."""
    out = []
    for key, _, _ in METRICS:
        if key in metrics:
            out.append({"type": key, "value": metrics[key], "slice": "holdout",
                        "threshold": None if key in ("auc", "log_loss", "brier") else threshold})
    for group, figures in sorted((fairness.get("groups") or {}).items()):
        if isinstance(figures, dict):
            for key in ("favorable_rate", "true_favorable_rate"):
                if figures.get(key) is not None:
                    out.append({"type": key, "value": figures[key], "slice": f"group={group}",
                                "threshold": threshold, "rows": figures.get("rows")})
    return out


def _fairness(fairness: dict[str, Any], family: dict[str, Any], columns: Any, task: str = BINARY) -> dict[str, Any]:
    """The fairness section, from `mlops.stats.fairness.fairness_metrics` figures (older lineages: groups with rows and
    rates only), or for a regression from `mlops.stats.tasks.regression_fairness` (the spreads of the group mean
    prediction and of the group MAE, in target standard deviations; `kind` "regression"). Groups largest first; a
    group below `min_group_size` is shown but marked as not compared."""
    groups = fairness.get("groups") if isinstance(fairness.get("groups"), dict) else {}
    checked = bool(groups) and fairness.get("checked") is not False
    recorded = next((c.get("name") for c in columns or [] if isinstance(c, dict) and c.get("kind") == "sensitive"),
                    None)
    attribute = fairness.get("sensitive_attribute") or recorded or family.get("sensitive_attribute")
    if task == REGRESSION:
        least = fairness.get("min_group_size") or 0
        rows = [{"group": str(g), "rows": v.get("rows"), "mean_prediction": _finite(v.get("mean_prediction")),
                 "mean_target": _finite(v.get("mean_target")), "mae": _finite(v.get("mae")),
                 "compared": (v.get("rows") or 0) >= least} for g, v in groups.items() if isinstance(v, dict)]
        rows.sort(key=lambda r: (-(r["rows"] or 0), r["group"]))
        return {"kind": "regression", "checked": checked,
                "reason": None if checked else str(fairness.get("reason") or "no fairness figures were recorded"),
                "sensitive_attribute": attribute, "min_group_size": fairness.get("min_group_size"),
                "scale": fairness.get("scale"), "mean_prediction_spread": fairness.get("mean_prediction_spread"),
                "mae_spread": fairness.get("mae_spread"), "groups": rows, "notes": []}
    notes = [f"{key.replace('_', ' ')}: {spread['reason']}" for key in ("demographic_parity", "equal_opportunity")
             if isinstance(spread := fairness.get(key), dict) and spread.get("reason")]
    if fairness.get("groups_omitted"):
        notes.append(f"{fairness['groups_omitted']} smaller groups are not listed here (the full table is stored "
                     "with the run)")
    rows = [{"group": str(g), "rows": v.get("rows"), "favorable_rate": _finite(v.get("favorable_rate")),
             "true_favorable_rows": v.get("true_favorable_rows"),
             "true_favorable_rate": _finite(v.get("true_favorable_rate")),
             "compared": bool(v.get("in_parity", True))}
            for g, v in groups.items() if isinstance(v, dict)]
    rows.sort(key=lambda r: (-(r["rows"] or 0), r["group"]))
    return {
        "kind": "classification",
        "checked": checked,
        "reason": None if checked else str(fairness.get("reason") or "no fairness figures were recorded"),
        "status": fairness.get("status"),
        "sensitive_attribute": attribute,
        "favorable_label": fairness.get("favorable_label", family.get("favorable_label")),
        "min_group_size": fairness.get("min_group_size"),
        "demographic_parity_difference": fairness.get("demographic_parity_difference"),
        "equal_opportunity_difference": fairness.get("equal_opportunity_difference"),
        "groups": rows, "notes": notes,
    }


def _finite(value: Any) -> float | None:
    try:
        number_ = float(value)
    except (TypeError, ValueError):
        return None
    return number_ if number_ == number_ and abs(number_) != float("inf") else None


def _importance(value: Any) -> list[dict[str, Any]] | None:
    """Global feature importance, largest first: from {feature: value} or [{feature|name, importance|value}]."""
    if not value:
        return None
    if isinstance(value, dict):
        pairs = [(str(k), _finite(v)) for k, v in value.items()]
    elif isinstance(value, list):
        pairs = [(str(item.get("feature", item.get("name"))), _finite(item.get("importance", item.get("value"))))
                 for item in value if isinstance(item, dict)]
    else:
        return None
    pairs = [(k, v) for k, v in pairs if v is not None]
    pairs.sort(key=lambda kv: -abs(kv[1]))
    return [{"feature": k, "importance": v} for k, v in pairs] or None


def _limitations(lineage: dict[str, Any], metrics: dict[str, Any], binary: bool = True) -> list[str]:
    notes = []
    holdout = lineage.get("holdout") or {}
    if holdout.get("rows"):
        notes.append(f"Figures come from a holdout of {number(holdout['rows'])} rows "
                     f"({percent(holdout.get('fraction'), 0)} of the data set), drawn with seed {holdout.get('seed')}; "
                     "they describe data like the training set, not necessarily future traffic.")
    gate = lineage.get("gate") or {}
    notes += [str(n) for n in gate.get("notes") or []]
    if binary and not lineage.get("curves"):
        notes.append("ROC and calibration curves were not recorded for this version (registered before curve "
                     "data was stored at evaluation).")
    return notes


def _tiles(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"label": label, "value": number(metrics[key], 3), "note": note} for key, label, note in METRICS
            if key in metrics]


def _roc_chart(curves: dict[str, Any], cid: str) -> Any:
    roc = curves["roc"]
    points = list(zip(roc.get("fpr") or [], roc.get("tpr") or [], strict=False))
    series = [Series("chance", [(0.0, 0.0), (1.0, 1.0)], color=BASELINE, dashed=True, width=1.2),
              Series(f"model (AUC {number(roc.get('auc'), 3)})", points, color=CURRENT, width=2.5)]
    op = roc.get("operating_point") or {}
    if op.get("fpr") is not None and op.get("tpr") is not None:
        series.append(Series(f"threshold {number(curves.get('threshold'))}", [(op["fpr"], op["tpr"])], color=ACCENT,
                             dots=True, dot_size=6, width=0))
    return charts.xy_chart(charts.chart_id(cid, "roc"), "ROC curve on the holdout", series,
                           x_title="False positive rate", y_title="True positive rate")


def _calibration_chart(curves: dict[str, Any], cid: str) -> Any:
    cal = curves["calibration"]
    points = [(m, f) for m, f in zip(cal.get("mean_predicted") or [], cal.get("fraction_positive") or [],
                                     strict=False) if m is not None and f is not None]
    series = [Series("perfectly calibrated", [(0.0, 0.0), (1.0, 1.0)], color=BASELINE, dashed=True, width=1.2),
              Series("model (10 bins)", points, color=CURRENT, width=2.5, dots=True, dot_size=4)]
    return charts.xy_chart(charts.chart_id(cid, "calibration"), "Calibration (reliability diagram) on the holdout",
                           series, x_title="Mean predicted probability", y_title="Observed fraction positive")


def _score_chart(curves: dict[str, Any], output: dict[str, Any], cid: str) -> Any:
    hist = curves["score_histogram"]
    edges = hist.get("edges") or []
    labels = [f"{edges[i]:.2f}" if i % 2 == 0 else "" for i in range(len(edges) - 1)]
    negative, positive = _class_names(output)
    neg, pos = list(hist.get("negative") or []), list(hist.get("positive") or [])
    total_neg, total_pos = max(1, sum(neg)), max(1, sum(pos))
    series = [Series(f"actual {negative}", [c / total_neg for c in neg], color=BASELINE),
              Series(f"actual {positive}", [c / total_pos for c in pos], color=CURRENT)]
    return charts.bar_chart(charts.chart_id(cid, "scores"), "Predicted probability by actual class", labels, series,
                            y_title="Share of the class", percent=True, rotate_labels=False, height=260,
                            width=460)


def _class_names(output: dict[str, Any]) -> tuple[str, str]:
    classes = [str(c) for c in output.get("classes") or ["0", "1"]]
    positive = str(output.get("positive_label", classes[-1]))
    negative = next((c for c in classes if c != positive), "negative")
    return negative, positive


def _confusion(curves: dict[str, Any], output: dict[str, Any]) -> dict[str, Any]:
    cm = curves["confusion_matrix"]
    negative, positive = _class_names(output)
    tp, fp, fn, tn = (int(cm.get(k) or 0) for k in ("tp", "fp", "fn", "tn"))
    total = max(1, tp + fp + fn + tn)
    biggest = max(1, tp, fp, fn, tn)

    def cell(count: int, correct: bool, name: str) -> dict[str, Any]:
        strength = 0.12 + 0.78 * count / biggest
        rgb = (37, 99, 235) if correct else (220, 38, 38)
        ink = "#ffffff" if strength > 0.55 else "#0f172a"
        return {"count": count, "share": count / total, "name": name,
                "style": f"background:rgba({rgb[0]},{rgb[1]},{rgb[2]},{strength:.2f});color:{ink}"}

    return {"negative": negative, "positive": positive, "threshold": curves.get("threshold"),
            "rows": [[cell(tn, True, "true negatives"), cell(fp, False, "false positives")],
                     [cell(fn, False, "false negatives"), cell(tp, True, "true positives")]]}


def _fairness_chart(fairness: dict[str, Any], cid: str) -> Any:
    groups = fairness.get("groups") or []
    if not fairness.get("checked") or not groups:
        return None
    groups = groups[:MAX_FAIRNESS_BARS]
    labels = [f"{g['group']} (n={number(g['rows'])})" for g in groups]
    if fairness.get("kind") == "regression":  # the table says it: group means may be far from 0 or negative
        return None
    series = [Series("favourable rate", [g["favorable_rate"] for g in groups], color=CURRENT),
              Series("true favourable rate", [g["true_favorable_rate"] for g in groups], color=PASS)]
    return charts.bar_chart(charts.chart_id(cid, "fairness"), "Favourable outcome rates by group", labels, series,
                            y_title="Rate", percent=True, y_max=1.0, height=280, print_values=True,
                            rotate_labels=len(groups) > 4)


def _importance_chart(importance: Any, cid: str) -> Any:
    if not importance:
        return None
    top = importance[:20]
    return charts.horizontal_bar_chart(charts.chart_id(cid, "importance"), "Global feature importance",
                                       [i["feature"] for i in top], [abs(i["importance"]) for i in top],
                                       color=CURRENT)



def _importance_rows(importance: Any, features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    described = {f.get("name"): f.get("description") for f in features}
    return [{**i, "description": described.get(i["feature"])} for i in (importance or [])[:20]]
