"""Reports the functions write to S3: a version's model card (HTML + JSON) when it is registered and when its run
ends, and the drift report's HTML beside the drift check's JSON.

A report is for people and can always be drawn again from the registry (`mlops report`), so writing one never
fails the step that writes it: an error is logged and returned in place of the keys. The rendering modules (Jinja2,
pygal: the reports layer) are imported only when a report is written, so a function without that layer still runs
and says why it wrote no page.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from mlops.core import aws
from mlops.core.observability import logger

# Outside `reports/` (drift reports, expired by the bucket's lifecycle rule): a card lives as long as its version.
MODEL_CARD_PREFIX = "model-cards/"


def model_card_keys(family: str, version: int) -> dict[str, str]:
    """{"html", "json"}: where the model card of `family` v`version` is stored in the artifact bucket."""
    base = f"{MODEL_CARD_PREFIX}family={family}/v{int(version)}/model-card"
    return {"html": f"{base}.html", "json": f"{base}.json"}


def family_events(registry: Any, family: str) -> list[Any]:
    """Every status event of the family (registry history, all pages), oldest first."""
    events: list[Any] = []
    token = None
    while True:
        page = registry.history(family, limit=100, next_token=token)
        events += page.items
        token = page.next_token
        if not token:
            return sorted(events, key=lambda e: e.at)


def build_model_card(registry: Any, family: str, version: int, *, generated_at: str | None = None
                     ) -> tuple[str, dict[str, Any]]:
    """(HTML, card JSON) of one version from the registry: its record with lineage, its status events, the family's
    declaration. Raises UnknownFamilyError for an unknown family or version; ImportError without the reports
    layer."""
    from .model_card import model_card

    record = registry.get_version(family, int(version))
    declaration = registry.get_family(family).family.model_dump(mode="json")
    events = [asdict(e) for e in family_events(registry, family) if e.version == int(version)]
    return model_card(asdict(record), events, declaration,
                      generated_at=generated_at or datetime.now(UTC).isoformat())


def publish_model_card(registry: Any, bucket: str, family: str, version: int, s3: Any | None = None
                       ) -> dict[str, Any]:
    """Render the version's model card and write it (HTML and JSON) to `bucket`. Returns {"html_key",
    "json_key"}, or {"error"} when the card could not be written (logged; never raised)."""
    keys = model_card_keys(family, version)
    try:
        html, card = build_model_card(registry, family, version)
        client = s3 or aws.client("s3")
        client.put_object(Bucket=bucket, Key=keys["json"], ContentType="application/json",
                          Body=orjson.dumps(card, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY))
        client.put_object(Bucket=bucket, Key=keys["html"], Body=html.encode("utf-8"),
                          ContentType="text/html; charset=utf-8")
    except Exception as exc:  # noqa: BLE001 - a report must never fail the registration it describes
        error = f"{type(exc).__name__}: {exc}"[:500]
        logger().error("model card not written", extra={"family": family, "version": version, "error": error})
        return {"error": error}
    return {"html_key": keys["html"], "json_key": keys["json"]}


def drift_histograms(family: Any, profile: dict[str, Any], columns: dict[str, np.ndarray],
                     predictions: np.ndarray, counts: dict[str, np.ndarray] | None = None) -> dict[str, Any] | None:
    """`drift_report.current_histograms` (current traffic binned like the baseline, about 20 numbers a feature;
    `counts`: those the drift tests already computed), or None when the reports layer is missing or the
    histograms cannot be computed (logged)."""
    try:
        from .drift_report import current_histograms

        return current_histograms(family, profile, columns, predictions, counts)
    except Exception as exc:  # noqa: BLE001 - the drift verdict stands without its pictures
        logger().error("drift histograms not computed", extra={"family": getattr(family, "name", None),
                                                                 "error": f"{type(exc).__name__}: {exc}"})
        return None


def drift_report_html_key(json_key: str) -> str:
    """The HTML page's key beside a drift report's JSON key (`....json` -> `....html`)."""
    return json_key.removesuffix(".json") + ".html"


def publish_drift_report(bucket: str, json_key: str, report: dict[str, Any], profile: dict[str, Any],
                         family: Any, s3: Any | None = None) -> dict[str, Any]:
    """Render the drift report page (its histograms read from `report["histograms"]`) and write it beside the
    JSON. Returns {"report_html_key"}, or {"report_html_error"} when it could not be written (logged)."""
    key = drift_report_html_key(json_key)
    try:
        from .drift_report import render_drift_report

        html = render_drift_report(report, profile, None, family, generated_at=report.get("checked_at"))
        (s3 or aws.client("s3")).put_object(Bucket=bucket, Key=key, Body=html.encode("utf-8"),
                                            ContentType="text/html; charset=utf-8")
    except Exception as exc:  # noqa: BLE001 - the drift check's result is recorded whatever happens here
        error = f"{type(exc).__name__}: {exc}"[:500]
        logger().error("drift report page not written", extra={"key": key, "error": error})
        return {"report_html_error": error}
    return {"report_html_key": key}
