"""What the CLI and the console show, read from one platform (a `mlops local serve` or a deployed stack) through
`client.Platform`: families, versions, side-by-side comparisons, traffic at a moment, drift runs, rollouts, and the
inputs of the HTML reports. Every function returns plain JSON-ready values; the commands print them as tables
(or `--json`), the console renders them as pages. Unknown names raise `client.NotFound` (exit code 2, HTTP 404)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import click
import orjson

from .client import NotFound, Platform

# Metrics shown in lists and comparisons, in this order (others follow alphabetically).
METRIC_ORDER = ("auc", "macro_auc", "balanced_accuracy", "accuracy", "macro_f1", "precision", "recall", "f1",
                "log_loss", "brier", "positive_rate", "rmse", "mae", "r2")
# The two figures a version list shows, per task.
HEADLINE_METRICS = {"binary_classification": ("auc", "balanced_accuracy"),
                    "multiclass_classification": ("macro_auc", "accuracy"), "regression": ("rmse", "r2")}
BINARY = "binary_classification"
METRIC_LABELS = {"auc": "ROC AUC", "macro_auc": "macro AUC", "balanced_accuracy": "balanced accuracy",
                 "macro_f1": "macro F1", "f1": "F1", "log_loss": "log loss", "rmse": "RMSE", "mae": "MAE",
                 "r2": "R\u00b2", "positive_rate": "positive rate"}


def metric_label(name: str) -> str:
    """A metric's name for people (`auc` -> ROC AUC)."""
    return METRIC_LABELS.get(name, name.replace("_", " "))
REGISTRY_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


# ---- lookups -------------------------------------------------------------------------------------------------


def families(platform: Platform, status: str | None = None) -> list[Any]:
    """Every registered family (FamilySummary from the sharded family index), by name; `status` (active or
    retired) filters."""
    return platform.registry.iter_families(status=status)


def family_record(platform: Platform, name: str) -> Any:
    """The family's registry record; NotFound naming the registered families."""
    from mlops.core.errors import UnknownFamilyError

    try:
        return platform.registry.get_family(name)
    except UnknownFamilyError:
        import difflib

        known = [r.name for r in families(platform)]
        if len(known) <= 10:
            listed = f"registered: {', '.join(known) or 'none'}"
        else:  # thousands of families: the closest names, not a wall of text
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
            listed = (f"did you mean {', '.join(close)}? " if close else "") + \
                f"registered: {', '.join(sorted(known)[:10])} and {len(known) - 10} more (`mlops families list`)"
        raise NotFound(f"unknown model family {name!r} on {platform.description}; {listed}") from None


def version_record(platform: Platform, family: str, version: int) -> Any:
    """The version's registry record; NotFound naming the versions that exist."""
    from mlops.core.errors import UnknownFamilyError

    record = family_record(platform, family)
    try:
        return platform.registry.get_version(family, int(version))
    except UnknownFamilyError:
        existing = f"versions 1 to {record.latest_version}" if record.latest_version else "no versions yet"
        raise NotFound(f"model family {family!r} has no version {version} ({existing}; `mlops versions list "
                       f"{family}`)") from None


def versions(platform: Platform, family: str) -> list[Any]:
    """Every version (VersionRecord) of the family, newest first."""
    family_record(platform, family)
    out: list[Any] = []
    token = None
    while True:
        page = platform.registry.list_versions(family, limit=100, next_token=token)
        out += page.items
        token = page.next_token
        if not token:
            return out


def events(platform: Platform, family: str) -> list[dict[str, Any]]:
    """Every status event of the family, oldest first (registry history: who, when, why)."""
    from mlops.reports.publish import family_events

    return [asdict(e) for e in family_events(platform.registry, family)]


def artifact_json(platform: Platform, sha256: str) -> Any:
    """A JSON artifact from the content-addressed store, its bytes checked against the address."""
    from mlops.registry.artifacts import ArtifactStore

    body = platform.client("s3").get_object(Bucket=platform.bucket, Key=ArtifactStore.key_for(sha256))["Body"].read()
    actual = hashlib.sha256(body).hexdigest()
    if actual != sha256:
        raise click.ClickException(f"artifact {sha256} in s3://{platform.bucket} was altered (its bytes hash to "
                                   f"{actual})")
    return orjson.loads(body)


# ---- families ------------------------------------------------------------------------------------------------


def headline_metrics(task: str | None) -> tuple[str, str]:
    """The two metric names a version list shows for a task (binary: ROC AUC and balanced accuracy)."""
    return HEADLINE_METRICS.get(task or BINARY, HEADLINE_METRICS[BINARY])


def decision_text(family: Any) -> str:
    """How the family's predictions are decided, for people: the positive label and threshold of a binary family,
    else the task."""
    if family.task == BINARY:
        return f"positive {family.positive_label!s} at threshold {family.threshold}"
    return family.task.replace("_", " ")


def family_summary(summary: Any) -> dict[str, Any]:
    """One family as a list shows it (a FamilySummary of the family index): declaration headlines, status and
    configuration version, and the registry's pointers."""
    return {"name": summary.name, "status": summary.status, "config_version": summary.config_version,
            "task": summary.task, "algorithm": summary.algorithm, "target": summary.target,
            "serving": summary.serving, "decision": decision_text(summary),
            "headline_metrics": list(headline_metrics(summary.task)), "positive_label": summary.positive_label,
            "threshold": summary.threshold, "sensitive_attribute": summary.sensitive_attribute,
            "features": summary.features, "live_version": summary.live_version or None,
            "canary_version": summary.canary_version or None,
            "canary_weight": summary.canary_weight if summary.canary_version else None,
            "latest_version": summary.latest_version, "rollout_holder": summary.rollout_holder,
            "scoring_function": summary.scoring_function, "updated_at": summary.updated_at,
            "changed_at": summary.changed_at}


