"""Hot paths that used to loop over a family's whole history now look things up directly (issue 12, part A): the
drift retrain's data set, the rollout's published function version; and what a run is judged under is pinned (the
family configuration version), and an ended run outlives its expiring registry item as a summary in S3."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import boto3
import orjson
from mlops.core import aws
from mlops.core.observability import MetricsPublisher
from mlops.core.settings import Env
from mlops.data.synthetic import credit_risk_family
from mlops.monitoring.drift import DriftMonitor
from mlops.registry.runs import RunArchive, RunLog, run_report_key
from mlops.registry.store import REJECTED, ModelRegistry
from mlops.rollout.control import LambdaAliasRouter
from mlops.training.steps import family_for_run

from .conftest import BUCKET, TABLE

FAMILY = "credit-risk"


class Counting:
    """A boto3 client that records the operations called through it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return method(*args, **kwargs)

        return call if callable(method) else method


def _lineage(key: str, version_id: str) -> dict[str, Any]:
    # Trained under the family's first configuration version (the fixture declares it once).
    return {"artifact_sha256": "0" * 64, "dataset": {"bucket": BUCKET, "key": key, "version_id": version_id},
            "family_config_version": 1}


def _monitor(registry: ModelRegistry) -> DriftMonitor:
    from mlops.registry.artifacts import ArtifactStore

    return DriftMonitor(registry, ArtifactStore(BUCKET), None, MetricsPublisher("Test"), "arn:aws:states:x", None)


def test_newest_dataset_reads_recent_uploads_and_skips_unusable_ones_without_listing_history(platform):
    registry = platform.registry
    # A long history: 40 versions, all rejected, trained on an old data set.
    for _ in range(40):
        version = registry.allocate_version(FAMILY, _lineage("datasets/credit-risk/old.csv", "v0"), actor="t").version
        registry.transition(FAMILY, version, REJECTED, "t", "gate")
    registry.record_upload(FAMILY, "run-a", {"bucket": BUCKET, "key": "datasets/credit-risk/a.csv", "version_id": "va"})
    registry.record_upload(FAMILY, "run-b", {"bucket": BUCKET, "key": "datasets/credit-risk/b.csv", "version_id": "vb"})
    bad = registry.allocate_version(FAMILY, _lineage("datasets/credit-risk/b.csv", "vb"), actor="t").version
    registry.transition(FAMILY, bad, REJECTED, "t", "gate")

    counting = Counting(boto3.client("dynamodb"))
    counted = ModelRegistry(TABLE, ddb=counting)
    chosen = _monitor(counted).newest_dataset(FAMILY, counted.get_family(FAMILY))

    # b.csv is the newest upload but produced a rejected model: a.csv is the newest usable one. The bucket holds no
    # object at all: nothing was listed there.
    assert chosen == {"bucket": BUCKET, "key": "datasets/credit-risk/a.csv", "version_id": "va", "etag": "",
                      "run_id": "run-a"}
    queries = [kw for name, kw in counting.calls if name == "query"]
    assert len(queries) == 1 and queries[0]["ExpressionAttributeValues"][":p"] == {"S": "UPLOAD#"}
    # The family, then per upload its run record and (the run record having expired) the unusable marker, and for
    # the one chosen whether a version trained on it was rolled back for too little traffic (UNJUDGED#) and which
    # versions were trained on it (TRAINED#); for the rejected one, the version the gate rejected (its declaration).
    assert [name for name, _ in counting.calls].count("get_item") <= 8


def test_newest_dataset_skips_the_live_models_data_set_and_is_none_when_all_are_unusable(platform):
    registry = platform.registry
    registry.record_upload(FAMILY, "run-l",
                           {"bucket": BUCKET, "key": "datasets/credit-risk/live.csv", "version_id": "vl"})
    live = registry.allocate_version(FAMILY, _lineage("datasets/credit-risk/live.csv", "vl"), actor="t").version
    registry.transition(FAMILY, live, "live", "t", "first")
    monitor = _monitor(registry)
    # The only upload trained the live model: a retrain on it would reproduce that model.
    assert monitor.newest_dataset(FAMILY, registry.get_family(FAMILY)) is None
    registry.record_upload(FAMILY, "run-n",
                           {"bucket": BUCKET, "key": "datasets/credit-risk/new.csv", "version_id": "vn"})
    assert monitor.newest_dataset(FAMILY, registry.get_family(FAMILY))["key"] == "datasets/credit-risk/new.csv"
    # A retrain on it was rolled back: that data set is now unusable too.
    again = registry.allocate_version(FAMILY, _lineage("datasets/credit-risk/new.csv", "vn"), actor="t").version
    registry.transition(FAMILY, again, "canary", "t", "retrain")
    registry.transition(FAMILY, again, "rolled_back", "t", "errors")
    assert monitor.newest_dataset(FAMILY, registry.get_family(FAMILY)) is None


