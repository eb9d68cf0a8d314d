"""Retrains started by monitoring: one path for drift (mlops.monitoring.drift) and performance
(mlops.monitoring.performance) retrains. The rollout lock defers them; the data set is the newest recorded upload
that could train a model the family does not already have (no run or later verdict ruled it out, and not one a
model was trained on under the same training-relevant declaration: mlops.core.declarations); the pipeline is
started through the trigger's `start_pipeline` with a run record (trigger source "drift" or "performance")."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from mlops.core import aws
from mlops.core.declarations import DeclarationChanges, declaration_changes
from mlops.core.errors import UnknownFamilyError
from mlops.core.observability import MetricsPublisher
from mlops.pipeline.trigger import DATASET_PREFIX, is_trainable_key, pipeline_input, start_pipeline
from mlops.registry.runs import (
    DUPLICATE,
    FAILED,
    GATED_OUT,
    REJECTED,
    ROLLED_BACK,
    UNCHANGED,
    RunLog,
)
from mlops.registry.store import (
    RETIRED,
    ROLLBACK_INSUFFICIENT_TRAFFIC,
    UPLOADS_CONSIDERED,
    FamilyRecord,
    ModelRegistry,
    rolled_back_for_insufficient_traffic,
)

# Upload-run outcomes that rule a data set out of a monitoring retrain: it was never accepted (rejected: not a
# valid data set), is a duplicate of content an earlier version holds, failed, trained a model identical to an
# existing version (unchanged), or gave a model the gate or the canary turned down. Two outcomes are no verdict
# and leave the data set usable: a canary rolled back only because too little traffic reached it
# (`run_rolled_back_unjudged`), and an upload refused because the family stayed busy (it never trained: the
# newest data its owners supplied, which a retrain should use rather than pass over).
UNUSABLE_RUN_OUTCOMES = (REJECTED, FAILED, DUPLICATE, UNCHANGED, GATED_OUT, ROLLED_BACK)
# How the canary check words a rollback for too little traffic (runs recorded before `canary_cause` existed).
_INSUFFICIENT_TRAFFIC_REASON = "not enough canary traffic to judge"


def run_rolled_back_unjudged(run: dict[str, Any]) -> bool:
    """Whether an upload run ended rolled_back only because too little traffic reached its canary: its detail's
    `canary_cause` (mlops.rollout.control.finish), or for runs recorded before it, every canary reason saying so."""
    if run.get("outcome") != ROLLED_BACK:
        return False
    detail = run.get("detail") or {}
    if "canary_cause" in detail:
        return detail["canary_cause"] == ROLLBACK_INSUFFICIENT_TRAFFIC
    reasons = [str(r) for r in detail.get("canary_reasons") or []]
    return bool(reasons) and all(r.startswith(_INSUFFICIENT_TRAFFIC_REASON) for r in reasons)


class _Declarations:
    """The family's declarations by config version, read once each (GetItem of CONFIG#<n>), compared with the
    current one."""

    def __init__(self, registry: ModelRegistry, record: FamilyRecord) -> None:
        self.registry = registry
        self.record = record
        self.current = int(getattr(record, "config_version", 0) or 0)
        self._read: dict[int, DeclarationChanges | None] = {}

    def changes_since(self, config_version: int) -> DeclarationChanges | None:
        """What changed from `config_version` to the current declaration; None when that declaration is unknown
        (0: trained before declarations were versioned, or its history item is missing)."""
        if config_version and config_version == self.current:
            return DeclarationChanges(training=(), other=())
        if not config_version:
            return None
        if config_version not in self._read:
            try:
                before = self.registry.get_family_config(self.record.family.name, config_version)
            except UnknownFamilyError:
                self._read[config_version] = None
            else:
                self._read[config_version] = declaration_changes(before, self.record.family)
        return self._read[config_version]

    def since(self, config_version: int, changes: DeclarationChanges) -> str:
        """"config version 1 -> 2, changed: drift, canary (none of them training-relevant)"."""
        if config_version == self.current:
            return f"config version {config_version}, unchanged"
        return f"config version {config_version} -> {self.current}, {changes.describe()}"


class Retrainer:
    """Starts a family's retrain on its newest usable data set (tests/functional/test_drift_retrain_dataset.py,
    tests/functional/test_performance_retrain.py).

    registry: the model registry; publisher: where the run log counts the started run; state_machine_arn: the training
    pipeline; is_execution_running(run_id): the rollout lock's holder check
    (mlops.rollout.control.execution_is_running); bucket: the artifact bucket, the data set's bucket when its upload
    record names none."""

    def __init__(self, registry: ModelRegistry, publisher: MetricsPublisher, state_machine_arn: str,
                 is_execution_running: Callable[[str], bool] | None, bucket: str) -> None:
        self.registry = registry
        self.publisher = publisher
        self.state_machine_arn = state_machine_arn
        self.is_execution_running = is_execution_running or (lambda run_id: False)
        self.bucket = bucket

    def start(self, record: FamilyRecord, source: str, name: str, *, once: bool = False) -> dict[str, Any]:
        """Start the execution `name` (trigger source `source`) on the newest usable data set, unless a rollout holds
        the family's lock (deferred) or no data set is usable (the reason says which uploads were ruled out). With
        `once`, an existing execution of that name is reported as already started (its status), not started again,
        whoever holds the lock: a retrain per breach. Returns {"started", "reason"?, "execution", "execution_arn",
        "dataset", "dataset_run"} (start_pipeline's result plus the data set and the upload run that vouches for it)."""
        family = record.family
        if once:  # before the lock: a retrain already started for this likely holds it
            arn = self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
            try:
                status = aws.client("stepfunctions").describe_execution(executionArn=arn)["status"]
            except Exception as exc:
                if aws.error_code(exc) != "ExecutionDoesNotExist":
                    raise
            else:
                return {"started": False, "execution": name, "execution_arn": arn, "status": status,
                        "reason": f"a retrain for this was already started: {name} ({status})"}
        holder = self.registry.get_family(family.name).rollout_holder
        if holder and self.is_execution_running(holder):
            return {"started": False, "reason": f"rollout {holder} is in progress; retrain deferred"}
        found, skipped, headline = self._choose(family.name, record)
        if found is None:
            considered = ("; considered: " + "; ".join(skipped[:5])
                          + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else "")) if skipped else ""
            return {"started": False, "reason": f"no usable data set under {DATASET_PREFIX}{family.name}/: "
                                                + headline + considered}
        dataset = {k: v for k, v in found.items() if k != "run_id"}
        started = start_pipeline(self.state_machine_arn, name, pipeline_input(record, dataset, source),
                                 RunLog(self.registry, self.publisher))
        return {**started, "dataset": dataset, "dataset_run": found["run_id"]}

    def newest_dataset(self, family: str, record: FamilyRecord,
                       skipped: list[str] | None = None) -> dict[str, Any] | None:
        """The newest data set version a retrain can use: one that could train a model the family does not have.
        The family's newest recorded uploads (one query, at most UPLOADS_CONSIDERED, newest first), skipping a
        version
        - its training engine does not read (`trigger.is_trainable_key`: .csv, .csv.gz, and .parquet off Lambda);
        - whose upload run ended in an outcome that rules the data out (`UNUSABLE_RUN_OUTCOMES`: rejected, failed,
          duplicate, unchanged, gated out, rolled back; not a rollback for too little canary traffic nor an upload
          refused because the family stayed busy, which are no verdict), or that a later rejection or verdict
          rollback of a model trained on it marked unusable (`UNUSABLE#`);
        - a model version was trained on whose canary was rolled back for too little traffic (`UNJUDGED#`), unless
          a training-relevant part of the declaration changed since (mlops.core.declarations): a retrain would
          reproduce that version, which an operator can still promote;
        and stopping at the live model's data set: it is used only when a training-relevant part of the
        declaration changed since the live model was trained (a change of drift, canary, gate or other policies
        would reproduce the live model; a live model trained before declarations were versioned is retrained),
        and an upload older than it is never used (a retrain on older data goes backwards).
        Two to four GetItems per candidate (its run, the unusable, trained-on and unjudged items) plus one per older
        declaration compared, stopping at the first usable one; never lists the bucket or the family's versions.
        Returns the pipeline input's `dataset` plus `run_id` (the upload run that vouches for it), or None;
        `skipped`, when given, receives one line per upload passed over and why (the drift report and `mlops drift
        show` say why no retrain started)."""
        found, passed_over, _ = self._choose(family, record)
        if skipped is not None:
            skipped.extend(passed_over)
        return found

    def _choose(self, family: str, record: FamilyRecord) -> tuple[dict[str, Any] | None, list[str], str]:
        """(data set or None, one line per upload passed over, the headline of why none is usable)."""
        passed_over: list[str] = []
        declarations = _Declarations(self.registry, record)
        live_ident: tuple[Any, Any] = (None, None)
        live_since = ""
        live_reproduces = False
        if record.live_version:
            lineage = self.registry.get_version(family, record.live_version).lineage or {}
            live = lineage.get("dataset") or {}
            live_ident = (live.get("key"), live.get("version_id") or None)
            trained = int(lineage.get("family_config_version") or 0)
            changes = declarations.changes_since(trained)
            live_reproduces = changes is not None and not changes.retrains_differently
            if changes is not None:
                live_since = declarations.since(trained, changes)
        seen: set[tuple[str, str | None]] = set()
        for upload in self.registry.recent_uploads(family, UPLOADS_CONSIDERED):
            dataset = upload.get("dataset") or {}
            ident = (dataset.get("key"), dataset.get("version_id") or None)
            if not ident[0] or ident in seen:
                continue
            seen.add(ident)
            named = f"{ident[0]}" + (f" (version {ident[1]})" if ident[1] else "")
            is_live = ident == live_ident
            if is_live and live_reproduces:
                passed_over.append(f"{named}: the live model v{record.live_version} was trained on it")
                return None, passed_over, (
                    f"no data set newer than live v{record.live_version}'s is usable, and no training-relevant part "
                    f"of the declaration changed since it was trained ({live_since}): a retrain would reproduce "
                    f"v{record.live_version}; upload newer data, or change what training uses (features, target, "
                    "algorithm, hyperparameters...)")
            reason = self._ruled_out(family, str(ident[0]), ident[1], upload, record, declarations)
            if reason is None:
                return ({"bucket": dataset.get("bucket") or self.bucket, "key": ident[0], "version_id": ident[1],
                         "etag": str(dataset.get("etag", "")).strip('"'), "run_id": upload["run_id"]},
                        passed_over, "")
            passed_over.append(f"{named}: {reason}")
            if is_live:  # older uploads than the live model's data set are never a retrain's choice
                return None, passed_over, (f"no usable data set: none newer than live v{record.live_version}'s, "
                                           "and that one is passed over (below; older uploads are not "
                                           "considered); upload newer data")
        if not passed_over:
            return None, passed_over, "no upload is recorded for this family; upload a data set"
        return None, passed_over, ("none of the family's newest uploads could train a model it does not already "
                                   "have; upload newer data")

    def _ruled_out(self, family: str, key: str, version_id: str | None, upload: dict[str, Any],
                   record: FamilyRecord, declarations: _Declarations) -> str | None:
        """Why this upload cannot be a retrain's data set, or None."""
        if not is_trainable_key(record.family, key):
            return "the family's training engine does not read this format"
        # Every version trained on it (and every run on it that ended `unchanged`), read once, when first needed.
        trained_on = functools.cache(lambda: self.registry.versions_trained_on(family, key, version_id))
        run = self.registry.get_run(family, upload["run_id"])
        if run is not None and run.get("outcome") in UNUSABLE_RUN_OUTCOMES and not run_rolled_back_unjudged(run) \
                and not (run.get("outcome") == GATED_OUT and self._judged_other_training(
                    family, run.get("version") or (run.get("detail") or {}).get("version"), declarations,
                    trained_on)):
            return f"its run ended {run.get('outcome')}"
        # A model trained on it was rejected or rolled back on a verdict later (an operator's rollback included).
        marker = self.registry.dataset_unusable(family, key, version_id)
        legacy = None
        if marker is not None:
            status = str(marker.get("status") or ROLLED_BACK)
            legacy = self._legacy_unjudged(family, marker) if status == ROLLED_BACK else None
            # The gate rejects a model, i.e. this data under that declaration's training: after a training-relevant
            # change (a hyperparameter tried and turned down, then another) the data set may train again.
            if legacy is None and not (status == REJECTED and self._judged_other_training(
                    family, marker.get("version"), declarations, trained_on)):
                return f"a model trained on it (v{marker.get('version')}) was later {status.replace('_', ' ')}"
        # Any version already trained on it under a declaration a retrain would train the same way, newest first:
        # not only the live one (undoing a hyperparameter change would otherwise reproduce an earlier version at
        # every check), a run that ended `unchanged` on it (a default written out would retrain at every check),
        # and a canary rolled back for too little traffic (`UNJUDGED#`, also for versions older than `TRAINED#`).
        unjudged = self.registry.dataset_unjudged(family, key, version_id) or legacy
        entries = list(reversed(trained_on()))
        if unjudged is not None and not any(t["version"] == unjudged.get("version") for t in entries):
            entries.append({"version": unjudged.get("version"), "reproduced": False,
                            "family_config_version": unjudged.get("family_config_version") or 0})
        for trained in entries:
            config = int(trained["family_config_version"])
            changes = declarations.changes_since(config)
            if changes is None or changes.retrains_differently:
                continue
            if trained.get("reproduced"):
                return (f"a retrain on it under this declaration (config version {config}) already reproduced "
                        f"v{trained['version']} byte for byte (its run ended unchanged): change what training "
                        "uses, or upload newer data")
            return self._reproduces(family, int(trained["version"]), declarations.since(config, changes),
                                    unjudged=trained["version"] == (unjudged or {}).get("version"))
        return None

    def _judged_other_training(self, family: str, version: Any, declarations: _Declarations,
                               trained_on: Callable[[], list[dict[str, Any]]]) -> bool:
        """Whether the gate's rejection of `version` judged the training rather than the data: another model
        trained on this data set passed the gate (the live model's own data set, say; `trained_on()` lists them,
        read only when needed), and `version` was trained under a declaration that trains differently from
        today's. A data set whose only models were rejected (noisy labels, say) stays ruled out. False when
        unknown."""
        try:
            lineage = self.registry.get_version(family, int(version)).lineage or {}
        except (UnknownFamilyError, TypeError, ValueError):
            return False
        changes = declarations.changes_since(int(lineage.get("family_config_version") or 0))
        if changes is None or not changes.retrains_differently:
            return False
        for trained in trained_on():
            if trained["version"] == int(version) or trained.get("reproduced"):
                continue
            try:
                if self.registry.get_version(family, trained["version"]).status != REJECTED:
                    return True
            except UnknownFamilyError:
                continue
        return False

    def _reproduces(self, family: str, version: int, since: str, unjudged: bool = False) -> str:
        """Why a data set is passed over when a retrain on it would reproduce `version`, and what can be done
        (`unjudged`: its canary was rolled back for too little traffic, as the data set's UNJUDGED# item says)."""
        try:
            found = self.registry.get_version(family, version)
        except UnknownFamilyError:
            found = None
        if unjudged or (found is not None and rolled_back_for_insufficient_traffic(found)):
            state = (f"whose canary was rolled back for too little traffic, not for what it did (an operator can "
                     f"still promote it: mlops promote {family} {version} --reason ...)")
        elif found is None:
            state = "no longer in the registry"
        elif found.status == RETIRED:
            state = f"retired (an operator can bring it back: mlops promote {family} {version} --reason ...)"
        else:
            state = found.status.replace("_", " ")
        return (f"v{version} was trained on it and no training-relevant part of the declaration changed since "
                f"({since}): a retrain would reproduce v{version}, {state}")

    def _legacy_unjudged(self, family: str, marker: dict[str, Any]) -> dict[str, Any] | None:
        """An `UNUSABLE#` marker a rollback for too little traffic wrote before such rollbacks stopped marking data
        sets: read as the `UNJUDGED#` item it stands for ({version, family_config_version}), else None."""
        try:
            version = self.registry.get_version(family, int(marker.get("version") or 0))
        except UnknownFamilyError:
            return None
        if not rolled_back_for_insufficient_traffic(version):
            return None
        return {"version": version.version,
                "family_config_version": int(version.lineage.get("family_config_version") or 0)}