def family_detail(platform: Platform, name: str, history: int = 20) -> dict[str, Any]:
    """The family's summary, its whole declaration (features, gate, canary and drift policies), who changed it
    last and why, and its configuration history (newest first, at most `history` changes)."""
    from mlops.registry.store import FamilySummary
    from mlops.rollout.families import change_json

    record = family_record(platform, name)
    changes = platform.registry.family_history(name, limit=history).items if history else []
    return {**family_summary(FamilySummary.from_record(record)), "declaration": record.family.model_dump(mode="json"),
            "changed_by": record.changed_by, "change_reason": record.change_reason,
            "history": [change_json(c) for c in changes]}


def family_config(platform: Platform, name: str, config_version: int) -> dict[str, Any]:
    """One configuration version of the family: the change (who, when, why) and the declaration as it was then."""
    from mlops.rollout.families import change_json

    family_record(platform, name)
    change = platform.registry.family_change(name, config_version)
    if change is None:
        latest = platform.registry.get_family(name).config_version
        raise NotFound(f"model family {name!r} has no config version {config_version} (versions 1 to {latest}; "
                       f"`mlops families show {name}`)")
    return change_json(change, declaration=True)


# ---- versions ------------------------------------------------------------------------------------------------


def ordered_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    numeric = {k: v for k, v in (metrics or {}).items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return {k: numeric[k] for k in (*[m for m in METRIC_ORDER if m in numeric],
                                    *sorted(k for k in numeric if k not in METRIC_ORDER))}


def version_summary(record: Any) -> dict[str, Any]:
    """One version as a list shows it: status, algorithm, headline metrics, gate verdict, data set."""
    lineage = record.lineage or {}
    dataset = lineage.get("dataset") or {}
    gate = lineage.get("gate") or {}
    metrics = ordered_metrics(lineage.get("metrics") or {})
    task = lineage.get("task") or BINARY
    return {"family": record.family, "version": record.version, "status": record.status,
            "status_reason": record.status_reason, "created_at": record.created_at, "updated_at": record.updated_at,
            "function_version": record.function_version or None, "algorithm": lineage.get("algorithm"),
            "task": task, "metrics": metrics,
            "headline": {name: metrics.get(name) for name in headline_metrics(task)},
            "gate_passed": gate.get("passed") if gate else None,
            "failed_checks": [c.get("check") for c in gate.get("checks") or [] if not c.get("passed")],
            "dataset": {k: dataset.get(k) for k in ("key", "version_id", "sha256", "rows")},
            "trained_at": lineage.get("trained_at"), "run_id": lineage.get("pipeline_execution"),
            "artifact_sha256": lineage.get("artifact_sha256")}


def version_detail(platform: Platform, family: str, version: int) -> dict[str, Any]:
    """Everything about one version: the record with its whole lineage (data set, code, parameters, metrics, gate
    with every check, fairness by group with sizes), a summary, and its status history oldest first."""
    record = version_record(platform, family, version)
    history = [e for e in events(platform, family) if e["version"] == record.version]
    return {"summary": version_summary(record), "record": asdict(record), "history": history}


def _row(section: str, field: str, a: Any, b: Any) -> dict[str, Any]:
    return {"section": section, "field": field, "a": a, "b": b, "differs": _canonical(a) != _canonical(b)}


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY, default=str)


