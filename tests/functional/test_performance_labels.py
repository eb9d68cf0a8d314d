"""Delayed labels on moto: decision records written by the real scoring service, labels files delivered by S3
notifications to the performance monitor, every upload recorded (accepted or rejected, never a traceback), labels
joined by decision id with duplicates, unknown ids and labels outside the classes counted, realised metrics equal to
scikit-learn's on the joined rows (binary, multiclass, regression), coverage as labels arrive, the report stored as
JSON and HTML, metrics per family and breach counts with the family's tier, an alert naming the family, and a
retrain started once per breach through the drift retrains' path (recorded uploads, a run record)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import boto3
import numpy as np
import pytest
from mlops.core.observability import MetricsPublisher
from mlops.core.schemas import ModelFamily
from mlops.core.settings import Env, ScoringSettings, SharedScoringSettings
from mlops.data import synthetic
from mlops.monitoring.labels import INGESTED_PREFIX, LabelStore
from mlops.monitoring.performance import PerformanceMonitor
from mlops.monitoring.retrain import Retrainer
from mlops.registry.store import LIVE, ModelRegistry
from mlops.serving import decisions
from mlops.serving.api import ScoringService
from mlops.serving.decisions import DecisionLog
from mlops.serving.shared import SharedScoringService
from mlops.training import steps
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, precision_score, recall_score, roc_auc_score

from mlops_local.apigw import proxy_event

from .conftest import BUCKET, TABLE

FAMILY = "credit-risk"


def _live_version(ctx, seed: int = 3) -> tuple[int, str]:
    data = synthetic.credit_risk_csv(2000, seed)
    put = boto3.client("s3").put_object(Bucket=BUCKET, Key=f"datasets/{FAMILY}/{seed}.csv", Body=data)
    event = {"family": FAMILY, "dataset": {"bucket": BUCKET, "key": f"datasets/{FAMILY}/{seed}.csv",
                                           "version_id": put["VersionId"]}}
    event["train"] = steps.train_step(ctx, event)
    event["evaluation"] = steps.evaluate_step(ctx, event)
    version = steps.register_step(ctx, event, run_id=f"{FAMILY}-run-{seed}")["version"]
    ctx.registry.transition(FAMILY, version, LIVE, "test", "first model")
    return version, event["train"]["artifact"]["sha256"]


def _scoring_service(tier: str, version: int, sha: str):
    """The dedicated tier's service bound to `version`, or the shared tier's routing by the registry: both answer
    through serving.api.predict_response, decision ids included."""
    if tier == "shared":
        settings = SharedScoringSettings.model_validate({
            Env.ARTIFACT_BUCKET: BUCKET, Env.REGISTRY_TABLE: TABLE, Env.ROUTING_TTL_SECONDS: "0",
            Env.FUNCTION_VERSION: "3", Env.CAPTURE_FLUSH_RECORDS: "100", Env.DECISION_FLUSH_RECORDS: "100"})
        shared = SharedScoringService(settings, ModelRegistry(TABLE))
        shared.metrics.sink = lambda documents: None
        return shared
    return ScoringService(ScoringSettings.model_validate({
        Env.ARTIFACT_BUCKET: BUCKET, Env.REGISTRY_TABLE: TABLE, Env.MODEL_FAMILY: FAMILY,
        Env.MODEL_VERSION: str(version), Env.MODEL_SHA256: sha, Env.CAPTURE_SAMPLE_RATE: "0",
        Env.DECISION_FLUSH_RECORDS: "100"}))


class Scored:
    """Requests scored by the real service of a tier; per decision id the positive-class probability and the
    truth."""

    def __init__(self, ctx, rows: int = 600, seed: int = 21, batch: int = 4, tier: str = "dedicated") -> None:
        version, sha = _live_version(ctx)
        self.version = version
        service = _scoring_service(tier, version, sha)
        family = synthetic.credit_risk_family()
        columns = synthetic.credit_risk_columns(rows, seed)
        records = synthetic.to_instances(columns, family)
        self.truth: dict[str, int] = {}
        self.sex: dict[str, str] = {}
        self.p: dict[str, float] = {}
        for start in range(0, rows, batch):
            chunk = records[start:start + batch]
            if start % (batch * 2) == 0:  # half the batches carry the client's own ids
                chunk = [{**r, "id": f"app-{start + i}"} for i, r in enumerate(chunk)]
            event = proxy_event("POST", f"/models/{FAMILY}/predict", json.dumps({"instances": chunk}))
            request_id = f"req-{start}"
            event["requestContext"]["requestId"] = request_id
            response = service.handle(event, request_id)
            assert response["statusCode"] == 200, response["body"]
            body = json.loads(response["body"])
            for i, (name, proba) in enumerate(zip(body["decision_ids"], body["probabilities"], strict=True)):
                self.truth[name] = int(columns["default"][start + i])
                self.sex[name] = str(columns["sex"][start + i])
                self.p[name] = proba[1]
        assert decisions.flush_all(10, bucket=BUCKET)
        self.ids = list(self.truth)


def _monitor(ctx, **kwargs) -> PerformanceMonitor:
    return PerformanceMonitor(ctx.registry, BUCKET, MetricsPublisher("MLOpsPlatform"), **kwargs)


def _deliver(monitor: PerformanceMonitor, key: str, body: bytes) -> dict:
    """Put a labels file and deliver the S3 notification AWS would send (the record of the one object)."""
    put = boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    event = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": BUCKET}, "object": {"key": key, "size": len(body), "eTag": put["ETag"],
                                               "versionId": put["VersionId"]}}}]}
    (outcome,) = monitor.handle_labels_event(event)["uploads"]
    return json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key=outcome["record_key"])["Body"].read())


def _csv(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _family(**performance) -> ModelFamily:
    return synthetic.credit_risk_family(performance=performance)


@pytest.mark.parametrize("tier", ["shared", "dedicated"])
def test_a_labels_upload_joins_counts_every_problem_and_realised_metrics_equal_sklearn(platform, tier):
    platform.registry.put_family(_family(min_labelled_rows=50, min_label_coverage=0.1))
    scored = Scored(platform, tier=tier)
    chosen = scored.ids[:400]
    lines = ["request_id,label,event_time,sex"]
    outcome_at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")  # after the decisions
    lines += [f"{i},{scored.truth[i]},{outcome_at},{scored.sex[i]}" for i in chosen]
    lines += [f"{chosen[0]},{1 - scored.truth[chosen[0]]},,",  # a duplicate with another label: the last line wins
              "not-a-decision,1,,", "req-0:1,maybe,,", ",1,,", "req-4:0,,,", "req-8:2,1,yesterday,F"]
    record = _deliver(_monitor(platform), f"labels/{FAMILY}/june.csv", _csv(lines))

    assert record["status"] == "accepted" and record["family"] == FAMILY
    counts = record["counts"]
    assert counts["lines"] == 406 and counts["duplicates"] == 1 and counts["conflicting_duplicates"] == 1
    assert counts["outside_classes"] == 1 and counts["missing_id"] == 1 and counts["missing_label"] == 1
    assert counts["bad_event_time"] == 1 and counts["rows"] == 402
    assert record["examples"]["outside_classes"] == ["line 404: 'maybe'"]
    assert record["join"]["unknown_ids"] == 1 and record["join"]["matched"] == 401
    assert record["join"]["examples"]["unknown_ids"] == ["not-a-decision"]
    # req-8:2 names the decision the client called app-10: one decision labelled twice, the later label kept
    assert record["join"]["same_decision"] == 1 and scored.ids[10] == "app-10"

    store = LabelStore(BUCKET)
    report = json.loads(boto3.client("s3").get_object(Bucket=BUCKET,
                                                      Key=record["performance"]["report_key"])["Body"].read())
    (live,) = [v for v in report["versions"] if v["live"]]
    window = live["windows"][0]
    expected = {i: scored.truth[i] for i in chosen}
    expected[chosen[0]] = 1 - scored.truth[chosen[0]]
    expected["app-10"] = 1
    y = np.array(list(expected.values()))
    p = np.array([scored.p[i] for i in expected])
    decided = (p >= 0.5).astype(int)
    realised = window["realised"]
    assert window["labelled"] == 400 and window["decisions"] == 600
    assert window["coverage"] == pytest.approx(400 / 600)
    assert realised["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert realised["accuracy"] == pytest.approx(accuracy_score(y, decided), abs=1e-12)
    assert realised["precision"] == pytest.approx(precision_score(y, decided, zero_division=0), abs=1e-12)
    assert realised["recall"] == pytest.approx(recall_score(y, decided, zero_division=0), abs=1e-12)
    assert realised["f1"] == pytest.approx(f1_score(y, decided, zero_division=0), abs=1e-12)
    groups = window["fairness"]["groups"]
    # every group with its size; the corrected line for chosen[0] gave no sex: its own "(missing)" group
    assert set(groups) == {"F", "M", "(missing)"} and sum(g["rows"] for g in groups.values()) == 400
    assert groups["(missing)"]["rows"] == 1 and window["fairness"]["demographic_parity_difference"] is not None
    assert live["estimate"]["trusted"] is True, live["estimate"]  # logistic regression on logistic data
    assert abs(window["estimate_error"]["auc"]) < 0.05 and abs(window["estimate_error"]["accuracy"]) < 0.05
    # chosen[0]'s correcting line and app-10's later label carry no (valid) event time
    assert report["labels"]["label_delay_days"]["with_event_time"] == 398
    assert store.records(FAMILY)[0]["upload_id"] == record["upload_id"]
    html = boto3.client("s3").get_object(Bucket=BUCKET, Key=record["performance"]["report_html_key"])
    page = html["Body"].read().decode()
    assert "<script" not in page and "Performance report" in page and FAMILY in page


@pytest.mark.parametrize(("key", "body", "reason"), [
    (f"labels/{FAMILY}/junk.csv", b"\x00\x01\x02binary", "NUL bytes"),
    (f"labels/{FAMILY}/nolabel.csv", b"request_id,outcome\nr-1,1\n", "no label column"),
    (f"labels/{FAMILY}/empty.csv", b"", "empty"),
    (f"labels/{FAMILY}/ragged.csv", b"request_id,label\nr-1,1,extra,more\nr-2\n", "field"),
    (f"labels/{FAMILY}/labels.xlsx", b"PK\x03\x04", "not a .csv"),
    ("labels/no-such-family/a.csv", b"request_id,label\nr-1,1\n", "unknown model family 'no-such-family'"),
    ("labels/loose.csv", b"request_id,label\nr-1,1\n", "names no model family"),
])
def test_a_malformed_upload_is_rejected_with_the_reason_and_still_leaves_a_record(platform, key, body, reason):
    record = _deliver(_monitor(platform), key, body)
    assert record["status"] == "rejected" and reason in record["reason"], record["reason"]
    assert record["key"] == key and record["upload_id"] and "Traceback" not in record["reason"]
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=INGESTED_PREFIX)["Contents"]
    assert [o["Key"] for o in listed] == [record["record_key"]]  # no rows object for a rejected upload


def test_labels_arriving_late_and_partially_raise_coverage_and_later_uploads_replace_earlier_labels(platform):
    platform.registry.put_family(_family(min_labelled_rows=200, min_label_coverage=0.3, max_degradation=0.1,
                                         floors={"auc": 0.6}))
    scored = Scored(platform)
    monitor = _monitor(platform)
    before = monitor.check(platform.registry.get_family(FAMILY))
    assert before["verdict"] == "insufficient_data" and before["labels"]["labels"] == 0
    assert before["estimate_verdict"] == "ok", before["estimate_reason"]  # the estimate speaks before any label
    first = _deliver(monitor, f"labels/{FAMILY}/week1.csv",
                     _csv(["decision_id,label"] + [f"{i},{1 - scored.truth[i]}" for i in scored.ids[:120]]))
    assert first["performance"]["verdict"] == "insufficient_data"  # 120 labels, 20% of the decisions
    corrected = [f"{i},{scored.truth[i]}" for i in scored.ids[:120]]  # the first file's labels were wrong
    second = _deliver(monitor, f"labels/{FAMILY}/week2.csv",
                      _csv(["request_id,label"] + corrected + [f"{i},{scored.truth[i]}" for i in scored.ids[120:300]]))
    report = monitor.newest_report(FAMILY)
    assert second["performance"]["verdict"] == "ok", report["reason"]
    assert report["labels"]["replaced_by_later_uploads"] == 120 and report["labels"]["matched"] == 300
    assert report["judged"]["coverage"] == pytest.approx(0.5) and report["judged"]["labelled"] == 300
    assert {c["check"] for c in report["checks"]} == {"auc_floor", "degradation"}
    metrics = boto3.client("cloudwatch").list_metrics(Namespace="MLOpsPlatform", MetricName="RealisedMetric",
                                                      Dimensions=[{"Name": "Family", "Value": FAMILY}])["Metrics"]
    assert {d["Value"] for m in metrics for d in m["Dimensions"] if d["Name"] == "Metric"} >= {"auc", "accuracy"}
    tier = boto3.client("cloudwatch").list_metrics(Namespace="MLOpsPlatform", MetricName="PerformanceBreaches",
                                                   Dimensions=[{"Name": "Tier", "Value": "shared"}])["Metrics"]
    # The family and its tier (shared, the default): the tier's alarm groups the breach counts by family.
    assert tier and all({d["Name"]: d["Value"] for d in m["Dimensions"]} == {"Family": FAMILY, "Tier": "shared"}
                        for m in tier)


def test_a_breach_is_alerted_once_and_starts_one_retrain_per_breached_window(platform):
    platform.registry.put_family(_family(min_labelled_rows=100, min_label_coverage=0.1, retrain=True))
    scored = Scored(platform)
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts-copy")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    machine = boto3.client("stepfunctions").create_state_machine(
        name="pipeline", roleArn="arn:aws:iam::123456789012:role/x",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}))
    arn = machine["stateMachineArn"]
    # A newer upload than the live model's data set (which a retrain never reuses under the same configuration).
    newer = f"datasets/{FAMILY}/newer.csv"
    put = boto3.client("s3").put_object(Bucket=BUCKET, Key=newer, Body=synthetic.credit_risk_csv(600, 8))
    platform.registry.record_upload(FAMILY, f"{FAMILY}-{'0' * 32}", {"bucket": BUCKET, "key": newer,
                                                                    "version_id": put["VersionId"], "etag": "e"})
    publisher = MetricsPublisher("MLOpsPlatform")
    monitor = _monitor(platform, retrainer=Retrainer(platform.registry, publisher, arn, lambda run: False, BUCKET),
                       alerts_topic_arn=topic)
    flipped = [f"{i},{1 - scored.truth[i]}" for i in scored.ids[:300]]  # the world changed: outcomes reversed
    record = _deliver(monitor, f"labels/{FAMILY}/flipped.csv", _csv(["request_id,label"] + flipped))
    first = monitor.newest_report(FAMILY)
    assert record["performance"]["verdict"] == "breach" and first["checks"][0]["check"] == "degradation"
    assert first["retrain"]["started"] is True and f"{FAMILY}-performance-" in first["retrain"]["execution"]
    assert first["retrain"]["dataset"]["key"] == newer and first["retrain"]["dataset_run"] == f"{FAMILY}-{'0' * 32}"
    run = platform.registry.get_run(FAMILY, first["retrain"]["execution"])
    assert run is not None and run["trigger"] == {"source": "performance"} and run["dataset"]["key"] == newer
    assert first["alert"]["sent"] is True
    message = json.loads(sqs.receive_message(QueueUrl=queue)["Messages"][0]["Body"])
    assert FAMILY in message["Subject"] and f"v{scored.version}" in message["Message"]
    again = monitor.check(platform.registry.get_family(FAMILY))
    assert again["verdict"] == "breach" and again["alert"]["sent"] is False
    assert again["retrain"]["started"] is False and "already started" in again["retrain"]["reason"]
    executions = boto3.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"]
    assert len(executions) == 1
    assert json.loads(boto3.client("stepfunctions").describe_execution(
        executionArn=executions[0]["executionArn"])["input"])["trigger"] == {"source": "performance"}
    breaches = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="MLOpsPlatform", MetricName="PerformanceBreaches",
        Dimensions=[{"Name": "Family", "Value": FAMILY}, {"Name": "Tier", "Value": "shared"}],
        StartTime="2000-01-01", EndTime="2100-01-01", Period=86400, Statistics=["Maximum"])["Datapoints"]
    assert max(d["Maximum"] for d in breaches) >= 1


def _task_version(ctx, family: ModelFamily, classes: list, metrics: dict) -> int:
    ctx.registry.put_family(family)
    version = ctx.registry.allocate_version(family.name, {"classes": classes, "metrics": metrics,
                                                          "task": family.task}, actor="test").version
    ctx.registry.transition(family.name, version, LIVE, "test", "first model")
    return version


@pytest.mark.parametrize("task", ["multiclass_classification", "regression"])
def test_multiclass_and_regression_families_get_realised_metrics_equal_sklearn_and_no_estimate(platform, task):
    rng = np.random.default_rng(5)
    n = 300
    if task == "regression":
        family = synthetic.loss_given_default_family(name="lgd", performance={"min_labelled_rows": 50})
        version = _task_version(platform, family, [], {"rmse": 0.2})
        served = rng.random(n)
        truth = np.clip(served + rng.normal(0, 0.1, n), 0, 1)
        log = DecisionLog(BUCKET, family.name, version, function_version="1", model_sha256="d" * 64, classes=[],
                          threshold=0.5)
        for i in range(n):
            log.record(f"r{i}", [float(served[i])], None)
    else:
        family = synthetic.risk_grade_family(name="grade", performance={"min_labelled_rows": 50})
        version = _task_version(platform, family, ["A", "B", "C", "D"], {"macro_auc": 0.8})
        served = rng.dirichlet(np.ones(4), n)
        truth = np.array([rng.choice(4, p=row) for row in served])
        log = DecisionLog(BUCKET, family.name, version, function_version="1", model_sha256="d" * 64,
                          classes=["A", "B", "C", "D"], threshold=0.5)
        for i in range(n):
            log.record(f"r{i}", [int(np.argmax(served[i]))], [served[i].tolist()])
    assert log.flush(10)
    text = [str(round(float(t), 6)) if task == "regression" else "ABCD"[int(t)] for t in truth]
    record = _deliver(_monitor(platform), f"labels/{family.name}/all.csv",
                      _csv(["request_id,label"] + [f"r{i},{text[i]}" for i in range(n)]
                           + [f"r0:9,{text[0]}", "r1,Z"]))  # an unknown id, then a label no class or number names
    assert record["status"] == "accepted" and record["join"]["unknown_ids"] == 1
    report = json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key=record["performance"]["report_key"])[
        "Body"].read())
    window = report["versions"][0]["windows"][0]
    assert report["versions"][0]["estimate"]["status"] == "not_applicable" and window["estimated"] is None
    assert report["estimate_verdict"] == "not_checked"
    if task == "regression":
        assert record["counts"]["not_a_number"] == 1 and window["labelled"] == n
        y = np.array([float(t) for t in text])
        assert window["realised"]["mae"] == pytest.approx(mean_absolute_error(y, served), abs=1e-9)
        assert window["realised"]["rmse"] == pytest.approx(float(np.sqrt(np.mean((y - served) ** 2))), abs=1e-9)
    else:
        assert record["counts"]["outside_classes"] == 1 and window["labelled"] == n
        assert window["realised"]["accuracy"] == pytest.approx(accuracy_score(truth, served.argmax(1)))
        assert window["realised"]["macro_f1"] == pytest.approx(f1_score(truth, served.argmax(1), average="macro"))
        assert window["realised"]["macro_auc"] == pytest.approx(roc_auc_score(truth, served, multi_class="ovr"))


def test_rows_object_holds_one_label_per_id(platform):
    platform.registry.put_family(_family())
    Scored(platform, rows=40)
    record = _deliver(_monitor(platform), f"labels/{FAMILY}/tiny.csv", _csv(["request_id,label", "req-0,1",
                                                                            "req-0,0", "req-4,1"]))
    rows = gzip.decompress(boto3.client("s3").get_object(Bucket=BUCKET, Key=record["rows_key"])["Body"].read())
    kept = [json.loads(line) for line in rows.splitlines()]
    assert [(r["id"], r["label"], r["line"]) for r in kept] == [("req-0", "0", 3), ("req-4", "1", 4)]  # last wins


def test_scheduled_checks_read_the_active_family_index_skip_retired_families_and_filter_by_tier(platform,
                                                                                               monkeypatch):
    registry = platform.registry
    for name, serving in (("alpha", "shared"), ("beta", "shared"), ("gamma", "dedicated")):
        registry.register_family(synthetic.credit_risk_family(name=name, serving=serving), "t", "bulk")
        version = registry.allocate_version(name, {"classes": [0, 1]}, actor="t").version
        registry.transition(name, version, LIVE, "t", "first")
    registry.register_family(synthetic.credit_risk_family(name="no-model"), "t", "nothing live")
    registry.retire_family("beta", "t", "closed")
    listed = []
    monkeypatch.setattr(registry, "list_families", lambda *a, **k: listed.append(k))  # never paged per family
    monitor = _monitor(platform)
    monitor.registry = registry
    checked: list[str] = []
    monkeypatch.setattr(monitor, "check", lambda record: checked.append(record.family.name) or {})
    monitor.run()
    assert checked == ["alpha", "gamma"] and listed == []
    checked.clear()
    monitor.run(tier="dedicated")
    assert checked == ["gamma"]
    checked.clear()
    monitor.run(families=["alpha", "beta"])
    assert checked == ["alpha"]
