"""Performance reports: one self-contained HTML page per performance check (mlops.monitoring.performance).

Input is the report dict the check stores as JSON: verdicts and checks, per version its windows (decisions, labels,
coverage, realised metrics, fairness by group, the CBPE estimate and its error), the labels' join counts. The page
draws the live version's primary metric per window (realised, and estimated when the task has an estimate) and its
label coverage, and tabulates everything else. No script, no external reference (reports.charts).
"""

from __future__ import annotations

from typing import Any

from mlops.core.errors import ValidationError

from . import charts
from .charts import ACCENT, BASELINE, CURRENT, Series
from .html import parse_time, render, require_mapping

VERDICTS = {"ok": ("within policy", "pass"), "breach": ("breach", "fail"),
            "insufficient_data": ("insufficient labels", "warn"), "not_checked": ("not checked", "idle"),
            "untrusted": ("estimate untrusted", "warn")}
# Per task, the realised figures a window row shows, in this order.
COLUMNS = {"binary_classification": ("auc", "accuracy", "precision", "recall", "f1", "calibration_error"),
           "multiclass_classification": ("macro_auc", "accuracy", "balanced_accuracy", "macro_f1"),
           "regression": ("rmse", "mae", "r2", "mean_error")}


def _verdict(key: Any) -> dict[str, str]:
    label, badge = VERDICTS.get(str(key), (str(key), "idle"))
    return {"key": str(key), "label": label, "badge": badge}


def build_performance_view(report: Any) -> dict[str, Any]:
    """What the page shows, as a JSON-ready dict. Raises ValidationError when `report` is not a performance
    report (a dict with `versions` and `verdict`)."""
    report = require_mapping(report, "the performance report")
    if not isinstance(report.get("versions"), list) or "verdict" not in report:
        raise ValidationError("the performance report has no `versions` list: is this the output of the "
                              "performance check?")
    task = str(report.get("task") or "binary_classification")
    versions = []
    for version in report["versions"]:
        windows = []
        for window in version.get("windows") or []:
            windows.append({**window, "realised": window.get("realised") or {},
                            "estimated": window.get("estimated") or {},
                            "estimate_error": window.get("estimate_error") or {}})
        versions.append({**version, "windows": windows, "estimate": version.get("estimate") or {}})
    live = next((v for v in versions if v.get("live")), None)
    judged_window = None
    judged = report.get("judged") or {}
    if live is not None and judged:
        judged_window = next((w for w in live["windows"] if w.get("start") == judged.get("start")), None)
    labels = report.get("labels") or {}
    return {
        "family": report.get("family"), "task": task, "tier": report.get("tier"),
        "live_version": report.get("live_version"), "checked_at": report.get("checked_at"),
        "window": report.get("window") or {}, "policy": report.get("policy") or {},
        "primary_metric": report.get("primary_metric"),
        "verdict": _verdict(report.get("verdict")), "reason": report.get("reason"),
        "estimate_verdict": _verdict(report.get("estimate_verdict")), "estimate_reason": report.get("estimate_reason"),
        "checks": report.get("checks") or [], "estimate_checks": report.get("estimate_checks") or [],
        "judged": judged, "judged_window": judged_window, "decisions": report.get("decisions") or {},
        "labels": labels, "versions": versions, "live": live, "columns": COLUMNS.get(task, ()),
        "has_estimate": task == "binary_classification", "retrain": report.get("retrain"),
        "alert": report.get("alert"), "report_key": report.get("report_key"),
    }


def render_performance_report(report: Any, *, generated_at: str | None = None) -> str:
    """The performance report as a self-contained HTML page (inline CSS and SVG, no script)."""
    view = build_performance_view(report)
    chart = _trend_chart(view)
    coverage = _coverage_chart(view)
    return render("performance_report.html.j2", view=view, trend_chart=chart, coverage_chart=coverage,
                  generated_at=generated_at or view["checked_at"])


def _points(windows: list[dict[str, Any]], pick: Any) -> list[Any]:
    out = []
    for window in sorted(windows, key=lambda w: str(w.get("start"))):
        at = parse_time(window.get("start"))
        value = pick(window)
        out.append((at, float(value)) if at is not None and isinstance(value, int | float) else None)
    return out


def _trend_chart(view: dict[str, Any]) -> Any:
    live, metric = view["live"], view["primary_metric"]
    if live is None or not live["windows"] or not metric:
        return None
    realised = _points(live["windows"], lambda w: w["realised"].get(metric))
    series = [Series(f"realised {metric}", realised, color=CURRENT, dots=True)]
    if view["has_estimate"] and metric in ("auc", "accuracy"):
        series.append(Series(f"estimated {metric} (CBPE)", _points(live["windows"], lambda w: w["estimated"].get(
            metric)), color=ACCENT, dashed=True, dots=True))
    holdout = live.get("holdout", {}).get(metric)
    if isinstance(holdout, int | float):
        times = [p[0] for s in series for p in s.values if p is not None]
        if times:
            series.append(Series("holdout", [(min(times), float(holdout)), (max(times), float(holdout))],
                                 color=BASELINE, dashed=True, width=1.5))
    if not any(p is not None for s in series for p in s.values):
        return None
    values = [p[1] for s in series for p in s.values if p is not None]
    low, high = min(values), max(values)
    if metric in ("rmse", "mae"):
        top = charts.nice_top([high], False)
        y_range, ticks = (0.0, top), charts.ticks(top)
    else:
        bottom = max(0.0, min(0.5, low - 0.05))
        y_range, ticks = (bottom, 1.0), [round(bottom + i * (1 - bottom) / 5, 3) for i in range(6)]
    return charts.time_chart(charts.chart_id(view["family"], "trend"), f"{metric} per window, live "
                             f"v{live['version']}", series, y_title=metric, y_range=y_range, y_ticks=ticks)


def _coverage_chart(view: dict[str, Any]) -> Any:
    live = view["live"]
    if live is None or not live["windows"]:
        return None
    windows = sorted(live["windows"], key=lambda w: str(w.get("start")))[-12:]
    labels = [str(w.get("start", ""))[:10] for w in windows]
    shares = [float(w.get("coverage") or 0.0) for w in windows]
    return charts.bar_chart(charts.chart_id(view["family"], "coverage"), "Label coverage per window", labels,
                            [Series("labelled share of decisions", shares, color=CURRENT)], y_title="Labelled",
                            percent=True, width=920, height=240, print_values=True)