def _union(*dicts: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    for d in dicts:
        keys += [k for k in d if k not in keys]
    return keys


def compare(platform: Platform, family: str, first: int, second: int) -> dict[str, Any]:
    """Two versions side by side (experiment comparison): status, parameters, metrics, fairness by group, data set
    and code. Each row is {section, field, a, b, differs}; `differences` counts the rows that differ."""
    records = [version_record(platform, family, v) for v in (first, second)]
    a, b = (r.lineage or {} for r in records)
    rows = [_row("status", "status", records[0].status, records[1].status),
            _row("status", "created", records[0].created_at, records[1].created_at)]
    for field in ("algorithm", "seed", "threshold", "input_dtype", "positive_label"):
        rows.append(_row("parameters", field, a.get(field), b.get(field)))
    hyper_a, hyper_b = a.get("hyperparameters") or {}, b.get("hyperparameters") or {}
    for name in _union(hyper_a, hyper_b):
        rows.append(_row("parameters", name, hyper_a.get(name), hyper_b.get(name)))
    metrics_a, metrics_b = ordered_metrics(a.get("metrics") or {}), ordered_metrics(b.get("metrics") or {})
    holdouts = holdout_basis(a, b)
    for name in _union(metrics_a, metrics_b):
        rows.append({**_row("metrics", name, metrics_a.get(name), metrics_b.get(name)),
                     "basis": "same holdout" if holdouts["same"] else "own holdouts"})
    comparable = [c for c in (_gate_comparison(b, first, second), _gate_comparison(a, second, first)) if c]
    for figure in comparable:
        older, newer = (figure["value"], figure["candidate"]) if figure["version"] == first else \
            (figure["candidate"], figure["value"])
        rows.append({**_row("metrics", f"{figure['metric']} on v{figure['holdout_of']}'s holdout", older, newer),
                     "basis": "gate: same holdout"})
    gate_a, gate_b = a.get("gate") or {}, b.get("gate") or {}
    rows.append(_row("gate", "passed", gate_a.get("passed"), gate_b.get("passed")))
    checks_a = {c.get("check"): c for c in gate_a.get("checks") or []}
    checks_b = {c.get("check"): c for c in gate_b.get("checks") or []}
    for name in _union(checks_a, checks_b):
        rows.append(_row("gate", name, _check_text(checks_a.get(name)), _check_text(checks_b.get(name))))
    fair_a, fair_b = a.get("fairness") or {}, b.get("fairness") or {}
    rows.append(_row("fairness", "sensitive attribute", fair_a.get("sensitive_attribute") or _not_checked(fair_a),
                     fair_b.get("sensitive_attribute") or _not_checked(fair_b)))
    # A regression's fairness figures are the group spreads (mlops.stats.tasks.regression_fairness).
    regression = any("mean_prediction_spread" in f for f in (fair_a, fair_b))
    for field in (("mean_prediction_spread", "mae_spread") if regression else
                  ("demographic_parity_difference", "equal_opportunity_difference")):
        rows.append(_row("fairness", field, fair_a.get(field), fair_b.get(field)))
    groups_a, groups_b = fair_a.get("groups") or {}, fair_b.get("groups") or {}
    for group in _union(groups_a, groups_b):
        rows.append(_row("fairness", f"group {group}", _group_text(groups_a.get(group)),
                         _group_text(groups_b.get(group))))
    data_a, data_b = a.get("dataset") or {}, b.get("dataset") or {}
    for field in ("key", "version_id", "sha256", "rows"):
        rows.append(_row("data set", field, data_a.get(field), data_b.get(field)))
    rows.append(_row("data set", "holdout rows", (a.get("holdout") or {}).get("rows"),
                     (b.get("holdout") or {}).get("rows")))
    rows.append(_row("data set", "features", _feature_names(data_a), _feature_names(data_b)))
    code_a, code_b = a.get("code") or {}, b.get("code") or {}
    for field in ("package_version", "git_revision", "dirty"):
        rows.append(_row("code", field, code_a.get(field), code_b.get(field)))
    libs_a, libs_b = code_a.get("libraries") or {}, code_b.get("libraries") or {}
    for name in _union(libs_a, libs_b):
        rows.append(_row("code", name, libs_a.get(name), libs_b.get(name)))
    rows.append(_row("artifact", "sha256", a.get("artifact_sha256"), b.get("artifact_sha256")))
    return {"family": family, "a": version_summary(records[0]), "b": version_summary(records[1]), "rows": rows,
            "differences": sum(r["differs"] for r in rows), "holdouts": holdouts, "comparable": comparable}


def holdout_notes(result: dict[str, Any], first: int, second: int) -> list[str]:
    """The notes under `compare`'s metric rows: (1) on which rows each version's figures were computed when the
    holdouts differ, (2) the figure that compares the two on the same rows (the gate's re-scoring of the live
    model on the candidate's holdout), or that there is none."""
    holdouts = result["holdouts"]
    lines = []
    if not holdouts["same"]:
        def side(version: int, basis: dict[str, Any]) -> str:
            return f"v{version} on {basis['rows']} rows of {basis['dataset']}"

        lines.append(f"(1) Holdout metrics computed on different holdouts ({side(first, holdouts['a'])}, "
                     f"{side(second, holdouts['b'])}): the two columns are not comparable with each other.")
    for figure in result["comparable"]:
        lines.append(f"(2) The comparable figure: the gate of v{figure['holdout_of']} re-scored v{figure['version']} "
                     f"on v{figure['holdout_of']}'s holdout: {figure['metric']} {figure['value']:.4g} (v"
                     f"{figure['version']}) vs {figure['candidate']:.4g} (v{figure['holdout_of']}).")
    if not holdouts["same"] and not result["comparable"]:
        lines.append("Neither version's gate re-scored the other on its holdout (it was not live then, or could not "
                     "score those rows): no figure compares them on the same rows.")
    return lines


def holdout_basis(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """On which rows each version's holdout metrics were computed: {same, a, b}, each side {rows, dataset key,
    holdout artifact sha256}. `same` only when both holdouts are the same stored rows (same holdout artifact)."""
    def side(lineage: dict[str, Any]) -> dict[str, Any]:
        holdout = lineage.get("holdout") or {}
        return {"rows": holdout.get("rows"), "dataset": (lineage.get("dataset") or {}).get("key"),
                "artifact_sha256": holdout.get("artifact_sha256")}

    first, second = side(a), side(b)
    return {"same": bool(first["artifact_sha256"]) and first["artifact_sha256"] == second["artifact_sha256"],
            "a": first, "b": second}


def _gate_comparison(candidate: dict[str, Any], other: int, candidate_version: int) -> dict[str, Any] | None:
    """The figure that compares two versions on the same rows: the candidate's gate re-scored the model then live
    (`other`) on the candidate's holdout. {metric, version (re-scored), holdout_of, value, candidate}; None when
    the gate compared with another version or only with the figure recorded at the other's training."""
    gate = candidate.get("gate") or {}
    if gate.get("compared_with_live_version") != other or gate.get("live_basis") != "candidate holdout":
        return None
    primary = gate.get("primary_metric") or {}
    if primary.get("live") is not None:
        metric, value, own = primary.get("name"), primary["live"], primary.get("candidate")
    else:  # a binary gate records the AUC margin over the live model's AUC on the same rows
        check = next((c for c in gate.get("checks") or [] if c.get("check") == "auc_vs_live"), None)
        own = (candidate.get("metrics") or {}).get("auc")
        if check is None or not isinstance(check.get("value"), int | float) or not isinstance(own, int | float):
            return None
        metric, value = "auc", round(float(own) - float(check["value"]), 6)
    return {"metric": metric, "version": other, "holdout_of": candidate_version, "value": value, "candidate": own}


def _check_text(check: dict[str, Any] | None) -> str | None:
    if not check:
        return None
    value = check.get("value")
    shown = f"{value:.4g}" if isinstance(value, float) else "-" if value is None else str(value)
    return f"{'pass' if check.get('passed') else 'FAIL'} {shown}"


def _not_checked(fairness: dict[str, Any]) -> str:
    return f"not checked ({fairness.get('reason') or 'no figures recorded'})"


def _group_text(group: dict[str, Any] | None) -> str | None:
    if not group:
        return None
    rate = group.get("favorable_rate")
    if isinstance(group.get("mean_prediction"), float):
        return f"n={group.get('rows')}, mean prediction {group['mean_prediction']:.6g}, MAE {group.get('mae', 0.0):.4g}"
    return f"n={group.get('rows')}, favourable rate {rate:.3f}" if isinstance(rate, float) else \
        f"n={group.get('rows')}"


def _feature_names(dataset: dict[str, Any]) -> list[str]:
    return [c.get("name") for c in dataset.get("columns") or [] if c.get("kind") in ("numeric", "categorical")]


# ---- traffic over time ---------------------------------------------------------------------------------------


def parse_moment(text: str) -> datetime:
    """A moment from the command line: ISO-8601 (`2026-03-01T12:00:00Z`, an offset, or a date; naive is UTC), or
    `now`. Raises click.BadParameter naming the accepted forms."""
    if text.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a time: use ISO-8601 such as 2026-03-01T12:00:00Z, "
                                 "2026-03-01 12:00, 2026-03-01, or `now`", param_hint="'--at'") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def registry_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime(REGISTRY_TIME)


def traffic_at(platform: Platform, family: str, at: datetime | None = None) -> dict[str, Any]:
    """Which versions served the family's traffic, and with what weight, now (`at` None: the registry's pointers)
    or at a past moment (the registry's `live_at` and status history; a canary's weight at that moment from its
    run's execution history, else the weight it started at). Returns {family, at, live_version, canary_version,
    canary_weight, weight_source, traffic: [{version, role, weight}], events: the status events up to `at`}."""
    record = family_record(platform, family)
    history = events(platform, family)
    if at is None:
        live, canary = record.live_version, record.canary_version
        weight: float | None = float(record.canary_weight) if canary else None
        source = "registry (now)" if canary else None
        moment = None
        before = history
    else:
        at = at.astimezone(UTC)  # the registry's times are UTC text, compared as text
        moment = registry_time(at)
        live = platform.registry.live_at(family, at)
        before = [e for e in history if e["at"] <= moment]
        last: dict[int, dict[str, Any]] = {}
        for event in before:
            last[int(event["version"])] = event
        canary = next((v for v, e in sorted(last.items()) if e["to_status"] == "canary"), 0)
        weight, source = (_weight_at(platform, family, canary, history, at) if canary else (None, None))
    traffic = []
    if live:
        traffic.append({"version": live, "role": "live", "weight": 100.0 - (weight or 0.0)})
    if canary:
        traffic.append({"version": canary, "role": "canary", "weight": weight})
    return {"family": family, "at": moment, "live_version": live or None, "canary_version": canary or None,
            "canary_weight": weight, "weight_source": source, "traffic": traffic,
            "rollout_holder": record.rollout_holder if at is None else None, "events": before}


def _weight_at(platform: Platform, family: str, version: int, history: list[dict[str, Any]],
               at: datetime) -> tuple[float | None, str]:
    record = platform.registry.get_version(family, version)
    run_id = (record.lineage or {}).get("pipeline_execution")
    rollout = run_rollout(platform, run_id) if run_id else None
    points = [w for w in (rollout or {}).get("weights") or [] if _parse(w.get("at")) and _parse(w["at"]) <= at]
    if points:
        return float(points[-1]["weight"]), f"run {run_id} (execution history)"
    import re

    started = next((e for e in history if e["version"] == version and e["to_status"] == "canary"), None)
    found = re.search(r"(\d+(?:\.\d+)?)\s*%", (started or {}).get("reason") or "")
    if found:
        return float(found.group(1)), "the weight the canary started at (status event; the run's history was " \
                                      "not readable)"
    return None, "unknown (no execution history and no weight in the status event)"


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# ---- rollouts --------------------------------------------------------------------------------------------------


def execution_history(platform: Platform, run_id: str) -> list[dict[str, Any]] | None:
    """The run's Step Functions history with state inputs and outputs, oldest first; None when it cannot be read
    (never started, or older than the service keeps histories: 90 days)."""
    from botocore.exceptions import ClientError
    from mlops.rollout.history import execution_arn

    sfn = platform.client("stepfunctions")
    history: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn(platform.state_machine_arn, run_id), "maxResults": 1000,
                              "includeExecutionData": True}
    try:
        while True:
            page = sfn.get_execution_history(**kwargs)
            history += page.get("events", [])
            if not page.get("nextToken"):
                return history
            kwargs["nextToken"] = page["nextToken"]
    except ClientError:
        return None


