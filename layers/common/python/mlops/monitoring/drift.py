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
from mlops.pipeline.trigger import DATASET_PREFIX, is_trainable_key, pipeline_input, start_pipeline
from mlops.registry.artifacts import ArtifactStore
from mlops.registry.runs import DUPLICATE, FAILED, GATED_OUT, REFUSED, REJECTED, ROLLED_BACK, RunLog
from mlops.registry.store import FAMILY_ACTIVE, UPLOADS_CONSIDERED, FamilyRecord, ModelRegistry
from mlops.reports.publish import drift_histograms, publish_drift_report
from mlops.serving.capture import CaptureReader
from mlops.serving.scoring import value_text
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
OTHER = "(other)"
# Upload-run outcomes that rule a data set out of a drift retrain: it never trained (rejected, refused, a duplicate
# of content an earlier version holds), failed, or gave a model the gate or the canary turned down.
UNUSABLE_RUN_OUTCOMES = (REJECTED, FAILED, REFUSED, DUPLICATE, GATED_OUT, ROLLED_BACK)


def compare_with_baseline(family: ModelFamily, profile: dict[str, Any], columns: dict[str, np.ndarray],
                          predictions: np.ndarray, policy: DriftPolicy) -> dict[str, Any]:
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
    or not_checked."""
    n = int(np.asarray(predictions).size)
    features = {f.name: _feature_report(f, family, profile, columns, n, policy) for f in family.features}
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
    prediction_psi = (round(psi(np.asarray(baseline_predictions["psi_counts"]), prediction_counts(predictions)), 6)
                      if n and "psi_counts" in baseline_predictions and family.task == BINARY else None)
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
                    n: int, policy: DriftPolicy) -> dict[str, Any]:
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
        tests += _categorical_tests(feature, base, values, policy, report)
    else:
        tests += _numeric_tests(base, values, policy, report)
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


def _numeric_tests(base: dict[str, Any], values: np.ndarray, policy: DriftPolicy,
                   report: dict[str, Any]) -> list[_Test]:
    shift = numeric_shift(np.asarray(base["ecdf_points"]), np.asarray(base["ecdf_at_or_below"]),
                          np.asarray(base["ecdf_below"]), int(base["n"]), np.asarray(base["psi_edges"]),
                          np.asarray(base["psi_counts"]), values)
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
                       report: dict[str, Any]) -> list[_Test]:
    names = [*feature.categories, OTHER]
    expected = _baseline_category_counts(feature, base)
    actual, _ = category_counts(values, len(names))
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


def captured_columns(family: ModelFamily, records: list[Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Captured inputs as float64 columns in the DataSet encoding (NaN = missing, including JSON null, a key
    absent from one record and a value equal to one of the family's missing markers, as scoring reads it:
    `scoring.value_text`; categorical: category index, k = "other" for an undeclared category) and the
    predictions per task, (n,) each. A feature listed in never_capture, or absent from every captured
    record, gets no column (the drift check reports it as not checked)."""
    columns: dict[str, np.ndarray] = {}
    count = len(records)
    markers = frozenset(m.strip() for m in family.missing_markers)
    for feature in family.features:
        name = feature.name
        if name in family.never_capture or (count and not any(name in r.inputs for r in records)):
            continue
        if feature.kind == "categorical":
            index = {c: float(i) for i, c in enumerate(feature.categories)}
            other = float(len(feature.categories))
            columns[name] = np.fromiter((_category(r.inputs.get(name), index, other, markers) for r in records),
                                        dtype=np.float64, count=count)
        else:
            columns[name] = np.fromiter((_number(r.inputs.get(name), markers) for r in records), dtype=np.float64,
                                        count=count)
    return columns, captured_predictions(family.task, records)


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
    def __init__(self, registry: ModelRegistry, artifacts: ArtifactStore, captures: CaptureReader,
                 publisher: MetricsPublisher, state_machine_arn: str, is_execution_running: Any) -> None:
        self.registry = registry
        self.artifacts = artifacts
        self.captures = captures
        self.publisher = publisher
        self.state_machine_arn = state_machine_arn
        self.is_execution_running = is_execution_running

    def run(self, families: list[str] | None = None, tier: str | None = None) -> list[dict[str, Any]]:
        """Check every live family (or the named ones, or those of one serving `tier`). A failure in one family
        does not stop the others."""
        results = []
        for summary in self.registry.iter_families(status=FAMILY_ACTIVE):
            if (families and summary.name not in families) or not summary.live_version:
                continue
            try:
                record = self.registry.get_family(summary.name)
                if record.retired:  # retired since the listing
                    continue
                if tier is not None and record.family.serving != tier:
                    continue
                results.append(self.check(record))
            except PlatformError as exc:
                logger().error("drift check failed", extra={"family": summary.name, "error": exc.message})
                results.append({"family": summary.name, "verdict": "error", "error": exc.message})
        return results

    def check(self, record: FamilyRecord) -> dict[str, Any]:
        family = record.family
        live = self.registry.get_version(family.name, record.live_version)
        previous = self.registry.drift_records(family.name, limit=1)
        since = _epoch(live.updated_at)
        if previous and previous[0].get("report", {}).get("live_version") == live.version:
            since = max(since, float(previous[0]["report"].get("window_end", since)))
        until = time.time()
        records = list(self.captures.records(family.name, live.version, since, until, limit=MAX_CAPTURED_ROWS))
        if not records:
            # No traffic since the last check: nothing to judge and nothing written (no report, record or metric),
            # so an idle family costs nothing (docs/architecture.md, "Serving tiers"); the window stays open.
            return {"family": family.name, "live_version": live.version, "verdict": "no_traffic", "rows": 0,
                    "drifted_features": [], "retrain": None, "report_key": None, "window_start": since}
        profile = self.artifacts.get_json(live.lineage["baseline_profile"]["sha256"])
        columns, predictions = captured_columns(family, records)
        report = compare_with_baseline(family, profile, columns, predictions, family.drift)
        # Too few rows: keep the window open so samples accumulate instead of being judged in slices.
        window_end = since if report["verdict"] == "insufficient_data" else until
        report.update({"family": family.name, "live_version": live.version, "window_start": since,
                       "window_end": window_end, "checked_at": datetime.now(UTC).isoformat()})
        report["retrain"] = self._maybe_retrain(record, report)
        key = f"{REPORT_PREFIX}family={family.name}/{datetime.now(UTC):%Y-%m-%dT%H-%M-%S.%fZ}.json"
        # The S3 report also holds the current distributions its page draws (the registry item stays small); the
        # predicted-probability histogram is binary's (other tasks' predictions are drawn from the baseline only).
        histograms = drift_histograms(family, profile, columns, predictions if family.task == BINARY else None)
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
        return report

    def _maybe_retrain(self, record: FamilyRecord, report: dict[str, Any]) -> dict[str, Any]:
        family = record.family
        if report["verdict"] != "drift":
            return {"started": False, "reason": "no confirmed drift"}
        if not family.drift.auto_retrain:
            return {"started": False, "reason": "policy: auto_retrain is off"}
        holder = self.registry.get_family(family.name).rollout_holder
        if holder and self.is_execution_running(holder):
            return {"started": False, "reason": f"rollout {holder} is in progress; retrain deferred"}
        skipped: list[str] = []
        found = self.newest_dataset(family.name, record, skipped)
        if found is None:
            considered = ("; considered: " + "; ".join(skipped[:5])
                          + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else "")) if skipped else \
                "; no upload is recorded for this family"
            return {"started": False, "reason": f"no usable data set under {DATASET_PREFIX}{family.name}/: the "
                                                "newest uploads' runs were each rejected, failed, refused, a "
                                                "duplicate, gated out or rolled back, or trained the live model "
                                                "(a retrain on the live model's own data set under the same "
                                                "family configuration reproduces it: upload newer data)"
                                                + considered}
        dataset = {k: v for k, v in found.items() if k != "run_id"}
        name = f"{family.name[:40]}-drift-{int(time.time() * 1000)}"
        started = start_pipeline(self.state_machine_arn, name, pipeline_input(record, dataset, "drift"),
                                 RunLog(self.registry, self.publisher))
        return {**started, "dataset": dataset, "dataset_run": found["run_id"]}

    def newest_dataset(self, family: str, record: FamilyRecord,
                       skipped: list[str] | None = None) -> dict[str, Any] | None:
        """The newest data set version a retrain can use: the family's newest recorded uploads (one query, at most
        UPLOADS_CONSIDERED, newest first), skipping a version
        - its training engine does not read (`trigger.is_trainable_key`: .csv, .csv.gz, and .parquet off Lambda);
        - whose upload run ended in an outcome that rules the data out (`UNUSABLE_RUN_OUTCOMES`: rejected, failed,
          refused, duplicate, gated out, rolled back), or that a later rejection or rollback of a model trained on
          it marked unusable;
        - that trained the live model under the family's current configuration version (a retrain on it would
          reproduce the live model); after a configuration change (`families apply`) it is a fair candidate.
        Two GetItems per candidate, stopping at the first usable one; never lists the bucket or the family's
        versions. Returns the pipeline input's `dataset` plus `run_id` (the upload run that vouches for it), or
        None; `skipped`, when given, receives one line per upload passed over and why (the drift report and
        `mlops drift show` say why no retrain started)."""
        passed_over = skipped if skipped is not None else []
        live_ident: tuple[Any, Any] = (None, None)
        if record.live_version:
            lineage = self.registry.get_version(family, record.live_version).lineage or {}
            live = lineage.get("dataset") or {}
            if int(lineage.get("family_config_version") or 0) == int(getattr(record, "config_version", 0) or 0):
                live_ident = (live.get("key"), live.get("version_id") or None)
        seen: set[tuple[str, str | None]] = set()
        for upload in self.registry.recent_uploads(family, UPLOADS_CONSIDERED):
            dataset = upload.get("dataset") or {}
            ident = (dataset.get("key"), dataset.get("version_id") or None)
            if not ident[0] or ident in seen:
                continue
            seen.add(ident)
            named = f"{ident[0]}" + (f" (version {ident[1]})" if ident[1] else "")
            if ident == live_ident:
                passed_over.append(f"{named}: the live model v{record.live_version} was trained on it under the "
                                   "current configuration")
                continue
            if not is_trainable_key(record.family, str(ident[0])):
                passed_over.append(f"{named}: the family's training engine does not read this format")
                continue
            run = self.registry.get_run(family, upload["run_id"])
            if run is not None and run.get("outcome") in UNUSABLE_RUN_OUTCOMES:
                passed_over.append(f"{named}: its run ended {run.get('outcome')}")
                continue
            # A model trained on it was rejected or rolled back later (an operator's rollback included).
            if self.registry.dataset_unusable(family, str(ident[0]), ident[1]) is not None:
                passed_over.append(f"{named}: a model trained on it was later rejected or rolled back")
                continue
            return {"bucket": dataset.get("bucket") or self.artifacts.bucket, "key": ident[0],
                    "version_id": ident[1], "etag": str(dataset.get("etag", "")).strip('"'),
                    "run_id": upload["run_id"]}
        return None


def _epoch(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def create_drift_monitor(settings: Any) -> DriftMonitor:
    from mlops.rollout.control import execution_is_running

    return DriftMonitor(ModelRegistry(settings.registry_table), ArtifactStore(settings.artifact_bucket),
                        CaptureReader(settings.artifact_bucket), MetricsPublisher(settings.metrics_namespace),
                        settings.state_machine_arn, execution_is_running(settings.state_machine_arn))
