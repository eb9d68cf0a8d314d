"""Run records: what happened to every upload and pipeline execution (docs/registry.md), the outcome metric and
duplicate content. Execution histories are read in mlops.rollout.history; executions that ended outside the
definition's own Catch are handled in mlops.pipeline.status_change."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

import orjson

from mlops.core import aws, codeversion
from mlops.core.observability import MetricsPublisher
from mlops.registry.store import RUN_STARTED, ModelRegistry

if TYPE_CHECKING:
    from mlops.core.schemas import ModelFamily
    from mlops.registry.artifacts import StoredObject
    from mlops.training.steps import PipelineContext

STARTED = RUN_STARTED
REJECTED, DUPLICATE, REFUSED, FAILED = "rejected", "duplicate", "refused", "failed"
# The run trained a model byte-identical to a version the family already has (`check_identical_model`).
UNCHANGED = "unchanged"
GATED_OUT, ROLLED_BACK, PROMOTED = "gated_out", "rolled_back", "promoted"
# Outcomes that judge the content itself: the same bytes, configuration and code would be judged the same way.
# A rollback judges live traffic at the time (not enough requests, a latency spike), so it may be retried.
CONTENT_VERDICTS = (PROMOTED, GATED_OUT)
FAILURE_STATUSES = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
METRIC = "RolloutOutcome"
# Metric dimension for uploads naming no registered family: unbounded names must not become metric streams.
UNKNOWN_FAMILY = "(unknown)"
NO_FAMILY = "-"
STATUS_CHANGE = "Step Functions Execution Status Change"


# Run summaries in S3 (the registry's run items expire after RUN_TTL_DAYS): under the reports/ prefix, so they are
# kept for the bucket's report retention.
RUN_REPORT_PREFIX = "reports/runs/"


def run_report_key(family: str, run_id: str) -> str:
    """Where a run's summary is kept: reports/runs/family=<family>/<run id>.json."""
    return f"{RUN_REPORT_PREFIX}family={family}/{run_id}.json"


class RunArchive:
    """Writes a run's record, as `ModelRegistry.get_run` returns it, to S3 once the run has a final outcome: the
    copy that outlives the registry item's TTL. `s3`: a boto3 S3 client (default: the process-wide one)."""

    def __init__(self, bucket: str, s3: Any | None = None) -> None:
        self.bucket = bucket
        self._s3 = s3

    def put(self, run: dict[str, Any]) -> str:
        key = run_report_key(str(run["family"]), str(run["run_id"]))
        (self._s3 or aws.client("s3")).put_object(
            Bucket=self.bucket, Key=key, ContentType="application/json",
            Body=orjson.dumps(run, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY))
        return key


class RunLog:
    """Writes run records and publishes `RolloutOutcome` (dimensions Family+Outcome, and Outcome alone for the
    platform-wide alarm) exactly once per recorded outcome. With `archive`, every final outcome is also written
    to S3 (idempotent: a repeated end rewrites the same object; a failed write raises, so the caller's retry
    writes it)."""

    def __init__(self, registry: ModelRegistry, publisher: MetricsPublisher, archive: RunArchive | None = None) -> None:
        self.registry = registry
        self.publisher = publisher
        self.archive = archive

    def started(self, family: str, run_id: str, *, dataset: dict[str, Any] | None, trigger: dict[str, Any],
                execution_arn: str | None) -> bool:
        created = self.registry.start_run(family, run_id, dataset=dataset, trigger=trigger,
                                          execution_arn=execution_arn)
        if created:
            self.count(family, STARTED)
        return created

    def ended(self, family: str, run_id: str, outcome: str, *, step: str, reason: str,
              detail: dict[str, Any] | None = None, known_family: bool = True, only_if_open: bool = False,
              **fields: Any) -> bool:
        """Record a final outcome; `fields` go to `ModelRegistry.record_run` (dataset, steps, version,
        started_at). Returns False when `only_if_open` found the outcome already recorded."""
        written = self.registry.record_run(family, run_id, outcome, detail, step=step, reason=reason,
                                           only_if_open=only_if_open, **fields)
        if written:
            self.count(family if known_family else UNKNOWN_FAMILY, outcome)
        if self.archive is not None:
            run = self.registry.get_run(family, run_id)
            if run and run.get("outcome") != STARTED:
                self.archive.put(run)
        return written

    def count(self, family: str, outcome: str) -> None:
        self.publisher.put(METRIC, 1, {"Family": family, "Outcome": outcome})
        self.publisher.put(METRIC, 1, {"Outcome": outcome})


# ---- run ids ---------------------------------------------------------------------

_RUN_SUFFIX = re.compile(r"^(?P<family>.+?)-(?:drift-\d+|code-[0-9a-f]{24}|performance-[0-9a-f]{24}|[0-9a-f]{32})$")


def family_prefix_of_run(run_id: str) -> str | None:
    """The family name a run id starts with (execution names are `<family[:40]>-<digest>`); None if the id
    has no recognisable shape. A 40-character answer may be a truncated name."""
    match = _RUN_SUFFIX.match(run_id)
    return match.group("family") if match else None


