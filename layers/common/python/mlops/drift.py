"""Scheduled drift checks: captured inputs and predictions of each live model against its baseline profile."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from . import aws
from .artifacts import ArtifactStore
from .capture import CaptureReader
from .errors import PlatformError
from .observability import MetricsPublisher, logger
from .profile import PREDICTION_EDGES
from .registry import REJECTED, ROLLED_BACK, FamilyRecord, ModelRegistry
from .schemas import DriftPolicy, ModelFamily
from .stats import bin_counts, chi_square_against_frequencies, psi, psi_and_ks
from .trigger import DATASET_PREFIX, pipeline_input, start_pipeline

REPORT_PREFIX = "reports/drift/"
MAX_CAPTURED_ROWS = 2_000_000


def compare_with_baseline(family: ModelFamily, profile: dict[str, Any], columns: dict[str, np.ndarray],
                          predictions: np.ndarray, policy: DriftPolicy) -> dict[str, Any]:
    """Per-feature PSI and KS (numeric) or chi-square with Cramer's V (categorical), and the verdict.

    A feature drifts when its shift is both significant and large: PSI over its threshold, or a KS p-value under
    its threshold with D at least the minimum effect, or a chi-square p-value under its threshold with V at least
    the minimum effect. Below `min_samples` rows the verdict is insufficient_data, never drift."""
    n = int(predictions.size)
    features: dict[str, Any] = {}
    for feature in family.features:
        base = profile["features"][feature.name]
        values = columns[feature.name]
        if feature.kind == "categorical":
            counts = np.bincount(values[values >= 0].astype(np.int64), minlength=len(feature.categories))
            stat, p_value, v = chi_square_against_frequencies(np.asarray(base["counts"]), counts)
            drifted = p_value < policy.chi2_pvalue and v >= policy.chi2_min_cramers_v
            features[feature.name] = {"kind": "categorical", "chi2": round(stat, 4), "p_value": p_value,
                                      "cramers_v": round(v, 6), "drifted": bool(drifted)}
        else:
            feature_psi, d, p_value = psi_and_ks(np.asarray(base["psi_edges"]), np.asarray(base["psi_counts"]),
                                                 np.asarray(base["ks_quantiles"]), int(base["n"]), values)
            significant = p_value < policy.ks_pvalue and d >= policy.ks_min_statistic
            drifted = feature_psi >= policy.psi_threshold or significant
            features[feature.name] = {"kind": "numeric", "psi": round(feature_psi, 6), "ks_statistic": round(d, 6),
                                      "ks_p_value": p_value, "mean": float(values.mean()) if values.size else None,
                                      "baseline_mean": base["mean"], "drifted": bool(drifted)}
    prediction_psi = psi(np.asarray(profile["prediction"]["psi_counts"]), bin_counts(predictions, PREDICTION_EDGES))
    drifted_features = sorted(name for name, f in features.items() if f["drifted"])
    if n < policy.min_samples:
        verdict = "insufficient_data"
    elif len(drifted_features) >= policy.min_drifted_features:
        verdict = "drift"
    else:
        verdict = "no_drift"
    return {"verdict": verdict, "rows": n, "min_samples": policy.min_samples, "features": features,
            "drifted_features": drifted_features if verdict != "insufficient_data" else [],
            "prediction_psi": round(prediction_psi, 6),
            "policy": policy.model_dump(mode="json")}


def captured_columns(family: ModelFamily, records: list[Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    columns: dict[str, np.ndarray] = {}
    for feature in family.features:
        if feature.kind == "categorical":
            index = {c: i for i, c in enumerate(feature.categories)}
            columns[feature.name] = np.fromiter((index.get(r.inputs.get(feature.name), -1) for r in records),
                                                dtype=np.int64, count=len(records))
        else:
            columns[feature.name] = np.fromiter((float(r.inputs.get(feature.name, np.nan)) for r in records),
                                                dtype=np.float64, count=len(records))
            columns[feature.name] = columns[feature.name][np.isfinite(columns[feature.name])]
    predictions = np.fromiter((r.probabilities[-1] for r in records), dtype=np.float64, count=len(records))
    return columns, predictions


class DriftMonitor:
    def __init__(self, registry: ModelRegistry, artifacts: ArtifactStore, captures: CaptureReader,
                 publisher: MetricsPublisher, state_machine_arn: str, is_execution_running: Any) -> None:
        self.registry = registry
        self.artifacts = artifacts
        self.captures = captures
        self.publisher = publisher
        self.state_machine_arn = state_machine_arn
        self.is_execution_running = is_execution_running

    def run(self, families: list[str] | None = None) -> list[dict[str, Any]]:
        """Check every live family (or the named ones). A failure in one family does not stop the others."""
        results = []
        token = None
        while True:
            page = self.registry.list_families(limit=100, next_token=token)
            for record in page.items:
                if families and record.family.name not in families:
                    continue
                if not record.live_version:
                    continue
                try:
                    results.append(self.check(record))
                except PlatformError as exc:
                    logger().error("drift check failed", extra={"family": record.family.name, "error": exc.message})
                    results.append({"family": record.family.name, "verdict": "error", "error": exc.message})
            token = page.next_token
            if not token:
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
        profile = self.artifacts.get_json(live.lineage["baseline_profile"]["sha256"])
        columns, predictions = captured_columns(family, records)
        report = compare_with_baseline(family, profile, columns, predictions, family.drift)
        # Too few rows: keep the window open so samples accumulate instead of being judged in slices.
        window_end = since if report["verdict"] == "insufficient_data" else until
        report.update({"family": family.name, "live_version": live.version, "window_start": since,
                       "window_end": window_end, "checked_at": datetime.now(UTC).isoformat()})
        report["retrain"] = self._maybe_retrain(record, report)
        key = f"{REPORT_PREFIX}family={family.name}/{datetime.now(UTC):%Y-%m-%dT%H-%M-%S.%fZ}.json"
        aws.client("s3").put_object(Bucket=self.artifacts.bucket, Key=key,
                                    Body=orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY),
                                    ContentType="application/json")
        report["report_key"] = key
        self.registry.record_drift(family.name, report)
        dims = {"Family": family.name}
        self.publisher.put("DriftedFeatures", len(report["drifted_features"]), dims)
        self.publisher.put("PredictionPSI", report["prediction_psi"], dims, unit="None")
        numeric = [f["psi"] for f in report["features"].values() if f["kind"] == "numeric"]
        self.publisher.put("MaxFeaturePSI", max(numeric) if numeric else 0.0, dims, unit="None")
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
        dataset = self.newest_dataset(family.name, record)
        if dataset is None:
            return {"started": False, "reason": f"no usable data set under {DATASET_PREFIX}{family.name}/"}
        name = f"{family.name[:40]}-drift-{int(time.time() * 1000)}"
        started = start_pipeline(self.state_machine_arn, name, pipeline_input(record, dataset, "drift"))
        return {**started, "dataset": dataset}

    def newest_dataset(self, family: str, record: FamilyRecord) -> dict[str, Any] | None:
        """The newest data set version that has not already produced a rejected or rolled-back model."""
        bad = set()
        token = None
        while True:
            page = self.registry.list_versions(family, limit=100, next_token=token)
            for v in page.items:
                if v.status in (REJECTED, ROLLED_BACK):
                    ds = v.lineage.get("dataset", {})
                    bad.add((ds.get("key"), ds.get("version_id")))
            token = page.next_token
            if not token:
                break
        s3 = aws.client("s3")
        candidates = []
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=self.artifacts.bucket,
                                                                        Prefix=f"{DATASET_PREFIX}{family}/"):
            for v in page.get("Versions", []):
                if v["Key"].lower().endswith(".csv") and (v["Key"], v["VersionId"]) not in bad:
                    candidates.append(v)
        if not candidates:
            return None
        newest = max(candidates, key=lambda v: v["LastModified"])
        return {"bucket": self.artifacts.bucket, "key": newest["Key"], "version_id": newest["VersionId"],
                "etag": newest.get("ETag", "").strip('"')}


def _epoch(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def create_drift_monitor(settings: Any) -> DriftMonitor:
    from .rollout import execution_is_running

    return DriftMonitor(ModelRegistry(settings.registry_table), ArtifactStore(settings.artifact_bucket),
                        CaptureReader(settings.artifact_bucket), MetricsPublisher(settings.metrics_namespace),
                        settings.state_machine_arn, execution_is_running(settings.state_machine_arn))
