"""The sagemaker engine's steps on moto (issue 15): PlanTraining stages the exact data set version, the job's entry
point trains the model the Lambda engine trains, CollectTrainingJob stores it after checking every byte."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import boto3
import orjson
import pytest
from mlops.core.errors import DataSetError, IntegrityError
from mlops.data import datasets, synthetic
from mlops.training import engines, job

from .conftest import BUCKET

LIMITS = engines.LambdaLimits(memory_mb=3008, ephemeral_mb=2048)
JOBS = engines.JobSettings(artifact_bucket=BUCKET, region="us-east-1", image_uri=engines.training_image_uri(
    "us-east-1"), code_uri="s3://assets/code.gz", vendor_uri="s3://assets/vendor.gz",
    roles={"*": "arn:aws:iam::123456789012:role/jobs"}, platform_key_arn="")


def _family(platform, name: str, max_dataset_bytes: int | None = None, **training):
    size = {} if max_dataset_bytes is None else {"max_dataset_bytes": max_dataset_bytes}
    family = synthetic.credit_risk_family(name=name, training=training, **size)
    platform.registry.put_family(family, scoring_function=f"{name}-scoring")
    return family


def _upload(key: str, body: bytes) -> dict:
    response = boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    return {"bucket": BUCKET, "key": key, "version_id": response["VersionId"], "etag": response["ETag"].strip('"')}


def _event(family, ref, run_id="run-1", source="code") -> dict:
    return {"family": family.name, "dataset": ref, "seed": family.seed, "run_id": run_id,
            "trigger": {"source": source}}


def _read(key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()


def _run_job(tmp_path: Path, plan: dict, monkeypatch) -> tuple[int, Path]:
    """The job as SageMaker would run it: channels downloaded into an /opt/ml-like directory, then main()."""
    monkeypatch.setattr(datasets, "EXTRA_READERS", {})  # the job registers its Parquet reader: keep it local
    env = {"SAGEMAKER_BASE_DIR": str(tmp_path)}
    for channel in plan["job"]["InputDataConfig"]:
        if channel["ChannelName"] in ("code", "vendor"):
            continue
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"].removeprefix(f"s3://{BUCKET}/")
        target = tmp_path / "input" / "data" / channel["ChannelName"] / uri.rsplit("/", 1)[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_read(uri))
    return job.main(env), tmp_path


def _model_archive(model: Path, key: str, tamper: str | None = None) -> dict:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(model.rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                if tamper and path.name == tamper:
                    data = data[:-1] + bytes([data[-1] ^ 1])
                info = tarfile.TarInfo(str(path.relative_to(model)))
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    return {"TrainingJobName": "job-1", "TrainingJobStatus": "Completed", "ModelArtifacts": {
        "S3ModelArtifacts": f"s3://{BUCKET}/{key}"}, "ResourceConfig": {"InstanceType": "ml.m5.large",
                                                                        "InstanceCount": 1},
        "BillableTimeInSeconds": 61, "EnableNetworkIsolation": True}


def test_plan_on_the_lambda_engine_estimates_and_stages_nothing(platform):
    family = _family(platform, "lam")
    ref = _upload("datasets/lam/a.csv", synthetic.credit_risk_csv(500, 1))
    plan = engines.plan_step(platform, _event(family, ref), LIMITS, JOBS)
    assert plan["engine"] == "lambda" and "job" not in plan
    assert plan["data_set"]["format"] == "csv" and 450 <= plan["data_set"]["rows"] <= 550
    assert 0 < plan["estimate"]["peak_mb"] < 3008 and not plan["estimate"]["problems"]
    assert boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="training-jobs/").get("KeyCount") == 0


def test_plan_for_sagemaker_stages_the_exact_version_it_was_given(platform):
    family = _family(platform, "sm", engine="sagemaker")
    first = synthetic.credit_risk_csv(300, 1)
    ref = _upload("datasets/sm/a.csv", first)
    _upload("datasets/sm/a.csv", synthetic.credit_risk_csv(300, 2))  # a newer version under the same key
    plan = engines.plan_step(platform, _event(family, ref), LIMITS, JOBS)
    name = plan["job"]["TrainingJobName"]
    assert plan["engine"] == "sagemaker" and name == engines.job_name("sm", "run-1")
    assert _read(f"training-jobs/sm/{name}/input/data/data.csv") == first
    config = orjson.loads(_read(f"training-jobs/sm/{name}/input/config/job.json"))
    assert config["event"]["dataset"]["version_id"] == ref["version_id"] and config["family"]["name"] == "sm"
    assert config["artifact_bucket"] == BUCKET and config["data_file"] == "data.csv"
    assert plan["timeout_seconds"] == 3600 + engines.JOB_OVERHEAD_SECONDS


def test_plan_refuses_on_lambda_what_a_gzip_trailer_declares_too_big_and_auto_sends_it_to_sagemaker(platform):
    packed = bytearray(gzip.compress(synthetic.credit_risk_csv(200, 3)))
    packed[-4:] = (2**32 - 256).to_bytes(4, "little")  # the trailer's ISIZE: about 4 GiB uncompressed
    lam = _family(platform, "lam-gz")
    ref = _upload("datasets/lam-gz/a.csv.gz", bytes(packed))
    with pytest.raises(DataSetError) as error:
        engines.plan_step(platform, _event(lam, ref), LIMITS, JOBS)
    assert "4,096.0 MB uncompressed" in error.value.message and "max_dataset_bytes" in error.value.message
    # Within a raised max_dataset_bytes, the refusal is the lambda engine's own, naming the sagemaker engine.
    lam = _family(platform, "lam-gz", max_dataset_bytes=2**33)
    with pytest.raises(DataSetError) as error:
        engines.plan_step(platform, _event(lam, ref), LIMITS, JOBS)
    assert "4,096.0 MB uncompressed" in error.value.message and "training.engine: sagemaker" in error.value.message
    auto = _family(platform, "auto-gz", engine="auto", max_dataset_bytes=2**33)
    ref = _upload("datasets/auto-gz/a.csv.gz", bytes(packed))
    assert engines.plan_step(platform, _event(auto, ref), LIMITS, JOBS)["engine"] == "sagemaker"


def test_the_jobs_entry_point_trains_what_the_lambda_engine_trains_and_collect_stores_it(platform, tmp_path,
                                                                                          monkeypatch):
    family = _family(platform, "same", engine="sagemaker")
    ref = _upload("datasets/same/a.csv", synthetic.credit_risk_csv(1500, 7))
    on_lambda = engines.lambda_train_step(platform, _event(family, ref, "run-lambda"), LIMITS)
    plan = engines.plan_step(platform, _event(family, ref, "run-job"), LIMITS, JOBS)
    status, base = _run_job(tmp_path, plan, monkeypatch)
    assert status == 0, (base / "output" / "failure").read_text()
    job = _model_archive(base / "model", "training-jobs/same/job-1/output/model.tar.gz")
    collected = engines.collect_step(platform, {**_event(family, ref, "run-job"), "plan": plan, "job": job})
    for field in ("artifact", "holdout", "baseline_profile", "dataset", "classes", "threshold", "input_dtype",
                  "hyperparameters", "single_feature_auc"):
        assert collected[field] == on_lambda[field], field
    assert on_lambda["training"]["engine"] == "lambda"
    assert collected["training"] == {**collected["training"], "engine": "sagemaker", "job_name": "job-1",
                                     "instance_type": "ml.m5.large", "billable_seconds": 61}
    model = platform.artifacts.get_model(collected["artifact"]["sha256"])
    assert model and platform.artifacts.get(collected["holdout"]["artifact_sha256"])


def test_collect_finds_duplicate_content_with_the_registry(platform, tmp_path, monkeypatch):
    family = _family(platform, "dup", engine="sagemaker")
    ref = _upload("datasets/dup/a.csv", synthetic.credit_risk_csv(600, 8))
    event = _event(family, ref, "run-2", source="s3")
    plan = engines.plan_step(platform, event, LIMITS, JOBS)
    status, base = _run_job(tmp_path, plan, monkeypatch)
    assert status == 0
    job = _model_archive(base / "model", "training-jobs/dup/job-1/output/model.tar.gz")
    first = engines.collect_step(platform, {**event, "plan": plan, "job": job})
    from mlops.registry.runs import code_version, content_fingerprint

    fingerprint = content_fingerprint(first["dataset"]["sha256"], family, code_version(platform.git_revision))
    platform.registry.record_content_verdict("dup", fingerprint, "run-1", "promoted", 1)
    again = engines.collect_step(platform, {**event, "plan": plan, "job": job})
    assert again["duplicate_of"]["run_id"] == "run-1" and again["training"]["engine"] == "sagemaker"


def test_collect_and_train_name_the_version_whose_artifact_they_trained_again(platform, tmp_path, monkeypatch):
    # Whatever the engine, a model byte-identical to an existing version's carries `identical_to`: the definition
    # ends the run `unchanged` instead of registering and canarying it again (a drift retrain reproducing live v1).
    family = _family(platform, "again", engine="sagemaker")
    ref = _upload("datasets/again/a.csv", synthetic.credit_risk_csv(600, 9))
    event = _event(family, ref, "run-3", source="drift")
    plan = engines.plan_step(platform, event, LIMITS, JOBS)
    status, base = _run_job(tmp_path, plan, monkeypatch)
    assert status == 0
    job = _model_archive(base / "model", "training-jobs/again/job-1/output/model.tar.gz")
    first = engines.collect_step(platform, {**event, "plan": plan, "job": job})
    assert "identical_to" not in first
    live = platform.registry.allocate_version("again", {"artifact_sha256": first["artifact"]["sha256"],
                                                        "dataset": first["dataset"]}, actor="t").version
    platform.registry.transition("again", live, "live", "t", "first")
    again = engines.collect_step(platform, {**event, "plan": plan, "job": job})
    expected = {"version": live, "status": "live", "artifact_sha256": first["artifact"]["sha256"]}
    assert again["identical_to"] == expected and again["artifact"] == first["artifact"]
    on_lambda = engines.lambda_train_step(platform, _event(family, ref, "run-4", source="drift"), LIMITS)
    assert on_lambda["identical_to"] == expected


def test_collect_refuses_an_archive_with_an_altered_artifact(platform, tmp_path, monkeypatch):
    family = _family(platform, "tamper", engine="sagemaker")
    ref = _upload("datasets/tamper/a.csv", synthetic.credit_risk_csv(600, 9))
    plan = engines.plan_step(platform, _event(family, ref), LIMITS, JOBS)
    status, base = _run_job(tmp_path, plan, monkeypatch)
    assert status == 0
    onnx = orjson.loads((base / "model" / "result.json").read_bytes())["artifact"]["sha256"]
    job = _model_archive(base / "model", "training-jobs/tamper/job-1/output/model.tar.gz", tamper=onnx)
    with pytest.raises(IntegrityError, match=onnx):
        engines.collect_step(platform, {**_event(family, ref), "plan": plan, "job": job})


def test_a_bad_data_set_fails_the_job_with_the_reason_sagemaker_reports(platform, tmp_path, monkeypatch):
    family = _family(platform, "bad", engine="sagemaker")
    ref = _upload("datasets/bad/a.csv", synthetic.credit_risk_csv(300, 1).replace(b"income", b"revenue", 1))
    plan = engines.plan_step(platform, _event(family, ref), LIMITS, JOBS)
    status, base = _run_job(tmp_path, plan, monkeypatch)
    failure = (base / "output" / "failure").read_text()
    assert status == 1 and failure.startswith("DataSetError: data set lacks required columns: 'income'")
    assert not (base / "model" / "result.json").exists()


def test_parquet_trains_on_the_jobs_entry_point(platform, tmp_path, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    family = _family(platform, "pq", engine="auto")
    buffer = io.BytesIO()
    pq.write_table(pa.table(synthetic.credit_risk_columns(800, 4)), buffer)
    ref = _upload("datasets/pq/a.parquet", buffer.getvalue())
    plan = engines.plan_step(platform, _event(family, ref), LIMITS, JOBS)
    assert plan["engine"] == "sagemaker" and plan["data_set"]["format"] == "parquet"
    status, base = _run_job(tmp_path, plan, monkeypatch)
    assert status == 0, (base / "output" / "failure").read_text()
    result = orjson.loads((base / "model" / "result.json").read_bytes())
    assert result["dataset"]["rows"] == 800 and result["dataset"]["key"] == "datasets/pq/a.parquet"
