"""The real state machine on moto with a family on each training engine (issue 15): the same outputs whichever
engine trained, auto switching by size, the Lambda engine's up-front refusal, a failed and a timed-out job."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlops.data import synthetic
from mlops.pipeline.trigger import execution_name
from mlops.training.steps import PipelineContext, train_step

from .conftest import entered_states, run_upload

ROOT = Path(__file__).resolve().parents[2]
SAGEMAKER_STATES = {"TrainOnSageMaker", "CollectTrainingJob"}


@pytest.fixture()
def slow_jobs(platform):
    """Jobs that run a program which never ends (for the runtime limit), restored after the test."""
    program = platform.training_jobs.program
    platform.training_jobs.program = [sys.executable, "-c", "import time; time.sleep(600)"]
    yield
    platform.training_jobs.program = program


def _run(platform, execution_name: str, family: str) -> dict:
    return platform.registry.get_run(family, execution_name)


def test_a_lambda_engine_family_trains_on_the_train_function(platform, new_family):
    family = new_family()
    output, described = run_upload(platform, family.name, "a.csv", synthetic.credit_risk_csv(1500, 2))
    assert output["outcome"] == "promoted", described
    states = entered_states(described["executionArn"])
    assert states[0] == "PlanTraining" and "Train" in states and not SAGEMAKER_STATES & set(states)
    training = platform.registry.get_version(family.name, 1).lineage["training"]
    assert training["engine"] == "lambda" and training["estimate"]["peak_mb"] > 0


def test_a_sagemaker_engine_family_trains_in_a_job_with_the_lambda_engines_outputs(platform, new_family):
    family = new_family(training={"engine": "sagemaker", "instance_type": "ml.m5.large"})
    data = synthetic.credit_risk_csv(1500, 2)
    output, described = run_upload(platform, family.name, "a.csv", data)
    assert output["outcome"] == "promoted", described
    states = entered_states(described["executionArn"])
    assert SAGEMAKER_STATES <= set(states) and "Train" not in states
    lineage = platform.registry.get_version(family.name, 1).lineage
    training = lineage["training"]
    assert (training["engine"], training["instance_type"]) == ("sagemaker", "ml.m5.large")
    assert training["job_name"].startswith(f"{family.name}-") and training["network_isolation"] is True
    job = platform.training_jobs.jobs[training["job_name"]]
    assert job.status == "Completed" and job.request["RoleArn"].endswith("role/mlops-local-training")
    # The Lambda engine, on the same data set version: the same model, holdout and baseline, byte for byte.
    ctx = PipelineContext.create(platform.bucket, platform.table)
    on_lambda = train_step(ctx, {"family": family.name, "dataset": lineage["dataset"], "seed": lineage["seed"],
                                 "trigger": {"source": "code"}})
    assert on_lambda["artifact"]["sha256"] == lineage["artifact_sha256"]
    assert on_lambda["holdout"] == lineage["holdout"]
    assert on_lambda["baseline_profile"]["sha256"] == lineage["baseline_profile"]["sha256"]


def test_auto_trains_small_uploads_on_lambda_and_large_ones_in_a_job(platform, new_family):
    small = synthetic.credit_risk_csv(600, 3)
    training = {"engine": "auto", "auto_lambda_max_bytes": len(small) + 1000}
    engines = []
    for family, data in ((new_family(training=training), small),
                         (new_family(training=training), synthetic.credit_risk_csv(3000, 4))):
        output, described = run_upload(platform, family.name, "a.csv", data)
        assert output["outcome"] == "promoted", described
        engines.append(platform.registry.get_version(family.name, 1).lineage["training"]["engine"])
    assert engines == ["lambda", "sagemaker"]


def test_the_lambda_engine_refuses_up_front_what_it_cannot_finish(platform, new_family):
    family = new_family(max_dataset_bytes=8 * 2**30)  # admitted by the family's size limit: the engine refuses it
    packed = bytearray(gzip.compress(synthetic.credit_risk_csv(300, 5)))
    packed[-4:] = (2**32 - 256).to_bytes(4, "little")  # the gzip trailer declares about 4 GiB uncompressed
    output, described = run_upload(platform, family.name, "huge.csv.gz", bytes(packed))
    assert described["status"] == "FAILED"
    assert entered_states(described["executionArn"]) == ["PlanTraining", "HandleFailure", "PipelineFailed"]
    run = _run(platform, described["name"], family.name)
    assert run["outcome"] == "failed" and run["step"] == "PlanTraining"
    assert "cannot train on the lambda engine" in run["reason"] and "training.engine: sagemaker" in run["reason"]


def test_a_failed_training_job_fails_the_run_with_the_jobs_reason(platform, new_family):
    family = new_family(training={"engine": "sagemaker"})
    broken = synthetic.credit_risk_csv(1500, 7).replace(b"income", b"revenue", 1)
    output, described = run_upload(platform, family.name, "b.csv", broken)
    assert described["status"] == "FAILED"
    run = _run(platform, described["name"], family.name)
    assert run["outcome"] == "failed" and run["step"] == "TrainOnSageMaker"
    assert "States.TaskFailed: training job" in run["reason"] and " failed: DataSetError: data set lacks required " \
        "columns: 'income'" in run["reason"]
    job = next(j for j in platform.training_jobs.jobs.values() if j.name.startswith(f"{family.name}-"))
    assert job.status == "Failed" and job.failure_reason.startswith("DataSetError: ")


def test_a_timed_out_training_job_is_stopped_and_the_run_fails_naming_the_limit(platform, new_family, slow_jobs):
    family = new_family(training={"engine": "sagemaker", "max_runtime_seconds": 1})
    output, described = run_upload(platform, family.name, "a.csv", synthetic.credit_risk_csv(600, 8))
    assert described["status"] == "FAILED"
    run = _run(platform, described["name"], family.name)
    assert run["outcome"] == "failed" and run["step"] == "TrainOnSageMaker"
    assert "timed out (MaxRuntimeExceeded: over 1 s)" in run["reason"]
    job = next(j for j in platform.training_jobs.jobs.values() if j.name.startswith(f"{family.name}-"))
    assert (job.status, job.secondary) == ("Stopped", "MaxRuntimeExceeded")


def test_a_parquet_upload_trains_on_the_sagemaker_engine_and_is_refused_for_lambda(platform, new_family):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    buffer = io.BytesIO()
    pq.write_table(pa.table(synthetic.credit_risk_columns(1500, 9)), buffer)
    family = new_family(training={"engine": "auto"})
    output, described = run_upload(platform, family.name, "a.parquet", buffer.getvalue())
    assert output["outcome"] == "promoted", described
    assert platform.registry.get_version(family.name, 1).lineage["dataset"]["rows"] == 1500
    lam = new_family()
    ref = platform.upload_dataset(lam.name, "a.parquet", buffer.getvalue())
    run = _run(platform, execution_name(lam.name, platform.bucket, ref["key"], ref["version_id"]), lam.name)
    assert run["outcome"] == "rejected" and run["step"] == "Trigger"
    assert "unsupported file type 'a.parquet'" in run["reason"] and "training.engine: sagemaker" in run["reason"]


@pytest.mark.slow
def test_stock_moto_cannot_run_the_sagemaker_sync_integration():
    """Why the local runtime runs training jobs itself: moto 5.2.5 fails createTrainingJob.sync at once."""
    script = """
