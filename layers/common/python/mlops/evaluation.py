"""Offline evaluation of an ONNX candidate: metrics, ONNX/sklearn parity, fairness, and the gate decision."""

from __future__ import annotations

from typing import Any

import numpy as np

from .schemas import GatePolicy


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve via the rank statistic (ties get average ranks)."""
    y = np.asarray(y)
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    sorted_scores = score[order]
    ranks = np.empty(y.size, dtype=np.float64)
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def classification_metrics(y: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    p1 = np.clip(proba[:, 1].astype(np.float64), 1e-12, 1 - 1e-12)
    tp = int(((labels == 1) & (y == 1)).sum())
    fp = int(((labels == 1) & (y == 0)).sum())
    fn = int(((labels == 0) & (y == 1)).sum())
    return {
        "auc": round(roc_auc(y, p1), 6),
        "accuracy": round(float((labels == y).mean()), 6),
        "log_loss": round(float(-np.mean(y * np.log(p1) + (1 - y) * np.log(1 - p1))), 6),
        "brier": round(float(np.mean((p1 - y) ** 2)), 6),
        "precision": round(tp / (tp + fp), 6) if tp + fp else 0.0,
        "recall": round(tp / (tp + fn), 6) if tp + fn else 0.0,
        "positive_rate": round(float((labels == 1).mean()), 6),
        "rows": int(y.size),
    }


def fairness_metrics(y: np.ndarray, labels: np.ndarray, groups: np.ndarray, favorable: int) -> dict[str, Any]:
    """Demographic parity difference (spread of favourable-outcome rates across groups) and equal opportunity
    difference (spread of favourable-outcome rates among the truly favourable) on the sensitive attribute."""
    per_group: dict[str, dict[str, float]] = {}
    for g in np.unique(groups):
        mask = groups == g
        truly = mask & (y == favorable)
        per_group[str(g)] = {
            "rows": int(mask.sum()),
            "favorable_rate": float((labels[mask] == favorable).mean()),
            "true_favorable_rate": float((labels[truly] == favorable).mean()) if truly.any() else float("nan"),
        }
    rates = [v["favorable_rate"] for v in per_group.values()]
    tprs = [v["true_favorable_rate"] for v in per_group.values() if not np.isnan(v["true_favorable_rate"])]
    return {
        "demographic_parity_difference": round(max(rates) - min(rates), 6) if len(rates) > 1 else 0.0,
        "equal_opportunity_difference": round(max(tprs) - min(tprs), 6) if len(tprs) > 1 else 0.0,
        "groups": per_group,
    }


def parity(onnx_proba: np.ndarray, onnx_labels: np.ndarray, sklearn_proba: np.ndarray,
           sklearn_labels: np.ndarray, tolerance: float) -> dict[str, Any]:
    """Does the served artifact reproduce the trained model? Max abs probability gap and label mismatches."""
    if onnx_proba.shape != sklearn_proba.shape:
        return {"ok": False, "max_abs_diff": None, "label_mismatches": None,
                "reason": f"shape {onnx_proba.shape} != {sklearn_proba.shape}"}
    gap = float(np.max(np.abs(onnx_proba.astype(np.float64) - sklearn_proba)))
    mismatches = int((onnx_labels.astype(np.int64) != sklearn_labels).sum())
    # A label may legitimately differ only where the two probabilities sit on the decision boundary.
    near_boundary = np.abs(sklearn_proba[:, 1] - 0.5) <= tolerance
    real_mismatches = int(((onnx_labels != sklearn_labels) & ~near_boundary).sum())
    return {"ok": gap <= tolerance and real_mismatches == 0, "max_abs_diff": gap, "label_mismatches": mismatches,
            "tolerance": tolerance}


def gate_decision(policy: GatePolicy, metrics: dict[str, float], fairness: dict[str, Any],
                  parity_result: dict[str, Any], live: dict[str, Any] | None) -> dict[str, Any]:
    """Every check with its figure, threshold and verdict; passed only if all pass. Without a live model the
    gate uses absolute thresholds only."""
    checks: list[dict[str, Any]] = []

    def check(name: str, value: Any, threshold: Any, ok: bool, detail: str) -> None:
        checks.append({"check": name, "value": value, "threshold": threshold, "passed": bool(ok), "detail": detail})

    check("onnx_parity", parity_result.get("max_abs_diff"), policy.parity_tolerance, parity_result["ok"],
          f"ONNX vs sklearn max |dp| {parity_result.get('max_abs_diff')}, "
          f"{parity_result.get('label_mismatches')} label mismatches")
    auc = metrics["auc"]
    check("min_auc", auc, policy.min_auc, auc >= policy.min_auc, f"holdout AUC {auc:.4f} vs minimum {policy.min_auc}")
    check("min_accuracy", metrics["accuracy"], policy.min_accuracy, metrics["accuracy"] >= policy.min_accuracy,
          f"holdout accuracy {metrics['accuracy']:.4f} vs minimum {policy.min_accuracy}")
    dp = fairness["demographic_parity_difference"]
    check("demographic_parity_difference", dp, policy.max_demographic_parity_difference,
          dp <= policy.max_demographic_parity_difference,
          f"favourable-rate spread across groups {dp:.4f} vs maximum {policy.max_demographic_parity_difference}")
    eo = fairness["equal_opportunity_difference"]
    check("equal_opportunity_difference", eo, policy.max_equal_opportunity_difference,
          eo <= policy.max_equal_opportunity_difference,
          f"true-favourable-rate spread {eo:.4f} vs maximum {policy.max_equal_opportunity_difference}")
    if live is not None:
        live_auc = live["auc"]
        margin = auc - live_auc
        check("auc_vs_live", round(margin, 6), policy.min_auc_margin, margin >= policy.min_auc_margin,
              f"AUC {auc:.4f} vs live v{live['version']} {live_auc:.4f} on the same holdout "
              f"(margin {margin:+.4f}, required {policy.min_auc_margin:+.4f})")
    failed = [c for c in checks if not c["passed"]]
    return {
        "passed": not failed,
        "compared_with_live_version": live["version"] if live else None,
        "checks": checks,
        "reasons": [c["detail"] for c in failed] or ["all checks passed"],
    }