def run_rollout(platform: Platform, run_id: str) -> dict[str, Any] | None:
    """{checks, weights} of a run's canary from its execution history (`rollout_from_execution`), or None."""
    from mlops.reports.timeline import rollout_from_execution

    history = execution_history(platform, run_id)
    if history is None:
        return None
    rollout = rollout_from_execution(history)
    for check in rollout["checks"]:
        figures = check.get("figures")
        # The canary check records the live-vs-canary probability PSI as `probability_psi`; the timeline draws it
        # as its prediction PSI.
        if isinstance(figures, dict) and "prediction_psi" not in figures and "probability_psi" in figures:
            figures["prediction_psi"] = figures["probability_psi"]
    return rollout


def had_canary(history: list[dict[str, Any]], version: int) -> bool:
    return any(e["version"] == version and e["to_status"] == "canary" for e in history)


def rollout(platform: Platform, family: str, version: int) -> dict[str, Any]:
    """The rollout timeline's input for one version's canary: status events, canary checks and weights (from its
    run's execution history when still kept), the family's canary policy. NotFound when the version never had a
    canary (a family's first model goes live directly; a rejected candidate never starts one)."""
    record = version_record(platform, family, version)
    history = events(platform, family)
    if not had_canary(history, record.version):
        raise NotFound(f"{family} v{version} had no canary rollout ({record.status}: {record.status_reason})")
    run_id = (record.lineage or {}).get("pipeline_execution")
    found = run_rollout(platform, run_id) if run_id else None
    return {"family": family, "version": record.version,
            "live_version": (record.lineage or {}).get("previous_live_version"), "run_id": run_id,
            "policy": family_record(platform, family).family.canary.model_dump(mode="json"), "events": history,
            "checks": (found or {}).get("checks") or [], "weights": (found or {}).get("weights") or [],
            "history_kept": found is not None}


