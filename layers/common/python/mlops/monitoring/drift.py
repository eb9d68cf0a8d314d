"""Scheduled drift checks: captured inputs and predictions of each live model against its baseline profile."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from mlops.core import aws
from mlops.core.categories import category_code
from mlops.core.errors import PlatformError
from mlops.core.observability import MetricsPublisher, logger
from mlops.core.schemas import BINARY, DriftPolicy, Feature, ModelFamily
from mlops.monitoring.retrain import Retrainer
from mlops.monitoring.scope import check_live_families
from mlops.registry.artifacts import ArtifactStore
from mlops.registry.store import FAMILY_ACTIVE, FamilyRecord, ModelRegistry
from mlops.reports.publish import drift_histograms, publish_drift_report
from mlops.serving.capture import CaptureReader
from mlops.serving.capture_columns import NUMERIC, TEXT, CapturedColumns, Column, concat
from mlops.serving.scoring import marker_numbers, value_text
from mlops.stats.distributions import (
    chi_square_against_frequencies,
    equal_weight_cramers_v,
    numeric_shift,
    pooled_chi_square,
    psi,
)
from mlops.stats.profile import PROFILE_FORMAT, category_counts, prediction_counts
from mlops.stats.tasks import captured_predictions, prediction_drift

REPORT_PREFIX = "reports/drift/"
MAX_CAPTURED_ROWS = 2_000_000
FANOUT_PREFIX = "reports/drift-fanout/"  # the fan-out's listing of families per run (read by its Distributed Map)
FANOUT_BATCH = 10  # families per child execution of the fan-out (cdk.json monitoring_batch_size)
OTHER = "(other)"


def compare_with_baseline(family: ModelFamily, profile: dict[str, Any], columns: dict[str, np.ndarray],
                          predictions: np.ndarray, policy: DriftPolicy,
                          current_counts: dict[str, np.ndarray] | None = None, rows: int | None = None
                          ) -> dict[str, Any]:
    """Per-feature drift figures and the verdict. docs/statistics.md has every formula and threshold.

    columns: feature name -> (n,) float64 captured values (NaN = missing; categorical: category index, k =
    "other"); a feature absent from `columns` was not captured. predictions: (n,) positive-class probabilities
    (binary; regression: predicted values, multiclass: predicted class indices, tested in `prediction`).

    Each test needs significance and size. Numeric features: PSI >= `psi_threshold` with the chi-square test of
    the PSI bins significant; KS significant with D >= `ks_min_statistic`. Categorical features ("other" is its
    own category): chi-square significant with the equal-weight Cramér's V >= `chi2_min_cramers_v`. Any feature
    with missing values on either side: chi-square on its missing rate, the change of the rate >=
    `ks_min_statistic`. Significant means p below the feature's p-value (`ks_pvalue` numeric, `chi2_pvalue`
    categorical) divided by the number of its tests (Bonferroni). NaN is dropped and counted before the value
    tests.

    Per feature `status` is "checked", "insufficient_data" (fewer than `min_samples` values: no test, never
    "no drift") or "not_checked" (not captured, not in the baseline, or an older profile format), with `reason`;
    `drifted` is None unless checked. Verdict: insufficient_data below `min_samples` rows; drift when at least
    `min_drifted_features` features drift; no_drift when some feature was checked; otherwise insufficient_data
    or not_checked.

    current_counts, when given, receives each tested feature's current counts as the tests computed them
    (numeric: the non-missing values in the profile's PSI bins; categorical: per category then "other"), so the
    report's histograms (`reports.drift_report.current_histograms`) need not bin a million rows again.

    rows: the number of captured input rows in `columns` when it differs from the predictions' (a window that
    spans a promotion: every served version's inputs, the live model's predictions only); default
    predictions.size. The predictions' own test needs `min_samples` predictions."""
    n = int(np.asarray(predictions).size) if rows is None else int(rows)
    served = int(np.asarray(predictions).size)
    counts = current_counts if current_counts is not None else {}
    features = {f.name: _feature_report(f, family, profile, columns, n, policy, counts) for f in family.features}
    drifted_features = sorted(name for name, f in features.items() if f["drifted"])
    statuses = {f["status"] for f in features.values()}
    if n < policy.min_samples:
        verdict = "insufficient_data"
    elif len(drifted_features) >= policy.min_drifted_features:
        verdict = "drift"
    elif "checked" in statuses:
        verdict = "no_drift"
    else:
        verdict = "insufficient_data" if "insufficient_data" in statuses else "not_checked"
    baseline_predictions = profile.get("prediction", {})
    # Below min_samples no figure (a PSI of a handful of predictions reads as a shift: 8.6 on one row).
    prediction_psi = (round(psi(np.asarray(baseline_predictions["psi_counts"]), prediction_counts(predictions)), 6)
                      if served >= max(1, policy.min_samples) and "psi_counts" in baseline_predictions
                      and family.task == BINARY else None)
    # Regression and multiclass families: their prediction distribution tested per task (mlops.stats.tasks).
    prediction = prediction_drift(family.task, baseline_predictions, predictions, policy)
    if prediction is not None:
        prediction_psi = prediction.get("psi")
    return {"verdict": verdict, "rows": n, "min_samples": policy.min_samples, "features": features,
            **({"prediction": prediction} if prediction is not None else {}),
            "drifted_features": drifted_features if verdict == "drift" or verdict == "no_drift" else [],
            "unchecked_features": {name: f["reason"] for name, f in features.items() if f["status"] != "checked"},
            "prediction_psi": prediction_psi, "profile_format": int(profile.get("format", 1)),
            "policy": policy.model_dump(mode="json")}


