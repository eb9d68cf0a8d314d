"""Pipeline steps Train, Evaluate, Register and failure handling: each takes the state input, returns JSON."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlops.core import codeversion
from mlops.core.errors import ConfigurationError, ValidationError
from mlops.core.schemas import BINARY, REGRESSION, ModelFamily, same_label
from mlops.data.datasets import parse_dataset
from mlops.data.fingerprints import FORMAT as FINGERPRINT_FORMAT
from mlops.data.fingerprints import fingerprint_set, fingerprint_set_bytes, row_fingerprints, seen_in
from mlops.registry.artifacts import ArtifactStore, ObjectStore, S3ObjectStore, sha256_hex
from mlops.registry.lineage import CodeVersion, DataSetRef, HoldoutRef, LineageRecord
from mlops.registry.store import LIVE, REJECTED, ModelRegistry
from mlops.reports.curves import curve_data
from mlops.stats.calibration import calibration_check
from mlops.stats.fairness import fairness_for_state, fairness_metrics, fairness_not_checked
from mlops.stats.metrics import classification_metrics, delong_test
from mlops.training.evaluation import (
    LIVE_SAME_ROWS,
    class_set_check,
    gate_decision,
    leakage_warnings,
    parity,
    regression_parity,
    task_gate_decision,
    task_leakage_warnings,
    task_metrics,
    task_trivial_comparison,
    trivial_model_comparison,
)

# Per-feature leakage figures carried in the state: the strongest ones only (the state limit is 256 KB).
MAX_FEATURE_AUCS_IN_STATE = 50
MAX_IMPORTANCES_IN_STATE = 50  # global importance: the largest ones
MAX_WARNINGS_IN_STATE = 20


@dataclass
class PipelineContext:
    artifacts: ArtifactStore
    registry: ModelRegistry
    objects: ObjectStore
    git_revision: str = ""

    @classmethod
    def create(cls, bucket: str, table: str, git_revision: str = "") -> PipelineContext:
        objects = S3ObjectStore()
        return cls(ArtifactStore(bucket, objects), ModelRegistry(table), objects, git_revision)


def _require(event: dict[str, Any], *path: str) -> Any:
    node: Any = event
    for part in path:
        if not isinstance(node, dict) or part not in node:
            raise ValidationError(f"pipeline input lacks {'.'.join(path)}")
        node = node[part]
    return node


def family_for_run(registry: Any, event: dict[str, Any]) -> tuple[ModelFamily, int]:
    """(declaration, config version) a run trains and is gated under: the family configuration version pinned
    when the run was planned (`plan.family_config_version`, or the Train output's `family_config_version`), read
    from its immutable history item, so a change applied while the run is under way does not change what it
    trains or how it is judged; else the current declaration. Version 0: registered before versioning."""
    name = _require(event, "family")
    pinned = int((event.get("train") or {}).get("family_config_version")
                 or (event.get("plan") or {}).get("family_config_version") or 0)
    if pinned:
        return registry.get_family_config(name, pinned), pinned
    record = registry.get_family(name)
    return record.family, int(getattr(record, "config_version", 0))


def train_step(ctx: PipelineContext, event: dict[str, Any]) -> dict[str, Any]:
    """Read the exact data set version, validate it, fit, convert to ONNX and store model, holdout, profile."""
    from mlops.training import fit

    family, config_version = family_for_run(ctx.registry, event)
    ref = _require(event, "dataset")
    # Spooled to a temporary file, never held in memory (peak memory: mlops.training.engines, docs/training-engines.md).
    stored = ctx.objects.get(ref["bucket"], ref["key"], ref.get("version_id") or None,
                             max_bytes=family.max_dataset_bytes, spool=True)
    from mlops.registry.runs import (
        check_duplicate,  # identical content already judged: the state machine ends the run here
    )

    if duplicate := check_duplicate(ctx, family, stored, event):
        return duplicate
    dataset = parse_dataset(stored.data, family, stored.key)
    seed = int(event.get("seed", family.seed))
    model = fit.train(family, dataset.X, dataset.y, seed=seed, classes=dataset.classes)
    holdout_rows = model.holdout_index
    holdout = fit.holdout_bytes(
        dataset.X[holdout_rows], dataset.y[holdout_rows],
        None if dataset.sensitive is None else dataset.sensitive[holdout_rows],
        dataset.row_ids[holdout_rows], model.sklearn_holdout_proba, model.sklearn_holdout_labels,
        line_numbers=dataset.line_numbers[holdout_rows], sklearn_predictions=model.sklearn_holdout_predictions,
    )
    meta = {"family": family.name}
    artifact = ctx.artifacts.put(model.onnx_bytes, "model/onnx", meta)
    holdout_ref = ctx.artifacts.put(holdout, "holdout/npz", meta)
    profile_ref = ctx.artifacts.put_json(model.profile, "baseline-profile/json", meta)
    # The declaration this model was trained with, for `mlops reproduce` (its sha256 is family_config_sha256).
    family_ref = ctx.artifacts.put_json(family.model_dump(mode="json"), "family-config/json", meta)
    # Which rows this model learned from, as 64-bit fingerprints: a later candidate's gate compares it with this
    # model only on holdout rows it did not train on (an upload is often the old data plus new rows).
    training_rows = np.setdiff1d(np.arange(dataset.rows), holdout_rows, assume_unique=True)
    prints = fingerprint_set_bytes(row_fingerprints(family, dataset.X[training_rows], dataset.y[training_rows],
                                                    dataset.classes))
    prints_ref = ctx.artifacts.put(prints, "training-fingerprints/u64", meta)
    columns = [f.model_dump(mode="json") for f in family.features] + [{"name": family.target, "kind": "target"}]
    if family.sensitive_attribute is not None:
        columns.append({"name": family.sensitive_attribute, "kind": "sensitive"})
    strongest = sorted(model.single_feature_auc.items(), key=lambda item: -(item[1] or 0.0))
    revision, dirty = codeversion.revision_and_dirty(ctx.git_revision)
    importance, importance_basis = model.feature_importance
    return {
        "artifact": artifact.to_dict(),
        "holdout": HoldoutRef(fraction=family.holdout_fraction, rows=int(holdout_rows.size),
                              row_ids_sha256=sha256_hex(dataset.row_ids[holdout_rows].tobytes()),
                              artifact_sha256=holdout_ref.sha256, seed=seed).model_dump(),
        "baseline_profile": profile_ref.to_dict(),
        "family_config": family_ref.to_dict(),
        "training_fingerprints": {**prints_ref.to_dict(), "format": FINGERPRINT_FORMAT,
                                  "rows": int(training_rows.size), "distinct": len(prints) // 8},
        "family_config_version": config_version,
        "dataset": DataSetRef(bucket=stored.bucket, key=stored.key, version_id=stored.version_id,
                              etag=stored.etag.strip('"'), sha256=stored.sha256, rows=dataset.rows,
                              columns=columns).model_dump(),
        "code": CodeVersion(package="mlops", package_version=codeversion.package_version(),
                            git_revision=revision, dirty=dirty, libraries=model.library_versions).model_dump(),
        "task": family.task,
        "algorithm": family.algorithm,
        "hyperparameters": model.hyperparameters,
        "classes": list(model.classes),
        "positive_label": model.classes[1] if family.task == BINARY else None,
        "threshold": model.threshold,
        "input_dtype": model.input_dtype,
        **_trivial_parameters(model),
        "single_feature_auc": dict(strongest[:MAX_FEATURE_AUCS_IN_STATE]),
        "feature_importance": importance[:MAX_IMPORTANCES_IN_STATE],
        "feature_importance_basis": importance_basis,
        "data_warnings": [w[:300] for w in dataset.warnings[:MAX_WARNINGS_IN_STATE]],
        "seed": seed,
        "fit_seconds": round(model.fit_seconds, 3),
        "trained_at": datetime.now(UTC).isoformat(),
    }


def _trivial_parameters(model: Any) -> dict[str, Any]:
    """What the trivial model of the task needs, from the training rows (carried to Evaluate in the state)."""
    if model.task == BINARY:
        return {"training_positive_rate": round(model.training_positive_rate, 6)}
    if model.task == REGRESSION:
        return {"training_target_mean": model.training_target_mean, "training_target_std": model.training_target_std}
    return {"training_class_prior": [round(p, 6) for p in model.training_class_prior]}


def load_holdout(artifacts: ArtifactStore, sha256: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(artifacts.get(sha256)), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def evaluate_step(ctx: PipelineContext, event: dict[str, Any]) -> dict[str, Any]:
    """Score the stored ONNX artifact itself on the holdout: parity, metrics, fairness, comparison with the
    live model on the same rows, and the gate decision with its reasons."""
    from mlops.serving.scoring import ScoringModel

    record = ctx.registry.get_family(_require(event, "family"))
    family, _ = family_for_run(ctx.registry, event)
    train = _require(event, "train")
    holdout = load_holdout(ctx.artifacts, train["holdout"]["artifact_sha256"])
    model = ScoringModel(ctx.artifacts.get_model(train["artifact"]["sha256"]))
    if model.task != BINARY:
        return _evaluate_task(ctx, family, record.live_version, train, holdout, model)
    graph_labels, proba = model.predict_matrix(holdout["X"])
    # Decisions at the family's threshold (the artifact's, as served): metrics, fairness and the trivial model.
    labels = model.decide(proba)
    y = holdout["y"]
    metrics = classification_metrics(y, proba, threshold=model.threshold)
    if (reason := _fairness_not_checked_reason(family, holdout)) is not None:
        fairness = fairness_not_checked(reason)
    else:
        fairness = _classification_fairness(ctx, family, y, labels, holdout["sensitive"], model.classes)
    # Parity compares the graph with the trained model on their own terms: probabilities and argmax labels.
    parity_result = parity(proba, graph_labels, holdout["sklearn_proba"], holdout["sklearn_labels"],
                           family.gate.parity_tolerance)
    live = _live_on_same_holdout(ctx, family, record.live_version, holdout, proba, train.get("classes"))
    trivial = trivial_model_comparison(family.gate.trivial_model_metric, y, labels,
                                       float(train.get("training_positive_rate", y.mean())), model.threshold)
    warnings = leakage_warnings(family.gate, metrics["auc"], train.get("single_feature_auc"))
    gate = gate_decision(family.gate, metrics, fairness, parity_result, live, trivial=trivial, leakage=warnings,
                         threshold=model.threshold)
    # Whether the served probabilities may stand for the truth before labels arrive (CBPE,
    # mlops.monitoring.performance).
    calibration = calibration_check(y, proba[:, 1], max_error=family.performance.max_calibration_error,
                                    p_value=family.performance.calibration_pvalue, seed=int(train.get("seed", 0)))
    return {"metrics": metrics, "fairness": fairness, "parity": parity_result, "gate": gate,
            "trivial_model": trivial, "warnings": warnings, "threshold": model.threshold,
            "live": live, "first_model": record.live_version == 0, "calibration": calibration,
            "curves": curve_data(y, proba[:, 1], model.threshold)}  # ROC, calibration, confusion: the model card


def _evaluate_task(ctx: PipelineContext, family: ModelFamily, live_version: int, train: dict[str, Any],
                   holdout: dict[str, np.ndarray], model: Any) -> dict[str, Any]:
    """evaluate_step for a regression or multiclass candidate: its ONNX outputs on the holdout, parity with the
    trained model (regression: on the target's scale), the task's metrics, fairness, the trivial model and the
    live model on the same rows, and the gate decision."""
    from mlops.stats.tasks import regression_fairness

    task = model.task
    y = holdout["y"]
    reason = _fairness_not_checked_reason(family, holdout)
    fairness: dict[str, Any] = fairness_not_checked(reason) if reason is not None else {}
    if task == REGRESSION:
        output = model.predict_values(holdout["X"])
        parity_result = regression_parity(output, holdout["sklearn_predictions"],
                                          float(train.get("training_target_std") or 0.0), family.gate.parity_tolerance)
        if reason is None:
            fairness = regression_fairness(y, output, holdout["sensitive"], family.gate.min_group_size)
    else:
        graph_labels, output = model.predict_matrix(holdout["X"])
        parity_result = parity(output, graph_labels, holdout["sklearn_proba"], holdout["sklearn_labels"],
                               family.gate.parity_tolerance)
        if reason is None:  # parity on the favourable class, as for binary families
            fairness = _classification_fairness(ctx, family, y, model.decide(output), holdout["sensitive"],
                                                model.classes)
    metrics = task_metrics(task, y, output)
    metric = family.gate.metric_for(task)
    trivial = task_trivial_comparison(task, metric, y, metrics, class_prior=train.get("training_class_prior"),
                                      target_mean=train.get("training_target_mean"))
    live = _live_task_metrics(ctx, family, live_version, holdout, model, output, train.get("classes"))
    warnings = task_leakage_warnings(family.gate, task, metrics)
    classes = None if task == REGRESSION or live is None else class_set_check(
        list(model.classes), live.get("classes"), live_version, family.classes)
    gate = task_gate_decision(family.gate, task, metrics, fairness, parity_result, live, trivial=trivial,
                              leakage=warnings, classes=classes)
    return {"metrics": metrics, "fairness": fairness, "parity": parity_result, "gate": gate,
            "trivial_model": trivial, "warnings": warnings, "threshold": None, "live": live,
            "first_model": live_version == 0}


def _live_task_metrics(ctx: PipelineContext, family: ModelFamily, live_version: int, holdout: dict[str, np.ndarray],
                       candidate: Any, candidate_output: np.ndarray,
                       labels: list[Any] | None) -> dict[str, Any] | None:
    """The live model's metrics on the candidate's holdout rows it did not train on (regression and multiclass;
    `live_comparison_rows`), with the candidate's on the same rows under `candidate`; or its recorded metrics
    when it cannot score these rows the same way (other features, task or classes); `basis` says which, and
    `classes` carries the live model's classes (multiclass)."""
    if not live_version:
        return None
    from mlops.serving.scoring import ScoringModel

    live = ctx.registry.get_version(family.name, live_version)
    live_model = ScoringModel(ctx.artifacts.get_model(live.artifact_sha256))
    classes = {} if live_model.task == REGRESSION else {"classes": list(live_model.classes)}
    if (live_model.feature_names != tuple(family.feature_names) or live_model.task != candidate.task
            or live_model.classes != candidate.classes):
        return {"version": live_version, **live.lineage.get("metrics", {}), "basis": "recorded metrics", **classes}
    keep, comparison = live_comparison_rows(ctx, family, live.lineage, holdout, labels,
                                            None if candidate.task == REGRESSION else len(candidate.classes))
    base = {"version": live_version, "basis": LIVE_SAME_ROWS, "comparison": comparison, **classes}
    if not comparison["judged"]:
        return base
    X, y = holdout["X"][keep], holdout["y"][keep]
    output = live_model.predict_values(X) if candidate.task == REGRESSION else live_model.predict_matrix(X)[1]
    return {**base, **task_metrics(candidate.task, y, output),
            "candidate": task_metrics(candidate.task, y, candidate_output[keep])}


def live_comparison_rows(ctx: PipelineContext, family: ModelFamily, live_lineage: dict[str, Any],
                         holdout: dict[str, np.ndarray], labels: list[Any] | None,
                         n_classes: int | None) -> tuple[np.ndarray, dict[str, Any]]:
    """Which of the candidate's holdout rows the live model may be compared on: those it did not train on.

    The live version's lineage holds `training_fingerprints` (mlops.data.fingerprints: the 64-bit digests of its
    training rows, a sorted uint64 artifact); holdout rows whose fingerprint is in that set are excluded (they
    would flatter the live model, which has seen them). Returns the boolean mask [holdout rows] and the
    comparison record: holdout_rows, compared_rows, excluded_seen_by_live, overlap ("checked", or "unknown" for
    a version trained before fingerprints were recorded: every row is compared, and said so), min_rows
    (`gate.min_comparison_rows`), judged and, when not judged, the reason: rows were excluded and fewer than
    min_rows remain, or the remaining rows lack a class (`n_classes`; None for a regression)."""
    y = holdout["y"]
    total = int(np.size(y))
    minimum = family.gate.min_comparison_rows
    ref = live_lineage.get("training_fingerprints")
    if not ref:
        keep = np.ones(total, dtype=bool)
        record: dict[str, Any] = {
            "holdout_rows": total, "compared_rows": total, "excluded_seen_by_live": None, "overlap": "unknown",
            "min_rows": minimum, "judged": True,
            "note": "overlap unknown: the live version was trained before training-row fingerprints were recorded, "
                    "so the holdout may hold rows it trained on (its figure may be flattered)"}
    else:
        known = fingerprint_set(ctx.artifacts.get(ref["sha256"]))
        seen = seen_in(row_fingerprints(family, holdout["X"], y, labels), known)
        keep = ~seen
        excluded = int(seen.sum())
        record = {"holdout_rows": total, "compared_rows": total - excluded, "excluded_seen_by_live": excluded,
                  "overlap": "checked", "min_rows": minimum, "judged": True}
        if excluded and total - excluded < minimum:
            record.update(judged=False, reason=f"only {total - excluded} of the {total} holdout rows were not in the "
                          f"live model's training data ({excluded} excluded as seen by it); at least {minimum} "
                          "(gate.min_comparison_rows) are needed to compare fairly")
    if record["judged"] and n_classes is not None and np.unique(y[keep]).size < n_classes:
        record.update(judged=False, reason=f"the {int(keep.sum())} holdout rows the live model did not train on "
                      f"hold {np.unique(y[keep]).size} of the {n_classes} classes")
    return keep, record


def _fairness_not_checked_reason(family: ModelFamily, holdout: dict[str, np.ndarray]) -> str | None:
    """Why fairness cannot be checked on this holdout (None: it can)."""
    if family.sensitive_attribute is None:
        return "the family declares no sensitive attribute"
    if "sensitive" not in holdout:
        return f"the holdout holds no {family.sensitive_attribute!r} values"
    return None


def _classification_fairness(ctx: PipelineContext, family: ModelFamily, y: np.ndarray, labels: np.ndarray,
                             sensitive: np.ndarray, classes: list[Any]) -> dict[str, Any]:
    """Parity of the decided classes on the favourable class (binary and multiclass). Every group goes to the
    artifact store; the state carries the largest (a high-cardinality attribute would outgrow Step Functions'
    256 KB)."""
    groups = fairness_metrics(y, labels, sensitive, _favorable_index(family, classes),
                              min_group_size=family.gate.min_group_size, attribute=family.sensitive_attribute,
                              favorable_label=family.favorable_label)
    detail = ctx.artifacts.put_json(groups, "fairness/json", {"family": family.name})
    return fairness_for_state(groups, detail.to_dict())


def _favorable_index(family: ModelFamily, classes: list[Any]) -> int:
    """The class index of the family's favourable label (named in the target's own terms)."""
    for index, label in enumerate(classes):
        if same_label(label, family.favorable_label):
            return index
    raise ConfigurationError(f"family {family.name!r}: favorable_label {family.favorable_label!r} is not one of "
                             f"the classes {classes}")


def _live_on_same_holdout(ctx: PipelineContext, family: ModelFamily, live_version: int,
                          holdout: dict[str, np.ndarray], candidate_proba: np.ndarray,
                          labels: list[Any] | None) -> dict[str, Any] | None:
    """The live binary model against the candidate on the candidate's holdout rows it did not train on
    (`live_comparison_rows`): both AUCs on those rows and DeLong's test of their difference; or its recorded
    metrics when it cannot score these rows (other features)."""
    if not live_version:
        return None
    from mlops.serving.scoring import ScoringModel

    live = ctx.registry.get_version(family.name, live_version)
    live_model = ScoringModel(ctx.artifacts.get_model(live.artifact_sha256))
    if live_model.feature_names != tuple(family.feature_names):
        recorded = live.lineage.get("metrics", {})
        return {"version": live_version, "auc": recorded.get("auc", 0.0), "basis": "recorded metrics"}
    keep, comparison = live_comparison_rows(ctx, family, live.lineage, holdout, labels, 2)
    if not comparison["judged"]:
        return {"version": live_version, "auc": None, "basis": LIVE_SAME_ROWS, "comparison": comparison}
    y = holdout["y"][keep]
    _, proba = live_model.predict_matrix(holdout["X"][keep])
    metrics = classification_metrics(y, proba, threshold=live_model.threshold)
    candidate = classification_metrics(y, candidate_proba[keep], threshold=family.threshold)
    if min(int(y.sum()), int(y.size - y.sum())) >= 2:
        test = delong_test(y, candidate_proba[keep][:, 1], proba[:, 1])
        comparison["delong"] = {"p_value": round(test["p_value"], 6), "z": round(test["z"], 4),
                                "standard_error": round(test["standard_error"], 6)}
    return {"version": live_version, "auc": metrics["auc"], "accuracy": metrics["accuracy"],
            "candidate_auc": candidate["auc"], "basis": LIVE_SAME_ROWS, "comparison": comparison,
            "recorded_auc": (live.lineage.get("metrics") or {}).get("auc")}


def register_step(ctx: PipelineContext, event: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Allocate the version and store its lineage; a candidate that failed the gate is recorded as rejected
    with the reasons. Retries of the same execution return the version already registered."""
    family_name = _require(event, "family")
    train = _require(event, "train")
    evaluation = _require(event, "evaluation")
    record = ctx.registry.get_family(family_name)
    lineage = LineageRecord(
        family=family_name, dataset=train["dataset"], code=train["code"], algorithm=train["algorithm"],
        hyperparameters=train["hyperparameters"], seed=train["seed"], holdout=train["holdout"],
        artifact_sha256=train["artifact"]["sha256"], artifact_key=train["artifact"]["key"],
        baseline_profile=train["baseline_profile"], metrics=evaluation["metrics"],
        fairness=evaluation["fairness"], parity=evaluation["parity"], gate=evaluation["gate"],
        previous_live_version=record.live_version or None, trained_at=train["trained_at"],
        pipeline_execution=run_id,
        # The decision rule the metrics, fairness and gate were computed at, and what the response will carry.
        task=train.get("task", BINARY), classes=train.get("classes", [0, 1]),
        positive_label=train.get("positive_label", 1) if train.get("task", BINARY) == BINARY else None,
        threshold=train.get("threshold", 0.5) if train.get("task", BINARY) == BINARY else None,
        input_dtype=train.get("input_dtype", "float32"),
        trivial_model=evaluation.get("trivial_model"), warnings=evaluation.get("warnings", []),
        feature_importance=train.get("feature_importance", []),
        feature_importance_basis=train.get("feature_importance_basis", {}),
        curves=evaluation.get("curves"), family_config=train.get("family_config"),
        # The family configuration version it was trained and gated under (0: registered before versioning).
        family_config_version=int(train.get("family_config_version") or 0),
        # Fingerprints of its training rows: later gates compare with it only on rows it did not train on.
        training_fingerprints=train.get("training_fingerprints"),
        training=train.get("training"),  # the engine that trained it (mlops.training.engines): job name, instance type
        calibration=evaluation.get("calibration"),  # binary: the holdout's calibration check (mlops.stats.calibration)
    ).model_dump(mode="json")
    version = ctx.registry.allocate_version(family_name, lineage, actor=f"pipeline:{run_id}",
                                            reason="passed training", run_id=run_id)
    passed = bool(evaluation["gate"]["passed"])
    if not passed:
        reason = "gate: " + "; ".join(evaluation["gate"]["reasons"])
        version = ctx.registry.transition(family_name, version.version, REJECTED, f"pipeline:{run_id}", reason)
    return {"version": version.version, "status": version.status, "gate_passed": passed,
            "first_model": record.live_version == 0 and version.status != LIVE}


def record_failure_step(ctx: PipelineContext, event: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Record why a run failed, in the registry, so "what happened to my upload?" has an answer."""
    family = event.get("family", "")
    error = event.get("error") or {}
    cause = error.get("Cause", "")
    message = cause
    try:
        import orjson

        parsed = orjson.loads(cause) if cause else {}
        message = parsed.get("errorMessage", cause) if isinstance(parsed, dict) else cause
    except Exception:
        pass
    detail = {"error": error.get("Error", "unknown"), "message": message[:2000],
              "dataset": event.get("dataset"), "stage": event.get("stage", "")}
    if family:
        ctx.registry.record_run(family, run_id, "failed", detail)
    return detail

