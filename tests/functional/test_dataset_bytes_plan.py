"""PlanTraining refuses a data set over the family's max_dataset_bytes on every engine, from the gzip trailer,
before a training job is started and billed (fresh-user pass on issue 15: the sagemaker engine failed inside
the job on a .csv.gz decompressing past 200 MiB)."""

from __future__ import annotations

import gzip

import boto3
import pytest
from mlops.core.errors import DataSetError
from mlops.data import synthetic
from mlops.training import engines

from .conftest import BUCKET

LIMITS = engines.LambdaLimits(memory_mb=3008, ephemeral_mb=2048)
JOBS = engines.JobSettings(artifact_bucket=BUCKET, region="us-east-1", image_uri=engines.training_image_uri(
    "us-east-1"), code_uri="s3://assets/code.gz", vendor_uri="s3://assets/vendor.gz",
    roles={"*": "arn:aws:iam::123456789012:role/jobs"}, platform_key_arn="")


def _gzip_declaring(uncompressed: int) -> bytes:
    packed = bytearray(gzip.compress(synthetic.credit_risk_csv(200, 3)))
    packed[-4:] = uncompressed.to_bytes(4, "little")  # the trailer's ISIZE
    return bytes(packed)


def _plan(platform, engine: str, body: bytes, **overrides) -> dict:
    family = synthetic.credit_risk_family(name=f"big-{engine}", training={"engine": engine}, **overrides)
    platform.registry.put_family(family, scoring_function=f"{family.name}-scoring")
    key = f"datasets/{family.name}/big.csv.gz"
    version = boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"]
    event = {"family": family.name, "dataset": {"bucket": BUCKET, "key": key, "version_id": version},
             "seed": 42, "run_id": "run-1", "trigger": {"source": "code"}}
    return engines.plan_step(platform, event, LIMITS, JOBS)


@pytest.mark.parametrize("engine", ["sagemaker", "auto", "lambda"])
def test_a_gzip_decompressing_past_max_dataset_bytes_is_refused_before_any_job(platform, engine):
    body = _gzip_declaring(225_455_954)  # the tester's big.csv.gz: 1.8 MB stored, 215 MiB of CSV
    with pytest.raises(DataSetError) as caught:
        _plan(platform, engine, body)
    message = caught.value.message
    assert "decompresses to 225,455,954 bytes, over family 'big-" in message
    assert "max_dataset_bytes of 209,715,200 (200 MiB" in message
    assert "raise max_dataset_bytes in the family (e.g. max_dataset_bytes: 268435456)" in message
    assert not list(boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="training-jobs/").get("Contents", []))


def test_a_raised_max_dataset_bytes_lets_the_sagemaker_engine_take_it(platform):
    plan = _plan(platform, "sagemaker", _gzip_declaring(225_455_954), max_dataset_bytes=268_435_456)
    assert plan["engine"] == "sagemaker" and plan["job"]["TrainingJobName"]
