"""Performance with delayed labels through the real platform on moto (the shared scoring function, or a dedicated
family's own behind its alias; decision records, S3 notifications on labels/ to the performance function, the state
machine for retrains) and the CLI, on both serving tiers where the tier matters: labels that arrive late and partially;
a model whose real performance degrades while its inputs do not drift (caught by performance, not drift; a retrain
through the drift retrains' path); a calibrated and an uncalibrated model (the estimate trusted vs flagged, and how far
each estimate lands from the realised figures)."""

from __future__ import annotations

import json

import boto3
import pytest
from mlops.data import synthetic

from mlops_local.apigw import proxy_event
from mlops_local.cli import cli

from .conftest import TIERS, live_model


def mlops(*args: str):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


class Traffic:
    """Records scored through the family's `live` alias in batches, each with the client's own id; the truth of
    every decision id kept for the labels files (`flip`: the outcome reversed, a world that changed)."""

    def __init__(self, platform, family, rows: int, seed: int, batch: int = 10) -> None:
        columns = synthetic.credit_risk_columns(rows, seed)
        records = synthetic.to_instances(columns, family)
        self.truth: dict[str, int] = {}
        for start in range(0, rows, batch):
            chunk = [{**r, "id": f"{family.name}-{seed}-{start + i}"}
                     for i, r in enumerate(records[start:start + batch])]
            event = proxy_event("POST", f"/models/{family.name}/predict", json.dumps({"instances": chunk}))
            response, _ = platform.invoke_scoring(family.name, event)
            body = json.loads(response["body"])
            assert response["statusCode"] == 200, body
            for i, name in enumerate(body["decision_ids"]):
                self.truth[name] = int(columns["default"][start + i])
        self.ids = list(self.truth)
        platform.flush_captures()

    def labels(self, ids: list[str], flip: bool = False, extra: tuple[str, ...] = ()) -> bytes:
        lines = ["request_id,label"] + [f"{i},{1 - self.truth[i] if flip else self.truth[i]}" for i in ids]
        return ("\n".join([*lines, *extra]) + "\n").encode()


def _report(platform, record) -> dict:
    key = record["performance"]["report_key"]
    return json.loads(boto3.client("s3").get_object(Bucket=platform.bucket, Key=key)["Body"].read())


