"""Performance with delayed labels: decision records joined to ground truth by decision id, realised metrics per
model version and time window, the CBPE estimate before labels arrive, a per-family policy, metrics, alerts and
retrains (docs/performance.md).

One check of a family reads its decision records of the last `performance.lookback_days` (mlops.serving.decisions) and
every accepted label (mlops.monitoring.labels), joins them by decision id (mlops.serving.decision_ids), and reports per
version and per window of `window_days`: decisions, labelled decisions and the label coverage; realised metrics (binary:
AUC, accuracy, precision and recall at the threshold, F1, calibration error...; multiclass: accuracy, macro F1, macro
AUC; regression: RMSE, MAE, R^2) computed by mlops.stats.metrics; fairness by group with the group sizes
(mlops.stats.fairness, mlops.stats.tasks); for binary families the CBPE estimate (mlops.stats.cbpe) on all the window's
decisions, its trust (the version's training-time calibration check, mlops.stats.calibration) and, once labels arrive,
the estimate on the labelled decisions against the realised figure. The live version's newest window with enough labels
is judged against the family's performance policy (floors, ceilings, degradation from the holdout); its newest window is
judged by the estimate when trusted. The report is stored as JSON and an HTML page, figures are published with the
family as a dimension and the breach counts per serving tier (one alarm per tier, not per family), a breach is named in
a message on the alerts topic, and, when the policy allows, starts a retrain through the drift retrains' path
(mlops.monitoring.retrain: the rollout lock, the newest usable data set, mlops.pipeline.trigger.start_pipeline with a
run record).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from mlops.core import aws
from mlops.core.errors import UnknownFamilyError
from mlops.core.observability import MetricsPublisher, logger
from mlops.core.schemas import BINARY, LOWER_IS_BETTER, MULTICLASS, REGRESSION, ModelFamily, same_label
from mlops.monitoring.labels import (
    LabelRow,
    LabelsFileError,
    LabelStore,
    Upload,
    accepted_record,
    base_record,
    family_of_key,
    parse_labels,
    rejected_record,
    upload_id_of,
)
from mlops.monitoring.retrain import Retrainer
from mlops.monitoring.scope import check_live_families
from mlops.registry.store import FamilyRecord, ModelRegistry
from mlops.serving.decision_ids import names
from mlops.serving.decisions import BatchKey, family_prefix
from mlops.stats.calibration import expected_calibration_error
from mlops.stats.cbpe import estimate_binary
from mlops.stats.fairness import fairness_for_state, fairness_metrics, fairness_not_checked
from mlops.stats.metrics import classification_metrics, multiclass_metrics, regression_metrics

REPORT_PREFIX = "reports/performance/"
REPORT_FORMAT = 1
DAY = 86_400.0
MAX_DECISIONS = 2_000_000  # per check, newest first (as drift's MAX_CAPTURED_ROWS); the report says when it is hit
READERS = 8
MAX_EXAMPLES = 10
ESTIMATED_METRICS = ("auc", "accuracy", "precision", "recall", "f1")
OK, BREACH, INSUFFICIENT, NOT_CHECKED, UNTRUSTED = "ok", "breach", "insufficient_data", "not_checked", "untrusted"
# Metrics published per family (dimension Metric): the headline ones; the report holds them all.
# The dimensions of the breach counts, the per-tier alarms' Metrics Insights schema.
BREACH_DIMENSIONS = ("Family", "Tier")
PUBLISHED_METRICS = ("auc", "accuracy", "precision", "recall", "calibration_error", "macro_auc", "macro_f1",
                     "rmse", "mae")


def _finite(value: Any) -> Any:
    """JSON-ready figures: NaN and infinities become None, numpy scalars plain numbers, recursively."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


# ---- decision records of a window ------------------------------------------------------------------------------


@dataclass
class VersionDecisions:
    """One model version's decisions in the window, in reading order: time (epoch s), what was served (binary:
    the positive-class probability; multiclass: the class probabilities; regression: the predicted value), the
    decision threshold the records name, and the group when the captured inputs hold the sensitive attribute."""

    version: int
    threshold: float | None = None
    at: list[float] = field(default_factory=list)
    served: list[Any] = field(default_factory=list)
    groups: list[str | None] = field(default_factory=list)


@dataclass
class Decisions:
    """A family's decisions in a window: per version, plus an index from the decision ids labels name to
    (version, row); `ambiguous` ids name several decisions (a client id used twice)."""

    versions: dict[int, VersionDecisions]
    index: dict[str, tuple[int, int]]
    ambiguous: set[str]
    objects: int
    records: int
    skipped_lines: int
    truncated: bool