def _not_checked(feature: Feature, status: str, reason: str, **figures: Any) -> dict[str, Any]:
    return {"kind": feature.kind, "status": status, "reason": reason, "drifted": None, **figures}


@dataclass(frozen=True)
class _Test:
    """One drift test on a feature: drifts when p_value < the feature's share of alpha and effect >= floor."""

    p_value: float
    effect: float
    floor: float
    describe: str  # completed with the p-value and the threshold it was held to


def _feature_report(feature: Feature, family: ModelFamily, profile: dict[str, Any], columns: dict[str, np.ndarray],
                    n: int, policy: DriftPolicy, counts: dict[str, np.ndarray]) -> dict[str, Any]:
    base = profile.get("features", {}).get(feature.name)
    if int(profile.get("format", 1)) < PROFILE_FORMAT:
        return _not_checked(feature, "not_checked", f"the live model's baseline profile has format "
                            f"{profile.get('format', 1)} (float32-profiled, approximate KS); retrain to check drift")
    if base is None or base.get("kind") != feature.kind:
        return _not_checked(feature, "not_checked", "the live model's baseline profile has no "
                            f"{feature.kind} profile for this feature")
    if feature.name not in columns:
        reason = ("listed in never_capture: its values are not captured" if feature.name in family.never_capture
                  else "absent from every captured record")
        return _not_checked(feature, "not_checked", reason)
    values = np.asarray(columns[feature.name], dtype=np.float64)
    if n < policy.min_samples:
        return _not_checked(feature, "insufficient_data", f"{n} captured rows, {policy.min_samples} needed")
    missing = int(np.count_nonzero(np.isnan(values)))
    present = int(values.size) - missing
    report: dict[str, Any] = {"kind": feature.kind, "status": "checked", "rows": present, "missing": missing}
    tests = _missing_rate_test(base, present, missing, policy, report)
    skipped: tuple[str, str] | None = None
    if present < policy.min_samples:
        skipped = ("insufficient_data", f"{present} non-missing values, {policy.min_samples} needed for the value "
                   "tests")
    elif base["n"] == 0:
        skipped = ("not_checked", "the training data holds no non-missing values to compare with")
    elif feature.kind == "categorical":
        tests += _categorical_tests(feature, base, values, policy, report, counts)
    else:
        tests += _numeric_tests(base, values, policy, report, counts, feature.name)
    if not tests:
        return _not_checked(feature, *(skipped or ("not_checked", "nothing to test")), rows=present, missing=missing)
    # The feature's tests share its p-value (Bonferroni), so its false-drift rate stays at or below it.
    alpha = (policy.chi2_pvalue if feature.kind == "categorical" else policy.ks_pvalue) / len(tests)
    reasons = [f"{t.describe} (p {t.p_value:.2g} < {alpha:.2g})" for t in tests
               if t.p_value < alpha and t.effect >= t.floor]
    report.update({"drifted": bool(reasons), "drift_reasons": reasons, "alpha_per_test": alpha})
    if skipped:
        report["reason"] = f"only the missing rate was tested: {skipped[1]}"
    return report