# ---- drift ------------------------------------------------------------------------------------------------------


def drift_summary(item: dict[str, Any]) -> dict[str, Any]:
    """One drift record (the registry's DRIFT item: {"at", "verdict", "report"}) as the lists show it. A failed
    check (verdict "error", written by `DriftMonitor.record_failure`) has its message in `error` and judged
    nothing (rows 0); `checked_at` is when it ran (the record's time when the report has none)."""
    report = item.get("report") or {}
    return {"run": item.get("at"), "checked_at": report.get("checked_at") or item.get("at"),
            "verdict": report.get("verdict") or item.get("verdict"),
            "live_version": report.get("live_version"), "rows": report.get("rows"),
            "drifted_features": report.get("drifted_features") or [],
            "prediction_psi": report.get("prediction_psi"), "prediction": report.get("prediction"),
            "prediction_drift": prediction_drift_text(report), "retrain": report.get("retrain"),
            "error": report.get("error"), "fanout_run": report.get("fanout_run"),
            "report_key": report.get("report_key"), "report_html_key": report.get("report_html_key"),
            # The window spans model versions (a promotion or rollback between checks): rows per serving version,
            # the live model's own predictions, versions trained with other inputs left out, unreadable objects.
            "rows_by_version": report.get("rows_by_version") or {}, "prediction_rows": report.get("prediction_rows"),
            "not_judged": report.get("not_judged") or [], "unreadable_count": report.get("unreadable_count") or 0,
            "window_open": bool(report.get("window_open"))}


def failed(item: dict[str, Any] | None) -> bool:
    """Whether a drift record is a failed check (verdict "error": it judged nothing and has no report)."""
    return bool(item) and ((item.get("report") or {}).get("verdict") or item.get("verdict")) == "error"