class DecisionScan:
    """Reads a family's decision records between two times: the date partitions of the window, newest first,
    objects whose key's time range misses the window skipped, READERS objects at a time."""

    def __init__(self, bucket: str, s3: Any | None = None, max_decisions: int = MAX_DECISIONS) -> None:
        self.bucket = bucket
        self._s3 = s3
        self.max_decisions = max_decisions

    @property
    def s3(self) -> Any:
        return self._s3 or aws.client("s3")

    def keys(self, family: str, since: float, until: float) -> list[str]:
        """Decision objects that may hold records in [since, until], newest first."""
        first_day = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d")
        last_day = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%d")
        keys: list[tuple[int, str]] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=family_prefix(family),
                                       StartAfter=f"{family_prefix(family)}date={first_day}"):
            for obj in page.get("Contents", []):
                batch = BatchKey.parse(obj["Key"])
                if batch is None:
                    continue
                day = obj["Key"][len(family_prefix(family)) + len("date="):][:10]
                if day > last_day:
                    continue
                if batch.last_ms / 1000 < since - 1 or batch.first_ms / 1000 > until + 1:
                    continue
                keys.append((batch.first_ms, obj["Key"]))
        return [k for _, k in sorted(keys, reverse=True)]

    def _lines(self, key: str, s3: Any) -> list[dict[str, Any]]:
        import gzip

        body = gzip.decompress(s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        return [orjson.loads(line) for line in body.splitlines() if line]

    def read(self, family: ModelFamily, since: float, until: float, wanted: set[str]) -> Decisions:
        """The decisions of `family` made in [since, until] (epoch s). `wanted`: the decision ids labels name;
        only those are indexed. Lines that do not hold one served figure per record are skipped and counted."""
        from concurrent.futures import ThreadPoolExecutor

        keys = self.keys(family.name, since, until)
        versions: dict[int, VersionDecisions] = {}
        index: dict[str, tuple[int, int]] = {}
        ambiguous: set[str] = set()
        sensitive = family.sensitive_attribute if family.sensitive_attribute in family.feature_names else None
        records = skipped = objects = 0
        truncated = False
        s3 = self.s3
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            for lines in pool.map(lambda key: self._lines(key, s3), keys):
                objects += 1
                for line in lines:
                    at = float(line.get("at", 0.0))
                    if not since <= at <= until:
                        continue
                    served = _served(family.task, line)
                    if served is None:
                        skipped += 1
                        continue
                    version = int(line.get("version", 0))
                    entry = versions.get(version)
                    if entry is None:
                        entry = versions[version] = VersionDecisions(version, _threshold(line))
                    base = len(entry.served)
                    entry.at.extend([at] * len(served))
                    entry.served.extend(served)
                    entry.groups.extend(_captured_groups(line, sensitive, len(served)))
                    for name, i in names(line):
                        if name in wanted:
                            target = (version, base + i)
                            known = index.setdefault(name, target)
                            if known != target:
                                ambiguous.add(name)
                    records += len(served)
                if records >= self.max_decisions:
                    truncated = objects < len(keys)
                    break
        return Decisions(versions, index, ambiguous, objects, records, skipped, truncated)


def _threshold(line: dict[str, Any]) -> float | None:
    value = line.get("threshold")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _served(task: str, line: dict[str, Any]) -> list[Any] | None:
    """What the line's records were served (see VersionDecisions), or None when it does not hold one per record."""
    count = line.get("records")
    values = line.get("predictions") if task == REGRESSION else line.get("probabilities")
    if not isinstance(count, int) or not isinstance(values, list) or len(values) != count or count == 0:
        return None
    return values


def _captured_groups(line: dict[str, Any], feature: str | None, count: int) -> list[str | None]:
    inputs = line.get("inputs") if feature else None
    if not isinstance(inputs, list) or len(inputs) != count:
        return [None] * count
    return [None if not isinstance(r, dict) or r.get(feature) is None else str(r.get(feature)) for r in inputs]


# ---- figures of one window ---------------------------------------------------------------------------------------


def realised_metrics(task: str, y: np.ndarray, served: np.ndarray, threshold: float | None) -> dict[str, Any]:
    """Realised metrics of labelled decisions, by the same functions as the holdout's (mlops.stats.metrics, equal to
    scikit-learn's). y: (n,) class indices (classifiers) or target values (regression); served: (n,) positive-
    class probabilities (binary), (n, k) probabilities (multiclass) or (n,) predicted values (regression).
    Binary adds `calibration_error` (mlops.stats.calibration, 10 bins). AUC is None when the labels hold one class."""
    if task == BINARY:
        figures = classification_metrics(y, served, threshold=threshold or 0.5)
        figures["calibration_error"] = expected_calibration_error(y, served)["ece"]
        return figures
    if task == MULTICLASS:
        return multiclass_metrics(y, served)
    return regression_metrics(y, served)


def _decided(task: str, served: np.ndarray, threshold: float | None) -> np.ndarray:
    if task == BINARY:
        return (served >= (threshold or 0.5)).astype(np.int64)
    return np.argmax(served, axis=1).astype(np.int64)


def _favorable_index(family: ModelFamily, classes: list[Any]) -> int | None:
    return next((i for i, c in enumerate(classes) if same_label(c, family.favorable_label)), None)


def window_fairness(family: ModelFamily, classes: list[Any], y: np.ndarray, served: np.ndarray,
                    threshold: float | None, groups: list[str | None]) -> dict[str, Any]:
    """Fairness by group of a window's labelled decisions (groups from the labels file's sensitive-attribute
    column, else from captured inputs): binary and multiclass, demographic parity and equal opportunity on the
    favourable class (mlops.stats.fairness, groups of at least gate.min_group_size rows judged, every group listed with
    its size); regression, the group spreads (mlops.stats.tasks.regression_fairness)."""
    if family.sensitive_attribute is None:
        return fairness_not_checked("the family declares no sensitive attribute")
    known = [g for g in groups if g is not None]
    if not known:
        return fairness_not_checked(f"the labels carry no {family.sensitive_attribute!r} column (and no captured "
                                    "input holds it): add it to the labels file to see fairness by group")
    values = np.asarray([g if g is not None else "(missing)" for g in groups])
    if family.task == REGRESSION:
        from mlops.stats.tasks import regression_fairness

        return regression_fairness(y, served, values, family.gate.min_group_size)
    favorable = _favorable_index(family, classes)
    if favorable is None:
        return fairness_not_checked(f"favorable_label {family.favorable_label!r} is not one of the classes {classes}")
    figures = fairness_metrics(y, _decided(family.task, served, threshold), values, favorable,
                               min_group_size=family.gate.min_group_size, attribute=family.sensitive_attribute,
                               favorable_label=family.favorable_label)
    return fairness_for_state(figures)


def _label_index(task: str, classes: list[Any], label: str) -> float | int | None:
    """A label's class index in the version's classes (its value for a regression); None when outside."""
    if task == REGRESSION:
        try:
            value = float(label)
        except ValueError:
            return None
        return value if math.isfinite(value) else None
    return next((i for i, c in enumerate(classes) if same_label(c, label)), None)


# ---- judging against the policy ----------------------------------------------------------------------------------


def judge(family: ModelFamily, figures: dict[str, Any], holdout: dict[str, Any], *,
          only: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The policy's checks on a window's figures (realised, or estimated with `only` = ESTIMATED_METRICS):
    each floor and ceiling of the task, and the primary metric's degradation from the holdout (the gate's primary
    metric; higher-is-better metrics may drop by at most max_degradation, errors grow by at most that fraction).
    Each check: {"check", "metric", "value", "threshold", "passed", "status", "detail"}; a figure that could not
    be computed (AUC of one-class labels) is status "not_computed", passed, and says so."""
    policy = family.performance
    allowed = set(only) if only is not None else None
    checks: list[dict[str, Any]] = []
    for metric, kind, bound in policy.bounds_for(family.task):
        if allowed is not None and metric not in allowed:
            continue
        value = figures.get(metric)
        if value is None or not math.isfinite(float(value)):
            checks.append({"check": f"{metric}_{kind}", "metric": metric, "value": None, "threshold": bound,
                           "passed": True, "status": "not_computed",
                           "detail": f"{metric} could not be computed on this window's labels"})
            continue
        passed = value >= bound if kind == "floor" else value <= bound
        sign = ">=" if kind == "floor" else "<="
        checks.append({"check": f"{metric}_{kind}", "metric": metric, "value": value, "threshold": bound,
                       "passed": bool(passed), "status": "checked",
                       "detail": f"{metric} {value:.4f} {'' if passed else 'not '}{sign} {kind} {bound}"})
    primary = family.gate.metric_for(family.task)
    if policy.max_degradation is not None and (allowed is None or primary in allowed):
        value, reference = figures.get(primary), holdout.get(primary)
        if value is None or reference is None or not math.isfinite(float(value)):
            checks.append({"check": "degradation", "metric": primary, "value": None,
                           "threshold": policy.max_degradation, "passed": True, "status": "not_computed",
                           "detail": f"{primary} on the holdout or on this window is not available"})
        else:
            lower = primary in LOWER_IS_BETTER
            change = ((value - reference) / reference if reference > 0 else value - reference) if lower \
                else reference - value
            passed = change <= policy.max_degradation
            what = (f"{primary} {value:.4f} vs {reference:.4f} on the holdout: "
                    + (f"{change:+.1%} (at most +{policy.max_degradation:.0%})" if lower
                       else f"a drop of {change:.4f} (at most {policy.max_degradation})"))
            checks.append({"check": "degradation", "metric": primary, "value": round(change, 6),
                           "threshold": policy.max_degradation, "passed": bool(passed), "status": "checked",
                           "detail": what})
    return checks


# ---- the monitor ----------------------------------------------------------------------------------------------------


class PerformanceMonitor:
    """Labels uploads and performance checks of every family (docs/performance.md). `retrainer` starts the retrain
    of a realised breach by the drift retrains' path (mlops.monitoring.retrain: the rollout lock, the newest usable
    data set, a run record); None where retrains are not wired (a check computed on demand)."""

    def __init__(self, registry: ModelRegistry, bucket: str, publisher: MetricsPublisher | None, *,
                 retrainer: Retrainer | None = None, alerts_topic_arn: str = "", s3: Any | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.bucket = bucket
        self.publisher = publisher
        self.retrainer = retrainer
        self.alerts_topic_arn = alerts_topic_arn
        self._s3 = s3
        self.clock = clock
        self.labels = LabelStore(bucket, s3)

    @property
    def s3(self) -> Any:
        return self._s3 or aws.client("s3")

    # ---- scheduled checks ---------------------------------------------------------------------------------

    def run(self, families: list[str] | None = None, tier: str | None = None) -> list[dict[str, Any]]:
        """Check every active family with a live model (or the named ones, or those of one serving `tier`); a
        failure in one is logged and does not stop the others (mlops.monitoring.scope)."""
        def logged(name: str, message: str) -> None:
            logger().error("performance check failed", extra={"family": name, "error": message})

        return check_live_families(self.registry, families, tier, self.check, logged)

    def check(self, record: FamilyRecord) -> dict[str, Any]:
        """Compute, store (JSON and HTML), publish, alert and, by policy, retrain. Returns the report."""
        previous = self.newest_report(record.family.name)
        report = self.compute(record)
        key = f"{REPORT_PREFIX}family={record.family.name}/{datetime.now(UTC):%Y-%m-%dT%H-%M-%S.%fZ}.json"
        report["report_key"] = key
        report["retrain"] = self._maybe_retrain(record, report)
        report["alert"] = self._alert(record, report, previous)
        self.s3.put_object(Bucket=self.bucket, Key=key, ContentType="application/json",
                           Body=orjson.dumps(report, option=orjson.OPT_SORT_KEYS))
        report.update(publish_performance_report(self.bucket, key, report, self.s3))
        self._publish(record.family, report)
        return report

    # ---- labels uploads -------------------------------------------------------------------------------------

    def handle_labels_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """An S3 notification for objects under labels/: each object is ingested and leaves a record."""
        from urllib.parse import unquote_plus

        from mlops.pipeline.trigger import S3Notification

        outcomes = []
        for entry in S3Notification.model_validate(event).Records:
            key = unquote_plus(entry.s3.object.key)
            if not entry.eventName.startswith("ObjectCreated") or key.endswith("/"):
                outcomes.append({"key": key, "status": "ignored", "reason": f"event {entry.eventName} on {key}"})
                continue
            upload = Upload(entry.s3.bucket.name, key, entry.s3.object.versionId, entry.s3.object.eTag.strip('"'),
                            entry.s3.object.size)
            record = self.ingest(upload)
            outcomes.append({k: record.get(k) for k in ("family", "key", "upload_id", "status", "reason", "counts",
                                                        "record_key")})
        return {"uploads": outcomes}

    def ingest(self, upload: Upload) -> dict[str, Any]:
        """Read, check and keep one labels object, write its record, then check the family's performance with
        it and complete the record with how its labels joined. Never raises for a bad file or family: the record
        says why it was rejected."""
        family_name = family_of_key(upload.key)
        try:
            data, stored_at, upload = self.labels.read_upload(upload)
        except LabelsFileError as exc:
            record = rejected_record(base_record(upload, family_name, datetime.now(UTC)), str(exc))
            return self.labels.write(record, None)
        base = base_record(upload, family_name, stored_at)
        if family_name is not None and (earlier := self.labels.find(family_name, base["upload_id"])):
            base["ingested_ms"] = earlier.get("ingested_ms", base["ingested_ms"])  # a redelivery: the same record
        if family_name is None:
            return self.labels.write(rejected_record(
                base, f"key must look like labels/<family>/<file>.csv; {upload.key!r} names no model family"), None)
        try:
            family_record = self.registry.get_family(family_name)
        except UnknownFamilyError:
            return self.labels.write(rejected_record(base, f"unknown model family {family_name!r}"), None)
        family = family_record.family
        classes = self._newest_classes(family_record)
        try:
            parsed = parse_labels(data, family, classes, upload.key)
        except LabelsFileError as exc:
            return self.labels.write(rejected_record(base, str(exc)), None)
        record = self.labels.write(accepted_record(base, parsed, classes is not None), parsed.rows)
        try:
            report = self.check(self.registry.get_family(family_name)) if family_record.live_version else \
                self.compute(family_record)
            joined = (report.get("labels") or {}).get("by_upload", {}).get(record["upload_id"])
            record["join"] = joined or {"matched": 0, "note": "no label of this upload was read back"}
            record["performance"] = {k: report.get(k) for k in ("verdict", "estimate_verdict", "report_key",
                                                                "report_html_key")}
        except Exception as exc:  # noqa: BLE001 - the upload is kept and recorded whatever the check does
            logger().error("performance check after a labels upload failed",
                           extra={"family": family_name, "error": f"{type(exc).__name__}: {exc}"})
            record["performance"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        return self.labels.write(record, None)

    def _newest_classes(self, record: FamilyRecord) -> list[Any] | None:
        version = record.live_version or record.latest_version
        if not version or record.family.task == REGRESSION:
            return None
        try:
            return list(self.registry.get_version(record.family.name, version).lineage.get("classes") or []) or None
        except UnknownFamilyError:
            return None

    # ---- the report ----------------------------------------------------------------------------------------

    def compute(self, record: FamilyRecord, *, include_pending: bool = False) -> dict[str, Any]:
        """The performance report of a family now, read-only (nothing stored or published). With
        `include_pending`, labels objects whose notification has not been processed yet are read in memory too
        (`mlops performance show` computing on demand)."""
        family = record.family
        policy = family.performance
        now = self.clock()
        since = now - policy.lookback_days * DAY
        labels, replaced = self.labels.rows(family.name)
        recorded = self.labels.recorded(family.name)
        pending = self._pending(record, labels, recorded) if include_pending else []
        scan = DecisionScan(self.bucket, self._s3).read(family, since, now, set(labels))
        lineages = self._lineages(family.name, set(scan.versions) | ({record.live_version} - {0}))
        join = _join(family, labels, scan, lineages)
        versions = [self._version_report(family, record, v, scan.versions.get(v), lineages[v], join)
                    for v in sorted(lineages, reverse=True)]
        live = next((v for v in versions if v["version"] == record.live_version), None)
        verdict, judged, checks, reason = self._verdict(family, live)
        estimate_verdict, estimate_checks, estimate_reason = self._estimate_verdict(family, live)
        return _finite({
            "format": REPORT_FORMAT, "family": family.name, "task": family.task, "tier": family.serving,
            "checked_at": _iso(now), "live_version": record.live_version or None,
            "window": {"start": _iso(since), "end": _iso(now), "lookback_days": policy.lookback_days,
                       "window_days": policy.window_days},
            "policy": policy.model_dump(mode="json"),
            "primary_metric": family.gate.metric_for(family.task),
            "decisions": {"records": scan.records, "objects": scan.objects, "skipped_lines": scan.skipped_lines,
                          "truncated": scan.truncated, "max": MAX_DECISIONS},
            "labels": {**join.summary, "replaced_by_later_uploads": replaced, "pending_uploads": pending,
                       "uploads": len(recorded) + len(pending), "recorded_uploads": sorted(recorded)},
            "versions": versions,
            "verdict": verdict, "reason": reason, "judged": judged, "checks": checks,
            "estimate_verdict": estimate_verdict, "estimate_reason": estimate_reason,
            "estimate_checks": estimate_checks,
        })

    def _pending(self, record: FamilyRecord, labels: dict[str, tuple[LabelRow, str]],
                 recorded: set[str]) -> list[dict[str, Any]]:
        """Labels uploads without a record (their notification has not been processed): parsed in memory and
        added to `labels`, in upload order."""
        pending = []
        classes = self._newest_classes(record)
        for upload, _ in self.labels.uploads(record.family.name):
            if upload_id_of(upload) in recorded:
                continue
            entry: dict[str, Any] = {"key": upload.key, "version_id": upload.version_id,
                                     "upload_id": upload_id_of(upload)}
            try:
                data, _, _ = self.labels.read_upload(upload)
                parsed = parse_labels(data, record.family, classes, upload.key)
            except LabelsFileError as exc:
                pending.append({**entry, "status": "would be rejected", "reason": str(exc)})
                continue
            tag = f"pending:{upload_id_of(upload)}"
            for row in parsed.rows:
                labels.pop(row.decision_id, None)
                labels[row.decision_id] = (row, tag)
            pending.append({**entry, "status": "read in memory", "rows": len(parsed.rows)})
        return pending

    def _lineages(self, family: str, versions: set[int]) -> dict[int, dict[str, Any]]:
        out = {}
        for version in versions:
            try:
                out[version] = self.registry.get_version(family, version).lineage or {}
            except UnknownFamilyError:
                logger().warning("decisions name an unknown version", extra={"family": family, "version": version})
        return out

    def _version_report(self, family: ModelFamily, record: FamilyRecord, version: int,
                        decisions: VersionDecisions | None, lineage: dict[str, Any], join: _Join) -> dict[str, Any]:
        task = family.task
        policy = family.performance
        classes = list(lineage.get("classes") or [])
        threshold = lineage.get("threshold")
        if decisions is not None and decisions.threshold is not None:
            threshold = decisions.threshold
        trust = estimate_trust(task, lineage)
        report: dict[str, Any] = {
            "version": version, "live": version == record.live_version, "classes": classes, "threshold": threshold,
            "holdout": {k: v for k, v in (lineage.get("metrics") or {}).items() if isinstance(v, int | float)},
            "estimate": trust, "windows": [], "total": None,
        }
        if decisions is None or not decisions.served:
            return report
        at = np.asarray(decisions.at, dtype=np.float64)
        served = np.asarray(decisions.served, dtype=np.float64)
        rows, y, groups = join.labelled.get(version, ([], [], []))
        rows = np.asarray(rows, dtype=np.int64)
        y = np.asarray(y, dtype=np.float64 if task == REGRESSION else np.int64)
        captured = decisions.groups
        groups = [g if g is not None else captured[r] for g, r in zip(groups, rows, strict=True)]
        width = policy.window_days * DAY
        window_of = np.floor(at / width).astype(np.int64)
        labelled_window = window_of[rows] if rows.size else np.zeros(0, dtype=np.int64)
        for w in np.unique(window_of)[::-1]:
            mask = labelled_window == w
            in_window = [g for g, m in zip(groups, mask, strict=True) if m]
            report["windows"].append(self._figures(
                family, classes, threshold, trust, served[window_of == w], served[rows[mask]], y[mask], in_window,
                start=float(w * width), end=float((w + 1) * width)))
        report["total"] = self._figures(family, classes, threshold, trust, served, served[rows], y, groups,
                                        start=float(at.min()), end=float(at.max()))
        return report

    def _figures(self, family: ModelFamily, classes: list[Any], threshold: float | None, trust: dict[str, Any],
                 served_all: np.ndarray, served_labelled: np.ndarray, y: np.ndarray, groups: list[str | None], *,
                 start: float, end: float) -> dict[str, Any]:
        """One window of one version: counts and coverage, realised metrics and fairness (labelled decisions),
        the estimate on every decision and on the labelled ones, and its error against the realised figures."""
        policy = family.performance
        decisions, labelled = int(len(served_all)), int(y.size)
        coverage = labelled / decisions if decisions else 0.0
        entry: dict[str, Any] = {"start": _iso(start), "end": _iso(end), "decisions": decisions,
                                 "labelled": labelled, "coverage": coverage,
                                 "mature": labelled >= policy.min_labelled_rows
                                 and coverage >= policy.min_label_coverage,
                                 "realised": None, "fairness": None, "estimated": None,
                                 "estimated_on_labelled": None, "estimate_error": None}
        if labelled:
            entry["realised"] = realised_metrics(family.task, y, served_labelled, threshold)
            entry["fairness"] = window_fairness(family, classes, y, served_labelled, threshold, groups)
        if family.task == BINARY and trust["status"] != "not_applicable":
            estimate = estimate_binary(served_all, threshold or 0.5)
            entry["estimated"] = {k: estimate[k] for k in (*ESTIMATED_METRICS, "expected_positive_rate")}
            if labelled:
                on_labelled = estimate_binary(served_labelled, threshold or 0.5)
                entry["estimated_on_labelled"] = {k: on_labelled[k] for k in ESTIMATED_METRICS}
                entry["estimate_error"] = {k: on_labelled[k] - entry["realised"][k] for k in ESTIMATED_METRICS
                                           if entry["realised"].get(k) is not None
                                           and math.isfinite(entry["realised"][k]) and math.isfinite(on_labelled[k])}
        return entry

    def _verdict(self, family: ModelFamily, live: dict[str, Any] | None
                 ) -> tuple[str, dict[str, Any] | None, list[dict[str, Any]], str]:
        """The live version's newest mature window judged by the policy."""
        policy = family.performance
        if live is None:
            return NOT_CHECKED, None, [], "the family has no live model"
        mature = [w for w in live["windows"] if w["mature"]]
        if not mature:
            best = max(live["windows"], key=lambda w: w["labelled"], default=None)
            have = (f"its best window has {best['labelled']} labelled of {best['decisions']} decisions "
                    f"({best['coverage']:.1%})" if best else "it has no decisions in the lookback")
            return INSUFFICIENT, None, [], (
                f"no window of live v{live['version']} has {policy.min_labelled_rows} labelled decisions and "
                f"{policy.min_label_coverage:.0%} coverage yet; {have}")
        window = mature[0]
        checks = judge(family, window["realised"], live["holdout"])
        failed = [c for c in checks if not c["passed"]]
        judged = {"version": live["version"], "start": window["start"], "end": window["end"],
                  "labelled": window["labelled"], "coverage": window["coverage"]}
        if failed:
            return BREACH, judged, checks, "; ".join(c["detail"] for c in failed)
        return OK, judged, checks, f"{len(checks)} checks passed" if checks else "the policy declares no check"

    def _estimate_verdict(self, family: ModelFamily, live: dict[str, Any] | None
                          ) -> tuple[str, list[dict[str, Any]], str]:
        """The live version's newest window judged by the CBPE estimate (binary, trusted, enough decisions)."""
        if family.task != BINARY:
            return NOT_CHECKED, [], "CBPE estimates binary classifiers only; this family is judged on labels"
        if live is None or not live["windows"]:
            return NOT_CHECKED, [], "no decision of the live version in the lookback"
        if not live["estimate"]["trusted"]:
            return UNTRUSTED, [], live["estimate"]["reason"]
        window = live["windows"][0]
        if window["decisions"] < family.performance.min_labelled_rows:
            return INSUFFICIENT, [], (f"{window['decisions']} decisions in the newest window; "
                                      f"{family.performance.min_labelled_rows} needed for an estimate")
        checks = judge(family, window["estimated"], live["holdout"], only=ESTIMATED_METRICS)
        failed = [c for c in checks if not c["passed"]]
        if failed:
            return BREACH, checks, "estimated: " + "; ".join(c["detail"] for c in failed)
        return OK, checks, "estimate within the policy" if checks else "the policy declares no estimated check"

    # ---- stored reports, metrics, alerts, retrain ------------------------------------------------------------

    def report_keys(self, family: str) -> list[str]:
        """The family's stored report keys (JSON), oldest first."""
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=f"{REPORT_PREFIX}family={family}/"):
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".json")]
        return sorted(keys)

    def newest_report(self, family: str) -> dict[str, Any] | None:
        keys = self.report_keys(family)
        if not keys:
            return None
        return orjson.loads(self.s3.get_object(Bucket=self.bucket, Key=keys[-1])["Body"].read())

    def current(self, record: FamilyRecord, fresh: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
        """The newest stored report, or one computed now (read-only) when a labels upload is missing from it (it
        arrived later, or its notification has not been processed), none is stored, or `fresh` asks for it (the
        decisions scored since the stored report are then counted too): (report, {"computed_on_demand",
        "reason"})."""
        stored = None if fresh else self.newest_report(record.family.name)
        if fresh:
            reason = "asked for (--fresh): every decision and label up to now"
        elif stored is None:
            reason = "no report is stored yet"
        else:
            included = set((stored.get("labels") or {}).get("recorded_uploads") or [])
            missing = [u for u, _ in self.labels.uploads(record.family.name) if upload_id_of(u) not in included]
            if not missing:
                return stored, {"computed_on_demand": False,
                                "reason": "the stored report includes every labels upload"}
            reason = (f"{len(missing)} labels upload(s) are newer than the stored report: "
                      + ", ".join(u.key.rsplit("/", 1)[-1] for u in missing[:5]))
        return self.compute(record, include_pending=True), {"computed_on_demand": True, "reason": reason}

    def _publish(self, family: ModelFamily, report: dict[str, Any]) -> None:
        if self.publisher is None:
            return
        dims = {"Family": family.name}
        # Breach counts carry the family and its tier: one alarm per tier groups them by family (infra/performance.py).
        tiered = {"Family": family.name, "Tier": report["tier"]}
        self.publisher.put("PerformanceBreaches", sum(not c["passed"] for c in report["checks"]), tiered)
        self.publisher.put("EstimatedPerformanceBreaches", sum(not c["passed"] for c in report["estimate_checks"]),
                           tiered)
        live = next((v for v in report["versions"] if v["live"]), None)
        if live is None or not live["windows"]:
            return
        judged = next((w for w in live["windows"] if w["mature"]), None)
        if judged is not None:
            self.publisher.put("LabelCoverage", judged["coverage"], dims, unit="None")
            for metric, value in (judged["realised"] or {}).items():
                if metric in PUBLISHED_METRICS and isinstance(value, int | float):
                    self.publisher.put("RealisedMetric", value, {**dims, "Metric": metric}, unit="None")
        newest = live["windows"][0]
        if live["estimate"]["trusted"] and newest["estimated"]:
            for metric in ("auc", "accuracy"):
                if newest["estimated"].get(metric) is not None:
                    self.publisher.put("EstimatedMetric", newest["estimated"][metric], {**dims, "Metric": metric},
                                       unit="None")

    def _alert(self, record: FamilyRecord, report: dict[str, Any], previous: dict[str, Any] | None
               ) -> dict[str, Any]:
        """A message on the alerts topic naming the family, version, window and failed checks, when a realised
        (or trusted estimated) breach is new: not the same verdict on the same judged window as the last report."""
        breach = report["verdict"] == BREACH or report["estimate_verdict"] == BREACH
        if not breach:
            return {"sent": False, "reason": "no breach"}
        if not self.alerts_topic_arn:
            return {"sent": False, "reason": "no alerts topic configured"}
        same = previous is not None and all(previous.get(k) == report.get(k)
                                            for k in ("verdict", "estimate_verdict", "judged", "live_version"))
        if same:
            return {"sent": False, "reason": "the previous report already named this breach"}
        failed = [c["detail"] for c in report["checks"] + report["estimate_checks"] if not c["passed"]]
        judged = report.get("judged") or {}
        subject = f"Performance breach: {record.family.name} v{report['live_version']}"[:100]
        message = (f"{record.family.name} v{report['live_version']} ({report['tier']} tier): "
                   f"realised verdict {report['verdict']}, estimate {report['estimate_verdict']}.\n"
                   + (f"Judged window {judged.get('start')} .. {judged.get('end')}: {judged.get('labelled')} "
                      f"labelled decisions ({(judged.get('coverage') or 0):.1%} coverage).\n" if judged else "")
                   + "Failed checks:\n- " + "\n- ".join(failed)
                   + f"\nReport: s3://{self.bucket}/{report.get('report_key')}\n"
                   + f"`mlops performance show {record.family.name}`")
        try:
            aws.client("sns").publish(TopicArn=self.alerts_topic_arn, Subject=subject, Message=message)
        except Exception as exc:  # noqa: BLE001 - the tier's alarm still fires on the published metric
            logger().error("performance alert not sent", extra={"family": record.family.name, "error": str(exc)})
            return {"sent": False, "reason": f"publish failed: {exc}"[:300]}
        return {"sent": True, "subject": subject}

    def _maybe_retrain(self, record: FamilyRecord, report: dict[str, Any]) -> dict[str, Any]:
        """A realised breach starts the pipeline when the policy allows it, through the drift retrains' path
        (mlops.monitoring.retrain: deferred while a rollout holds the family's lock, the newest usable data set, a
        run record with trigger source "performance"), once per breached window: the execution name is derived
        from the judged version and window, so a later check of the same breach finds it already started."""
        family = record.family
        if report["verdict"] != BREACH:
            return {"started": False, "reason": "no realised breach"}
        if not family.performance.retrain:
            return {"started": False, "reason": "policy: performance.retrain is off"}
        if self.retrainer is None:
            return {"started": False, "reason": "retrains are not wired here (computed on demand)"}
        judged = report["judged"] or {}
        digest = hashlib.sha256(f"{judged.get('version')}\n{judged.get('start')}".encode()).hexdigest()[:24]
        started = self.retrainer.start(record, "performance", f"{family.name[:40]}-performance-{digest}", once=True)
        if started.get("status") is not None:
            started["reason"] = (f"a retrain for this breach (v{judged.get('version')}, window from "
                                 f"{judged.get('start')}) was already started: {started['execution']} "
                                 f"({started['status']})")
        return started


def estimate_trust(task: str, lineage: dict[str, Any]) -> dict[str, Any]:
    """Whether a version's CBPE estimate can be trusted: its training-time calibration check (lineage
    `calibration`, mlops.stats.calibration). {"status", "trusted", "reason", "calibration"}; "not_applicable" for
    multiclass and regression families, "unknown" for a binary version trained before the check existed."""
    if task != BINARY:
        return {"status": "not_applicable", "trusted": False, "calibration": None,
                "reason": "CBPE estimates binary classifiers only; realised metrics need labels"}
    calibration = lineage.get("calibration")
    if not isinstance(calibration, dict):
        return {"status": "unknown", "trusted": False, "calibration": None,
                "reason": "this version was trained before the calibration check; retrain to get a trusted estimate"}
    status = str(calibration.get("status"))
    return {"status": status, "trusted": bool(calibration.get("trusted")), "calibration": calibration,
            "reason": str(calibration.get("reason") or status)}


# ---- joining labels to decisions --------------------------------------------------------------------------------


@dataclass
class _Join:
    labelled: dict[int, tuple[list[int], list[Any], list[str | None]]]
    summary: dict[str, Any]


def _join(family: ModelFamily, labels: dict[str, tuple[LabelRow, str]], scan: Decisions,
          lineages: dict[int, dict[str, Any]]) -> _Join:
    """Each label to its decision: matched, unknown id (no decision of the lookback names it), ambiguous id
    (several do), or outside the version's classes. A decision labelled twice under different names (its request
    id and index, and its client id) keeps the later label (`same_decision`). Counted in total and per upload,
    with examples; label delays from event times. `labelled`: per version, (rows, label index or value, group)."""
    counts = dict.fromkeys(("labels", "matched", "unknown_ids", "ambiguous_ids", "outside_classes",
                            "same_decision"), 0)
    by_upload: dict[str, dict[str, Any]] = {}
    examples: dict[str, list[str]] = {"unknown_ids": [], "ambiguous_ids": [], "outside_classes": [],
                                      "same_decision": []}
    chosen: dict[tuple[int, int], tuple[Any, LabelRow]] = {}
    for decision_id, (row, upload) in labels.items():
        counts["labels"] += 1
        mine = by_upload.setdefault(upload, {"labels": 0, "matched": 0, "unknown_ids": 0, "ambiguous_ids": 0,
                                             "outside_classes": 0, "same_decision": 0, "examples": {}})
        mine["labels"] += 1
        outcomes = []
        if decision_id in scan.ambiguous:
            outcomes.append(("ambiguous_ids", decision_id))
        elif decision_id not in scan.index:
            outcomes.append(("unknown_ids", decision_id))
        else:
            target = scan.index[decision_id]
            lineage = lineages.get(target[0])
            value = None if lineage is None else _label_index(family.task, list(lineage.get("classes") or []),
                                                              row.label)
            if value is None:
                outcomes.append(("outside_classes", f"{decision_id}: {row.label!r} (v{target[0]})"))
            else:
                outcomes.append(("matched", decision_id))
                if target in chosen:
                    earlier = chosen[target][1].decision_id
                    outcomes.append(("same_decision", f"{decision_id} (also labelled as {earlier})"))
                chosen[target] = (value, row)
        for outcome, detail in outcomes:
            counts[outcome] += 1
            mine[outcome] += 1
            if outcome != "matched":
                for kept in (examples[outcome], mine["examples"].setdefault(outcome, [])):
                    if len(kept) < MAX_EXAMPLES:
                        kept.append(detail)
    labelled: dict[int, tuple[list[int], list[Any], list[str | None]]] = {}
    delays: list[float] = []
    for (version, index), (value, row) in chosen.items():
        rows, ys, groups = labelled.setdefault(version, ([], [], []))
        rows.append(index)
        ys.append(value)
        groups.append(row.group)
        if row.event_time is not None:
            delays.append((row.event_time - scan.versions[version].at[index]) / DAY)
    summary: dict[str, Any] = {**counts, "labelled_decisions": len(chosen), "examples": examples,
                               "by_upload": by_upload}
    if delays:
        summary["label_delay_days"] = {"median": float(np.median(delays)), "p90": float(np.percentile(delays, 90)),
                                       "with_event_time": len(delays)}
    if counts["unknown_ids"]:
        summary["unknown_note"] = ("an unknown id names no decision of the lookback window: a typo, another family's "
                                   "request, or a decision older than performance.lookback_days")
    return _Join(labelled, summary)


# ---- the report page --------------------------------------------------------------------------------------------


def performance_report_html_key(json_key: str) -> str:
    return json_key.removesuffix(".json") + ".html"


def publish_performance_report(bucket: str, json_key: str, report: dict[str, Any], s3: Any | None = None
                               ) -> dict[str, Any]:
    """Render the report's HTML page beside its JSON. {"report_html_key"}, or {"report_html_error"} (logged):
    the report stands without its page (the reports layer may be missing; `mlops report` draws it again)."""
    key = performance_report_html_key(json_key)
    try:
        from mlops.reports.performance_report import render_performance_report

        html = render_performance_report(report)
        (s3 or aws.client("s3")).put_object(Bucket=bucket, Key=key, Body=html.encode("utf-8"),
                                            ContentType="text/html; charset=utf-8")
    except Exception as exc:  # noqa: BLE001 - the check's result is stored whatever happens here
        error = f"{type(exc).__name__}: {exc}"[:500]
        logger().error("performance report page not written", extra={"key": key, "error": error})
        return {"report_html_error": error}
    return {"report_html_key": key}


def create_performance_monitor(settings: Any) -> PerformanceMonitor:
    """The monitor of the performance function: its retrains take the drift retrains' path (one Retrainer)."""
    from mlops.rollout.control import execution_is_running

    registry = ModelRegistry(settings.registry_table)
    publisher = MetricsPublisher(settings.metrics_namespace)
    retrainer = Retrainer(registry, publisher, settings.state_machine_arn,
                          execution_is_running(settings.state_machine_arn), settings.artifact_bucket)
    return PerformanceMonitor(registry, settings.artifact_bucket, publisher, retrainer=retrainer,
                              alerts_topic_arn=settings.alerts_topic_arn)
