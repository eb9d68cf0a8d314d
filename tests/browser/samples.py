"""Realistic report inputs for the report tests and the screenshots: a credit-risk family, a version record with
lineage and curve data, its status history, a drift run computed by the real drift check, and a rollout.

Everything is generated from a fixed seed with numpy (no training run): the holdout probabilities come from a
known logistic model, so the curves have a realistic shape and the figures are reproducible."""

from __future__ import annotations

from typing import Any

import numpy as np
from mlops.core.schemas import ModelFamily
from mlops.reports.curves import curve_data

FAMILY = "credit-risk"


def family() -> ModelFamily:
    return ModelFamily.model_validate({
        "name": FAMILY, "algorithm": "hist_gradient_boosting", "target": "default", "positive_label": "bad",
        "favorable_label": "good", "threshold": 0.35, "sensitive_attribute": "sex",
        "hyperparameters": {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 31},
        "features": [
            {"name": "age", "minimum": 18, "maximum": 100, "description": "Age of the applicant in years"},
            {"name": "income", "minimum": 0, "missing": "median", "description": "Yearly income"},
            {"name": "debt ratio", "minimum": 0, "description": "Monthly debt payments over income"},
            {"name": "months employed", "minimum": 0, "missing": "native"},
            {"name": "housing", "kind": "categorical", "categories": ["own", "rent", "mortgage"],
             "unknown": "other"},
            {"name": "purpose", "kind": "categorical", "categories": ["car", "education", "home", "business"],
             "unknown": "other", "missing": "most_frequent"},
        ],
        "never_capture": ["months employed"],
    })


def training_matrix(rows: int = 4000, seed: int = 7, shift: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """X (rows, 6) float64 in the family's encoding and the positive-class probability of a known model."""
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(41 if not shift else 33, 11, rows), 18, 90).round()
    income = np.round(rng.lognormal(10.6 if not shift else 10.75, 0.45, rows), -2)
    income[rng.random(rows) < (0.02 if not shift else 0.09)] = np.nan
    debt = np.clip(rng.gamma(2.0, 0.12, rows), 0, 2.5).round(3)
    months = np.clip(rng.exponential(60, rows), 0, 480).round()
    housing = rng.choice(3, rows, p=[0.45, 0.35, 0.20] if not shift else [0.30, 0.52, 0.18]).astype(np.float64)
    purpose = rng.choice(4, rows, p=[0.4, 0.2, 0.3, 0.1]).astype(np.float64)
    if shift:
        purpose[rng.random(rows) < 0.05] = 4.0  # an undeclared purpose ("other")
    X = np.column_stack([age, income, debt, months, housing, purpose])
    filled = np.where(np.isnan(income), 40_000.0, income)
    logit = (-1.3 - 0.06 * (age - 40) - 1.6 * (np.log(filled) - 10.6) + 4.0 * (debt - 0.24)
             - 0.008 * (months - 60) + 0.7 * (housing == 1) + 0.5 * (purpose == 3))
    return X, 1.0 / (1.0 + np.exp(-logit))


