"""Retrains started by monitoring: one path for drift (mlops.monitoring.drift) and performance
(mlops.monitoring.performance) retrains. The rollout lock defers them, the data set is the newest recorded upload
that no run or later verdict ruled out (never the live model's own data set under the same family configuration),
and the pipeline is started through the trigger's `start_pipeline` with a run record (trigger source "drift" or
"performance")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlops.core import aws
from mlops.core.observability import MetricsPublisher
from mlops.pipeline.trigger import DATASET_PREFIX, is_trainable_key, pipeline_input, start_pipeline
from mlops.registry.runs import DUPLICATE, FAILED, GATED_OUT, REFUSED, REJECTED, ROLLED_BACK, RunLog
from mlops.registry.store import UPLOADS_CONSIDERED, FamilyRecord, ModelRegistry

# Upload-run outcomes that rule a data set out of a monitoring retrain: it never trained (rejected, refused, a
# duplicate of content an earlier version holds), failed, or gave a model the gate or the canary turned down.
UNUSABLE_RUN_OUTCOMES = (REJECTED, FAILED, REFUSED, DUPLICATE, GATED_OUT, ROLLED_BACK)


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
        started = start_pipeline(self.state_machine_arn, name, pipeline_input(record, dataset, source),
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
            return {"bucket": dataset.get("bucket") or self.bucket, "key": ident[0],
                    "version_id": ident[1], "etag": str(dataset.get("etag", "")).strip('"'),
                    "run_id": upload["run_id"]}
        return None
