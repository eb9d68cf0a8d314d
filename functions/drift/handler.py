"""Scheduled drift check of every live model family (EventBridge schedule)."""

from __future__ import annotations

from typing import Any

from mlops.core.settings import DriftSettings, load_settings
from mlops.monitoring.drift import DriftMonitor, create_drift_monitor

_monitor: DriftMonitor | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _monitor
    _monitor = _monitor or create_drift_monitor(load_settings(DriftSettings))
    detail = (event.get("detail") or {}) if isinstance(event, dict) else {}
    reports = _monitor.run(detail.get("families"), detail.get("tier"))
    return {"checked": len(reports), "reports": [
        {k: r.get(k) for k in ("family", "verdict", "drifted_features", "rows", "retrain", "report_key")}
        for r in reports]}