# ---- duplicate content ---------------------------------------------------------------------------------------


def family_config_sha256(family: ModelFamily) -> str:
    """sha256 of the family's canonical JSON (keys sorted, compact): any declared change gives a new hash."""
    return hashlib.sha256(orjson.dumps(family.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


def code_version(git_revision: str = "") -> str:
    """The training code: library version and git revision (as recorded in lineage)."""
    return f"{codeversion.package_version()}+{git_revision or codeversion.git_revision() or 'unknown'}"


def content_fingerprint(dataset_sha256: str, family: ModelFamily, code: str) -> str:
    """Identity of a training run's inputs: the data set bytes, the family configuration and the code."""
    return hashlib.sha256(f"{dataset_sha256}\n{family_config_sha256(family)}\n{code}".encode()).hexdigest()


def judges_duplicates(event: dict[str, Any]) -> bool:
    """Whether a run can be a duplicate: uploads can; drift retrains and code rollouts re-run content on purpose."""
    return (event.get("trigger") or {}).get("source", "s3") == "s3"


def check_duplicate(ctx: PipelineContext, family: ModelFamily, stored: StoredObject,
                    event: dict[str, Any]) -> dict[str, Any] | None:
    """Called by PlanTraining (before the rollout lock) and again by the Train step once the data set is read
    (content judged while this run waited for the lock). Records the data set's sha256 and the content
    fingerprint on the run; returns `{"duplicate_of": {...}}` (the state machine's Choice ends the run as
    `duplicate`) when an upload repeats content an earlier run already promoted or gated out, else None.
    Drift retrains and code rollouts re-run the same content on purpose and are never duplicates."""
    run_id = str(event.get("run_id") or "")
    fingerprint = content_fingerprint(stored.sha256, family, code_version(ctx.git_revision))
    dataset = {"bucket": stored.bucket, "key": stored.key, "version_id": stored.version_id,
               "etag": stored.etag.strip('"'), "sha256": stored.sha256, "size": stored.size}
    if run_id:
        ctx.registry.annotate_run(family.name, run_id, dataset=dataset, fingerprint=fingerprint)
    if not judges_duplicates(event):
        return None
    earlier = ctx.registry.content_verdict(family.name, fingerprint)
    if earlier is None or earlier["run_id"] == run_id or earlier["outcome"] not in CONTENT_VERDICTS:
        return None
    return {"duplicate_of": {**earlier, "sha256": stored.sha256, "fingerprint": fingerprint}}


def duplicate_reason(duplicate_of: dict[str, Any]) -> str:
    version = f" (v{duplicate_of['version']})" if duplicate_of.get("version") else ""
    return (f"identical content (sha256 {str(duplicate_of.get('sha256', ''))[:12]}..., same family configuration "
            f"and code) was already {duplicate_of.get('outcome')} by run {duplicate_of.get('run_id')}{version}; "
            "no new rollout")


# ---- identical models -------------------------------------------------------------------------------------------


# Runs that retrain a known model on purpose: a dedicated family's code rollout (`{"rollout_code": ...}`) retrains
# the live model on its exact data version and seed, so that the canary compares new scoring code with the old on
# the same artifact.
SAME_MODEL_ON_PURPOSE = ("code",)


def check_identical_model(registry: ModelRegistry, family: str, train: dict[str, Any],
                          event: dict[str, Any]) -> dict[str, Any] | None:
    """Called by the Train step (CollectTrainingJob on SageMaker) once the ONNX artifact is stored: when its sha256
    equals an existing version's (`ModelRegistry.version_with_artifact`), the run has nothing new to register or
    canary. Returns `{"identical_to": {version, status, artifact_sha256}}` (the definition's SameModel? Choice ends
    the run as `unchanged`), else None. Every trigger (uploads, drift and performance retrains) except a code
    rollout (`SAME_MODEL_ON_PURPOSE`, the event's `trigger.source`), whose point is the same model on new code
    (docs/registry.md, "Identical models")."""
    if (event.get("trigger") or {}).get("source") in SAME_MODEL_ON_PURPOSE:
        return None
    sha256 = str(((train or {}).get("artifact") or {}).get("sha256") or "")
    if not sha256:
        return None
    found = registry.version_with_artifact(family, sha256)
    if found is None:
        return None
    return {"identical_to": {"version": found.version, "status": found.status, "artifact_sha256": sha256}}


def unchanged_reason(identical_to: dict[str, Any]) -> str:
    """The `unchanged` run's reason: which version the trained model is byte-identical to."""
    status = f", {identical_to['status']}" if identical_to.get("status") else ""
    return (f"the trained model is byte-identical to v{identical_to.get('version')}{status} (ONNX artifact sha256 "
            f"{str(identical_to.get('artifact_sha256', ''))[:12]}...): this data set under this declaration "
            "reproduces it, so nothing was registered and traffic is unchanged")
