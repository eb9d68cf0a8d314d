"""Drift reports: one self-contained HTML page per drift run, with baseline-vs-current distributions per feature.

Inputs are the plain dicts the drift check already has: the report of
`mlops.monitoring.drift.compare_with_baseline` (with
the run's family, live_version, window and retrain decision), the live model's baseline profile
(`mlops.stats.profile.baseline_profile`), and the current traffic binned like the baseline (`current_histograms`, which
the drift check stores with its report under `histograms`). Older report and profile shapes are read as well:
features without `status` (format 1: `drifted` only), profiles with `ks_quantiles` instead of the ECDF summary,
reports without histograms (the baseline is drawn alone, and the page says so).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops.core.errors import ValidationError

from . import charts
from .charts import ALERT, BASELINE, CURRENT, Series
from .html import number, render, require_mapping

HISTOGRAMS_FORMAT = 1
OTHER = "(other)"
MISSING = "(missing)"
# Distribution charts drawn per page (each about 20 KB of SVG): drifted features first; the table lists them all.
MAX_FEATURE_CHARTS = 60
VERDICTS = {"drift": ("drift", "fail"), "no_drift": ("no drift", "pass"),
            "insufficient_data": ("insufficient data", "warn"), "not_checked": ("not checked", "idle")}


def current_histograms(family: Any, profile: dict[str, Any], columns: dict[str, np.ndarray],
                       predictions: np.ndarray | None = None,
                       counts: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Current traffic binned exactly like the baseline profile, for the drift report's charts.

    family: the ModelFamily (its features in schema order); profile: the live model's baseline profile;
    columns: feature name -> (n,) float64 captured values as `mlops.monitoring.drift.captured_columns` returns them
    (NaN =
    missing; categorical: category index, k = "other"); predictions: (n,) positive-class probabilities.
    Numeric features are counted in the profile's PSI bins (`psi_edges`, right-closed, `stats.bin_counts`: the
    binning the drift statistics use), categorical features per declared category then "other". Features not
    captured or absent from the profile are left out. Returns {"format", "features": {name: {"kind", "counts",
    "missing", and "edges" or "categories"}}, "prediction": {"edges", "counts"} or None}: about 20 numbers per
    feature, small enough to store with the report. `counts`: feature name -> the counts the drift tests computed on
    the same bins (`mlops.monitoring.drift.compare_with_baseline`'s `current_counts`), used instead of binning the
    values again (each is checked to have the bins' length)."""
    from mlops.stats.distributions import bin_counts
    from mlops.stats.profile import PREDICTION_EDGES, category_counts, prediction_counts

    features: dict[str, Any] = {}
    base_features = profile.get("features") or {}
    for feature in family.features:
        base = base_features.get(feature.name)
        if feature.name not in columns or not isinstance(base, dict):
            continue
        values = np.asarray(columns[feature.name], dtype=np.float64)
        missing = int(np.count_nonzero(np.isnan(values)))
        known = (counts or {}).get(feature.name)
        if feature.kind == "categorical":
            levels = len(feature.categories) + 1
            current = (known if known is not None and len(known) == levels
                       else category_counts(values, levels)[0])
            features[feature.name] = {"kind": "categorical", "categories": [*feature.categories, OTHER],
                                      "counts": np.asarray(current).tolist(), "missing": missing}
        elif base.get("psi_edges") is not None:
            edges = np.asarray(base["psi_edges"], dtype=np.float64)
            current = (known if known is not None and len(known) == edges.size + 1
                       else bin_counts(values[~np.isnan(values)], edges))
            features[feature.name] = {"kind": "numeric", "edges": edges.tolist(),
                                      "counts": np.asarray(current).tolist(), "missing": missing}
    prediction = None
    if predictions is not None and np.asarray(predictions).size:
        prediction = {"edges": PREDICTION_EDGES.tolist(), "counts": prediction_counts(predictions).tolist()}
    return {"format": HISTOGRAMS_FORMAT, "features": features, "prediction": prediction}