def _missing_rate_test(base: dict[str, Any], present: int, missing: int, policy: DriftPolicy,
                       report: dict[str, Any]) -> list[_Test]:
    """Chi-square on [present, missing] counts, baseline vs traffic, when either side has missing values."""
    base_missing = int(base.get("missing", 0))
    total = present + missing
    report["missing_rate"] = round(missing / total, 6) if total else None
    report["baseline_missing_rate"] = round(base_missing / max(1, base["n"] + base_missing), 6)
    if not (base_missing or missing):
        return []
    expected, actual = np.asarray([base["n"], base_missing]), np.asarray([present, missing])
    _, p_value, _ = pooled_chi_square(expected, actual)
    # Effect: the change of the missing share, i.e. the KS distance of the missing indicator, held to KS's floor.
    change = abs(missing / max(1, total) - base_missing / max(1, base["n"] + base_missing))
    report.update({"missing_p_value": p_value, "missing_rate_change": round(change, 6)})
    return [_Test(p_value, change, policy.ks_min_statistic,
                  f"missing rate {report['missing_rate']:.1%} vs {report['baseline_missing_rate']:.1%} in training, "
                  f"a change of {change:.3f} >= {policy.ks_min_statistic}")]


def _numeric_tests(base: dict[str, Any], values: np.ndarray, policy: DriftPolicy, report: dict[str, Any],
                   counts: dict[str, np.ndarray], name: str) -> list[_Test]:
    shift = numeric_shift(np.asarray(base["ecdf_points"]), np.asarray(base["ecdf_at_or_below"]),
                          np.asarray(base["ecdf_below"]), int(base["n"]), np.asarray(base["psi_edges"]),
                          np.asarray(base["psi_counts"]), values)
    counts[name] = shift.counts
    ks = shift.ks
    report.update({"psi": round(shift.psi, 6), "psi_p_value": shift.psi_p_value, "psi_bins_tested": shift.psi_bins,
                   "ks_statistic": round(ks.statistic, 6), "ks_statistic_upper_bound": round(ks.upper_bound, 6),
                   "ks_p_value": ks.p_value, "ks_exact": bool(base.get("ecdf_exact", False)),
                   "mean": float(np.nanmean(values) if shift.missing else np.mean(values)),
                   "baseline_mean": base["mean"]})
    return [_Test(shift.psi_p_value, shift.psi, policy.psi_threshold,
                  f"PSI {shift.psi:.3f} >= {policy.psi_threshold}, chi-square over {shift.psi_bins} bins"),
            _Test(ks.p_value, ks.statistic, policy.ks_min_statistic,
                  f"KS D {ks.statistic:.3f} >= {policy.ks_min_statistic}")]