def epoch_iso(value: Any) -> str | None:
    """Epoch seconds (a drift window's bound) as ISO-8601 UTC text; None when missing or not a number."""
    try:
        return datetime.fromtimestamp(float(value), UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def failed_check(platform: Platform, family: str, item: dict[str, Any]) -> dict[str, Any]:
    """What there is to say about a failed drift check (`item`, verdict "error"): {"error", "checked_at",
    "window": {"start", "end", "basis"}, "newest_completed": the newest check that did judge traffic (a
    `drift_summary`, or None)}. The window is the one the check would have judged: its own bounds when the record
    holds them, else from the end of the last judged window of the same live version before it (or, with none,
    the model going live) to the moment it failed. It stays open: the next check judges that traffic. One query
    (the family's newest 100 drift records)."""
    report = item.get("report") or {}
    records = platform.registry.drift_records(family, limit=100)
    completed = [r for r in records if not failed(r)]
    newest = drift_summary(completed[0]) if completed else None
    at = str(item.get("at") or "")
    before = next((r for r in completed if str(r.get("at") or "") < at), None)
    live = report.get("live_version")
    start = epoch_iso(report.get("window_start"))
    if start:
        basis = "recorded with the check"
    elif before is not None and (before.get("report") or {}).get("live_version") == live and \
            epoch_iso((before.get("report") or {}).get("window_end")):
        start = epoch_iso(before["report"]["window_end"])
        basis = f"the end of the window the check of {before.get('at')} judged"
    else:
        basis = f"live v{live} going live (no earlier judged window of it)" if live else "no earlier judged window"
    end = epoch_iso(report.get("window_end")) or report.get("checked_at") or item.get("at")
    return {"error": report.get("error") or "no message recorded", "checked_at": report.get("checked_at") or at,
            "window": {"start": start, "end": end, "basis": basis}, "newest_completed": newest}


def prediction_drift_text(report: dict[str, Any]) -> str:
    """The served predictions' drift in one phrase, by task (mlops.stats.tasks.prediction_drift): a multiclass
    model's predicted-class chi-square p-value and Cramér's V, a regression's PSI and KS D, a binary model's
    prediction PSI; or why they were not tested."""
    prediction = report.get("prediction")
    if not isinstance(prediction, dict):
        psi = report.get("prediction_psi")
        return "-" if psi is None else f"PSI {psi:.3g}"
    if prediction.get("status") != "checked":
        return f"{prediction.get('status', 'not_checked').replace('_', ' ')} ({prediction.get('reason') or '-'})"
    verdict = "drift" if prediction.get("drifted") else "no drift"
    figure = {k: prediction.get(k) if isinstance(prediction.get(k), int | float) else float("nan")
              for k in ("p_value", "cramers_v_equal_weight", "psi", "ks_statistic", "ks_p_value")}
    if prediction.get("kind") == "categorical":
        return (f"predicted classes: chi-square p {figure['p_value']:.2g}, Cramér's V "
                f"{figure['cramers_v_equal_weight']:.3f}, PSI {figure['psi']:.3g} ({verdict})")
    return (f"predicted values: PSI {figure['psi']:.3g}, KS D {figure['ks_statistic']:.3f} "
            f"(p {figure['ks_p_value']:.2g}) ({verdict})")


def drift_check(platform: Platform, family: str) -> dict[str, Any]:
    """Run the family's drift check now, as its schedule does: invoke the platform's drift function (the local
    server's, or the stack's `DriftFunction` output) with an EventBridge scheduled event naming the family
    (`detail.families`), then read the check it recorded (`drift_run`). A check that failed and was recorded
    (verdict "error") is returned as `drift_run` returns it (its `summary.error`, `failure`); one with no traffic
    since the last check is {"summary": {"verdict": "no_traffic", "window_start", "captures_off", ...},
    "report": None} (`captures_off`: the family declares capture_sample_rate 0, so nothing is ever captured).
    NotFound for an unknown family or one without a live model; click.ClickException when the platform names no
    drift function, or the check failed without a record of it (the function itself failed)."""
    import json

    record = family_record(platform, family)
    if getattr(record, "retired", False):
        raise NotFound(f"{family} was retired at {record.changed_at} on {platform.description}: a retired family is "
                       "not monitored (`mlops families apply` brings it back)")
    if not record.live_version:
        raise NotFound(f"{family} has no live model on {platform.description}: drift compares a live model's "
                       "traffic with its training baseline (upload a data set first)")
    if not platform.drift_function:
        raise click.ClickException(f"{platform.description} does not name its drift function (a local server "
                                   "started before `mlops drift check` existed, or a stack deployed before its "
                                   "DriftFunction output): restart `mlops local serve`, or redeploy the stack")
    event = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {"families": [family]}}
    # The newest record before the check: a failure recorded by this check is newer (registry times, one clock).
    newest = platform.registry.drift_records(family, limit=1)
    before = str(newest[0].get("at") or "") if newest else ""
    response = platform.client("lambda").invoke(FunctionName=platform.drift_function,
                                                Payload=json.dumps(event).encode())
    payload = json.loads(response["Payload"].read() or b"{}")
    crashed = bool(response.get("FunctionError"))
    result = None if crashed else next((r for r in payload.get("reports") or [] if r.get("family") == family), None)
    if result is None or result.get("verdict") == "error":
        # A failure the drift function recorded (verdict "error"): shown like any recorded check.
        recorded = next((i for i in platform.registry.drift_records(family, limit=5)
                         if failed(i) and str(i.get("at") or "") > before), None)
        if recorded is not None:
            return drift_run(platform, family, str(recorded["at"]))
        if crashed:
            reason = f"{payload.get('errorType', 'error')}: {str(payload.get('errorMessage', payload))[:500]}"
        elif result:
            reason = str(result.get("error") or "no message")
        else:
            reason = "the drift function reported no check of it"
        raise click.ClickException(f"the drift check of {family} failed and was not recorded (`mlops drift list` "
                                   f"does not show it; the drift function's logs have the details): {reason}")
    if result.get("verdict") == "no_traffic":  # nothing judged and nothing recorded: no captures since the last
        start = float(result.get("window_start") or 0)
        since = datetime.fromtimestamp(start, UTC).isoformat() if start else None  # None: never judged yet
        return {"summary": {"verdict": "no_traffic", "run": None, "live_version": record.live_version, "rows": 0,
                            "window_start": since, "retrain": None,
                            "captures_off": captures_off(record.family),
                            "not_judged": result.get("not_judged") or []},
                "report": None}
    return drift_run(platform, family)


def captures_off(declaration: Any) -> bool:
    """Whether the family captures nothing (capture_sample_rate 0): drift checks and canary checks then have no
    captured traffic to judge."""
    return float(getattr(declaration, "capture_sample_rate", 1.0) or 0.0) == 0.0


CAPTURES_OFF = "captures off (capture_sample_rate 0)"


