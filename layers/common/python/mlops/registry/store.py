"""Model registry on one DynamoDB table: families, versions, status history, rollout locks (see docs/registry.md)."""

from __future__ import annotations

import base64
import hashlib
import heapq
import random
import time
import unicodedata
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from mlops.core import aws
from mlops.core.errors import (
    ConcurrencyConflictError,
    IllegalTransitionError,
    RolloutInProgressError,
    TransientError,
    UnknownFamilyError,
    ValidationError,
)
from mlops.core.schemas import ModelFamily

CANDIDATE, REJECTED, CANARY, LIVE, ROLLED_BACK, RETIRED = (
    "candidate", "rejected", "canary", "live", "rolled_back", "retired",
)
STATUSES = (CANDIDATE, REJECTED, CANARY, LIVE, ROLLED_BACK, RETIRED)

# Allowed status changes. candidate -> live only for a family's first model (nothing to canary against);
# retired -> live is the manual "roll back to the previous model" path.
TRANSITIONS: dict[str, frozenset[str]] = {
    CANDIDATE: frozenset({REJECTED, CANARY, LIVE}),
    CANARY: frozenset({LIVE, ROLLED_BACK}),
    LIVE: frozenset({RETIRED, ROLLED_BACK}),
    RETIRED: frozenset({LIVE}),
    REJECTED: frozenset(),
    ROLLED_BACK: frozenset(),
}

# Why the pipeline rolled a canary back (lineage `canary_result.cause`): it misbehaved (errors, latency, diverging
# predictions), or it never got enough traffic to be judged. Only the second may still be promoted, by an
# operator (`mlops promote ... --reason`): a rollback for lack of evidence is not a verdict on the model.
ROLLBACK_MISBEHAVED = "misbehaved"
ROLLBACK_INSUFFICIENT_TRAFFIC = "insufficient_traffic"
_INSUFFICIENT_TRAFFIC_REASON = "not enough canary traffic to judge"

META = "META"

# Run outcomes (docs/registry.md): `started` while a run is in progress, then exactly one of the others.
RUN_STARTED = "started"
RUN_OUTCOMES = (RUN_STARTED, "rejected", "duplicate", "unchanged", "refused", "failed", "gated_out", "rolled_back",
                "promoted")
MAX_REASON_CHARS = 2000

# Families are data (docs/registry.md, "Families"): a family's current declaration is its META item, versioned by
# `config_version` (from 1), with a status; every change also writes an immutable CONFIG#<version> history item.
FAMILY_ACTIVE, FAMILY_RETIRED = "active", "retired"
FAMILY_STATUSES = (FAMILY_ACTIVE, FAMILY_RETIRED)
CREATED, UPDATED, REACTIVATED, UNCHANGED = "created", "updated", "reactivated", "unchanged"
FAMILY_CHANGES = (CREATED, UPDATED, RETIRED, REACTIVATED)
# The family index: META items are spread over FAMILY_INDEX_SHARDS partition keys `FAMILY#<2-digit shard>` of GSI2
# (shard = first 4 bytes of sha256(name) mod N), so no single partition takes every family's writes and reads; a
# listing merges the shards by name. 16 shards keep each index partition far below DynamoDB's per-partition limits
# (1,000 writes/s, 3,000 reads/s) at thousands of families while a listing page costs 16 small queries. Changing
# N re-keys every family (a migration): it is a constant, not a setting.
FAMILY_INDEX = "GSI2"
FAMILY_INDEX_SHARDS = 16
# What the family listing reads from the index (its INCLUDE projection): the pointers and a summary of the
# declaration, never the declaration itself (up to MAX_CONFIG_BYTES per family).
FAMILY_LISTING_ATTRIBUTES = ("family", "status", "config_version", "summary_json", "latest_version", "live_version",
                             "canary_version", "canary_weight", "rollout_holder", "scoring_function", "updated_at",
                             "changed_at", "last_capture_at", "drift_checked_until")
# Written on the family's META item by the scoring functions' capture writers after each object they write (the
# newest captured record's time, epoch seconds): the only registry write a scoring role may make (infra/scoring.py).
LAST_CAPTURE_ATTRIBUTE = "last_capture_at"
# A declaration is stored twice (META and its CONFIG# history item) under DynamoDB's 400 KB item limit.
MAX_CONFIG_BYTES = 100_000
MAX_ACTOR_CHARS = 512
# Run, drift-check and upload items expire (DynamoDB TTL on `expires_at`, epoch seconds) this many days after
# they were written: their reports stay in S3 (runs: reports/runs/, drift checks: reports/drift/), kept for the
# bucket's report retention. DynamoDB deletes expired items within a few days, so readers must not rely on them.
RUN_TTL_DAYS = 90
DRIFT_TTL_DAYS = 90
TTL_ATTRIBUTE = "expires_at"
# How many of a family's newest uploads a drift retrain considers (`newest_usable_dataset`).
UPLOADS_CONSIDERED = 10


def _family_pk(name: str) -> str:
    return f"FAMILY#{name}"


def _version_sk(version: int) -> str:
    return f"VERSION#{version:010d}"