def holdout(rows: int = 1600, seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, p, groups): class indices drawn from the model's probability with some noise, the probabilities the
    served model gives, and the sensitive attribute."""
    rng = np.random.default_rng(seed)
    _, truth = training_matrix(rows, seed)
    y = (rng.random(rows) < truth).astype(np.int64)
    noisy = np.clip(truth + rng.normal(0, 0.03, rows), 0.001, 0.999)
    groups = rng.choice(np.array(["female", "male"]), rows, p=[0.42, 0.58])
    return y, np.round(noisy.astype(np.float32), 6).astype(np.float64), groups


def version_record(version: int = 7, status: str = "live") -> dict[str, Any]:
    """The registry's version record (VersionRecord as a dict) with a full lineage."""
    fam = family()
    y, p, groups = holdout()
    curves = curve_data(y, p, fam.threshold)
    labels = (p >= fam.threshold).astype(np.int64)
    favorable = 0
    per_group = {}
    for g in ("female", "male"):
        m = groups == g
        truly = m & (y == favorable)
        per_group[g] = {"rows": int(m.sum()), "favorable_rate": float((labels[m] == favorable).mean()),
                        "true_favorable_rows": int(truly.sum()),
                        "true_favorable_rate": float((labels[truly] == favorable).mean()),
                        "in_parity": True, "in_opportunity": True}
    cm = curves["confusion_matrix"]
    rows = len(y)
    metrics = {"auc": curves["roc"]["auc"], "accuracy": (cm["tp"] + cm["tn"]) / rows,
               "balanced_accuracy": 0.5 * (cm["tp"] / (cm["tp"] + cm["fn"]) + cm["tn"] / (cm["tn"] + cm["fp"])),
               "precision": cm["tp"] / (cm["tp"] + cm["fp"]), "recall": cm["tp"] / (cm["tp"] + cm["fn"]),
               "f1": 2 * cm["tp"] / (2 * cm["tp"] + cm["fp"] + cm["fn"]), "log_loss": 0.4718, "brier": 0.1523,
               "positive_rate": (cm["tp"] + cm["fp"]) / rows, "rows": rows, "threshold": fam.threshold}
    rates = [v["favorable_rate"] for v in per_group.values()]
    tprs = [v["true_favorable_rate"] for v in per_group.values()]
    gate = {
        "passed": True, "compared_with_live_version": version - 1, "threshold": fam.threshold,
        "checks": [
            {"check": "onnx_parity", "value": 3.2e-07, "threshold": 1e-05, "passed": True,
             "detail": "ONNX vs sklearn max |dp| 3.2e-07, 0 label mismatches"},
            {"check": "min_auc", "value": metrics["auc"], "threshold": 0.65, "passed": True,
             "detail": f"holdout AUC {metrics['auc']:.4f} vs minimum 0.65"},
            {"check": "min_accuracy", "value": metrics["accuracy"], "threshold": 0.0, "passed": True,
             "detail": f"holdout accuracy at threshold 0.35 {metrics['accuracy']:.4f} vs minimum 0.0"},
            {"check": "lift_over_trivial_model", "value": 0.2189, "threshold": 0.02, "passed": True,
             "detail": "balanced_accuracy at threshold 0.35 0.7189 vs 0.5000 for the trivial model"},
            {"check": "demographic_parity_difference", "value": round(max(rates) - min(rates), 6),
             "threshold": 0.25, "passed": True, "detail": "favourable-rate spread across groups"},
            {"check": "equal_opportunity_difference", "value": round(max(tprs) - min(tprs), 6), "threshold": 0.25,
             "passed": True, "detail": "true-favourable-rate spread"},
            {"check": "auc_vs_live", "value": 0.0123, "threshold": 0.0, "passed": True,
             "detail": f"AUC {metrics['auc']:.4f} vs live v{version - 1} on the same holdout (margin +0.0123)"},
        ],
        "reasons": ["all checks passed"], "warnings": [], "notes": [],
    }
    columns = [f.model_dump(mode="json") for f in fam.features] + [{"name": "default", "kind": "target"},
                                                                   {"name": "sex", "kind": "sensitive"}]
    lineage = {
        "family": FAMILY, "version": version,
        "dataset": {"bucket": "mlops-artifacts-123456789012", "key": "datasets/credit-risk/2026-11-loans.csv",
                    "version_id": "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY", "etag": "9b2cf535f27731c974343645a3985328",
                    "sha256": "4f2a9d0c1be1e0d2b0b5b1f1a7c7a9e6c5d2f3b4a5968778695a4b3c2d1e0f9a", "rows": 8000,
                    "columns": columns},
        "code": {"package": "mlops", "package_version": "0.1.0",
                 "git_revision": "8c80c54e1b2a7f0d9c3e4b5a69788796a5b4c3d2",
                 "libraries": {"scikit-learn": "1.9.1", "skl2onnx": "1.20.0", "onnx": "1.23.2", "numpy": "2.4.6"}},
        "algorithm": fam.algorithm, "hyperparameters": dict(fam.hyperparameters), "seed": 42,
        "holdout": {"fraction": 0.2, "rows": rows, "row_ids_sha256": "0c9e5d" + "7a" * 29,
                    "artifact_sha256": "e3" * 32, "seed": 42},
        "artifact_sha256": "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90",
        "artifact_key": "artifacts/sha256/a1/a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90",
        "baseline_profile": {"sha256": "5e" * 32, "key": "artifacts/sha256/5e/" + "5e" * 32},
        "metrics": metrics, "curves": curves,
        "fairness": {"checked": True, "status": "checked", "sensitive_attribute": "sex", "favorable_label": "good",
                     "favorable_index": 0, "min_group_size": 30, "rows": rows,
                     "demographic_parity_difference": round(max(rates) - min(rates), 6),
                     "equal_opportunity_difference": round(max(tprs) - min(tprs), 6), "groups": per_group},
        "parity": {"ok": True, "max_abs_diff": 3.2e-07, "label_mismatches": 0, "tolerance": 1e-05},
        "gate": gate,
        "trivial_model": {"metric": "balanced_accuracy", "candidate": 0.7189, "trivial": 0.5, "lift": 0.2189,
                          "training_prior": 0.2675, "trivial_label": 0, "threshold": fam.threshold},
        "warnings": [], "data_warnings": ["3 rows had an empty 'purpose'; filled with the most frequent category"],
        "classes": ["good", "bad"], "positive_label": "bad", "threshold": fam.threshold, "input_dtype": "float64",
        "feature_importance": {"debt ratio": 0.1421, "age": 0.0932, "income": 0.0811, "housing": 0.0298,
                               "months employed": 0.0187, "purpose": 0.0112},
        "previous_live_version": version - 1, "trained_at": "2026-11-28T09:12:44.512000+00:00",
        "pipeline_execution": RUN,
    }
    return {"family": FAMILY, "version": version, "status": status, "created_at": _iso(CANARY_START - 68.3),
            "updated_at": _iso(CANARY_START + 904.1), "status_reason": "canary healthy at every step [10, 50, 100]",
            "lineage": lineage, "function_version": "14"}