def drift_fanout(platform: Platform, tier: str | None, progress: Any = None, timeout: float = 3600.0,
                 include_idle: bool = False) -> dict[str, Any]:
    """Run the scheduled drift fan-out now (the state machine the schedules start), wait for it, and say what
    each listed family's check recorded: {"execution", "status", "seconds", "tier", "families": [{"family",
    "verdict", "drifted_features", "error", "run", "captures_off"}], "not_listed": [{"family", "reason"}]}.
    `not_listed`: the registered families (of `tier`) the listing left out, with why (`_not_listed_reason`:
    retired, never trained, no live model). `captures_off`: a family with nothing judged (not_recorded, idle)
    that declares capture_sample_rate 0, so it never has traffic to judge. A failed check is recorded with
    verdict "error" and its message; a
    family with no drift record of this run (each check records its fan-out execution) has "not_recorded" (no
    captured traffic in its window: nothing judged, or it was retired or lost its model since the listing); a
    family left out as the schedules leave it out (no capture written since its last check) has "idle", unless
    `include_idle`. click.ClickException when the platform names no fan-out or the execution did not succeed."""
    import json
    import time
    import uuid

    if not platform.drift_fanout:
        raise click.ClickException(f"{platform.description} does not name its drift fan-out (a local server "
                                   "started before `mlops drift check-all` existed, or a stack deployed before its "
                                   "DriftFanout output): restart `mlops local serve`, or redeploy the stack")
    sfn = platform.client("stepfunctions")
    began = time.monotonic()
    arn = sfn.start_execution(stateMachineArn=platform.drift_fanout, name=f"cli-{uuid.uuid4().hex[:20]}",
                              input=json.dumps({"tier": tier or "", "families": [],
                                                "skip_idle": not include_idle}))["executionArn"]
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            break
        if time.monotonic() - began > timeout:
            raise click.ClickException(f"the drift fan-out {arn} is still running after {timeout:.0f} s")
        if progress is not None:
            progress(time.monotonic() - began)
        time.sleep(platform.poll_seconds)
    if described["status"] != "SUCCEEDED":
        raise click.ClickException(f"the drift fan-out ended {described['status']}: {described.get('error', '')} "
                                   f"{str(described.get('cause', ''))[:500]}")
    listing = json.loads(described.get("output") or "{}").get("listing") or {}
    names: list[str] = []
    if listing.get("count"):
        body = platform.client("s3").get_object(Bucket=listing["bucket"], Key=listing["key"])["Body"].read()
        names = [f for item in json.loads(body) for f in item["families"]]
    run = arn.rsplit(":", 1)[-1]
    families = []
    for name in names:
        # This run's record of the family (each check records the fan-out execution that asked for it): not the
        # newest by time, which a concurrent schedule or `drift check` may have written.
        record = next((r for r in platform.registry.drift_records(name, limit=10)
                       if (r.get("report") or {}).get("fanout_run") == run), None)
        at = str(record.get("at", "")) if record else ""
        fresh = record is not None
        report = (record or {}).get("report") or {}
        families.append({"family": name, "verdict": record.get("verdict") if fresh else "not_recorded",
                         "drifted_features": report.get("drifted_features", []) if fresh else [],
                         "error": report.get("error") if fresh else None, "run": at if fresh else None})
    if listing.get("idle_key"):
        body = platform.client("s3").get_object(Bucket=listing["bucket"], Key=listing["idle_key"])["Body"].read()
        families += [{"family": name, "verdict": "idle", "drifted_features": [], "error": None, "run": None}
                     for name in json.loads(body)]
    families.sort(key=lambda f: f["family"])
    # One pass over the family index: who was not listed and why, and which unjudged families capture nothing.
    summaries = {s.name: s for s in platform.registry.iter_families()}
    for entry in families:
        entry["captures_off"] = False
        summary = summaries.get(entry["family"])
        # Only a family that never had a capture written can be one that captures nothing (one lookup each).
        if entry["verdict"] in ("not_recorded", "idle") and summary is not None and summary.last_capture_at is None:
            try:
                entry["captures_off"] = captures_off(platform.registry.get_family(entry["family"]).family)
            except Exception:  # noqa: BLE001 - retired or removed since the listing: the row says what it recorded
                entry["captures_off"] = False
    listed = {f["family"] for f in families}
    not_listed = [{"family": s.name, "reason": _not_listed_reason(s)} for s in summaries.values()
                  if s.name not in listed and (not tier or s.serving == tier)]
    not_listed.sort(key=lambda f: (f["reason"], f["family"]))
    return {"execution": arn, "status": described["status"], "seconds": round(time.monotonic() - began, 1),
            "tier": tier, "families": families, "not_listed": not_listed}


def _not_listed_reason(summary: Any) -> str:
    """Why the fan-out's listing left a registered family out: retired, never trained (no version at all), no live
    model (versions, none live), or live since the listing was made."""
    if summary.status != "active":
        return "retired"
    if not summary.latest_version:
        return "never trained"
    if not summary.live_version:
        return "no live model"
    return "live since the listing"


def drift_runs(platform: Platform, family: str, limit: int = 20) -> list[dict[str, Any]]:
    """The family's drift checks, newest first (summaries; the run id is the check's registry time)."""
    family_record(platform, family)
    return [drift_summary(i) for i in platform.registry.drift_records(family, limit=limit)]


def drift_run(platform: Platform, family: str, run: str | None = None, version: int | None = None
              ) -> dict[str, Any]:
    """One drift check in full: the newest (or the one whose id starts with `run`, or the newest of live
    `version`), with the stored S3 report (which also holds the current histograms) when it is readable, and the
    baseline profile of the version it checked. NotFound when there is none."""
    record = family_record(platform, family)
    items = platform.registry.drift_records(family, limit=1000 if run or version else 1)
    if run:
        wanted = run.strip().removeprefix(f"s3://{platform.bucket}/")
        matches = [i for i in items if any(alias.startswith(wanted) for alias in drift_ids(i))]
        exact = [i for i in matches if wanted in drift_ids(i)]
        if len(matches) > 1 and len(exact) != 1:
            raise NotFound(f"drift run {run!r} of {family} is ambiguous: "
                           f"{', '.join(str(i['at']) for i in matches[:5])}")
        items = exact or matches
    if version is not None:
        items = [i for i in items if (i.get("report") or {}).get("live_version") == version]
    if not items:
        what = f"run {run!r}" if run else f"check of v{version}" if version is not None else "check"
        why = (f": {CAPTURES_OFF}, so drift checks have no traffic to judge"
               if captures_off(getattr(record, "family", None)) else "")
        raise NotFound(f"no drift {what} of {family} recorded{why} (`mlops drift list {family}`)")
    return drift_found(platform, family, items[0])