import json, time, boto3
from moto import mock_aws
with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    task = {"Type": "Task", "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync", "End": True,
            "Parameters": {"TrainingJobName": "j", "RoleArn": "arn:aws:iam::123456789012:role/r",
                           "AlgorithmSpecification": {"TrainingImage": "i", "TrainingInputMode": "File"},
                           "OutputDataConfig": {"S3OutputPath": "s3://b/o"}, "StoppingCondition": {
                               "MaxRuntimeInSeconds": 60}, "ResourceConfig": {"InstanceType": "ml.m5.large",
                               "InstanceCount": 1, "VolumeSizeInGB": 10}}}
    arn = sfn.create_state_machine(name="s", roleArn="arn:aws:iam::123456789012:role/r",
                                   definition=json.dumps({"StartAt": "T", "States": {"T": task}}))["stateMachineArn"]
    run = sfn.start_execution(stateMachineArn=arn, name="e")["executionArn"]
    while (described := sfn.describe_execution(executionArn=run))["status"] == "RUNNING":
        time.sleep(0.05)
    print(json.dumps([described["status"], described.get("error"), described.get("cause")]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "PATH": "/usr/bin"})
    status, error, cause = json.loads(out.stdout.strip().splitlines()[-1])
    assert (status, error) == ("FAILED", "States.Runtime") and "Unsupported sync callback" in cause