@pytest.mark.slow  # about 20-55 s each under load: run by `make test-slow` (CI runs both)
@pytest.mark.parametrize("tier", TIERS)
def test_labels_arrive_late_and_partially_and_the_cli_shows_each_upload_and_the_report(
        platform, new_family, stack, tmp_path, tier):
    family = new_family(serving=tier, performance={"min_labelled_rows": 150, "min_label_coverage": 0.2})
    live_model(platform, family)
    traffic = Traffic(platform, family, 600, 31)

    # Before any label: the estimate speaks (a calibrated logistic regression), the realised verdict waits.
    (before,) = platform.run_performance_check([family.name])["reports"]
    assert before["verdict"] == "insufficient_data" and before["estimate_verdict"] == "ok", before

    # Week 1: a sixth of the outcomes are known (under the minimum of 150 labels).
    week1 = platform.upload_labels(family.name, "week1.csv", traffic.labels(traffic.ids[:100]))["record"]
    assert week1["status"] == "accepted" and week1["join"]["matched"] == 100
    assert week1["performance"]["verdict"] == "insufficient_data"

    # Week 3, through the CLI: more outcomes, a repeated row, an id nobody scored, a label outside the classes.
    path = tmp_path / "week3.csv"
    repeated = traffic.ids[120]
    path.write_bytes(traffic.labels(traffic.ids[100:360], extra=(f"{repeated},{traffic.truth[repeated]}",
                                                                 "no-such-decision,1", f"{traffic.ids[400]},2")))
    uploaded = mlops("labels", "upload", str(path), "--family", family.name, "--json", *stack)
    assert uploaded.exit_code == 0, uploaded.output
    record = json.loads(uploaded.stdout)["record"]
    assert record["counts"]["duplicates"] == 1 and record["counts"]["outside_classes"] == 1
    assert record["counts"]["rows"] == 261 and record["join"]["matched"] == 260
    assert record["join"]["unknown_ids"] == 1 and record["join"]["examples"]["unknown_ids"] == ["no-such-decision"]
    report = _report(platform, record)
    assert report["verdict"] == "ok", report["reason"]
    assert report["judged"]["labelled"] == 360 and report["judged"]["coverage"] == pytest.approx(0.6)
    live = next(v for v in report["versions"] if v["live"])
    error = live["windows"][0]["estimate_error"]
    assert abs(error["auc"]) < 0.08 and abs(error["accuracy"]) < 0.08, error

    shown = mlops("performance", "show", family.name, "--json", *stack)
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.stdout)
    assert body["computed_on_demand"] is False and body["report"]["verdict"] == "ok"
    table = mlops("performance", "show", family.name, "--version", "1", *stack)
    assert table.exit_code == 0 and "Policy checks" in table.stdout and "degradation" in table.stdout
    assert "stored report checked at" in table.stdout and "retrain: not started" in table.stdout
    fresh = json.loads(mlops("performance", "show", family.name, "--fresh", "--json", *stack).stdout)
    assert fresh["computed_on_demand"] is True and "--fresh" in fresh["reason"]
    assert fresh["report"]["verdict"] == body["report"]["verdict"]
    written = json.loads(mlops("report", family.name, "1", "-o", str(tmp_path / "pages"), "--json", *stack).stdout)
    assert "performance-report" in written["pages"]
    page = (tmp_path / "pages" / "performance-report.html").read_text()
    assert "Performance report" in page and "<script" not in page and "Content-Security-Policy" in page
    listed = json.loads(mlops("labels", "list", family.name, "--json", *stack).stdout)["uploads"]
    assert [u["key"].rsplit("/", 1)[-1] for u in listed] == ["week1.csv", "week3.csv"]

    # A labels object whose notification has not run yet: `performance show` computes on demand with it.
    s3 = boto3.client("s3")
    notifications = s3.get_bucket_notification_configuration(Bucket=platform.bucket)
    notifications.pop("ResponseMetadata", None)
    s3.put_bucket_notification_configuration(Bucket=platform.bucket, NotificationConfiguration={})
    try:
        s3.put_object(Bucket=platform.bucket, Key=f"labels/{family.name}/late.csv",
                      Body=traffic.labels(traffic.ids[360:600]))
        late = json.loads(mlops("performance", "show", family.name, "--json", *stack).stdout)
    finally:
        s3.put_bucket_notification_configuration(Bucket=platform.bucket, NotificationConfiguration=notifications)
    assert late["computed_on_demand"] is True and "newer than the stored report" in late["reason"]
    assert late["report"]["labels"]["matched"] == 600 and late["report"]["judged"]["coverage"] == pytest.approx(1.0)

    bad = tmp_path / "broken.csv"
    bad.write_bytes(b"request_id;outcome\nr;1\n")
    refused = mlops("labels", "upload", str(bad), "--family", family.name, *stack)
    assert refused.exit_code == 1 and "rejected" in refused.stdout and "has no label column" in refused.stdout
    unknown = mlops("labels", "upload", str(bad), "--family", "no-such-family", *stack)
    assert unknown.exit_code == 2 and "unknown model family" in unknown.output


