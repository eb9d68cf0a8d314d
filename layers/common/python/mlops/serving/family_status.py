"""Whether the family a scoring function serves is retired (docs/families.md, "Retiring a family"): its registry item
is read at most every `ttl_seconds` per sandbox, so a retirement answers 404 within that time without a registry
read per request. Kept off the cold path: one small GetItem (two projected attributes), no registry or schema
import (importing mlops.registry.store adds about 90 ms to a cold start)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mlops.core import aws
from mlops.core.errors import FamilyRetiredError
from mlops.core.observability import logger

STATUS_TTL_SECONDS = 30.0
RETIRED = "retired"


class FamilyStatus:
    """`check()` raises FamilyRetiredError (404) while the family is retired. The status is refreshed from the
    family's META item (`status`, `changed_at`) when older than `ttl_seconds` (monotonic clock); a failed read keeps
    the last known status (availability first: a registry hiccup must not stop scoring), logged as a warning."""

    def __init__(self, table: str, family: str, ttl_seconds: float = STATUS_TTL_SECONDS,
                 clock: Callable[[], float] = time.monotonic, ddb: Any | None = None) -> None:
        self.table, self.family, self.ttl_seconds = table, family, ttl_seconds
        self._clock = clock
        self._ddb = ddb
        self._next_read = float("-inf")
        self._retired_since: str | None = None
        self.reads = 0

    def check(self) -> None:
        now = self._clock()
        if now >= self._next_read:
            self._refresh(now)
        if self._retired_since is not None:
            raise FamilyRetiredError(f"model family {self.family!r} is retired (since {self._retired_since}); it "
                                     "serves no predictions", family=self.family)

    def _refresh(self, now: float) -> None:
        from boto3.dynamodb.types import TypeDeserializer

        self._next_read = now + self.ttl_seconds
        self.reads += 1
        try:
            item = (self._ddb or aws.client("dynamodb")).get_item(
                TableName=self.table, Key={"PK": {"S": f"FAMILY#{self.family}"}, "SK": {"S": "META"}},
                ProjectionExpression="#status, changed_at", ExpressionAttributeNames={"#status": "status"},
            ).get("Item") or {}
        except Exception as exc:  # noqa: BLE001 - keep serving on the last known status
            logger().warning("family status not refreshed", extra={"family": self.family, "error": str(exc)[:300]})
            return
        plain = {k: TypeDeserializer().deserialize(v) for k, v in item.items()}
        self._retired_since = str(plain.get("changed_at") or "an unknown time") \
            if plain.get("status") == RETIRED else None
