"""After a run-time change of a family's features, the live model keeps being described, documented and monitored
by the declaration it was trained under; the change applies to its next model (fresh-user pass on issue 12,
HIGH 2)."""

from __future__ import annotations

import time

import boto3
import orjson
from mlops.core.observability import MetricsPublisher
from mlops.data import synthetic
from mlops.monitoring.drift import DriftMonitor
from mlops.registry.artifacts import ArtifactStore
from mlops.registry.store import LIVE
from mlops.serving.api import describe_response, openapi_response
from mlops.serving.capture import CaptureReader, key_for
from mlops.serving.capture_columns import CapturedColumns, encode

from .conftest import BUCKET
from .test_verdicts_live_overlap import _run


def _changed(family):
    features = [f for f in family.features if f.name != "age"] + [
        f.model_copy(update={"name": "tenure_months"}) for f in family.features if f.name == "age"]
    return family.model_copy(update={"features": features})


def test_the_live_model_is_described_and_checked_by_the_declaration_it_was_trained_under(platform):
    family = synthetic.credit_risk_family(name="declared", drift={"min_samples": 200})
    first = _run(platform, family, synthetic.credit_risk_columns(3000, 1), "run-1")
    platform.registry.transition(family.name, first["register"]["version"], LIVE, "test", "first model")
    platform.registry.register_family(_changed(family), actor="test", reason="age replaced by tenure")
    record = platform.registry.get_family(family.name)
    declared, version = platform.registry.live_declaration(record)
    assert version == 1 and record.config_version == 2
    assert "age" in declared.feature_names and "tenure_months" not in declared.feature_names

    described = orjson.loads(describe_response(platform.registry, family.name, 1, "req")["body"])
    assert "age" in {f["name"] for f in described["features"]}
    assert (described["family_config_version"], described["current_config_version"]) == (1, 2)
    document = orjson.loads(openapi_response(platform.registry, family.name, "req")["body"])
    assert "age" in orjson.dumps(document).decode() and "tenure_months" not in orjson.dumps(document).decode()

    # Traffic whose age moved a lot: the check sees it (the current declaration has no `age` at all).
    columns = synthetic.credit_risk_columns(600, 9)
    records = synthetic.to_instances(columns, declared)
    for r in records:
        r["age"] = float(r["age"]) + 30
    at = time.time() + 1
    rows = [(at, f"r{i}", 0, r, 0, [0.9, 0.1]) for i, r in enumerate(records)]
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key_for(family.name, 1, int(at * 1000), "x"),
                                  Body=encode(CapturedColumns.from_rows(rows)))
    monitor = DriftMonitor(platform.registry, ArtifactStore(BUCKET), CaptureReader(BUCKET),
                           MetricsPublisher("Test"), "arn:aws:states:us-east-1:123456789012:stateMachine:x",
                           lambda arn: False)
    time.sleep(1.2)
    report = monitor.check(platform.registry.get_family(family.name))
    assert "age" in report["features"] and "tenure_months" not in report["features"]
    assert report["features"]["age"]["drifted"] is True
    assert report["family_config_version"] == 1 and "config version 2" in report["declaration_note"]