def _categorical_tests(feature: Feature, base: dict[str, Any], values: np.ndarray, policy: DriftPolicy,
                       report: dict[str, Any], counts: dict[str, np.ndarray]) -> list[_Test]:
    names = [*feature.categories, OTHER]
    expected = _baseline_category_counts(feature, base)
    actual, _ = category_counts(values, len(names))
    counts[feature.name] = actual
    stat, p_value, tested = pooled_chi_square(expected, actual)
    _, _, v = chi_square_against_frequencies(expected, actual)
    balanced = equal_weight_cramers_v(expected, actual)
    report.update({"chi2": round(stat, 4), "p_value": p_value, "categories_tested": tested, "cramers_v": round(v, 6),
                   "cramers_v_equal_weight": round(balanced, 6),
                   "unseen_categories": [c for c, e, a in zip(names, expected, actual, strict=True) if e == 0 and a],
                   "vanished_categories": [c for c, e, a in zip(names, expected, actual, strict=True) if e and not a]})
    return [_Test(p_value, balanced, policy.chi2_min_cramers_v,
                  f"category shares differ, equal-weight Cramér's V {balanced:.3f} >= {policy.chi2_min_cramers_v}")]


def _baseline_category_counts(feature: Feature, base: dict[str, Any]) -> np.ndarray:
    """The baseline's counts in the family's category order, then "other". Categories the profile knows but the
    family no longer declares count as "other", as scoring now maps them."""
    known = dict(zip(base["categories"], base["counts"], strict=False))
    counts = [int(known.pop(c, 0)) for c in feature.categories]
    profile_other = int(base["counts"][len(base["categories"])]) if len(base["counts"]) > len(base["categories"]) else 0
    return np.asarray([*counts, profile_other + sum(int(c) for c in known.values())], dtype=np.int64)