def build_drift_view(report: Any, profile: Any | None = None, histograms: Any | None = None,
                     family: Any | None = None) -> dict[str, Any]:
    """What the drift report page shows, as a JSON-ready dict: the run summary, one row per feature with its
    figures, verdict and reason, and the baseline/current shares per bin or category.

    report: the drift report dict; profile: the baseline profile (optional: without it no distributions are
    drawn); histograms: `current_histograms` (default: report["histograms"]); family: the family declaration
    (ModelFamily or its dump), optional: category names and feature order come from it, else from the profile
    and the report. Raises ValidationError when `report` is not a dict with a `features` dict."""
    report = require_mapping(report, "the drift report")
    if not isinstance(report.get("features"), dict):
        raise ValidationError("the drift report has no `features` object: is this the output of the drift check?")
    profile = require_mapping(profile, "the baseline profile") if profile is not None else {}
    histograms = histograms if histograms is not None else report.get("histograms")
    histograms = require_mapping(histograms, "the current histograms") if histograms is not None else {}
    declared = _declared_features(family)
    order = [n for n in declared if n in report["features"]] + [n for n in report["features"] if n not in declared]
    base_features = profile.get("features") or {}
    current_features = histograms.get("features") or {}
    features = [_feature_view(name, report["features"][name], base_features.get(name), current_features.get(name),
                              declared.get(name)) for name in order]
    for index, feature in enumerate(features):
        feature["index"] = index
    verdict = str(report.get("verdict") or "not_checked")
    prediction = _prediction_view((profile.get("prediction") or {}), histograms.get("prediction"))
    return {
        "family": report.get("family"), "live_version": report.get("live_version"),
        "verdict": verdict, "verdict_label": VERDICTS.get(verdict, (verdict, "idle"))[0],
        "verdict_badge": VERDICTS.get(verdict, (verdict, "idle"))[1],
        "rows": report.get("rows"), "min_samples": report.get("min_samples"),
        # The traffic read: up to where the check read (an open window's end is its start: read again next time).
        "window_start": report.get("window_start"), "window_end": report.get("read_until") or report.get("window_end"),
        "window_open": bool(report.get("window_open")), "live_rows": report.get("prediction_rows"),
        "rows_by_version": {str(k): v for k, v in (report.get("rows_by_version") or {}).items()},
        "not_judged": list(report.get("not_judged") or []),
        "unreadable_objects": list(report.get("unreadable_objects") or []),
        "unreadable_count": int(report.get("unreadable_count") or 0),
        "checked_at": report.get("checked_at"), "report_key": report.get("report_key"),
        "drifted_features": list(report.get("drifted_features") or []),
        "unchecked_features": dict(report.get("unchecked_features") or {}),
        "prediction_psi": report.get("prediction_psi"), "profile_format": report.get("profile_format"),
        # Regression and multiclass: the predictions' own test (mlops.stats.tasks.prediction_drift).
        "prediction_test": report.get("prediction") if isinstance(report.get("prediction"), dict) else None,
        "policy": report.get("policy") or {}, "retrain": report.get("retrain"),
        "baseline_rows": profile.get("rows"), "has_profile": bool(base_features),
        "has_histograms": bool(current_features), "features": features, "prediction": prediction,
        "counts": {label: sum(1 for f in features if f["verdict"] == key) for key, label in
                   (("drift", "drifted"), ("no_drift", "stable"), ("insufficient_data", "insufficient data"),
                    ("not_checked", "not checked"))},
    }


def render_drift_report(report: Any, profile: Any | None = None, histograms: Any | None = None,
                        family: Any | None = None, *, generated_at: str | None = None) -> str:
    """The drift report as a self-contained HTML page (inline CSS and SVG, no script, no external reference):
    `build_drift_view` drawn with a chart per feature. Raises ValidationError as `build_drift_view`."""
    view = build_drift_view(report, profile, histograms, family)
    cid = f"{view['family'] or 'family'}-{view['checked_at'] or ''}"
    cards = sorted(view["features"], key=lambda f: (f["verdict"] != "drift", f["index"]))[:MAX_FEATURE_CHARTS]
    for feature in cards:
        feature["chart"] = _distribution_chart(feature, charts.chart_id(cid, "feature", feature["index"],
                                                                        feature["name"]))
    prediction_chart = None
    if view["prediction"]:
        prediction_chart = _distribution_chart({**view["prediction"], "name": "predicted probability",
                                                "kind": "numeric", "verdict": "no_drift", "wide": True},
                                               charts.chart_id(cid, "prediction"))
    return render("drift_report.html.j2", view=view, cards=cards, prediction_chart=prediction_chart,
                  generated_at=generated_at or view["checked_at"])