def family_shard(name: str) -> int:
    """The family index shard of a family name: 0 .. FAMILY_INDEX_SHARDS-1, stable across processes."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % FAMILY_INDEX_SHARDS


def _family_index_pk(shard: int) -> str:
    return f"FAMILY#{shard:02d}"


def _config_sk(config_version: int) -> str:
    return f"CONFIG#{config_version:010d}"


def _canonical(family: ModelFamily) -> bytes:
    return orjson.dumps(family.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


def family_summary_fields(family: ModelFamily) -> dict[str, Any]:
    """What a family listing shows of a declaration (stored as `summary_json`, projected into the family index)."""
    return {"task": family.task, "algorithm": family.algorithm, "target": family.target,
            "serving": family.serving, "positive_label": family.positive_label, "threshold": family.threshold,
            "sensitive_attribute": family.sensitive_attribute, "features": len(family.features)}


def _expires_at(at: datetime, days: int) -> dict[str, str]:
    return _n(int((at + timedelta(days=days)).timestamp()))


def _dataset_digest(key: str, version_id: str | None) -> str:
    return hashlib.sha256(f"{key}\n{version_id or ''}".encode()).hexdigest()[:40]


def _unusable_sk(key: str, version_id: str | None) -> str:
    return "UNUSABLE#" + _dataset_digest(key, version_id)


def _unjudged_sk(key: str, version_id: str | None) -> str:
    return "UNJUDGED#" + _dataset_digest(key, version_id)


def _trained_sk(key: str, version_id: str | None) -> str:
    return "TRAINED#" + _dataset_digest(key, version_id)


def _artifact_sk(sha256: str) -> str:
    return f"ARTIFACT#{sha256}"


def _run_key(family: str, run_id: str) -> dict[str, Any]:
    return {"PK": _s(_family_pk(family)), "SK": _s(f"RUN#{run_id}")}


def _run(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in _plain(item).items() if k not in ("PK", "SK", "GSI1PK", "GSI1SK")}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def _json(value: Any) -> dict[str, str]:
    return {"S": orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS).decode()}


def _epoch_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, typed in item.items():
        (kind, value), = typed.items()
        if kind == "N":
            out[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        elif kind == "S" and key.endswith("_json"):
            out[key[:-5]] = orjson.loads(value)
        elif kind == "BOOL":
            out[key] = bool(value)
        elif kind == "NULL":
            out[key] = None
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class FamilyRecord:
    """A family's META item: its current declaration and configuration version, status, the pointers the
    rollout moves, the rollout lock. `config_version` 0 marks an item written before declarations were versioned
    (the deploy-time seed turns it into version 1)."""

    family: ModelFamily
    scoring_function: str
    latest_version: int
    live_version: int
    canary_version: int
    canary_weight: int
    rollout_holder: str | None
    updated_at: str
    config_version: int = 0
    status: str = FAMILY_ACTIVE
    changed_at: str = ""
    changed_by: str = ""
    change_reason: str = ""
    rollout_expires: int = 0

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> FamilyRecord:
        plain = _plain(item)
        return cls(
            family=ModelFamily.model_validate(plain["config"]),
            scoring_function=plain.get("scoring_function", ""),
            latest_version=plain.get("latest_version", 0),
            live_version=plain.get("live_version", 0),
            canary_version=plain.get("canary_version", 0),
            canary_weight=plain.get("canary_weight", 0),
            rollout_holder=plain.get("rollout_holder"),
            updated_at=plain.get("updated_at", ""),
            config_version=plain.get("config_version", 0),
            status=plain.get("status", FAMILY_ACTIVE),
            changed_at=plain.get("changed_at", ""),
            changed_by=plain.get("changed_by", ""),
            change_reason=plain.get("change_reason", ""),
            rollout_expires=plain.get("rollout_expires", 0),
        )

    @property
    def retired(self) -> bool:
        return self.status == FAMILY_RETIRED


@dataclass(frozen=True)
class FamilySummary:
    """One family as the family index holds it (FAMILY_LISTING_ATTRIBUTES): what a listing shows, without the
    declaration. `features` is the number of features."""

    name: str
    status: str
    config_version: int
    task: str
    algorithm: str
    target: str
    serving: str
    positive_label: Any
    threshold: float
    sensitive_attribute: str | None
    features: int
    latest_version: int
    live_version: int
    canary_version: int
    canary_weight: int
    rollout_holder: str | None
    scoring_function: str
    updated_at: str
    changed_at: str
    # Epoch seconds: the newest captured record written to S3 (`mark_captured`), and the end of the window the
    # last completed drift check read (`set_drift_checked`); None before the first of each.
    last_capture_at: float | None = None
    drift_checked_until: float | None = None

    @property
    def idle_since_drift_check(self) -> bool:
        """True when no capture was written after the last completed drift check read its window: a check now
        would find nothing new, so the fan-out does not start one (docs/architecture.md, "Monitoring at scale").
        A family never checked is not idle (its first check establishes the mark)."""
        if self.drift_checked_until is None:
            return False
        return self.last_capture_at is None or self.last_capture_at <= self.drift_checked_until

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> FamilySummary:
        plain = _plain(item)
        summary = plain.get("summary") or {}
        return cls(
            name=plain["family"], status=plain.get("status", FAMILY_ACTIVE),
            config_version=plain.get("config_version", 0), task=summary.get("task", ""),
            algorithm=summary.get("algorithm", ""), target=summary.get("target", ""),
            serving=summary.get("serving", "shared"), positive_label=summary.get("positive_label"),
            threshold=summary.get("threshold", 0.5), sensitive_attribute=summary.get("sensitive_attribute"),
            features=summary.get("features", 0), latest_version=plain.get("latest_version", 0),
            live_version=plain.get("live_version", 0), canary_version=plain.get("canary_version", 0),
            canary_weight=plain.get("canary_weight", 0), rollout_holder=plain.get("rollout_holder"),
            scoring_function=plain.get("scoring_function", ""), updated_at=plain.get("updated_at", ""),
            changed_at=plain.get("changed_at", ""),
            last_capture_at=_epoch_or_none(plain.get(LAST_CAPTURE_ATTRIBUTE)),
            drift_checked_until=_epoch_or_none(plain.get("drift_checked_until")),
        )

    @classmethod
    def from_record(cls, record: FamilyRecord) -> FamilySummary:
        fields = family_summary_fields(record.family)
        return cls(
            name=record.family.name, status=record.status, config_version=record.config_version,
            latest_version=record.latest_version, live_version=record.live_version,
            canary_version=record.canary_version, canary_weight=record.canary_weight,
            rollout_holder=record.rollout_holder, scoring_function=record.scoring_function,
            updated_at=record.updated_at, changed_at=record.changed_at, **fields,
        )


@dataclass(frozen=True)
class FamilyChange:
    """One immutable history item of a family's configuration (CONFIG#<config_version>): the declaration as it
    was after the change, who made it (the caller's principal ARN, `local:<user>`, or `deploy:<stack>`), when
    (ISO-8601 UTC, microseconds) and why. `change` is one of FAMILY_CHANGES."""

    family: str
    config_version: int
    change: str
    status: str
    at: str
    actor: str
    reason: str
    config: dict[str, Any]

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> FamilyChange:
        plain = _plain(item)
        return cls(family=plain["family"], config_version=plain["config_version"], change=plain["change"],
                   status=plain["status"], at=plain["at"], actor=plain["actor"], reason=plain["reason"],
                   config=plain["config"])

    @property
    def declaration(self) -> ModelFamily:
        return ModelFamily.model_validate(self.config)


@dataclass(frozen=True)
class FamilyChangeResult:
    """What `register_family`/`retire_family` did: `change` is created, updated, reactivated, retired, or
    unchanged (nothing written: the same declaration and status were already current)."""

    record: FamilyRecord
    change: str


@dataclass(frozen=True)
class VersionRecord:
    family: str
    version: int
    status: str
    created_at: str
    updated_at: str
    status_reason: str = ""
    lineage: dict[str, Any] = field(default_factory=dict)
    function_version: str = ""

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> VersionRecord:
        plain = _plain(item)
        return cls(
            family=plain["family"], version=plain["version"], status=plain["status"],
            created_at=plain["created_at"], updated_at=plain["updated_at"],
            status_reason=plain.get("status_reason", ""), lineage=plain.get("lineage", {}),
            function_version=plain.get("function_version", ""),
        )

    @property
    def artifact_sha256(self) -> str:
        return str(self.lineage.get("artifact_sha256", ""))


@dataclass(frozen=True)
class StatusEvent:
    family: str
    version: int
    from_status: str
    to_status: str
    at: str
    actor: str
    reason: str
    live_version_after: int


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_token: str | None


def _encode_token(key: dict[str, Any] | None) -> str | None:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode() if key else None


def _decode_token(token: str | None) -> dict[str, Any] | None:
    if not token:
        return None
    try:
        key = orjson.loads(base64.urlsafe_b64decode(token.encode()))
    except Exception:
        raise ValidationError("next_token is not a token this registry issued") from None
    return key


def _cancellation_is_condition(exc: BaseException) -> bool:
    reasons = getattr(exc, "response", {}).get("CancellationReasons", []) or []
    codes = {r.get("Code") for r in reasons}
    return "ConditionalCheckFailed" in codes or (not reasons and "ConditionalCheckFailed" in str(exc))


def rolled_back_for_insufficient_traffic(record: VersionRecord) -> bool:
    """Whether `record` is a canary the pipeline rolled back only because too little traffic reached it to judge
    it (its lineage's canary_result.cause; for versions rolled back before the cause was recorded, every reason
    saying so): such a version may go live by an operator's decision (`transition` to live)."""
    if record.status != ROLLED_BACK:
        return False
    result = (record.lineage or {}).get("canary_result") or {}
    if "cause" in result:
        return result["cause"] == ROLLBACK_INSUFFICIENT_TRAFFIC
    reasons = [str(r) for r in result.get("reasons") or []]
    return bool(reasons) and all(r.startswith(_INSUFFICIENT_TRAFFIC_REASON) for r in reasons)


def _who_and_why(actor: str, reason: str) -> tuple[str, str]:
    """The change's principal and reason, checked: a reason is printable text (no control characters, which
    terminals would execute when the history is shown) of at most MAX_REASON_CHARS. Raises ValidationError."""
    actor, reason = (actor or "").strip(), (reason or "").strip()
    if not actor:
        raise ValidationError("a family change needs the principal making it")
    if not reason:
        raise ValidationError("a family change needs a reason (why it is made)")
    if len(reason) > MAX_REASON_CHARS:
        raise ValidationError(f"the reason is {len(reason)} characters; at most {MAX_REASON_CHARS}")
    controls = sorted({f"U+{ord(c):04X}" for c in reason if unicodedata.category(c) == "Cc"})
    if controls:
        raise ValidationError(f"the reason holds control characters ({', '.join(controls[:5])}); send plain text")
    return actor[:MAX_ACTOR_CHARS], reason


class _ShardCursor:
    """Reads one shard of the family index in name order, `chunk` items per query, starting after `after`."""

    def __init__(self, registry: ModelRegistry, shard: int, after: str | None, chunk: int,
                 status: str | None) -> None:
        self.registry, self.shard, self.after, self.chunk, self.status = registry, shard, after, chunk, status
        self.buffer: deque[FamilySummary] = deque()
        self.start_key: dict[str, Any] | None = None
        self.exhausted = False

    def head(self) -> str | None:
        while not self.buffer and not self.exhausted:
            self._read()
        return self.buffer[0].name if self.buffer else None

    def pop(self) -> FamilySummary:
        return self.buffer.popleft()

    def _read(self) -> None:
        condition = "GSI2PK = :p" + (" AND GSI2SK > :after" if self.after else "")
        values: dict[str, Any] = {":p": _s(_family_index_pk(self.shard))}
        if self.after:
            values[":after"] = _s(self.after)
        kwargs: dict[str, Any] = {"TableName": self.registry.table, "IndexName": FAMILY_INDEX,
                                  "KeyConditionExpression": condition, "Limit": self.chunk}
        if self.status:
            kwargs["FilterExpression"] = "#status = :status"
            kwargs["ExpressionAttributeNames"] = {"#status": "status"}
            values[":status"] = _s(self.status)
        kwargs["ExpressionAttributeValues"] = values
        if self.start_key:
            kwargs["ExclusiveStartKey"] = self.start_key
        try:
            response = self.registry.ddb.query(**kwargs)
        except Exception as exc:
            ModelRegistry._raise_transient(exc)
            raise
        self.buffer.extend(FamilySummary.from_item(i) for i in response.get("Items", []))
        self.start_key = response.get("LastEvaluatedKey")
        self.exhausted = self.start_key is None


class ModelRegistry:
    """All registry reads and writes. Every multi-item change is one DynamoDB transaction."""

    def __init__(self, table: str, clock: Callable[[], datetime] = _now, ddb: Any | None = None) -> None:
        self.table = table
        self._clock = clock
        self._ddb = ddb

    @property
    def ddb(self) -> Any:
        return self._ddb or aws.client("dynamodb")

    # ---- families -------------------------------------------------------------------------------------

    def put_family(self, family: ModelFamily, scoring_function: str = "", actor: str = "registry",
                   reason: str = "registered") -> FamilyRecord:
        """Register the family or update its declaration (`register_family` with a default actor and reason);
        versions, pointers and locks are left untouched."""
        return self.register_family(family, actor, reason, scoring_function=scoring_function).record

    def register_family(self, family: ModelFamily, actor: str, reason: str, *, expected_version: int | None = None,
                        scoring_function: str | None = None, max_attempts: int = 8) -> FamilyChangeResult:
        """Create the family (config version 1), or make `family` its current declaration as the next config
        version; a retired family becomes active again (`reactivated`). The same declaration on an active family
        writes nothing (`unchanged`). Each change is one transaction: the META item (conditioned on the config
        version it replaces) and the immutable CONFIG#<version> history item with `actor`, time and `reason`.

        `expected_version`: the config version the caller based its change on (0: the family must not exist);
        another current version raises ConcurrencyConflictError (409). Without it a concurrent change is retried.
        `scoring_function` (optional) is a deployment attribute, not part of the declaration: setting it alone
        creates no config version. Raises ValidationError for a declaration over MAX_CONFIG_BYTES or an empty
        reason, ConcurrencyConflictError when the change kept losing races."""
        config = _canonical(family)
        if len(config) > MAX_CONFIG_BYTES:
            raise ValidationError(f"the declaration of {family.name!r} is {len(config)} bytes of JSON; at most "
                                  f"{MAX_CONFIG_BYTES} are stored")
        actor, reason = _who_and_why(actor, reason)
        for attempt in range(max_attempts):
            item = self._family_item(family.name)
            current = FamilyRecord.from_item(item) if item else None
            found = current.config_version if current else 0
            if expected_version is not None and expected_version != found:
                raise ConcurrencyConflictError(
                    f"family {family.name!r} is at config version {found}, not {expected_version}: it changed "
                    "since you read it; read it again and re-apply", family=family.name, config_version=found)
            if current is not None and current.config_version and not current.retired and \
                    _canonical(current.family) == config:
                if scoring_function is not None and scoring_function != current.scoring_function:
                    self._set_scoring_function(family.name, scoring_function)
                    current = self.get_family(family.name)
                return FamilyChangeResult(current, UNCHANGED)
            change = CREATED if current is None or not current.config_version else \
                REACTIVATED if current.retired else UPDATED
            try:
                self._write_family_change(family, found + 1, change, FAMILY_ACTIVE, actor, reason, current,
                                          scoring_function)
                return FamilyChangeResult(self.get_family(family.name), change)
            except ConcurrencyConflictError:
                if expected_version is not None:
                    raise
                time.sleep(min(0.2, 0.005 * (2 ** min(attempt, 6))) * random.random())
        raise ConcurrencyConflictError(f"could not change family {family.name!r} after {max_attempts} attempts")

    def retire_family(self, name: str, actor: str, reason: str, *,
                      expected_version: int | None = None) -> FamilyChangeResult:
        """Retire a family as its next config version (the declaration is kept): no new run starts for it and
        scoring answers 404 (docs/families.md). Retiring a retired family writes nothing (`unchanged`). Raises
        UnknownFamilyError, RolloutInProgressError (409) while a rollout holds the family's lock (wait for it or
        stop it), ConcurrencyConflictError as `register_family`."""
        actor, reason = _who_and_why(actor, reason)
        current = self.get_family(name)
        if expected_version is not None and expected_version != current.config_version:
            raise ConcurrencyConflictError(
                f"family {name!r} is at config version {current.config_version}, not {expected_version}",
                family=name, config_version=current.config_version)
        if current.retired:
            return FamilyChangeResult(current, UNCHANGED)
        now = int(self._clock().timestamp())
        if current.rollout_holder and current.rollout_expires >= now:
            raise RolloutInProgressError(
                f"rollout {current.rollout_holder} holds {name!r}; retire it once the run ended (or stop it)",
                holder=current.rollout_holder)
        self._write_family_change(current.family, current.config_version + 1, RETIRED, FAMILY_RETIRED, actor, reason,
                                  current, None, lock_free_at=now)
        return FamilyChangeResult(self.get_family(name), RETIRED)

    def seed_family(self, family: ModelFamily, scoring_function: str, actor: str,
                    reason: str = "seed family from cdk.json") -> FamilyChangeResult:
        """The deploy-time bootstrap: register a cdk.json family as config version 1 when the registry has none
        (or holds an unversioned declaration from before versioning); never overwrite a registered version, which
        run-time changes may have made newer than cdk.json. Only the deployment attribute `scoring_function` is
        kept up to date. Returns `created`, or `unchanged` (the registry's declaration stands)."""
        item = self._family_item(family.name)
        if item is None or not FamilyRecord.from_item(item).config_version:
            return self.register_family(family, actor, reason, scoring_function=scoring_function)
        current = FamilyRecord.from_item(item)
        if scoring_function and scoring_function != current.scoring_function:
            self._set_scoring_function(family.name, scoring_function)
            current = self.get_family(family.name)
        return FamilyChangeResult(current, UNCHANGED)

    def get_family(self, name: str) -> FamilyRecord:
        """O(1): one consistent GetItem answers the live version, canary and lock of a family."""
        item = self._family_item(name)
        if not item:
            raise UnknownFamilyError(f"model family {name!r} is not registered", family=name)
        return FamilyRecord.from_item(item)

    def get_routing(self, name: str) -> dict[str, Any] | None:
        """What the shared scoring tier routes by, or None for an unknown family: `live_version`, `canary_version`,
        `canary_weight` (percent), `status` (absent before families had one), `changed_at` and `config` (the
        declaration, for its tier and capture settings). One eventually consistent GetItem of the family item's
        routing attributes (half the read cost of a consistent one; the tier's cache is refreshed every few seconds
        anyway)."""
        try:
            item = self.ddb.get_item(
                TableName=self.table, Key={"PK": _s(_family_pk(name)), "SK": _s(META)},
                ProjectionExpression="live_version, canary_version, canary_weight, config_json, #status, changed_at",
                ExpressionAttributeNames={"#status": "status"},
            ).get("Item")
        except Exception as exc:
            self._raise_transient(exc)
            raise
        return _plain(item) if item else None

    def live_declaration(self, record: FamilyRecord, lineage: dict[str, Any] | None = None) -> tuple[ModelFamily, int]:
        """The declaration the family's live model was trained and gated under (its lineage's
        `family_config_version`), with the CURRENT drift policy, never_capture and capture rate (monitoring
        settings apply from the moment they change), and that config version; the current declaration when the
        family has no live model, the version is the current one, or it predates versioning. What its inputs,
        schema and drift baseline are: a run-time change of the features applies to the next model, not to the
        one already serving. `lineage`: the live version's, when the caller has it (saves a read)."""
        current = record.family
        if not record.live_version:
            return current, int(record.config_version or 0)
        if lineage is None:
            lineage = self.get_version(current.name, record.live_version).lineage or {}
        trained = int(lineage.get("family_config_version") or 0)
        if not trained or trained == int(record.config_version or 0):
            return current, int(record.config_version or 0)
        try:
            declared = self.get_family_config(current.name, trained)
        except UnknownFamilyError:
            return current, int(record.config_version or 0)
        return declared.model_copy(update={"drift": current.drift, "never_capture": current.never_capture,
                                           "capture_sample_rate": current.capture_sample_rate}), trained

    def get_family_config(self, name: str, config_version: int) -> ModelFamily:
        """The declaration as it was at `config_version` (one GetItem of its history item). Raises
        UnknownFamilyError when the family has no such version."""
        change = self._config_item(name, config_version)
        if change is None:
            raise UnknownFamilyError(f"model family {name!r} has no config version {config_version}", family=name,
                                     config_version=config_version)
        return change.declaration

    def family_change(self, name: str, config_version: int) -> FamilyChange | None:
        """One history item of the family's configuration, or None."""
        return self._config_item(name, config_version)

    def family_history(self, name: str, limit: int = 20, next_token: str | None = None) -> Page:
        """The family's configuration changes (FamilyChange), newest first, paginated."""
        kwargs: dict[str, Any] = {
            "TableName": self.table, "KeyConditionExpression": "PK = :pk AND begins_with(SK, :p)",
            "ExpressionAttributeValues": {":pk": _s(_family_pk(name)), ":p": _s("CONFIG#")},
            "ScanIndexForward": False, "Limit": limit,
        }
        start = _decode_token(next_token)
        if start:
            kwargs["ExclusiveStartKey"] = start
        response = self.ddb.query(**kwargs)
        return Page([FamilyChange.from_item(i) for i in response.get("Items", [])],
                    _encode_token(response.get("LastEvaluatedKey")))

    def list_families(self, limit: int = 50, next_token: str | None = None, status: str | None = None,
                      after: str | None = None) -> Page:
        """One page of families (FamilySummary) in name order, merged from the FAMILY_INDEX_SHARDS shards of the
        family index, starting after the name `after` (or where `next_token` says). `status` (active or retired)
        filters. Cost: one query per shard plus a refill query per shard that runs dry, each reading about
        limit/shards items (docs/registry.md)."""
        if status is not None and status not in FAMILY_STATUSES:
            raise ValidationError(f"status must be one of {list(FAMILY_STATUSES)}, got {status!r}")
        if not 1 <= limit <= 1000:
            raise ValidationError(f"limit must be 1 to 1000, got {limit}")
        if next_token:
            token = _decode_token(next_token)
            after = token.get("after") if isinstance(token, dict) else None
            if not isinstance(after, str):
                raise ValidationError("next_token is not a token this registry issued")
        chunk = max(4, -(-limit // FAMILY_INDEX_SHARDS) + 2)
        cursors = [_ShardCursor(self, shard, after, chunk, status) for shard in range(FAMILY_INDEX_SHARDS)]
        heap: list[tuple[str, int]] = []
        for index, cursor in enumerate(cursors):
            if (name := cursor.head()) is not None:
                heap.append((name, index))
        heapq.heapify(heap)
        items: list[FamilySummary] = []
        while heap and len(items) < limit:
            _, index = heapq.heappop(heap)
            items.append(cursors[index].pop())
            if (name := cursors[index].head()) is not None:
                heapq.heappush(heap, (name, index))
        more = bool(heap) or any(not c.exhausted for c in cursors)
        return Page(items, _encode_token({"after": items[-1].name}) if more and items else None)

    def iter_families(self, status: str | None = None) -> list[FamilySummary]:
        """Every family (FamilySummary) in name order: each shard of the family index read to its end."""
        if status is not None and status not in FAMILY_STATUSES:
            raise ValidationError(f"status must be one of {list(FAMILY_STATUSES)}, got {status!r}")
        out: list[FamilySummary] = []
        for shard in range(FAMILY_INDEX_SHARDS):
            cursor = _ShardCursor(self, shard, None, 1000, status)
            while cursor.head() is not None:
                out.append(cursor.pop())
        return sorted(out, key=lambda f: f.name)

    def _family_item(self, name: str, sort_key: str = META) -> dict[str, Any] | None:
        """One item of the family's partition (its META item by default), a consistent GetItem, typed, or None."""
        try:
            return self.ddb.get_item(
                TableName=self.table, Key={"PK": _s(_family_pk(name)), "SK": _s(sort_key)}, ConsistentRead=True
            ).get("Item")
        except Exception as exc:
            self._raise_transient(exc)
            raise

    def _config_item(self, name: str, config_version: int) -> FamilyChange | None:
        item = self.ddb.get_item(TableName=self.table, Key={"PK": _s(_family_pk(name)),
                                                             "SK": _s(_config_sk(config_version))},
                                 ConsistentRead=True).get("Item")
        return FamilyChange.from_item(item) if item else None

    def _set_scoring_function(self, name: str, scoring_function: str) -> None:
        self.ddb.update_item(
            TableName=self.table, Key={"PK": _s(_family_pk(name)), "SK": _s(META)},
            UpdateExpression="SET scoring_function = :f", ConditionExpression="attribute_exists(PK)",
            ExpressionAttributeValues={":f": _s(scoring_function)})

    def _write_family_change(self, family: ModelFamily, version: int, change: str, status: str, actor: str,
                             reason: str, current: FamilyRecord | None, scoring_function: str | None,
                             lock_free_at: int | None = None) -> None:
        """One transaction: the META item becomes config version `version` (conditioned on the version it
        replaces) and CONFIG#<version> records the change. Raises ConcurrencyConflictError on a lost race."""
        now = _iso(self._clock())
        config = _json(family.model_dump(mode="json"))
        key = {"PK": _s(_family_pk(family.name)), "SK": _s(META)}
        fields = {"config_json": config, "summary_json": _json(family_summary_fields(family)),
                  "config_version": _n(version), "status": _s(status), "changed_at": _s(now),
                  "changed_by": _s(actor), "change_reason": _s(reason), "updated_at": _s(now),
                  "GSI2PK": _s(_family_index_pk(family_shard(family.name))), "GSI2SK": _s(family.name),
                  "family": _s(family.name)}
        if scoring_function is not None:
            fields["scoring_function"] = _s(scoring_function)
        if current is None:
            # A new family: the whole item, with its pointers at zero.
            zero = _n(0)
            meta: dict[str, Any] = {"Put": {"TableName": self.table, "ConditionExpression": "attribute_not_exists(PK)",
                                            "Item": {**key, "scoring_function": _s(""), **fields, "created_at": _s(now),
                                                     "latest_version": zero, "live_version": zero,
                                                     "canary_version": zero, "canary_weight": zero}}}
        else:
            # Only the declaration's fields: the pointers and the lock belong to the rollout.
            names = {f"#f{i}": name for i, name in enumerate(fields)}
            values = {f":f{i}": value for i, value in enumerate(fields.values())}
            if not current.config_version:  # written before declarations were versioned
                condition = "attribute_exists(PK) AND attribute_not_exists(config_version)"
            else:
                condition = "config_version = :prev"
                values[":prev"] = _n(current.config_version)
            if lock_free_at is not None:
                condition += " AND (attribute_not_exists(rollout_holder) OR rollout_expires < :now)"
                values[":now"] = _n(lock_free_at)
            meta = {"Update": {
                "TableName": self.table, "Key": key,
                # The family leaves the unsharded GSI1 partition `FAMILY` (before versioning) for GSI2.
                "UpdateExpression": "SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields)))
                                    + " REMOVE GSI1PK, GSI1SK",
                "ConditionExpression": condition, "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values}}
        history = {
            "PK": _s(_family_pk(family.name)), "SK": _s(_config_sk(version)), "family": _s(family.name),
            "config_version": _n(version), "change": _s(change), "status": _s(status), "at": _s(now),
            "actor": _s(actor), "reason": _s(reason), "config_json": config,
        }
        self._transact([
            meta,
            {"Put": {"TableName": self.table, "Item": history, "ConditionExpression": "attribute_not_exists(SK)"}},
        ], f"{family.name} config v{version} ({change})")

    # ---- versions -------------------------------------------------------------------------------------

    def allocate_version(self, family: str, lineage: dict[str, Any], actor: str, reason: str = "registered",
                         run_id: str | None = None, max_attempts: int = 60) -> VersionRecord:
        """Allocate the next version as a candidate: one transaction bumps the counter and creates the item,
        so concurrent callers get distinct consecutive numbers with no gaps and no lost writes. With `run_id`
        the same transaction records the run, so a retried registration returns the version it already got. A
        lineage naming its `artifact_sha256` also indexes it (`ARTIFACT#<sha256>`, the first version keeps it), so
        `version_with_artifact` answers with one GetItem; one naming its `dataset` appends the version and the
        family config version it was trained under to the data set's `TRAINED#` item (`versions_trained_on`)."""
        for attempt in range(max_attempts):
            if run_id:
                earlier = self.get_run(family, run_id)
                if earlier and earlier.get("version"):
                    return self.get_version(family, int(earlier["version"]))
            record = self.get_family(family)
            version = record.latest_version + 1
            now = _iso(self._clock())
            item = {
                "PK": _s(_family_pk(family)), "SK": _s(_version_sk(version)), "family": _s(family),
                "version": _n(version), "status": _s(CANDIDATE), "created_at": _s(now), "updated_at": _s(now),
                "status_reason": _s(reason), "lineage_json": _json({**lineage, "version": version}),
            }
            try:
                self.ddb.transact_write_items(TransactItems=[
                    {"Update": {
                        "TableName": self.table, "Key": {"PK": _s(_family_pk(family)), "SK": _s(META)},
                        "UpdateExpression": "SET latest_version = :v, updated_at = :t",
                        "ConditionExpression": "latest_version = :prev",
                        "ExpressionAttributeValues": {":v": _n(version), ":prev": _n(record.latest_version),
                                                      ":t": _s(now)},
                    }},
                    {"Put": {"TableName": self.table, "Item": item,
                             "ConditionExpression": "attribute_not_exists(PK)"}},
                    {"Put": self._event_put(family, version, "", CANDIDATE, now, actor, reason, record.live_version)},
                    *([{"Update": self._run_update(family, run_id, now, {"version": _n(version)},
                                                   keep={"outcome": _s(RUN_STARTED)},
                                                   condition="attribute_not_exists(version)")}] if run_id else []),
                    *([{"Update": self._artifact_index(family, str(lineage["artifact_sha256"]), version, now)}]
                      if lineage.get("artifact_sha256") else []),
                    *([{"Update": self._trained_index(family, lineage, version, now)}]
                      if (lineage.get("dataset") or {}).get("key") else []),
                ])
                return VersionRecord.from_item(item)
            except Exception as exc:
                if aws.error_code(exc) in {"TransactionCanceledException", "TransactionConflictException"} or \
                        aws.is_transient(exc):
                    time.sleep(min(0.2, 0.005 * (2 ** min(attempt, 6))) * random.random())
                    continue
                raise
        raise ConcurrencyConflictError(f"could not allocate a version of {family!r} after {max_attempts} attempts")

    def _artifact_index(self, family: str, sha256: str, version: int, now: str) -> dict[str, Any]:
        """UpdateItem arguments of the `ARTIFACT#<sha256>` index item: the first version with this ONNX artifact."""
        return {"TableName": self.table, "Key": {"PK": _s(_family_pk(family)), "SK": _s(_artifact_sk(sha256))},
                "UpdateExpression": "SET #v = if_not_exists(#v, :v), #at = if_not_exists(#at, :t)",
                "ExpressionAttributeNames": {"#v": "version", "#at": "at"},
                "ExpressionAttributeValues": {":v": _n(version), ":t": _s(now)}}

    def record_reproduced(self, family: str, dataset: dict[str, Any], version: int, config_version: int) -> None:
        """A run trained on `dataset` under `config_version` a model byte-identical to `version` (it ended
        `unchanged`): appended to the data set's `TRAINED#` item with `reproduced`, so a retrain under a
        training-equivalent declaration passes the data set over instead of reproducing `version` again."""
        trained = {"dataset": dataset, "family_config_version": config_version}
        self.ddb.update_item(**self._trained_index(family, trained, version, _iso(self._clock()), reproduced=True))

    def _trained_index(self, family: str, lineage: dict[str, Any], version: int, now: str,
                       reproduced: bool = False) -> dict[str, Any]:
        """UpdateItem arguments appending {version, family_config_version, at[, reproduced]} to the data set
        version's `TRAINED#` item (created by the first version trained on it)."""
        dataset = lineage["dataset"]
        entry = {"M": {"version": _n(version), "family_config_version": _n(int(lineage.get("family_config_version")
                                                                                 or 0)), "at": _s(now),
                       **({"reproduced": {"BOOL": True}} if reproduced else {})}}
        return {"TableName": self.table,
                "Key": {"PK": _s(_family_pk(family)),
                        "SK": _s(_trained_sk(str(dataset["key"]), dataset.get("version_id") or None))},
                "UpdateExpression": "SET #t = list_append(if_not_exists(#t, :empty), :entry)",
                "ExpressionAttributeNames": {"#t": "trained"},
                "ExpressionAttributeValues": {":empty": {"L": []}, ":entry": {"L": [entry]}}}

    def versions_trained_on(self, family: str, key: str, version_id: str | None) -> list[dict[str, Any]]:
        """Every model version trained on this data set version, oldest first, as [{"version",
        "family_config_version", "at"}] (one GetItem of its `TRAINED#` item; versions allocated before the index
        existed are not listed)."""
        item = self._family_item(family, _trained_sk(key, version_id))
        if not item:
            return []
        return [{"version": int(m["version"]["N"]), "family_config_version": int(m["family_config_version"]["N"]),
                 "at": m.get("at", {}).get("S", ""), "reproduced": bool(m.get("reproduced", {}).get("BOOL"))}
                for m in (entry["M"] for entry in (item.get("trained") or {}).get("L", []))]

    def version_with_artifact(self, family: str, sha256: str) -> VersionRecord | None:
        """The family's version whose ONNX artifact has this sha256, or None: the `ARTIFACT#` index item (one
        GetItem, then the version's); for versions registered before the index existed, the live and canary
        versions are compared directly (the family item and at most two versions). Older non-live versions
        without an index item are not found."""
        item = self.ddb.get_item(TableName=self.table, Key={"PK": _s(_family_pk(family)),
                                                             "SK": _s(_artifact_sk(sha256))},
                                 ConsistentRead=True).get("Item")
        if item:
            return self.get_version(family, int(_plain(item)["version"]))
        try:
            record = self.get_family(family)
        except UnknownFamilyError:
            return None
        for version in dict.fromkeys(v for v in (record.live_version, record.canary_version) if v):
            found = self.get_version(family, version)
            if found.artifact_sha256 == sha256:
                return found
        return None

    def get_version(self, family: str, version: int) -> VersionRecord:
        item = self.ddb.get_item(
            TableName=self.table, Key={"PK": _s(_family_pk(family)), "SK": _s(_version_sk(version))},
            ConsistentRead=True,
        ).get("Item")
        if not item:
            raise UnknownFamilyError(f"model {family!r} has no version {version}", family=family, version=version)
        return VersionRecord.from_item(item)

    def list_versions(self, family: str, limit: int = 50, next_token: str | None = None,
                      newest_first: bool = True) -> Page:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":pk": _s(_family_pk(family)), ":prefix": _s("VERSION#")},
            "Limit": limit, "ScanIndexForward": not newest_first,
        }
        start = _decode_token(next_token)
        if start:
            kwargs["ExclusiveStartKey"] = start
        response = self.ddb.query(**kwargs)
        return Page([VersionRecord.from_item(i) for i in response.get("Items", [])],
                    _encode_token(response.get("LastEvaluatedKey")))

    def update_lineage(self, family: str, version: int, updates: dict[str, Any]) -> VersionRecord:
        """Merge keys into a version's lineage (e.g. the function version it was bound to)."""
        current = self.get_version(family, version)
        lineage = {**current.lineage, **updates}
        self.ddb.update_item(
            TableName=self.table, Key={"PK": _s(_family_pk(family)), "SK": _s(_version_sk(version))},
            UpdateExpression="SET lineage_json = :l, updated_at = :t",
            ConditionExpression="updated_at = :prev",
            ExpressionAttributeValues={":l": _json(lineage), ":t": _s(_iso(self._clock())),
                                       ":prev": _s(current.updated_at)},
        )
        return self.get_version(family, version)

    def bind_function_version(self, family: str, version: int, function_version: str) -> None:
        """Record which published Lambda version serves this model version (immutable once set)."""
        try:
            self.ddb.update_item(
                TableName=self.table, Key={"PK": _s(_family_pk(family)), "SK": _s(_version_sk(version))},
                UpdateExpression="SET function_version = :f",
                ConditionExpression="attribute_exists(PK) AND (attribute_not_exists(function_version) "
                                    "OR function_version = :f)",
                ExpressionAttributeValues={":f": _s(function_version)},
            )
        except Exception as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                bound = self.get_version(family, version).function_version
                raise IllegalTransitionError(
                    f"{family} v{version} is already bound to function version {bound}, not {function_version}"
                ) from None
            raise

    # ---- status changes -------------------------------------------------------------------------------

    def transition(self, family: str, version: int, to_status: str, actor: str, reason: str, *,
                   cause: str | None = None) -> VersionRecord:
        """Move one version to `to_status`, keeping the family's pointers and the history in the same
        transaction. Repeating a change that already happened is a no-op; anything not allowed raises.

        A rejection or rollback marks the version's data set unusable for retrains (`UNUSABLE#`, a verdict on the
        model), except a canary rollback whose `cause` is ROLLBACK_INSUFFICIENT_TRAFFIC: too little traffic is no
        verdict, so that data set stays usable and `UNJUDGED#` only remembers which version (and configuration
        version) was trained on it (`dataset_unjudged`): a retrain under the same training-relevant declaration
        would reproduce that version."""
        if to_status not in STATUSES:
            raise IllegalTransitionError(f"unknown status {to_status!r}")
        current = self.get_version(family, version)
        if current.status == to_status:
            return current
        # The one way out of rolled_back: a canary rolled back for lack of traffic, promoted by an operator.
        revived = to_status == LIVE and rolled_back_for_insufficient_traffic(current)
        if to_status not in TRANSITIONS[current.status] and not revived:
            final = "none, the status is final"
            if current.status == ROLLED_BACK:
                final += (": only a canary rolled back because too little traffic reached it to judge it may go "
                          f"live, and v{version} was rolled back for another reason: {current.status_reason[:200]}")
            raise IllegalTransitionError(
                f"{family} v{version}: {current.status} -> {to_status} is not allowed "
                f"(allowed: {sorted(TRANSITIONS[current.status]) or final})",
                family=family, version=version, from_status=current.status, to_status=to_status,
            )
        record = self.get_family(family)
        now = _iso(self._clock())
        pk = _s(_family_pk(family))
        meta_key = {"PK": pk, "SK": _s(META)}
        live_after = record.live_version
        items: list[dict[str, Any]] = []
        meta_update: dict[str, Any] | None = None

        if to_status == CANARY:
            if record.canary_version not in (0, version):
                raise RolloutInProgressError(
                    f"{family} already has v{record.canary_version} in canary", canary=record.canary_version)
            meta_update = {"set": "canary_version = :v, canary_weight = :z",
                           "cond": "canary_version = :z OR canary_version = :v", "values": {":z": _n(0)}}
        elif to_status == LIVE:
            previous = record.live_version
            live_after = version
            if current.status == CANDIDATE and previous:
                raise IllegalTransitionError(
                    f"{family} v{version}: a candidate can go live directly only when nothing is live "
                    f"(v{previous} is live); it must pass a canary", family=family, version=version)
            if previous and previous != version:
                items.append(self._status_update(family, previous, LIVE, RETIRED, now,
                                                 f"replaced by v{version}"))
                items.append({"Put": self._event_put(family, previous, LIVE, RETIRED, now, actor,
                                                     f"replaced by v{version}", version)})
            clear_canary = current.status == CANARY or record.canary_version == version
            meta_update = {
                "set": "live_version = :v" + (", canary_version = :z, canary_weight = :z" if clear_canary else ""),
                "cond": "live_version = :prev", "values": {":prev": _n(previous), ":z": _n(0)},
            }
            if not clear_canary:
                meta_update["values"].pop(":z")
        elif to_status == ROLLED_BACK and current.status == CANARY:
            meta_update = {"set": "canary_version = :z, canary_weight = :z", "cond": "canary_version = :v",
                           "values": {":z": _n(0)}}
        elif current.status == LIVE and to_status in (ROLLED_BACK, RETIRED):
            live_after = 0
            meta_update = {"set": "live_version = :z", "cond": "live_version = :v", "values": {":z": _n(0)}}

        if to_status == ROLLED_BACK and cause == ROLLBACK_INSUFFICIENT_TRAFFIC:
            if marker := self._unjudged_put(family, current, now):
                items.append(marker)
        elif to_status in (REJECTED, ROLLED_BACK) and (marker := self._unusable_put(family, current, to_status,
                                                                                    now)):
            items.append(marker)
        items.insert(0, self._status_update(family, version, current.status, to_status, now, reason))
        items.append({"Put": self._event_put(family, version, current.status, to_status, now, actor, reason,
                                             live_after)})
        if meta_update is not None:
            values = {":v": _n(version), ":t": _s(now), **meta_update["values"]}
            items.append({"Update": {
                "TableName": self.table, "Key": meta_key,
                "UpdateExpression": f"SET {meta_update['set']}, updated_at = :t",
                "ConditionExpression": meta_update["cond"], "ExpressionAttributeValues": values,
            }})
        self._transact(items, f"{family} v{version} {current.status} -> {to_status}")
        return self.get_version(family, version)

    def restore_previous(self, family: str, actor: str, reason: str) -> tuple[int, int]:
        """Manual rollback of a live model: the live version becomes rolled_back and the most recently
        retired version becomes live again. Returns (rolled_back_version, restored_version)."""
        record = self.get_family(family)
        if not record.live_version:
            raise IllegalTransitionError(f"{family} has no live version to roll back")
        restored = next((v for v in self._iter_versions(family) if v.status == RETIRED), None)
        if restored is None:
            raise IllegalTransitionError(f"{family} has no retired version to restore")
        now = _iso(self._clock())
        live = record.live_version
        marker = self._unusable_put(family, self.get_version(family, live), ROLLED_BACK, now)
        self._transact([
            *([marker] if marker else []),
            self._status_update(family, live, LIVE, ROLLED_BACK, now, reason),
            self._status_update(family, restored.version, RETIRED, LIVE, now, reason),
            {"Put": self._event_put(family, live, LIVE, ROLLED_BACK, now, actor, reason, restored.version)},
            {"Put": self._event_put(family, restored.version, RETIRED, LIVE, now, actor, reason, restored.version)},
            {"Update": {
                "TableName": self.table, "Key": {"PK": _s(_family_pk(family)), "SK": _s(META)},
                "UpdateExpression": "SET live_version = :r, updated_at = :t",
                "ConditionExpression": "live_version = :v",
                "ExpressionAttributeValues": {":r": _n(restored.version), ":v": _n(live), ":t": _s(now)},
            }},
        ], f"{family} restore v{restored.version}")
        return live, restored.version

    def set_canary_weight(self, family: str, version: int, weight: int) -> None:
        try:
            self.ddb.update_item(
                TableName=self.table, Key={"PK": _s(_family_pk(family)), "SK": _s(META)},
                UpdateExpression="SET canary_weight = :w, updated_at = :t",
                ConditionExpression="canary_version = :v",
                ExpressionAttributeValues={":w": _n(weight), ":v": _n(version), ":t": _s(_iso(self._clock()))},
            )
        except Exception as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                raise IllegalTransitionError(f"{family} v{version} is not the canary") from None
            raise

    # ---- history --------------------------------------------------------------------------------------

    def history(self, family: str, limit: int = 100, next_token: str | None = None) -> Page:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":pk": _s(_family_pk(family)), ":prefix": _s("EVENT#")},
            "Limit": limit,
        }
        start = _decode_token(next_token)
        if start:
            kwargs["ExclusiveStartKey"] = start
        response = self.ddb.query(**kwargs)
        return Page([self._event(i) for i in response.get("Items", [])],
                    _encode_token(response.get("LastEvaluatedKey")))

    def live_at(self, family: str, at: datetime) -> int:
        """The version that was live at `at` (0 if none): the newest status event at or before it."""
        response = self.ddb.query(
            TableName=self.table,
            KeyConditionExpression="PK = :pk AND SK BETWEEN :lo AND :hi",
            ExpressionAttributeValues={":pk": _s(_family_pk(family)), ":lo": _s("EVENT#"),
                                       ":hi": _s(f"EVENT#{_iso(at)}#~")},
            ScanIndexForward=False, Limit=1, ConsistentRead=True,
        )
        items = response.get("Items", [])
        return self._event(items[0]).live_version_after if items else 0

    # ---- rollout lock ---------------------------------------------------------------------------------

    def acquire_rollout(self, family: str, holder: str, ttl_seconds: int,
                        is_holder_alive: Callable[[str], bool] | None = None) -> bool:
        """Take the family's rollout lock (True), or False when another live rollout holds it. A lock whose
        holder expired or is known to be finished is taken over."""
        now = self._clock()
        try:
            self._lock_update(family, holder, now, ttl_seconds, takeover_of=None)
            return True
        except IllegalTransitionError:
            pass
        record = self.get_family(family)
        other = record.rollout_holder
        if other and is_holder_alive is not None and not is_holder_alive(other):
            try:
                self._lock_update(family, holder, now, ttl_seconds, takeover_of=other)
                return True
            except IllegalTransitionError:
                return False
        return False

    def release_rollout(self, family: str, holder: str) -> bool:
        try:
            self.ddb.update_item(
                TableName=self.table, Key={"PK": _s(_family_pk(family)), "SK": _s(META)},
                UpdateExpression="REMOVE rollout_holder, rollout_expires",
                ConditionExpression="rollout_holder = :h", ExpressionAttributeValues={":h": _s(holder)},
            )
            return True
        except Exception as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise

    def _lock_update(self, family: str, holder: str, now: datetime, ttl: int, takeover_of: str | None) -> None:
        values = {":h": _s(holder), ":e": _n(int(now.timestamp()) + ttl), ":now": _n(int(now.timestamp()))}
        condition = "attribute_exists(PK) AND (attribute_not_exists(rollout_holder) OR rollout_holder = :h " \
                    "OR rollout_expires < :now"
        if takeover_of:
            condition += " OR rollout_holder = :o"
            values[":o"] = _s(takeover_of)
        try:
            self.ddb.update_item(
                TableName=self.table, Key={"PK": _s(_family_pk(family)), "SK": _s(META)},
                UpdateExpression="SET rollout_holder = :h, rollout_expires = :e",
                ConditionExpression=condition + ")", ExpressionAttributeValues=values,
            )
        except Exception as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                self.get_family(family)  # raises UnknownFamilyError when that is the reason
                raise IllegalTransitionError(f"rollout lock of {family} is held") from None
            self._raise_transient(exc)
            raise

    # ---- pipeline runs and drift records --------------------------------------------------------------

    def start_run(self, family: str, run_id: str, *, dataset: dict[str, Any] | None = None,
                  trigger: dict[str, Any] | None = None, execution_arn: str | None = None) -> bool:
        """Record that a run started (outcome `started`). Every field is written only where it is absent, so a
        repeated or late call never overwrites what the run recorded since. True when this call created it."""
        keep: dict[str, dict[str, Any]] = {"outcome": _s(RUN_STARTED)}
        if dataset is not None:
            keep["dataset_json"] = _json(dataset)
        if trigger is not None:
            keep["trigger_json"] = _json(trigger)
        if execution_arn:
            keep["execution_arn"] = _s(execution_arn)
        args = self._run_update(family, run_id, _iso(self._clock()), {}, keep=keep)
        old = self.ddb.update_item(**args, ReturnValues="ALL_OLD").get("Attributes") or {}
        return "outcome" not in old

    def annotate_run(self, family: str, run_id: str, *, dataset: dict[str, Any] | None = None,
                     fingerprint: str | None = None, canary: dict[str, Any] | None = None) -> None:
        """Add what a step learned to a run (the data set's sha256, the content fingerprint, the canary's state
        and last check: `canary`, replaced whole by each canary step)."""
        fields: dict[str, dict[str, Any]] = {}
        if dataset is not None:
            fields["dataset_json"] = _json(dataset)
        if fingerprint is not None:
            fields["fingerprint"] = _s(fingerprint)
        if canary is not None:
            fields["canary_json"] = _json(canary)
        self.ddb.update_item(**self._run_update(family, run_id, _iso(self._clock()), fields,
                                                keep={"outcome": _s(RUN_STARTED)}))

    def record_run(self, family: str, run_id: str, outcome: str, detail: dict[str, Any] | None = None, *,
                   step: str | None = None, reason: str | None = None, dataset: dict[str, Any] | None = None,
                   steps: list[dict[str, Any]] | None = None, version: int | None = None,
                   started_at: str | None = None, only_if_open: bool = False) -> bool:
        """What happened to one run: its outcome (any of RUN_OUTCOMES), the step that decided it and why.

        An outcome other than `started` also sets `ended_at`. `started_at` (ISO-8601 UTC) is kept when the run
        already has one. With `only_if_open`, nothing is written when the run already has a final outcome
        (returns False): handlers of at-least-once events use it so an outcome is recorded, and counted, once."""
        if outcome not in RUN_OUTCOMES:
            raise ValidationError(f"unknown run outcome {outcome!r}; known: {list(RUN_OUTCOMES)}")
        now = _iso(self._clock())
        fields: dict[str, dict[str, Any]] = {"outcome": _s(outcome), "detail_json": _json(detail or {})}
        if outcome != RUN_STARTED:
            fields["ended_at"] = _s(now)
            fields[TTL_ATTRIBUTE] = _expires_at(self._clock(), RUN_TTL_DAYS)
        if step is not None:
            fields["step"] = _s(step[:200])
        if reason is not None:
            fields["reason"] = _s(reason[:MAX_REASON_CHARS])
        if dataset is not None:
            fields["dataset_json"] = _json(dataset)
        if steps is not None:
            fields["steps_json"] = _json(steps)
        if version:
            fields["version"] = _n(int(version))
        args = self._run_update(family, run_id, now, fields, started_at=started_at)
        if only_if_open:
            args["ConditionExpression"] = "attribute_not_exists(outcome) OR outcome = :open"
            args["ExpressionAttributeValues"][":open"] = _s(RUN_STARTED)
        try:
            self.ddb.update_item(**args)
        except Exception as exc:
            if only_if_open and aws.error_code(exc) == "ConditionalCheckFailedException":
                return False
            self._raise_transient(exc)
            raise
        return True

    def get_run(self, family: str, run_id: str) -> dict[str, Any] | None:
        """The run record as plain JSON values (`dataset`, `detail`, `steps`, `trigger` decoded), or None."""
        item = self.ddb.get_item(TableName=self.table, Key=_run_key(family, run_id), ConsistentRead=True).get("Item")
        return _run(item) if item else None

    def list_runs(self, family: str | None = None, limit: int = 50, months: int = 3) -> list[dict[str, Any]]:
        """Runs newest first. With `family`: that family's runs (one partition, sorted by start time; cost in
        proportion to the family's runs). Without: every family's runs of the last `months` calendar months,
        from the GSI1 partitions `RUNS#<YYYY-MM>` (cost in proportion to `limit`)."""
        if family is not None:
            runs = [_run(i) for i in self._query_all(
                KeyConditionExpression="PK = :pk AND begins_with(SK, :p)",
                ExpressionAttributeValues={":pk": _s(_family_pk(family)), ":p": _s("RUN#")})]
            runs.sort(key=lambda r: (r.get("started_at", ""), r.get("run_id", "")), reverse=True)
            return runs[:limit]
        runs: list[dict[str, Any]] = []
        year, month = self._clock().year, self._clock().month
        for _ in range(max(1, months)):
            kwargs: dict[str, Any] = {
                "TableName": self.table, "IndexName": "GSI1", "KeyConditionExpression": "GSI1PK = :g",
                "ExpressionAttributeValues": {":g": _s(f"RUNS#{year:04d}-{month:02d}")}, "ScanIndexForward": False,
            }
            while len(runs) < limit:
                response = self.ddb.query(**kwargs, Limit=limit - len(runs))
                runs += [_run(i) for i in response.get("Items", [])]
                if not response.get("LastEvaluatedKey"):
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            if len(runs) >= limit:
                break
            year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        return runs[:limit]

    def record_content_verdict(self, family: str, fingerprint: str, run_id: str, outcome: str,
                               version: int | None) -> None:
        """Remember which run judged this exact content (data set sha256 + family configuration + code)."""
        self.ddb.put_item(TableName=self.table, Item={
            "PK": _s(_family_pk(family)), "SK": _s(f"CONTENT#{fingerprint}"), "run_id": _s(run_id),
            "outcome": _s(outcome), "version": _n(int(version or 0)), "at": _s(_iso(self._clock())),
        })

    def content_verdict(self, family: str, fingerprint: str) -> dict[str, Any] | None:
        """The run that last judged this content: {run_id, outcome, version, at}, or None."""
        item = self.ddb.get_item(TableName=self.table, Key={"PK": _s(_family_pk(family)),
                                                             "SK": _s(f"CONTENT#{fingerprint}")},
                                 ConsistentRead=True).get("Item")
        if not item:
            return None
        plain = _plain(item)
        return {k: plain.get(k) for k in ("run_id", "outcome", "version", "at")}

    def _run_update(self, family: str, run_id: str, now: str, fields: dict[str, dict[str, Any]], *,
                    keep: dict[str, dict[str, Any]] | None = None, started_at: str | None = None,
                    condition: str | None = None) -> dict[str, Any]:
        """UpdateItem arguments for a run item: `fields` are set, `keep` only where absent; the identity, the
        start time and the listing keys (GSI1 `RUNS#<YYYY-MM>`) are set once, by the first write. The item expires
        RUN_TTL_DAYS after its first write, or after its final outcome when one is recorded."""
        start = started_at or now
        once = {"run_id": _s(run_id), "family": _s(family), "started_at": _s(start),
                "GSI1PK": _s(f"RUNS#{start[:7]}"), "GSI1SK": _s(f"{start}#{family}#{run_id}"), **(keep or {})}
        if TTL_ATTRIBUTE not in fields:
            once[TTL_ATTRIBUTE] = _expires_at(self._clock(), RUN_TTL_DAYS)
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        parts: list[str] = []
        for i, (name, value) in enumerate(once.items()):
            names[f"#k{i}"], values[f":k{i}"] = name, value
            parts.append(f"#k{i} = if_not_exists(#k{i}, :k{i})")
        for i, (name, value) in enumerate({"updated_at": _s(now), **fields}.items()):
            names[f"#s{i}"], values[f":s{i}"] = name, value
            parts.append(f"#s{i} = :s{i}")
        args: dict[str, Any] = {"TableName": self.table, "Key": _run_key(family, run_id),
                                "UpdateExpression": "SET " + ", ".join(parts),
                                "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}
        if condition:
            args["ConditionExpression"] = condition
        return args

    def _query_all(self, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            response = self.ddb.query(TableName=self.table, **kwargs)
            items += response.get("Items", [])
            if not response.get("LastEvaluatedKey"):
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def record_drift(self, family: str, report: dict[str, Any]) -> None:
        """A drift check's summary (the full report is in S3 at `report["report_key"]`); expires after
        DRIFT_TTL_DAYS."""
        at = self._clock()
        now = _iso(at)
        self.ddb.put_item(TableName=self.table, Item={
            "PK": _s(_family_pk(family)), "SK": _s(f"DRIFT#{now}"), "at": _s(now),
            "verdict": _s(str(report.get("verdict", ""))), "report_json": _json(report),
            TTL_ATTRIBUTE: _expires_at(at, DRIFT_TTL_DAYS),
        })

    def mark_captured(self, family: str, at: float) -> bool:
        """Record that captures of `family` up to `at` (epoch seconds, the newest record of an object just
        written) are in S3: `last_capture_at` on the META item, only ever raised (a conditional update, so
        sandboxes writing out of order never lower it). One write per capture object. Returns False when the
        mark was already later or the family does not exist (nothing to do)."""
        try:
            self.ddb.update_item(
                TableName=self.table, Key={"PK": _s(_family_pk(family)), "SK": _s(META)},
                UpdateExpression="SET #c = :t",
                ConditionExpression="attribute_exists(PK) AND (attribute_not_exists(#c) OR #c < :t)",
                ExpressionAttributeNames={"#c": LAST_CAPTURE_ATTRIBUTE},
                ExpressionAttributeValues={":t": _n(round(float(at), 3))}, ReturnValues="NONE")
        except Exception as exc:
            if aws.error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def set_drift_checked(self, family: str, until: float) -> None:
        """A drift check read the family's captures up to `until` (epoch seconds): `drift_checked_until` on the
        META item (raised only), which with `last_capture_at` tells the fan-out's listing that the family has
        nothing new (`FamilySummary.idle_since_drift_check`)."""
        try:
            self.ddb.update_item(
                TableName=self.table, Key={"PK": _s(_family_pk(family)), "SK": _s(META)},
                UpdateExpression="SET drift_checked_until = :u",
                ConditionExpression="attribute_exists(PK) AND (attribute_not_exists(drift_checked_until) OR "
                                    "drift_checked_until < :u)",
                ExpressionAttributeValues={":u": _n(round(float(until), 3))})
        except Exception as exc:
            if aws.error_code(exc) != "ConditionalCheckFailedException":
                raise

    def drift_records(self, family: str, limit: int = 20) -> list[dict[str, Any]]:
        response = self.ddb.query(
            TableName=self.table, KeyConditionExpression="PK = :pk AND begins_with(SK, :p)",
            ExpressionAttributeValues={":pk": _s(_family_pk(family)), ":p": _s("DRIFT#")},
            ScanIndexForward=False, Limit=limit,
        )
        return [_plain(i) for i in response.get("Items", [])]

    # ---- uploads and unusable data sets (drift retrains) -----------------------------------------------

    def record_upload(self, family: str, run_id: str, dataset: dict[str, Any]) -> None:
        """Remember a data set upload that started a run (`UPLOAD#<time>#<run id>`, expires with runs), so a drift
        retrain finds the newest uploads with one query instead of listing the bucket."""
        at = self._clock()
        self.ddb.put_item(TableName=self.table, Item={
            "PK": _s(_family_pk(family)), "SK": _s(f"UPLOAD#{_iso(at)}#{run_id}"), "run_id": _s(run_id),
            "at": _s(_iso(at)), "dataset_json": _json(dataset), TTL_ATTRIBUTE: _expires_at(at, RUN_TTL_DAYS),
        })

    def recent_uploads(self, family: str, limit: int = UPLOADS_CONSIDERED) -> list[dict[str, Any]]:
        """The family's newest recorded uploads, newest first: [{run_id, at, dataset}] (one query)."""
        response = self.ddb.query(
            TableName=self.table, KeyConditionExpression="PK = :pk AND begins_with(SK, :p)",
            ExpressionAttributeValues={":pk": _s(_family_pk(family)), ":p": _s("UPLOAD#")},
            ScanIndexForward=False, Limit=limit)
        return [{k: v for k, v in _plain(i).items() if k not in ("PK", "SK", TTL_ATTRIBUTE)}
                for i in response.get("Items", [])]

    def dataset_unusable(self, family: str, key: str, version_id: str | None) -> dict[str, Any] | None:
        """The model version that made this data set version unusable for retrains (a version trained on it was
        rejected, or rolled back on a verdict; `transition`): {key, version_id, version, status, at}, or None (one
        GetItem)."""
        item = self._family_item(family, _unusable_sk(key, version_id))
        if not item:
            return None
        plain = _plain(item)
        return {k: plain.get(k) for k in ("key", "version_id", "version", "status", "at")}

    def dataset_unjudged(self, family: str, key: str, version_id: str | None) -> dict[str, Any] | None:
        """The newest model version trained on this data set version whose canary was rolled back for too little
        traffic (no verdict on it): {key, version_id, version, family_config_version, at}, or None (one GetItem)."""
        item = self._family_item(family, _unjudged_sk(key, version_id))
        if not item:
            return None
        plain = _plain(item)
        return {k: plain.get(k) for k in ("key", "version_id", "version", "family_config_version", "at")}

    def _unjudged_put(self, family: str, current: VersionRecord, now: str) -> dict[str, Any] | None:
        """Written with a rollback for too little canary traffic: which version was trained on the data set."""
        dataset = current.lineage.get("dataset") or {}
        if not dataset.get("key"):
            return None
        return {"Put": {"TableName": self.table, "Item": {
            "PK": _s(_family_pk(family)), "SK": _s(_unjudged_sk(dataset["key"], dataset.get("version_id"))),
            "key": _s(str(dataset["key"])), "version_id": _s(str(dataset.get("version_id") or "")),
            "version": _n(current.version),
            "family_config_version": _n(int(current.lineage.get("family_config_version") or 0)), "at": _s(now),
        }}}

    def _unusable_put(self, family: str, current: VersionRecord, to_status: str, now: str) -> dict[str, Any] | None:
        """Written with a rejection or a verdict rollback: the data set version behind the model is marked
        unusable."""
        dataset = current.lineage.get("dataset") or {}
        if not dataset.get("key"):
            return None
        return {"Put": {"TableName": self.table, "Item": {
            "PK": _s(_family_pk(family)), "SK": _s(_unusable_sk(dataset["key"], dataset.get("version_id"))),
            "key": _s(str(dataset["key"])), "version_id": _s(str(dataset.get("version_id") or "")),
            "version": _n(current.version), "status": _s(to_status), "at": _s(now),
        }}}

    # ---- internals ------------------------------------------------------------------------------------

    def _iter_versions(self, family: str):
        token = None
        while True:
            page = self.list_versions(family, limit=100, next_token=token)
            yield from page.items
            token = page.next_token
            if not token:
                return

    def _status_update(self, family: str, version: int, from_status: str, to_status: str, now: str,
                       reason: str) -> dict[str, Any]:
        return {"Update": {
            "TableName": self.table,
            "Key": {"PK": _s(_family_pk(family)), "SK": _s(_version_sk(version))},
            "UpdateExpression": "SET #s = :to, updated_at = :t, status_reason = :r",
            "ConditionExpression": "#s = :from",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":to": _s(to_status), ":from": _s(from_status), ":t": _s(now),
                                          ":r": _s(reason)},
        }}

    def _event_put(self, family: str, version: int, from_status: str, to_status: str, now: str, actor: str,
                   reason: str, live_after: int) -> dict[str, Any]:
        return {"TableName": self.table, "Item": {
            "PK": _s(_family_pk(family)),
            "SK": _s(f"EVENT#{now}#{version:010d}#{uuid.uuid4().hex[:8]}"),
            "version": _n(version), "from_status": _s(from_status), "to_status": _s(to_status),
            "at": _s(now), "actor": _s(actor), "reason": _s(reason), "live_version_after": _n(live_after),
        }, "ConditionExpression": "attribute_not_exists(SK)"}

    @staticmethod
    def _event(item: dict[str, Any]) -> StatusEvent:
        p = _plain(item)
        return StatusEvent(family=p["PK"].split("#", 1)[1], version=p["version"], from_status=p["from_status"],
                           to_status=p["to_status"], at=p["at"], actor=p["actor"], reason=p["reason"],
                           live_version_after=p["live_version_after"])

    def _transact(self, items: list[dict[str, Any]], what: str) -> None:
        try:
            self.ddb.transact_write_items(TransactItems=items)
        except Exception as exc:
            code = aws.error_code(exc)
            if code == "TransactionCanceledException" and _cancellation_is_condition(exc):
                raise ConcurrencyConflictError(f"{what}: the registry changed concurrently; retry") from None
            if code in {"TransactionConflictException", "TransactionCanceledException"}:
                raise TransientError(f"{what}: transaction conflict; retry") from exc
            self._raise_transient(exc)
            raise

    @staticmethod
    def _raise_transient(exc: BaseException) -> None:
        if aws.is_transient(exc):
            raise TransientError(f"DynamoDB throttled: {exc}") from exc


TABLE_DEFINITION: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": "PK", "AttributeType": "S"}, {"AttributeName": "SK", "AttributeType": "S"},
        {"AttributeName": "GSI1PK", "AttributeType": "S"}, {"AttributeName": "GSI1SK", "AttributeType": "S"},
        {"AttributeName": "GSI2PK", "AttributeType": "S"}, {"AttributeName": "GSI2SK", "AttributeType": "S"},
    ],
    "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
    "GlobalSecondaryIndexes": [{
        "IndexName": "GSI1",
        "KeySchema": [{"AttributeName": "GSI1PK", "KeyType": "HASH"}, {"AttributeName": "GSI1SK", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "ALL"},
    }, {
        "IndexName": FAMILY_INDEX,
        "KeySchema": [{"AttributeName": "GSI2PK", "KeyType": "HASH"}, {"AttributeName": "GSI2SK", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(FAMILY_LISTING_ATTRIBUTES)},
    }],
    "BillingMode": "PAY_PER_REQUEST",
}
"""The key schema, used by the local runtime and tests; the CDK storage construct declares the same."""

TTL_SPECIFICATION: dict[str, Any] = {"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
"""UpdateTimeToLive's specification (the CDK storage construct sets the same attribute)."""
