"""Rollout timelines: the canary's traffic weight and every canary check over time, as a self-contained HTML page.

A rollout is described by plain dicts: the family's status events (registry history), the canary checks (the
`canary_check` results of each bake window, with the time they were taken) and, optionally, the weight changes.
`rollout_from_execution` extracts the checks and weights from a pipeline run's Step Functions history, so a
timeline can be drawn for any past rollout whose execution history is still kept.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import orjson

from mlops.core.errors import ValidationError

from . import charts
from .charts import ACCENT, ALERT, BASELINE, CURRENT, PASS, Series
from .html import number, parse_time, records, render, require_mapping

DECISIONS = {"step_up": ("step up", "pass", PASS), "promote": ("promote", "pass", PASS),
             "wait": ("wait for traffic", "warn", ACCENT), "rollback": ("roll back", "fail", ALERT)}
OUTCOMES = {"live": ("promoted", "pass"), "rolled_back": ("rolled back", "fail"), "canary": ("in progress", "info")}
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


def build_rollout_view(rollout: Any) -> dict[str, Any]:
    """What the rollout timeline shows, as a JSON-ready dict.

    rollout: {"family", "version" (the canary's model version), "live_version" (the version it challenged,
    optional), "run_id" (optional), "policy" (the family's CanaryPolicy dump, optional: thresholds and steps),
    "events": status events of the family (StatusEvent fields; those of `version` and `live_version` are used),
    "checks": [{"at": ISO-8601 or epoch seconds, "decision", "reasons", "figures": {"weight", "invocations",
    "errors", "error_rate", "p99_ms", "prediction_psi", ...}}], "weights": optional [{"at", "weight"}]}.

    Weights over time (percent of traffic on the canary): from `weights` when given, else derived: the weight the
    canary started at (its `canary` event's "canary at N%" reason, else the first policy step), each check's
    `figures.weight` for its bake window, the next step after a `step_up` decision, 100 at promotion and 0 at a
    rollback. Raises ValidationError when `rollout` is not a dict or lacks `family` and `version`."""
    rollout = require_mapping(rollout, "the rollout")
    family, version = rollout.get("family"), rollout.get("version")
    if not family or not isinstance(version, int) or isinstance(version, bool):
        raise ValidationError("the rollout needs `family` (the family name) and `version` (the canary's model "
                              f"version, an integer); got family={family!r}, version={version!r}")
    live = rollout.get("live_version")
    policy = dict(rollout.get("policy") or {})
    steps = [int(s) for s in policy.get("steps") or []]
    events = sorted((e for e in records(rollout.get("events"), "the rollout's events")
                     if _version(e) in {version, live} and parse_time(e.get("at"))),
                    key=lambda e: parse_time(e["at"]))  # type: ignore[arg-type,return-value]
    checks = sorted((_check(c) for c in records(rollout.get("checks"), "the rollout's checks")
                     if parse_time(c.get("at"))), key=lambda c: c["time"])
    weights = _weights(version, events, checks, records(rollout.get("weights"), "the rollout's weights"), steps)
    final = next((e for e in reversed(events) if _version(e) == version and e.get("to_status") in OUTCOMES), None)
    outcome = OUTCOMES.get(str((final or {}).get("to_status")), ("not started", "idle"))
    times = [w["time"] for w in weights] + [c["time"] for c in checks]
    started = min(times) if times else None
    ended = parse_time(final["at"]) if final and final.get("to_status") != "canary" else None
    return {
        "family": family, "version": version, "live_version": live, "run_id": rollout.get("run_id"),
        "policy": policy, "steps": steps, "outcome": outcome[0], "outcome_badge": outcome[1],
        "started_at": started.isoformat() if started else None, "ended_at": ended.isoformat() if ended else None,
        "duration": _duration(started, ended),
        "weights": [{"at": w["time"].isoformat(), "weight": w["weight"], "source": w["source"]} for w in weights],
        "checks": [{k: v for k, v in c.items() if k != "time"} for c in checks],
        "events": [{k: e.get(k) for k in ("at", "version", "from_status", "to_status", "actor", "reason",
                                          "live_version_after")} for e in events],
    }


def render_rollout_timeline(rollout: Any, *, generated_at: str | None = None) -> str:
    """The rollout timeline as a self-contained HTML page (inline CSS and SVG, no script, no external
    reference). Raises ValidationError as `build_rollout_view`."""
    view = build_rollout_view(rollout)
    cid = f"{view['family']}-v{view['version']}"
    return render("timeline.html.j2", view=view, weight_chart=_weight_chart(view, cid),
                  health_charts=_health_charts(view, cid),
                  generated_at=generated_at or view["ended_at"] or view["started_at"])


def rollout_from_execution(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Checks and weights of one pipeline run from its Step Functions execution history (GetExecutionHistory
    events with includeExecutionData, oldest first): each `CanaryCheck` state's output `check` with the time
    the state exited, and the canary weight after `CanaryStart` and each `CanaryStepUp`. Returns {"checks",
    "weights"} to merge into a rollout dict; states whose output is missing or not JSON are skipped."""
    checks: list[dict[str, Any]] = []
    weights: list[dict[str, Any]] = []
    for event in history:
        details = event.get("stateExitedEventDetails")
        if not isinstance(details, dict) or details.get("name") not in ("CanaryCheck", "CanaryStart", "CanaryStepUp"):
            continue
        try:
            output = orjson.loads(details.get("output") or "null")
        except orjson.JSONDecodeError:
            continue
        if not isinstance(output, dict):
            continue
        at = event.get("timestamp")
        at = at.isoformat() if isinstance(at, datetime) else at
        if details["name"] == "CanaryCheck" and isinstance(output.get("check"), dict):
            checks.append({**output["check"], "at": at})
        elif isinstance(output.get("canary"), dict) and output["canary"].get("weight") is not None:
            weights.append({"at": at, "weight": output["canary"]["weight"]})
    return {"checks": checks, "weights": weights}


def _version(event: dict[str, Any]) -> int | None:
    try:
        return int(event.get("version"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _check(check: dict[str, Any]) -> dict[str, Any]:
    figures = check.get("figures") if isinstance(check.get("figures"), dict) else {}
    decision = str(check.get("decision") or "unknown")
    label, badge, _ = DECISIONS.get(decision, (decision, "idle", BASELINE))
    positive = figures.get("positive_rate") if isinstance(figures.get("positive_rate"), dict) else {}
    return {"time": parse_time(check["at"]), "at": parse_time(check["at"]).isoformat(),  # type: ignore[union-attr]
            "decision": decision, "decision_label": label, "decision_badge": badge,
            "reasons": [str(r) for r in check.get("reasons") or []], "weight": _float(figures.get("weight")),
            "invocations": figures.get("invocations"), "errors": figures.get("errors"),
            "error_rate": _float(figures.get("error_rate")), "p99_ms": _float(figures.get("p99_ms")),
            "prediction_psi": _float(figures.get("prediction_psi")),
            "canary_predictions": figures.get("canary_predictions"),
            "positive_rate_canary": positive.get("canary"), "positive_rate_live": positive.get("live")}


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _weights(version: int, events: list[dict[str, Any]], checks: list[dict[str, Any]],
             explicit: list[dict[str, Any]], steps: list[int]) -> list[dict[str, Any]]:
    """Weight change points [{time, weight, source}] in time order (see build_rollout_view)."""
    points: list[dict[str, Any]] = []
    for w in explicit:
        at, weight = parse_time(w.get("at")), _float(w.get("weight"))
        if at is not None and weight is not None:
            points.append({"time": at, "weight": weight, "source": "recorded"})
    if not points:
        for event in events:
            if _version(event) != version or event.get("to_status") != "canary":
                continue
            found = _PERCENT.search(str(event.get("reason") or ""))
            first = float(found.group(1)) if found else float(steps[0]) if steps else \
                next((c["weight"] for c in checks if c["weight"] is not None), None)
            if first is not None:
                points.append({"time": parse_time(event["at"]), "weight": first, "source": "canary start"})
        for index, check in enumerate(checks):
            if check["weight"] is not None and (not points or points[-1]["weight"] != check["weight"]):
                points.append({"time": check["time"], "weight": check["weight"], "source": "check"})
            if check["decision"] == "step_up":
                later = next((c["weight"] for c in checks[index + 1:] if c["weight"] is not None
                              and c["weight"] != check["weight"]), None)
                if later is None and steps and check["weight"] in steps:
                    position = steps.index(int(check["weight"]))
                    later = float(steps[position + 1]) if position + 1 < len(steps) else None
                if later is not None:
                    points.append({"time": check["time"], "weight": later, "source": "step up"})
    for event in events:
        if _version(event) == version and event.get("to_status") in ("live", "rolled_back"):
            points.append({"time": parse_time(event["at"]), "weight": 100.0 if event["to_status"] == "live" else 0.0,
                           "source": "promoted" if event["to_status"] == "live" else "rolled back"})
    points.sort(key=lambda p: p["time"])
    return points


def _duration(start: datetime | None, end: datetime | None) -> str | None:
    if start is None or end is None:
        return None
    seconds = int((end - start).total_seconds())
    hours, rest = divmod(max(0, seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def _weight_chart(view: dict[str, Any], cid: str) -> Any:
    if not view["weights"] and not view["checks"]:
        return None
    steps_line: list[tuple[datetime, float]] = []
    for point in view["weights"]:
        at = parse_time(point["at"])
        if steps_line:
            steps_line.append((at, steps_line[-1][1]))  # type: ignore[arg-type]
        steps_line.append((at, point["weight"]))  # type: ignore[arg-type]
    end = parse_time(view["ended_at"]) if view["ended_at"] else None
    last_check = max((parse_time(c["at"]) for c in view["checks"]), default=None)
    tail = end or (last_check + timedelta(minutes=1) if last_check else None)
    if steps_line and tail and tail > steps_line[-1][0]:
        steps_line.append((tail, steps_line[-1][1]))
    series = [Series("canary weight", steps_line, color=CURRENT, width=3)]
    for decision, (label, _, color) in DECISIONS.items():
        points = [(parse_time(c["at"]), c["weight"]) for c in view["checks"]
                  if c["decision"] == decision and c["weight"] is not None]
        if points:
            series.append(Series(f"check: {label}", points, color=color, line=False, dot_size=6))
    return charts.time_chart(charts.chart_id(cid, "weights"), "Canary traffic weight and checks over time", series,
                             y_title="Traffic on the canary (%)", y_range=(0, 100), y_ticks=(0, 25, 50, 75, 100),
                             value_suffix="%")


def _health_charts(view: dict[str, Any], cid: str) -> list[dict[str, Any]]:
    """Per-check error rate, p99 latency and prediction PSI against the policy's limits (those recorded)."""
    policy = view["policy"]
    out = []
    for key, title, limit_key, scale, unit in (
            ("error_rate", "Error rate", "max_error_rate", 100.0, "%"),
            ("p99_ms", "p99 latency", "max_p99_latency_ms", 1.0, " ms"),
            ("prediction_psi", "Prediction PSI", "max_prediction_psi", 1.0, "")):
        points = [(parse_time(c["at"]), c[key] * scale) for c in view["checks"] if c[key] is not None]
        if not points:
            continue
        limit = _float(policy.get(limit_key))
        top = max([p[1] for p in points] + ([limit * scale * 1.25] if limit is not None else []))
        top = charts.nice_top([top], False)
        series = [Series(title.lower(), points, color=CURRENT, dots=True, dot_size=4)]
        if limit is not None:
            series.append(Series(f"limit {number(limit * scale)}{unit}", [(points[0][0], limit * scale),
                                                                        (points[-1][0], limit * scale)],
                                 color=ALERT, dashed=True, width=1.5))
        axis = f"{title} ({unit.strip()})" if unit else title
        out.append({"title": title, "chart": charts.time_chart(
            charts.chart_id(cid, key), f"{title} per canary check", series, y_title=axis, y_range=(0, top),
            y_ticks=charts.ticks(top, 4), width=400, height=260, value_suffix=unit, x_ticks=3)})
    return out