def _declared_features(family: Any) -> dict[str, dict[str, Any]]:
    if family is None:
        return {}
    family = require_mapping(family, "the family declaration")
    return {f["name"]: f for f in family.get("features") or [] if isinstance(f, dict) and "name" in f}


def _status(figures: dict[str, Any]) -> str:
    """The feature's verdict key; reports before format 2 carry only `drifted` (True/False) for checked ones."""
    status = figures.get("status")
    if status in ("insufficient_data", "not_checked"):
        return str(status)
    drifted = figures.get("drifted")
    if drifted is True:
        return "drift"
    if drifted is False:
        return "no_drift"
    return "not_checked"


def _feature_view(name: str, figures: Any, base: Any, current: Any, declared: Any) -> dict[str, Any]:
    figures = figures if isinstance(figures, dict) else {}
    base = base if isinstance(base, dict) else {}
    current = current if isinstance(current, dict) else {}
    kind = figures.get("kind") or base.get("kind") or (declared or {}).get("kind") or "numeric"
    verdict = _status(figures)
    view: dict[str, Any] = {
        "name": name, "kind": kind, "verdict": verdict, "verdict_label": VERDICTS[verdict][0],
        "verdict_badge": VERDICTS[verdict][1], "reason": figures.get("reason"),
        "drift_reasons": list(figures.get("drift_reasons") or []),
        "psi": figures.get("psi"), "psi_p_value": figures.get("psi_p_value"),
        "ks_statistic": figures.get("ks_statistic"), "ks_p_value": figures.get("ks_p_value"),
        "chi2": figures.get("chi2"), "chi2_p_value": figures.get("p_value"),
        "cramers_v": figures.get("cramers_v_equal_weight", figures.get("cramers_v")),
        "missing_rate": figures.get("missing_rate"), "baseline_missing_rate": figures.get("baseline_missing_rate"),
        "missing_p_value": figures.get("missing_p_value"),
        "mean": figures.get("mean"), "baseline_mean": figures.get("baseline_mean", base.get("mean")),
        "rows": figures.get("rows"), "unseen_categories": list(figures.get("unseen_categories") or []),
        "vanished_categories": list(figures.get("vanished_categories") or []),
        "labels": [], "baseline": [], "current": None, "note": None,
    }
    if kind == "categorical":
        _categorical_shares(view, base, current, declared)
    else:
        _numeric_shares(view, base, current)
    if verdict == "not_checked" and view["reason"] and view["current"] is None:
        view["note"] = None  # the reason says why there is no current distribution
    return view


def _shares(counts: list[float]) -> list[float]:
    total = float(sum(counts))
    return [c / total if total else 0.0 for c in counts]


def _with_missing(view: dict[str, Any], base_counts: list[int], current_counts: list[int] | None,
                  base_missing: int, current_missing: int) -> None:
    """Shares over all rows, with a "(missing)" bar when either side has missing values."""
    if base_missing or current_missing:
        view["labels"].append(MISSING)
        base_counts = [*base_counts, base_missing]
        current_counts = None if current_counts is None else [*current_counts, current_missing]
    view["baseline"] = _shares(base_counts) if base_counts else []
    view["current"] = None if current_counts is None else _shares(current_counts)
    view["baseline_count"] = int(sum(base_counts))
    view["current_count"] = None if current_counts is None else int(sum(current_counts))


def _numeric_shares(view: dict[str, Any], base: dict[str, Any], current: dict[str, Any]) -> None:
    edges = base.get("psi_edges", current.get("edges"))
    base_counts = base.get("psi_counts")
    current_counts = current.get("counts")
    if edges is None or (base_counts is None and current_counts is None):
        view["note"] = "no binned distribution in the baseline profile"
        return
    view["labels"] = bin_labels([float(e) for e in edges])
    size = len(view["labels"])
    if base_counts is not None and len(base_counts) != size:
        view["note"] = f"the baseline has {len(base_counts)} bins for {len(edges)} edges; distribution not drawn"
        view["labels"] = []
        return
    if current_counts is not None and (len(current_counts) != size or current.get("edges") not in (None, edges)):
        current_counts = None
        view["note"] = "the current histogram was binned on other edges than this baseline; not drawn"
    elif current_counts is None:
        view["note"] = "the current distribution was not recorded with this report; the baseline is drawn alone"
    _with_missing(view, [int(c) for c in base_counts or [0] * size],
                  None if current_counts is None else [int(c) for c in current_counts],
                  int(base.get("missing", 0) or 0), int(current.get("missing", 0) or 0))