@pytest.mark.slow  # about 20-55 s each under load: run by `make test-slow` (CI runs both)
@pytest.mark.parametrize("tier", TIERS)
def test_a_degradation_the_inputs_do_not_show_is_caught_by_performance_not_drift_and_retrains(
        platform, new_family, traffic, tier):
    family = new_family(serving=tier, drift={"min_samples": 300},
                        performance={"min_labelled_rows": 200, "retrain": True})
    live_model(platform, family)
    scored = Traffic(platform, family, 500, 41)  # the same population as training: no input drift

    (drift,) = [r for r in platform.run_drift_check()["reports"] if r["family"] == family.name]
    assert drift["verdict"] == "no_drift", drift

    # The outcomes no longer follow the inputs as they did (a changed world): labels reveal it, inputs cannot.
    record = platform.upload_labels(family.name, "outcomes.csv", scored.labels(scored.ids[:400], flip=True))["record"]
    report = _report(platform, record)
    assert report["verdict"] == "breach", report["reason"]
    degradation = next(c for c in report["checks"] if c["check"] == "degradation")
    assert not degradation["passed"] and degradation["value"] > 0.3
    assert report["estimate_verdict"] == "ok"  # CBPE cannot see a changed world either: only labels do
    # The retrain takes the drift retrains' path: the only data set is the live model's, under the same
    # configuration, so a retrain would reproduce it.
    assert report["retrain"]["started"] is False and "upload newer data" in report["retrain"]["reason"]
    # After a configuration change the same data set trains a different model: the next check starts the retrain.
    changed = family.model_copy(update={"hyperparameters": {"C": 0.5}})
    platform.registry.register_family(changed, actor="test", reason="stronger regularisation")
    (checked,) = platform.run_performance_check([family.name])["reports"]
    assert checked["verdict"] == "breach", checked
    retrain = checked["retrain"]
    assert retrain["started"] is True and retrain["dataset"]["key"] == f"datasets/{family.name}/first.csv"
    (again,) = platform.run_performance_check([family.name])["reports"]  # the same breach: no second retrain
    assert again["retrain"]["started"] is False and "already started" in again["retrain"]["reason"]
    generator = traffic(family).start()
    described = platform.wait_for(retrain["execution_arn"], 180)
    generator.stop()
    assert described["status"] == "SUCCEEDED", platform.registry.get_run(family.name, described["name"])
    assert json.loads(described["input"])["trigger"] == {"source": "performance"}
    run = platform.registry.get_run(family.name, described["name"])
    assert run["trigger"] == {"source": "performance"}
    breaches = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="MLOpsPlatform", MetricName="PerformanceBreaches",
        Dimensions=[{"Name": "Family", "Value": family.name}, {"Name": "Tier", "Value": tier}],
        StartTime="2000-01-01", EndTime="2100-01-01",
        Period=86400, Statistics=["Maximum"])["Datapoints"]
    assert max(d["Maximum"] for d in breaches) >= 1


@pytest.mark.slow  # about 20-55 s each under load: run by `make test-slow` (CI runs both)
def test_a_calibrated_model_gets_a_trusted_estimate_and_an_uncalibrated_one_is_flagged(platform, new_family):
    calibrated = new_family(performance={"min_labelled_rows": 200})
    uncalibrated = new_family(hyperparameters={"class_weight": "balanced"}, performance={"min_labelled_rows": 200})
    results = {}
    for family in (calibrated, uncalibrated):
        live_model(platform, family)
        scored = Traffic(platform, family, 800, 51)
        record = platform.upload_labels(family.name, "all.csv", scored.labels(scored.ids))["record"]
        report = _report(platform, record)
        lineage = platform.registry.get_version(family.name, 1).lineage
        live = next(v for v in report["versions"] if v["live"])
        results[family.name] = (lineage["calibration"], report, live["windows"][0])

    calibration, report, window = results[calibrated.name]
    assert calibration["status"] == "calibrated" and calibration["trusted"], calibration
    assert report["estimate_verdict"] == "ok" and report["versions"][0]["estimate"]["trusted"]
    assert abs(window["estimate_error"]["accuracy"]) < 0.05 and abs(window["estimate_error"]["auc"]) < 0.05

    calibration, report, window = results[uncalibrated.name]
    assert calibration["status"] == "miscalibrated" and not calibration["trusted"], calibration
    assert calibration["ece"] > 0.1 and "expected calibration error" in calibration["reason"]
    assert report["estimate_verdict"] == "untrusted" and report["estimate_checks"] == []
    # Why it is flagged: its probabilities overstate the risk, so the estimate promises a precision the labels deny.
    assert window["estimate_error"]["precision"] > 0.2, window["estimate_error"]
    calibrated_error = results[calibrated.name][2]["estimate_error"]["precision"]
    assert abs(calibrated_error) < 0.1, calibrated_error
    assert window["realised"]["calibration_error"] > 0.1