def drift_found(platform: Platform, family: str, item: dict[str, Any]) -> dict[str, Any]:
    """One drift record in full (`drift_run`'s answer): {"summary", "report", "profile", "stored_report"}; a
    failed check (verdict "error") has no stored report nor profile and adds "failure" (`failed_check`)."""
    report = dict(item.get("report") or {})
    if failed(item):
        return {"summary": drift_summary(item), "report": report, "profile": None, "stored_report": False,
                "failure": failed_check(platform, family, item)}
    stored = _stored_report(platform, report.get("report_key"))
    if stored is not None:
        report = {**stored, **{k: v for k, v in report.items() if k not in stored}}
    profile = None
    live = report.get("live_version")
    if live:
        try:
            lineage = platform.registry.get_version(family, int(live)).lineage or {}
            profile = artifact_json(platform, lineage["baseline_profile"]["sha256"])
        except Exception:  # noqa: BLE001 - the report is shown without distributions, and says so
            profile = None
    return {"summary": drift_summary(item), "report": report, "profile": profile,
            "stored_report": stored is not None}


def drift_ids(item: dict[str, Any]) -> list[str]:
    """The names a drift check goes by, any of which (or a prefix) `mlops drift show --run` takes: the run id
    `mlops drift list` shows (its registry time), its report's S3 keys (JSON and HTML) and their file names (a
    time written with '-' in place of ':', taken a moment later than the registry's), and the check's own time."""
    report = item.get("report") or {}
    ids = [str(item.get("at") or "")]
    for key in (report.get("report_key"), report.get("report_html_key")):
        if key:
            name = str(key).rsplit("/", 1)[-1]
            ids += [str(key), name, name.rsplit(".", 1)[0]]
    if report.get("checked_at"):
        ids.append(str(report["checked_at"]))
    return [i for i in ids if i]


def _stored_report(platform: Platform, key: str | None) -> dict[str, Any] | None:
    if not key:
        return None
    from botocore.exceptions import ClientError

    try:
        body = platform.client("s3").get_object(Bucket=platform.bucket, Key=key)["Body"].read()
    except ClientError:
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# ---- report pages (HTML, drawn here from the registry: the same functions the Lambda functions use) -------------


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def model_card_page(platform: Platform, family: str, version: int) -> tuple[str, dict[str, Any]]:
    """(HTML, JSON) of the version's model card, drawn from the registry now."""
    from mlops.reports.publish import build_model_card

    version_record(platform, family, version)
    return build_model_card(platform.registry, family, version, generated_at=now_iso())


def draw_drift(platform: Platform, family: str, found: dict[str, Any]) -> str:
    """The HTML page of a completed drift check (`drift_run`'s answer). Raises the renderer's ValidationError
    when the stored report cannot be drawn (no `features` object)."""
    from mlops.reports.drift_report import render_drift_report

    declaration = family_record(platform, family).family
    return render_drift_report(found["report"], found["profile"], None, declaration,
                               generated_at=found["report"].get("checked_at"))


def drawable_drift_page(platform: Platform, family: str, version: int
                        ) -> tuple[str, dict[str, Any], str | None]:
    """(HTML, report, note) of the newest drift check of live `version` that can be drawn, for `mlops report`:
    failed checks (verdict "error") and reports the renderer refuses are passed over, newest first, and `note`
    says which check was used and what was passed over (None when it is the newest check of the version).
    NotFound when the version has no check, or none that can be drawn (naming the newest failure)."""
    family_record(platform, family)
    items = [i for i in platform.registry.drift_records(family, limit=1000)
             if (i.get("report") or {}).get("live_version") == version]
    if not items:
        raise NotFound(f"no drift check of v{version} of {family} recorded (`mlops drift list {family}`)")
    passed_over: list[str] = []
    for item in items:
        if failed(item):
            passed_over.append(f"{item.get('at')} failed ({(item.get('report') or {}).get('error') or 'no message'})")
            continue
        found = drift_found(platform, family, item)
        try:
            html = draw_drift(platform, family, found)
        except Exception as exc:  # noqa: BLE001 - a stored report the renderer cannot draw: the next one
            passed_over.append(f"{item.get('at')} could not be drawn ({type(exc).__name__}: {exc})")
            continue
        note = None
        if passed_over:
            shown = "; ".join(passed_over[:3]) + (f"; and {len(passed_over) - 3} more" if len(passed_over) > 3
                                                 else "")
            note = (f"drift report: the newest drawable check of v{version}, {item.get('at')} "
                    f"({found['summary']['verdict']}), used instead of the newer {shown}")
        return html, found["report"], note
    raise NotFound(f"no drift report of v{version} of {family} can be drawn: its {len(items)} check(s) "
                   f"failed or could not be drawn, the newest {passed_over[0]} (`mlops drift list {family}`)")


def timeline_page(platform: Platform, family: str, version: int) -> tuple[str, dict[str, Any]]:
    """(HTML, the rollout dict) of the version's canary rollout timeline."""
    from mlops.reports.timeline import render_rollout_timeline

    data = rollout(platform, family, version)
    return render_rollout_timeline(data, generated_at=now_iso()), data
