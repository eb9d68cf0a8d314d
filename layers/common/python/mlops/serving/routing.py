"""Routing of the shared scoring tier: which model version answers a request of a family, from the registry.

The registry's family item holds the routing state the rollout control writes (mlops.rollout.routers): the live
version, the canary version and the canary weight in percent. The tier keeps each family's state for `ttl_seconds`
(a rollback or a step reaches traffic within that, plus DynamoDB's replication lag), then reads it again with one
GetItem; a family with no live model yet is read on each request, so its first model serves at once. When the
registry cannot be read, the state already held keeps serving for up to `max_stale_seconds` (logged), so a DynamoDB
hiccup does not take scoring down; past that the family answers 503.

The canary split is deterministic per request id: the request goes to the canary when the first 8 bytes of
BLAKE2b(request id), read as a fraction of 2^64, fall below the weight. The same request id always gets the same
version, and over many ids the canary's share is the weight (tests/unit/test_shared_scoring_units.py).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from mlops.core.errors import FamilyRetiredError, NoLiveModelError, PlatformError, UnknownFamilyError

SHARED, DEDICATED = "shared", "dedicated"
# mlops.core.schemas.FAMILY_NAME, repeated so the scoring path does not build the schema models (a test checks).
FAMILY_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
RETIRED = "retired"
MAX_ROUTES = 20_000  # families held at once (an unknown name is held too, so a flood of them costs no reads)
_SPAN = float(1 << 64)


def canary_share(request_id: str) -> float:
    """Where a request id falls in [0, 100): BLAKE2b-64 of its UTF-8 bytes as a percentage of 2^64."""
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") * 100.0 / _SPAN


@dataclass(frozen=True)
class FamilyRoute:
    """A family's routing state as the tier holds it. `canary_weight` in percent (0..100); versions 0 = none."""

    family: str
    live_version: int
    canary_version: int = 0
    canary_weight: float = 0.0
    serving: str = SHARED
    status: str = "active"
    changed_at: str = ""
    capture_sample_rate: float = 0.1
    never_capture: frozenset[str] = frozenset()

    def version_for(self, request_id: str) -> int:
        """The model version that answers this request (0: the family has no live model)."""
        if self.canary_version and self.canary_weight > 0 and (
                self.canary_weight >= 100 or canary_share(request_id) < self.canary_weight):
            return self.canary_version
        return self.live_version

    @classmethod
    def from_registry(cls, family: str, item: dict[str, Any]) -> FamilyRoute:
        """From `ModelRegistry.get_routing`'s answer. The declaration is read as plain JSON (no schema models on
        the scoring path; it was validated when registered)."""
        config = item.get("config") or {}
        if isinstance(config, (str, bytes)):
            config = orjson.loads(config)
        canary = int(item.get("canary_version") or 0)
        return cls(family=family, live_version=int(item.get("live_version") or 0), canary_version=canary,
                   canary_weight=float(item.get("canary_weight") or 0) if canary else 0.0,
                   serving=str(config.get("serving") or SHARED), status=str(item.get("status") or "active"),
                   changed_at=str(item.get("changed_at") or ""),
                   capture_sample_rate=float(config.get("capture_sample_rate", 0.1)),
                   never_capture=frozenset(config.get("never_capture") or ()))


class RoutingTable:
    """Families' routes, each trusted for `ttl_seconds` after it was read (`source(family)`: the registry item as
    `ModelRegistry.get_routing` answers it, or None for an unknown family)."""

    def __init__(self, source: Callable[[str], dict[str, Any] | None], ttl_seconds: float = 5.0,
                 max_stale_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 on_stale: Callable[[str, Exception], None] | None = None) -> None:
        self.source = source
        self.ttl = ttl_seconds
        self.max_stale = max_stale_seconds
        self._clock = clock
        self._on_stale = on_stale
        self._routes: OrderedDict[str, tuple[float, FamilyRoute | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0

    def route(self, family: str) -> FamilyRoute:
        """The family's current route. Raises UnknownFamilyError (404) for a family the registry does not know or
        that is served on its own function, FamilyRetiredError (404) for a retired one; NoLiveModelError (503) when
        the registry is unavailable and nothing recent is held."""
        now = self._clock()
        held = self._routes.get(family)
        # A family without a live model is read again on every request: its first model serves as soon as it is
        # live, not a TTL later (its requests are 503s meanwhile; a flood of them costs one read each).
        if held is None or now - held[0] >= self.ttl or (held[1] is not None and not held[1].live_version):
            held = self._refresh(family, now, held)
        route = held[1]
        if route is None:
            raise UnknownFamilyError(f"model family {family!r} is not served here", family=family)
        if route.status == RETIRED:  # the same answer as a dedicated function's (mlops.serving.family_status)
            since = route.changed_at or "an unknown time"
            raise FamilyRetiredError(f"model family {family!r} is retired (since {since}); it serves no predictions",
                                     family=family)
        if route.serving != SHARED:
            raise UnknownFamilyError(f"model family {family!r} is served by its own scoring function, at its own "
                                     "routes", family=family)
        return route

    def _refresh(self, family: str, now: float, held: tuple[float, FamilyRoute | None] | None
                 ) -> tuple[float, FamilyRoute | None]:
        try:
            self.reads += 1
            item = self.source(family)
        except (PlatformError, Exception) as exc:  # noqa: B014 - any registry failure: serve what we have
            if held is not None and now - held[0] < self.ttl + self.max_stale:
                if self._on_stale is not None:
                    self._on_stale(family, exc)
                return held
            raise NoLiveModelError("the model registry is unavailable; retry shortly") from None
        fresh = (now, None if item is None else FamilyRoute.from_registry(family, item))
        with self._lock:
            self._routes[family] = fresh
            self._routes.move_to_end(family)
            while len(self._routes) > MAX_ROUTES:
                self._routes.popitem(last=False)
        return fresh

    def forget(self, family: str) -> None:
        """Read the family's route again on its next request (tests, operators' tools)."""
        self._routes.pop(family, None)
