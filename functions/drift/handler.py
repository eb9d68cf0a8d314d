"""Drift checks of live model families: one step of the fan-out state machine (`action`: list, check, failed), or
a scheduled event naming families or a tier (`mlops drift check`, and older schedules)."""

from __future__ import annotations

from typing import Any

from mlops.core.settings import DriftSettings, load_settings
from mlops.monitoring.drift import FANOUT_BATCH, DriftMonitor, create_drift_monitor

_monitor: DriftMonitor | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _monitor
    _monitor = _monitor or create_drift_monitor(load_settings(DriftSettings))
    action = event.get("action") if isinstance(event, dict) else None
    if action == "list":
        return _monitor.fanout_listing(event.get("tier"), event.get("families"), str(event.get("run") or "run"),
                                       int(event.get("batch_size") or FANOUT_BATCH), bool(event.get("skip_idle")))
    if action == "check":
        return _monitor.check_batch([str(f) for f in event.get("families") or []], event.get("run"))
    if action == "failed":  # the batch's function call itself failed (timeout, crash) after its retries
        for family in event.get("families") or []:
            _monitor.record_failure(str(family), event.get("error"), event.get("run"))
        return {"failed": event.get("families") or [], "error": event.get("error")}
    detail = (event.get("detail") or {}) if isinstance(event, dict) else {}
    reports = _monitor.run(detail.get("families"), detail.get("tier"))
    return {"checked": len(reports), "reports": [
        {k: r.get(k) for k in ("family", "verdict", "drifted_features", "rows", "retrain", "report_key",
                               "window_start", "error")}
        for r in reports]}
