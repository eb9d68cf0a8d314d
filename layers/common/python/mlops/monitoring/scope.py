"""Which families a scheduled monitoring run checks, one family at a time: the active families with a live model
(of one serving tier, or the named ones), read from the sharded family index, each looked up directly. Shared by
the drift (mlops.monitoring.drift) and performance (mlops.monitoring.performance) checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlops.core.errors import PlatformError
from mlops.registry.store import FAMILY_ACTIVE, FamilyRecord, ModelRegistry


def check_live_families(registry: ModelRegistry, families: list[str] | None, tier: str | None,
                        check: Callable[[FamilyRecord], dict[str, Any]],
                        on_error: Callable[[str, str], None]) -> list[dict[str, Any]]:
    """`check(record)` of every active family with a live model in the family index (`iter_families`; only the
    names in `families` when given, only serving tier `tier` when given), skipping one retired since the listing.
    A failure in one family (a PlatformError, or anything else its check raised: a bug, an S3 error, a corrupt
    artifact) is passed to `on_error(name, message)` and answered {"family", "verdict": "error", "error"}; the
    others are still checked, as the fan-out's batches do. Returns the results in family-name order."""
    results: list[dict[str, Any]] = []
    for summary in registry.iter_families(status=FAMILY_ACTIVE):
        if (families and summary.name not in families) or not summary.live_version:
            continue
        try:
            record = registry.get_family(summary.name)
            if record.retired or (tier is not None and record.family.serving != tier):
                continue
            results.append(check(record))
        except PlatformError as exc:
            on_error(summary.name, exc.message)
            results.append({"family": summary.name, "verdict": "error", "error": exc.message})
        except Exception as exc:  # noqa: BLE001 - one family's failure is recorded and never stops the others
            message = f"{type(exc).__name__}: {exc}"[:2000]
            on_error(summary.name, message)
            results.append({"family": summary.name, "verdict": "error", "error": message[:500]})
    return results
