"""Scheduled drift checks on captured traffic: insufficient data, no drift, drift, and retrain by policy."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from mlops.data import synthetic

from .conftest import live_model


def _check(platform, family) -> dict:
    platform.flush_captures()
    reports = [r for r in platform.run_drift_check()["reports"] if r["family"] == family.name]
    assert len(reports) == 1
    return reports[0]


def test_small_sample_is_insufficient_data_not_an_alarm(platform, new_family, traffic):
    family = new_family()
    live_model(platform, family)
    traffic(family).send(10, "drifted")  # 50 rows, all drifted, but far below min_samples
    report = _check(platform, family)
    assert report["verdict"] == "insufficient_data" and report["drifted_features"] == []
    assert report["retrain"] == {"started": False, "reason": "no confirmed drift"}


def test_normal_traffic_is_no_drift_and_drifted_traffic_is_drift_with_report_record_and_metrics(
        platform, new_family, traffic):
    family = new_family()
    live_model(platform, family)
    generator = traffic(family)
    generator.send(100, "normal")
    quiet = _check(platform, family)
    assert quiet["verdict"] == "no_drift", quiet
    generator.send(100, "drifted")
    drifted = _check(platform, family)
    assert drifted["verdict"] == "drift" and {"income", "debt_ratio", "late_payments"} <= set(
        drifted["drifted_features"])
    assert drifted["rows"] == 500, "the second check covers only traffic since the first"
    assert drifted["retrain"]["reason"] == "policy: auto_retrain is off"

    body = boto3.client("s3").get_object(Bucket=platform.bucket, Key=drifted["report_key"])["Body"].read()
    report = json.loads(body)
    assert report["features"]["income"]["psi"] > 0.2 and report["features"]["region"]["kind"] == "categorical"
    records = platform.registry.drift_records(family.name)
    assert [r["verdict"] for r in records[:2]] == ["drift", "no_drift"]
    metrics = boto3.client("cloudwatch").list_metrics(Namespace="MLOpsPlatform", MetricName="DriftedFeatures",
                                                      Dimensions=[{"Name": "Family", "Value": family.name}])
    assert metrics["Metrics"]


def test_confirmed_drift_starts_a_retrain_on_the_newest_good_data_set(platform, new_family, traffic):
    family = new_family(drift={"min_samples": 300, "auto_retrain": True})
    live_model(platform, family)
    generator = traffic(family)
    generator.send(100, "drifted")
    report = _check(platform, family)
    assert report["verdict"] == "drift"
    # The only data set is the live model's, under the same configuration: a retrain would reproduce it.
    assert report["retrain"]["started"] is False and "upload newer data" in report["retrain"]["reason"]
    # After a configuration change, the same data set trains a different model: the retrain starts.
    changed = family.model_copy(update={"hyperparameters": {"C": 0.5}})
    platform.registry.register_family(changed, actor="test", reason="stronger regularisation")
    generator.send(100, "drifted")
    report = _check(platform, family)
    retrain = report["retrain"]
    assert retrain["started"] is True and retrain["dataset"]["key"] == f"datasets/{family.name}/first.csv"
    generator.start()
    described = platform.wait_for(retrain["execution_arn"], 120)
    generator.stop()
    assert described["status"] == "SUCCEEDED", platform.registry.get_run(family.name, described["name"])
    execution_input = json.loads(described["input"])
    assert execution_input["trigger"] == {"source": "drift"}


@pytest.mark.slow  # about 20-55 s each under load: run by `make test-slow` (CI runs both)
def test_drift_retrain_is_deferred_while_a_rollout_runs(platform, new_family, traffic):
    # Long bake windows keep the rollout running while the drift check reads its captures.
    family = new_family(drift={"min_samples": 300, "auto_retrain": True}, canary={"bake_seconds": 3},
                        gate={"min_auc_margin": -0.5})
    live_model(platform, family)
    generator = traffic(family)
    generator.send(100, "drifted")
    generator.start()
    platform.upload_dataset(family.name, "next.csv", synthetic.credit_risk_csv(3000, 77))
    deadline = time.monotonic() + 30
    while not platform.registry.get_family(family.name).rollout_holder:
        assert time.monotonic() < deadline, "the upload's rollout never took the family lock"
        time.sleep(0.02)
    report = _check(platform, family)
    assert report["verdict"] == "drift"
    assert report["retrain"]["started"] is False and "in progress" in report["retrain"]["reason"]
    platform.drain_executions(120)
    generator.stop()
    names = [e["name"] for e in platform.executions()]
    assert not any(n.startswith(f"{family.name}-drift-") for n in names)