def captured_columns(family: ModelFamily, captured: CapturedColumns | list[Any]
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Captured inputs as float64 columns in the DataSet encoding (NaN = missing, including JSON null, a key
    absent from one record and a value equal to one of the family's missing markers, as scoring reads it:
    `scoring.value_text`; categorical: category index, k = "other" for an undeclared category) and the
    predictions per task, (n,) each. `captured`: the columnar window (`CaptureReader.columns`) or a list of
    `CapturedRecord`s. Vectorised: a categorical column's distinct texts are encoded once, then indexed by code.
    A feature listed in never_capture, or absent from every captured record, gets no column (the drift check
    reports it as not checked)."""
    if not isinstance(captured, CapturedColumns):
        captured = CapturedColumns.from_records(captured)
    columns: dict[str, np.ndarray] = {}
    markers = frozenset(m.strip() for m in family.missing_markers)
    for feature in family.features:
        name = feature.name
        column = captured.fields.get(name)
        if name in family.never_capture or column is None:
            continue
        if feature.kind == "categorical":
            index = {c: float(i) for i, c in enumerate(feature.categories)}
            other = float(len(feature.categories))
            columns[name] = _encoded(column, lambda v, i=index, o=other: _category(v, i, o, markers))
        else:
            columns[name] = _numbers(column, markers)
    return columns, captured_predictions(family.task, captured)


def _encoded(column: Column, encode: Any) -> np.ndarray:
    """`encode(value)` of every row, computed once per distinct text for a dictionary column."""
    n = column.values.size if column.kind != TEXT else column.codes.size  # type: ignore[union-attr]
    if column.kind == TEXT:
        table = np.fromiter((encode(str(t)) for t in column.values), dtype=np.float64, count=column.values.size)
        codes = column.codes
        out = np.full(codes.size, encode(None), dtype=np.float64)  # type: ignore[union-attr]
        present = codes >= 0  # type: ignore[operator]
        out[present] = table[codes[present]]  # type: ignore[index]
        return out
    return np.fromiter((encode(column.python(i)) for i in range(n)), dtype=np.float64, count=n)


def _numbers(column: Column, markers: frozenset[str]) -> np.ndarray:
    """A numeric feature's captured values (`_number` of each, vectorised for a numeric column: only values equal
    to a marker's number are looked at one by one)."""
    if column.kind != NUMERIC:
        return _encoded(column, lambda v: _number(v, markers))
    values = np.asarray(column.values, dtype=np.float64)  # no copy unless a marker's number must be replaced
    numbers = marker_numbers(markers)
    if numbers:
        hits = np.flatnonzero(np.isin(values, np.fromiter(numbers, dtype=np.float64)))
        if hits.size:
            values = values.copy()
            for i in hits:
                values[i] = _number(column.python(int(i)), markers)
    return values


def _category(value: Any, index: dict[str, float], other: float, markers: frozenset[str]) -> float:
    """A captured categorical input's code: its index, NaN for null or a missing marker that is not a declared
    category, k ("other") for anything else."""
    if value is None:
        return float("nan")
    if type(value) is not str:
        return other
    code = category_code(value, index)  # normalised exactly as scoring and training normalise it
    if code is not None:
        return code
    return float("nan") if value.strip() in markers else other


def _number(value: Any, markers: frozenset[str] = frozenset()) -> float:
    """A captured numeric input as float64: NaN for null, a missing marker ("-999" sent as -999), or anything
    scoring would not have accepted."""
    if (type(value) is int or type(value) is float) and value_text(value) not in markers:
        return float(value)
    return float("nan")


class DriftMonitor:
    """Drift checks of live families. `capture_settle_seconds`: a check's window ends this long before it runs
    (deployed: `mlops.core.settings.CAPTURE_SETTLE_SECONDS`, so capture objects whose PUT began before the check
    are listed by the next one at the latest; 0 where every capture is written before a check starts)."""

    def __init__(self, registry: ModelRegistry, artifacts: ArtifactStore, captures: CaptureReader,
                 publisher: MetricsPublisher, state_machine_arn: str, is_execution_running: Any,
                 capture_settle_seconds: float = 0.0) -> None:
        self.registry = registry
        self.capture_settle_seconds = capture_settle_seconds
        self.artifacts = artifacts
        self.captures = captures
        self.publisher = publisher
        self.state_machine_arn = state_machine_arn
        self.is_execution_running = is_execution_running
        self.retrainer = Retrainer(registry, publisher, state_machine_arn, is_execution_running, artifacts.bucket)

    def run(self, families: list[str] | None = None, tier: str | None = None) -> list[dict[str, Any]]:
        """Check every live family (or the named ones, or those of one serving `tier`); a failure in one family is
        recorded (`record_failure`) and does not stop the others (mlops.monitoring.scope)."""
        return check_live_families(self.registry, families, tier, self.check, self.record_failure)

    def fanout_listing(self, tier: str | None, families: list[str] | None, run: str,
                       batch_size: int = FANOUT_BATCH, skip_idle: bool = False) -> dict[str, Any]:
        """The fan-out state machine's first step: the active families with a live model (of `tier`, or the named
        ones; empty or None: all), in batches of `batch_size`, as a JSON array of {"families": [...]} written to
        `reports/drift-fanout/<run>.json`, which its Distributed Map reads (one child execution per batch: a
        batch's checks share the child's state transitions, Step Functions' unit of cost). One pass over the
        sharded family index (`iter_families`), no per-family read.

        `skip_idle` (the schedules, `mlops drift check-all`): a family with no capture written since its last
        completed check (`FamilySummary.idle_since_drift_check`, from the index) is left out: its check would find
        nothing, so an idle family costs no invocation, transition or S3 read. Their names go to
        `reports/drift-fanout/<run>.idle.json`. Returns {"bucket", "key", "count" (families to check), "batches",
        "idle" (families left out), "idle_key"} (count 0: nothing to check)."""
        wanted = set(families or ())
        live = [s for s in self.registry.iter_families(status=FAMILY_ACTIVE)
                if s.live_version and (not wanted or s.name in wanted) and (not tier or s.serving == tier)]
        idle = [s.name for s in live if skip_idle and s.idle_since_drift_check]
        names = [s.name for s in live if not (skip_idle and s.idle_since_drift_check)]
        size = max(1, int(batch_size))
        items = [{"families": names[i:i + size], "run": run} for i in range(0, len(names), size)]
        key = f"{FANOUT_PREFIX}{run}.json"
        s3 = aws.client("s3")
        s3.put_object(Bucket=self.artifacts.bucket, Key=key, Body=orjson.dumps(items), ContentType="application/json")
        idle_key = None
        if idle:
            idle_key = f"{FANOUT_PREFIX}{run}.idle.json"
            s3.put_object(Bucket=self.artifacts.bucket, Key=idle_key, Body=orjson.dumps(idle),
                          ContentType="application/json")
        return {"bucket": self.artifacts.bucket, "key": key, "count": len(names), "batches": len(items),
                "idle": len(idle), "idle_key": idle_key}

    def check_batch(self, names: list[str], run: str | None = None) -> dict[str, Any]:
        """One fan-out item: each family's check in turn (`check_family`); a family whose check raises anything is
        recorded as failed (logged, DriftCheckErrors) and the batch goes on, so one family never stops another.
        Returns {"checked", "results"} with one small summary per family. `run`: the fan-out execution's name,
        recorded with each check (`fanout_run`), so `mlops drift check-all` reads its own run's records."""
        results = []
        for name in names:
            try:
                results.append(self.check_family(name, run))
            except Exception as exc:  # noqa: BLE001 - every other family of the batch is still checked
                self.record_failure(name, f"{type(exc).__name__}: {exc}", run)
                results.append({"family": name, "verdict": "error", "error": f"{type(exc).__name__}: {exc}"[:500]})
        return {"checked": len(results), "results": results}

    def check_family(self, name: str, run: str | None = None) -> dict[str, Any]:
        """One family's check, as the fan-out's item processor runs it: the family looked up directly (one
        GetItem), skipped when it was retired or lost its live model since the listing. A platform error is
        answered as verdict "error" and counted in DriftCheckErrors by family (what the alarm names); anything
        else raises, for the state machine's retry and then RecordCheckFailure. Returns a summary small enough for
        thousands of items: family, verdict, rows, drifted features, report key, retrain started."""
        try:
            record = self.registry.get_family(name)
            if record.retired or not record.live_version:
                return {"family": name, "verdict": "skipped",
                        "reason": "retired" if record.retired else "no live model"}
            report = self.check(record, run)
        except PlatformError as exc:
            self.record_failure(name, exc.message, run)
            return {"family": name, "verdict": "error", "error": exc.message}
        retrain = report.get("retrain") or {}
        return {"family": name, "verdict": report["verdict"], "rows": report.get("rows", 0),
                "drifted_features": report.get("drifted_features", []), "report_key": report.get("report_key"),
                "retrain_started": bool(retrain.get("started"))}

    def record_failure(self, name: str, error: Any, run: str | None = None) -> None:
        """A check that failed: logged with its family, counted in DriftCheckErrors (the alarm's contributor names
        the family) and recorded as a drift record with verdict "error" and the message, so `mlops drift list`,
        `drift check-all` and auditors see the failure instead of the last good check. The window it would have
        judged stays open (the next check starts after the last judged window)."""
        text = str(error)[:2000]
        logger().error("drift check failed", extra={"family": name, "error": text})
        self.publisher.put("DriftCheckErrors", 1, {"Family": name})
        try:
            live = self.registry.get_family(name).live_version or None
            self.registry.record_drift(name, {"verdict": "error", "error": text, "family": name, "live_version": live,
                                              "rows": 0, "drifted_features": [],
                                              "checked_at": datetime.now(UTC).isoformat(),
                                              **({"fanout_run": run} if run else {})})
        except Exception as exc:  # noqa: BLE001 - the log line and the metric above already say it failed
            logger().warning("drift failure not recorded", extra={"family": name, "error": str(exc)[:300]})

    def check(self, record: FamilyRecord, run: str | None = None) -> dict[str, Any]:
        """One family's drift check of its live model (docs/statistics.md; the window: `CaptureReader.columns`
        with arrived=True). `run`: the fan-out execution that asked for it, recorded as `fanout_run`."""
        live = self.registry.get_version(record.family.name, record.live_version)
        # The live model's inputs and baseline are those of the declaration it was trained under: a run-time
        # change of the features applies to the next model (the drift policy applies at once).
        family, trained_config = self.registry.live_declaration(record, live.lineage or {})
        # The last judged window (failed checks, verdict "error", judged nothing: their window stays open), of
        # whichever version was live then: a promotion or rollback does not drop the traffic since.
        previous = [r for r in self.registry.drift_records(family.name, limit=10) if r.get("verdict") != "error"]
        since = float(previous[0].get("report", {}).get("window_end", 0.0)) if previous else 0.0
        # On the millisecond grid of the capture keys, the current millisecond excluded: an object keyed in it may
        # still be written after this check lists, and falls in the next window instead of between two.
        until = (int((time.time() - self.capture_settle_seconds) * 1000) - 1) / 1000
        # The window is the capture objects WRITTEN since the last judged window (records a sandbox still held at
        # that check are judged now), of every version that served the family (the live one, the previous live
        # one, canaries, rolled-back ones); the newest MAX_CAPTURED_ROWS of it, as columns (read newest first, in
        # parallel). Their inputs are judged against the live model's baseline: is today's traffic what the live
        # model was trained on? Predictions are the live model's only.
        unreadable: list[dict[str, str]] = []
        captured = self.captures.written(family.name, self.captures.versions(family.name), since, until,
                                         max_rows=MAX_CAPTURED_ROWS, request_ids=False, unreadable=unreadable)
        judged, not_judged = self._comparable(record, family, live.version, captured)
        if not judged and not unreadable:
            # No traffic since the last check: nothing to judge and nothing written (no report, record or metric),
            # so an idle family costs nothing (docs/architecture.md, "Serving tiers"); the window stays open. The
            # mark says captures up to `until` were looked at: until a new capture, the fan-out skips the family.
            self.registry.set_drift_checked(family.name, until)
            return {"family": family.name, "live_version": live.version, "verdict": "no_traffic", "rows": 0,
                    "drifted_features": [], "retrain": None, "report_key": None, "window_start": since,
                    **({"not_judged": not_judged} if not_judged else {})}
        profile = self.artifacts.get_json(live.lineage["baseline_profile"]["sha256"])
        inputs = concat([captured[v] for v in judged])
        columns, _ = captured_columns(family, inputs)
        predictions = captured_predictions(family.task, captured.get(live.version, CapturedColumns.empty()))
        counts: dict[str, np.ndarray] = {}
        report = compare_with_baseline(family, profile, columns, predictions, family.drift, counts, rows=len(inputs))
        # Too few rows: keep the window open so samples accumulate instead of being judged in slices.
        window_end = since if report["verdict"] == "insufficient_data" else until
        # window_end is where the next check starts; read_until where this one stopped reading (they differ when
        # the window stays open: those rows are read again, with more, next time).
        report.update({"family": family.name, "live_version": live.version, "window_start": since,
                       "window_end": window_end, "read_until": until, "window_open": window_end != until,
                       "checked_at": datetime.now(UTC).isoformat(),
                       "family_config_version": trained_config, "prediction_rows": int(predictions.size),
                       "rows_by_version": {str(v): len(captured[v]) for v in judged},
                       **({"not_judged": not_judged} if not_judged else {}),
                       **({"unreadable_objects": unreadable[:20], "unreadable_count": len(unreadable)}
                          if unreadable else {}),
                       **({"fanout_run": run} if run else {})})
        if trained_config != int(record.config_version or 0):
            report["declaration_note"] = (
                f"checked against the declaration live v{live.version} was trained under (config version "
                f"{trained_config}); the family's current declaration (config version {record.config_version}) "
                "applies to its next model")
        report["retrain"] = self._maybe_retrain(record, report)
        key = f"{REPORT_PREFIX}family={family.name}/{datetime.now(UTC):%Y-%m-%dT%H-%M-%S.%fZ}.json"
        # The S3 report also holds the current distributions its page draws (the registry item stays small); the
        # predicted-probability histogram is binary's (other tasks' predictions are drawn from the baseline only).
        histograms = drift_histograms(family, profile, columns, predictions if family.task == BINARY else None,
                                      counts)
        stored = {**report, "report_key": key, "histograms": histograms}
        aws.client("s3").put_object(Bucket=self.artifacts.bucket, Key=key,
                                    Body=orjson.dumps(stored, option=orjson.OPT_SERIALIZE_NUMPY),
                                    ContentType="application/json")
        report["report_key"] = key
        report.update(publish_drift_report(self.artifacts.bucket, key, stored, profile, family))
        self.registry.record_drift(family.name, report)
        dims = {"Family": family.name}
        self.publisher.put("DriftedFeatures", len(report["drifted_features"]), dims)
        if report["prediction_psi"] is not None:
            self.publisher.put("PredictionPSI", report["prediction_psi"], dims, unit="None")
        numeric = [f["psi"] for f in report["features"].values() if f.get("psi") is not None]
        if numeric:  # no figure rather than a 0.0 that reads as stability
            self.publisher.put("MaxFeaturePSI", max(numeric), dims, unit="None")
        self.publisher.put("DriftRowsChecked", report["rows"], dims)
        # After the record: a check that fails before this point leaves the family due at the next run.
        self.registry.set_drift_checked(family.name, until)
        return report

    def _comparable(self, record: FamilyRecord, family: ModelFamily, live: int,
                    captured: dict[int, CapturedColumns]) -> tuple[list[int], list[dict[str, Any]]]:
        """Which versions' captured inputs the live model's baseline can judge: the live version's, and another
        version's when the declaration it was trained under has the same inputs (feature names and kinds;
        categories are read as the live model reads them, an undeclared one as "other"). Returns (versions,
        [{"version", "rows", "reason"}] of those left out, named in the report)."""
        inputs = {f.name: f.kind for f in family.features}
        judged: list[int] = []
        left: list[dict[str, Any]] = []
        for version, rows in captured.items():
            if version == live:
                judged.append(version)
                continue
            try:
                lineage = self.registry.get_version(family.name, version).lineage or {}
                served, _ = self.registry.live_declaration(record, lineage)
            except PlatformError as exc:
                left.append({"version": version, "rows": len(rows), "reason": f"its registry entry: {exc}"})
                continue
            theirs = {f.name: f.kind for f in served.features}
            if theirs != inputs:
                differ = ", ".join(sorted(set(theirs) ^ set(inputs))) or "kinds differ"
                left.append({"version": version, "rows": len(rows),
                             "reason": f"v{version} was trained with other inputs ({differ}) than live v{live}"})
                continue
            judged.append(version)
        return judged, left

    def _maybe_retrain(self, record: FamilyRecord, report: dict[str, Any]) -> dict[str, Any]:
        """Confirmed drift starts a retrain when the policy allows it (mlops.monitoring.retrain: the rollout lock,
        the newest usable data set, a run record with trigger source "drift")."""
        if report["verdict"] != "drift":
            return {"started": False, "reason": "no confirmed drift"}
        if not record.family.drift.auto_retrain:
            return {"started": False, "reason": "policy: auto_retrain is off"}
        return self.retrainer.start(record, "drift", f"{record.family.name[:40]}-drift-{int(time.time() * 1000)}")

    def newest_dataset(self, family: str, record: FamilyRecord,
                       skipped: list[str] | None = None) -> dict[str, Any] | None:
        """The data set a retrain would use now (mlops.monitoring.retrain.Retrainer.newest_dataset)."""
        return self.retrainer.newest_dataset(family, record, skipped)


def create_drift_monitor(settings: Any) -> DriftMonitor:
    from mlops.rollout.control import execution_is_running

    return DriftMonitor(ModelRegistry(settings.registry_table), ArtifactStore(settings.artifact_bucket),
                        CaptureReader(settings.artifact_bucket), MetricsPublisher(settings.metrics_namespace),
                        settings.state_machine_arn, execution_is_running(settings.state_machine_arn),
                        settings.capture_settle_seconds)