RUN = "credit-risk-5f0c1e2d3a4b5c6d7e8f9a0b1c2d3e4f"
CANARY_START = 1795857310.402  # 2026-11-28T09:15:10.402Z


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canary_checks(rolled_back: bool = False) -> list[dict[str, Any]]:
    """The canary_check results of a rollout at steps (10, 50, 100), one per 300 s bake window: the first window
    sees too little traffic, the second steps up, the 50% windows promote (or roll back on errors)."""
    plan = [(10, 14, 0, None, None, "wait", ["waiting for traffic: 14 requests, 2 captured"]),
            (10, 402, 1, 39.5, 0.018, "step_up", ["canary healthy"]),
            (50, 1985, 4, 44.8, 0.009, "promote", ["canary healthy"])]
    if rolled_back:
        plan[2] = (50, 1994, 61, 612.5, 0.031, "rollback",
                   ["error rate 3.06% over 1.00% (61 of 1994 requests)", "p99 latency 612.5 ms over 500.0 ms"])
    checks = []
    for i, (weight, invocations, errors, p99, psi, decision, reasons) in enumerate(plan):
        figures: dict[str, Any] = {"weight": weight, "invocations": invocations, "errors": errors, "p99_ms": p99,
                                   "canary_predictions": invocations // 10, "live_predictions": invocations}
        if invocations:
            figures["error_rate"] = round(errors / invocations, 6)
        if psi is not None:
            figures["prediction_psi"] = psi
        checks.append({"at": _iso(CANARY_START + 300 * (i + 1) + 2.5), "decision": decision, "reasons": reasons,
                       "figures": figures})
    return checks


def status_history(version: int = 7, rolled_back: bool = False) -> list[dict[str, Any]]:
    """The family's status events around the rollout of `version` (StatusEvent fields), oldest first."""
    actor = f"pipeline:{RUN}"
    ended = _iso(CANARY_START + 900 + 4.1)
    events = [
        {"family": FAMILY, "version": version - 1, "from_status": "canary", "to_status": "live",
         "at": "2026-11-20T16:40:00.000000Z", "actor": "pipeline:credit-risk-1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a",
         "reason": "canary healthy at every step [10, 50, 100]", "live_version_after": version - 1},
        {"family": FAMILY, "version": version, "from_status": "", "to_status": "candidate",
         "at": _iso(CANARY_START - 68.3), "actor": actor, "reason": "passed training",
         "live_version_after": version - 1},
        {"family": FAMILY, "version": version, "from_status": "candidate", "to_status": "canary",
         "at": _iso(CANARY_START), "actor": actor, "reason": "canary at 10%", "live_version_after": version - 1},
    ]
    if rolled_back:
        events.append({"family": FAMILY, "version": version, "from_status": "canary", "to_status": "rolled_back",
                       "at": ended, "actor": actor,
                       "reason": "canary: " + "; ".join(canary_checks(True)[-1]["reasons"]),
                       "live_version_after": version - 1})
    else:
        events += [
            {"family": FAMILY, "version": version, "from_status": "canary", "to_status": "live", "at": ended,
             "actor": actor, "reason": "canary healthy at every step [10, 50, 100]", "live_version_after": version},
            {"family": FAMILY, "version": version - 1, "from_status": "live", "to_status": "retired", "at": ended,
             "actor": actor, "reason": f"replaced by v{version}", "live_version_after": version},
        ]
    return events


def drift_inputs(rows: int = 3000) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(report, profile, histograms) of a drift run on shifted traffic, computed by the platform's own code:
    mlops.stats.profile.baseline_profile, mlops.monitoring.drift.compare_with_baseline and
    reports.drift_report.current_histograms."""
    from mlops.monitoring.drift import compare_with_baseline
    from mlops.reports.drift_report import current_histograms
    from mlops.stats.profile import baseline_profile

    fam = family()
    X, p = training_matrix()
    profile = baseline_profile(fam, X, p)
    current, p_now = training_matrix(rows, seed=99, shift=True)
    columns = {f.name: current[:, j] for j, f in enumerate(fam.features) if f.name not in fam.never_capture}
    report = compare_with_baseline(fam, profile, columns, p_now, fam.drift)
    report.update({"family": FAMILY, "live_version": 7, "window_start": 1795865551.904,
                   "window_end": 1795951951.904, "checked_at": "2026-11-29T11:32:31.904000+00:00",
                   "retrain": {"started": False, "reason": "policy: auto_retrain is off"}})
    return report, profile, current_histograms(fam, profile, columns, p_now)


def rollout(version: int = 7, rolled_back: bool = False) -> dict[str, Any]:
    """A rollout of `version`: the family's status events and the canary checks of each bake window."""
    return {"family": FAMILY, "version": version, "live_version": version - 1, "run_id": RUN,
            "policy": family().canary.model_dump(mode="json"), "events": status_history(version, rolled_back),
            "checks": canary_checks(rolled_back)}
