"""PlanTraining recognises content an earlier run already judged before the rollout lock, on both engines, and
stages nothing for it; drift retrains and code rollouts are never duplicates (fresh-user pass on issue 10)."""

from __future__ import annotations

import hashlib

import boto3
import pytest
from mlops.data import synthetic
from mlops.registry.runs import code_version, content_fingerprint
from mlops.training import engines

from .conftest import BUCKET

LIMITS = engines.LambdaLimits(memory_mb=3008, ephemeral_mb=2048)
JOBS = engines.JobSettings(artifact_bucket=BUCKET, region="us-east-1", image_uri=engines.training_image_uri(
    "us-east-1"), code_uri="s3://assets/code.gz", vendor_uri="s3://assets/vendor.gz",
    roles={"*": "arn:aws:iam::123456789012:role/jobs"}, platform_key_arn="")
DATA = synthetic.credit_risk_csv(400, 3)


def judged(platform, name: str, **training):
    """A family whose DATA an earlier run promoted, and an upload of DATA again."""
    family = synthetic.credit_risk_family(name=name, training=training)
    platform.registry.put_family(family, scoring_function=f"{name}-scoring")
    fingerprint = content_fingerprint(hashlib.sha256(DATA).hexdigest(), family, code_version(platform.git_revision))
    platform.registry.record_content_verdict(name, fingerprint, "earlier-run", "promoted", 1)
    put = boto3.client("s3").put_object(Bucket=BUCKET, Key=f"datasets/{name}/again.csv", Body=DATA)
    ref = {"bucket": BUCKET, "key": f"datasets/{name}/again.csv", "version_id": put["VersionId"],
           "etag": put["ETag"].strip('"')}
    return family, ref


def event(family, ref, source="s3") -> dict:
    return {"family": family.name, "dataset": ref, "seed": family.seed, "run_id": "run-9",
            "trigger": {"source": source}}


@pytest.mark.parametrize("engine", ["lambda", "sagemaker"])
def test_plan_finds_an_identical_upload_before_the_lock_and_stages_nothing(platform, engine):
    family, ref = judged(platform, f"dup-{engine}", engine=engine)
    platform.registry.start_run(family.name, "run-9", trigger={"source": "s3"})
    plan = engines.plan_step(platform, event(family, ref), LIMITS, JOBS)
    assert plan["duplicate_of"]["run_id"] == "earlier-run" and plan["duplicate_of"]["outcome"] == "promoted"
    assert plan["engine"] == engine and "job" not in plan
    assert boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="training-jobs/").get("KeyCount") == 0
    run = platform.registry.get_run(family.name, "run-9")
    assert run["dataset"]["sha256"] == plan["duplicate_of"]["sha256"] and run["fingerprint"]


@pytest.mark.parametrize("source", ["drift", "code"])
def test_plan_never_calls_a_retrain_or_a_code_rollout_a_duplicate(platform, source):
    family, ref = judged(platform, f"again-{source}")
    plan = engines.plan_step(platform, event(family, ref, source), LIMITS, JOBS)
    assert "duplicate_of" not in plan and plan["engine"] == "lambda"