def _function(name: str) -> None:
    role = boto3.client("iam").create_role(RoleName=f"role-{name}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("handler.py", "")
    boto3.client("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.lambda_handler",
        Code={"ZipFile": buffer.getvalue()}, Environment={"Variables": {Env.MODEL_FAMILY: FAMILY}})


def test_publish_bound_reuses_the_version_of_a_retried_step_without_listing_versions(platform):
    _function("score-x")
    client = Counting(boto3.client("lambda"))
    router = LambdaAliasRouter(client)
    for model in range(1, 6):  # a history of published versions
        router.publish_bound("score-x", FAMILY, model, f"{model:064x}")
    first = router.publish_bound("score-x", FAMILY, 6, "f" * 64)
    again = router.publish_bound("score-x", FAMILY, 6, "f" * 64)
    assert first == again == "6"
    assert not any(name == "list_versions_by_function" for name, _ in client.calls)
    # A step that stopped after binding $LATEST to the model but before publishing: publishing finishes it.
    config = boto3.client("lambda").get_function_configuration(FunctionName="score-x")
    variables = {**config["Environment"]["Variables"], Env.MODEL_VERSION: "7", Env.MODEL_SHA256: "e" * 64}
    boto3.client("lambda").update_function_configuration(FunctionName="score-x",
                                                         Environment={"Variables": variables})
    bound = router.publish_bound("score-x", FAMILY, 7, "e" * 64)
    served = boto3.client("lambda").get_function_configuration(FunctionName="score-x", Qualifier=bound)
    assert bound == "7" and served["Environment"]["Variables"][Env.MODEL_VERSION] == "7"


def test_a_run_is_trained_and_gated_under_the_config_version_pinned_when_it_was_planned(platform):
    registry = platform.registry
    pinned = registry.get_family(FAMILY).config_version
    registry.register_family(credit_risk_family(threshold=0.3), "alice", "lower threshold")
    event = {"family": FAMILY, "plan": {"family_config_version": pinned}}
    family, version = family_for_run(registry, event)
    assert version == pinned and family.threshold == credit_risk_family().threshold
    family, version = family_for_run(registry, {"family": FAMILY, "train": {"family_config_version": pinned + 1}})
    assert version == pinned + 1 and family.threshold == 0.3
    family, version = family_for_run(registry, {"family": FAMILY})  # not planned: the current declaration
    assert version == pinned + 1


def test_an_ended_run_is_archived_to_s3_as_the_registry_holds_it(platform):
    registry = platform.registry
    log = RunLog(registry, MetricsPublisher("Test"), RunArchive(BUCKET))
    log.started(FAMILY, "run-9", dataset={"key": "datasets/credit-risk/a.csv"}, trigger={"source": "s3"},
                execution_arn=None)
    assert not _archived("run-9"), "a run in progress is not archived"
    log.ended(FAMILY, "run-9", "gated_out", step="Gate", reason="gate: auc 0.6 < 0.7", detail={"gate_reasons": ["x"]})
    archived = _archived("run-9")
    assert archived == orjson.loads(orjson.dumps(registry.get_run(FAMILY, "run-9")))
    assert archived["outcome"] == "gated_out" and archived["reason"] == "gate: auc 0.6 < 0.7"


def _archived(run_id: str) -> dict[str, Any] | None:
    try:
        body = aws.client("s3").get_object(Bucket=BUCKET, Key=run_report_key(FAMILY, run_id))["Body"].read()
    except Exception as exc:
        if aws.error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise
    return orjson.loads(body)


def test_drift_checks_skip_retired_families_and_look_each_live_family_up_directly(platform, monkeypatch):
    registry = platform.registry
    for name in ("alpha", "beta", "gamma"):
        registry.register_family(credit_risk_family(name=name), "t", "bulk")
        version = registry.allocate_version(name, _lineage(f"datasets/{name}/a.csv", "v1"), actor="t").version
        registry.transition(name, version, "live", "t", "first")
    registry.register_family(credit_risk_family(name="no-model"), "t", "nothing live")
    registry.retire_family("beta", "t", "closed")
    monitor = _monitor(registry)
    checked: list[tuple[str, int]] = []
    monkeypatch.setattr(monitor, "check", lambda record: checked.append((record.family.name, record.config_version)))
    monitor.run()
    assert checked == [("alpha", 1), ("gamma", 1)]
