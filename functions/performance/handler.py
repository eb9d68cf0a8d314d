"""Performance with delayed labels: labels uploads (S3 notifications on labels/) and the scheduled check."""

from __future__ import annotations

from typing import Any

from mlops.core.settings import PerformanceSettings, load_settings
from mlops.monitoring.performance import PerformanceMonitor, create_performance_monitor

_monitor: PerformanceMonitor | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _monitor
    _monitor = _monitor or create_performance_monitor(load_settings(PerformanceSettings))
    if isinstance(event, dict) and "Records" in event:
        return _monitor.handle_labels_event(event)
    detail = (event.get("detail") or {}) if isinstance(event, dict) else {}
    reports = _monitor.run(detail.get("families"), detail.get("tier"))
    return {"checked": len(reports), "reports": [
        {k: r.get(k) for k in ("family", "verdict", "estimate_verdict", "reason", "retrain", "report_key")}
        for r in reports]}