def _categorical_shares(view: dict[str, Any], base: dict[str, Any], current: dict[str, Any], declared: Any) -> None:
    """Category names: the family's (then "other"), else the current histogram's, else the profile's. Baseline
    categories the family no longer declares count as "other", as the drift check counts them."""
    declared_categories = list((declared or {}).get("categories") or [])
    current_names = list(current.get("categories") or [])
    base_names = list(base.get("categories") or [])
    names = ([*declared_categories, OTHER] if declared_categories else current_names or [*base_names, OTHER])
    if not names or (not base and not current):
        view["note"] = "no category counts in the baseline profile"
        return
    base_counts = None
    if base.get("counts") is not None:
        known = dict(zip(base_names, (int(c) for c in base["counts"]), strict=False))
        profile_other = int(base["counts"][len(base_names)]) if len(base["counts"]) > len(base_names) else 0
        base_counts = [known.pop(c, 0) for c in names[:-1]]
        base_counts.append(profile_other + sum(known.values()))
    current_counts = None
    if current.get("counts") is not None:
        by_name = dict(zip(current_names or names, (int(c) for c in current["counts"]), strict=False))
        current_counts = [by_name.pop(c, 0) for c in names[:-1]]
        current_counts.append(by_name.pop(names[-1], 0) + sum(by_name.values()))
    else:
        view["note"] = "the current distribution was not recorded with this report; the baseline is drawn alone"
    if (base_counts is None or not base_counts[-1]) and (current_counts is None or not current_counts[-1]):
        names, base_counts = names[:-1], base_counts and base_counts[:-1]
        current_counts = current_counts and current_counts[:-1]
    view["labels"] = list(names)
    _with_missing(view, base_counts or [0] * len(names), current_counts, int(base.get("missing", 0) or 0),
                  int(current.get("missing", 0) or 0))


def bin_labels(edges: list[float]) -> list[str]:
    """Labels of the right-closed bins around sorted edges e_0..e_{m-1}: '<= e_0', '(e_0, e_1]', ..., '> e_{m-1}'."""
    if not edges:
        return ["all values"]
    text = [compact(e) for e in edges]
    return [f"\u2264 {text[0]}", *(f"{a} \u2013 {b}" for a, b in zip(text, text[1:], strict=False)), f"> {text[-1]}"]


def compact(value: float) -> str:
    """A bin edge for an axis label: 3 significant digits, thousands as k and millions as M (22,400 -> 22.4k)."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(value) >= scale:
            return number(value / (scale if scale != 1e4 else 1e3), 3) + suffix
    return number(value, 3)


def _prediction_view(base: dict[str, Any], current: Any) -> dict[str, Any] | None:
    current = current if isinstance(current, dict) else {}
    edges = base.get("psi_edges", current.get("edges"))
    if edges is None or (base.get("psi_counts") is None and current.get("counts") is None):
        return None
    labels = [f"{e:.2f}" if i % 2 == 0 else "" for i, e in enumerate([0.0, *edges])]
    base_counts = base.get("psi_counts") or [0] * len(labels)
    current_counts = current.get("counts")
    if current_counts is not None and len(current_counts) != len(base_counts):
        current_counts = None
    return {"labels": labels, "baseline": _shares([int(c) for c in base_counts]),
            "current": None if current_counts is None else _shares([int(c) for c in current_counts]),
            "baseline_count": int(sum(base_counts)),
            "current_count": None if current_counts is None else int(sum(current_counts))}


def _distribution_chart(feature: dict[str, Any], cid: str) -> Any:
    if not feature.get("labels"):
        return None
    color = ALERT if feature["verdict"] == "drift" else CURRENT
    series = [Series(f"training ({number(feature.get('baseline_count'))} rows)", feature["baseline"],
                     color=BASELINE)]
    if feature.get("current") is not None:
        series.append(Series(f"current ({number(feature.get('current_count'))} rows)", feature["current"],
                             color=color))
    wide = feature.get("wide", False)
    rotate = False if wide else True if feature["kind"] == "numeric" else None
    return charts.bar_chart(cid, f"Distribution of {feature['name']}: training vs current", feature["labels"],
                            series, y_title="Share of rows", percent=True, height=250 if wide else 270,
                            width=920 if wide else 460, rotate_labels=rotate)

