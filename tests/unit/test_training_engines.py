"""Training engines (issue 15): the family's `training` section, the engine choice and the Lambda engine's up-front
refusal, the CreateTrainingJob request, the failure messages, and the block reader behind the memory bound."""

from __future__ import annotations

import gzip
import io
import json

import numpy as np
import orjson
import pytest
from mlops.core.errors import DataSetError
from mlops.core.schemas import TrainingPolicy
from mlops.data import datasets, synthetic
from mlops.rollout import history
from mlops.training import engines
from pydantic import ValidationError

LIMITS = engines.LambdaLimits(memory_mb=3008, ephemeral_mb=2048)
JOBS = engines.JobSettings(
    artifact_bucket="artifacts-bucket", region="eu-west-1", image_uri=engines.training_image_uri("eu-west-1"),
    code_uri="s3://cdk-assets/abc123.gz", vendor_uri="s3://cdk-assets/def456.gz",
    roles={"loans": "arn:aws:iam::123456789012:role/loans-training"},
    platform_key_arn="arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555")


def family(**training):
    return synthetic.credit_risk_family(name="loans", training=training)


def size(csv_mb: float, fmt: str = "csv", stored_mb: float | None = None, rows: int | None = None):
    csv_bytes = int(csv_mb * 2**20)
    stored = int((stored_mb if stored_mb is not None else csv_mb) * 2**20)
    return engines.DataSetSize(stored_bytes=stored, format=fmt, csv_bytes=None if fmt == "parquet" else csv_bytes,
                               rows=rows if rows is not None else csv_bytes // 38)


# ---- the family's training section ---------------------------------------------------------------------------

def test_training_section_defaults_to_the_lambda_engine_with_isolated_jobs():
    policy = family().training
    assert (policy.engine, policy.instance_type, policy.network_isolation, policy.managed_spot) == \
        ("lambda", "ml.m5.xlarge", True, False)


@pytest.mark.parametrize(("fields", "named"), [
    ({"engine": "spark"}, "engine"),
    ({"instance_type": "m5.xlarge"}, "not a SageMaker ML instance type"),
    ({"instance_type": "ml.m6g.xlarge"}, "Graviton"),
    ({"max_wait_seconds": 7200}, "managed spot training only"),
    ({"managed_spot": True, "max_runtime_seconds": 3600, "max_wait_seconds": 600}, "at least max_runtime_seconds"),
    ({"max_runtime_seconds": 100_000}, "max_runtime_seconds"),
    ({"kms_key_arn": "alias/mine"}, "KMS key ARN"),
    ({"volume_size_gb": 0}, "volume_size_gb"),
])
def test_invalid_training_sections_are_refused_naming_the_field(fields, named):
    with pytest.raises(ValidationError) as error:
        TrainingPolicy.model_validate(fields)
    assert named in str(error.value)


def test_spot_jobs_wait_twice_their_runtime_unless_declared():
    assert TrainingPolicy(managed_spot=True, max_runtime_seconds=1800).spot_wait_seconds == 3600
    assert TrainingPolicy(managed_spot=True, max_runtime_seconds=1800, max_wait_seconds=2000).spot_wait_seconds == 2000


# ---- engine choice ---------------------------------------------------------------------------------------------

def test_lambda_engine_refuses_a_data_set_beyond_its_memory_naming_the_sagemaker_engine():
    with pytest.raises(DataSetError) as error:
        engines.choose_engine(family(), size(400), LIMITS, "datasets/loans/big.csv")
    message = error.value.message
    assert "cannot train on the lambda engine" in message and "training.engine: sagemaker" in message
    assert "'big.csv' (400.0 MB as stored" in message and "memory" in message and "3008 MB" in message
    assert error.value.details["estimate"]["peak_mb"] > 0.9 * 3008


def test_lambda_engine_refuses_what_it_cannot_finish_in_15_minutes():
    forest = synthetic.credit_risk_family(name="loans", algorithm="random_forest")
    estimate = engines.estimate_lambda(forest, size(100, rows=20_000_000), LIMITS)
    assert any("900 s limit" in p for p in estimate.problems), estimate


def test_lambda_engine_refuses_parquet_before_training():
    with pytest.raises(DataSetError, match="reads .csv and .csv.gz only"):
        engines.choose_engine(family(), size(1, fmt="parquet"), LIMITS)


def test_lambda_engine_takes_what_fits():
    choice = engines.choose_engine(family(), size(20), LIMITS)
    assert choice.engine == "lambda" and not choice.estimate.problems


@pytest.mark.parametrize(("csv_mb", "expected"), [(9, "lambda"), (11, "sagemaker")])
def test_auto_switches_at_the_familys_threshold(csv_mb, expected):
    choice = engines.choose_engine(family(engine="auto", auto_lambda_max_bytes=10 * 2**20), size(csv_mb), LIMITS)
    assert choice.engine == expected and choice.reason.startswith("auto: ")


def test_auto_uses_sagemaker_below_the_threshold_when_lambda_cannot_finish():
    choice = engines.choose_engine(family(engine="auto", auto_lambda_max_bytes=2**40), size(400), LIMITS)
    assert choice.engine == "sagemaker" and "beyond the lambda engine's limits" in choice.reason


def test_auto_sends_parquet_to_sagemaker_and_the_declared_engine_is_kept():
    assert engines.choose_engine(family(engine="auto"), size(1, fmt="parquet"), LIMITS).engine == "sagemaker"
    assert engines.choose_engine(family(engine="sagemaker"), size(1), LIMITS).engine == "sagemaker"


def test_more_memory_lets_the_lambda_engine_take_more():
    big = size(300)
    assert engines.estimate_lambda(family(), big, LIMITS).problems
    assert not engines.estimate_lambda(family(), big, engines.LambdaLimits(memory_mb=10_240,
                                                                           ephemeral_mb=2048)).problems


def test_gzip_size_comes_from_the_trailer_and_wraps_past_4_gib():
    data = gzip.compress(b"a,b\n" + b"1,2\n" * 10_000)
    assert engines.gzip_isize(data[-4:], len(data)) == 4 + 40_000
    assert engines.gzip_isize((5).to_bytes(4, "little"), 1_000) == 5 + 2**32
    assert engines.gzip_isize(b"", 10) is None


def test_rows_are_estimated_from_the_sample_lines():
    sample = b"a,b\n" + b"10,20\n" * 100 + b"10,2"
    assert engines.rows_from_sample(sample, 4 + 6 * 5000) == 5000
    assert engines.rows_from_sample(b"header only", 100) is None


def test_data_format_by_suffix():
    assert [engines.data_format(k) for k in ("a.CSV", "a.csv.gz", "a.parquet", "a.xlsx")] == \
        ["csv", "gzip", "parquet", None]


# ---- the training job request --------------------------------------------------------------------------------

def request(**training):
    return engines.training_job_request(family(engine="sagemaker", **training), JOBS, "loans-0123456789abcdef",
                                        "data.csv", "csv", "loans-run")


def test_request_runs_the_launcher_from_the_code_channel_in_the_sklearn_image():
    req = request()
    assert req["AlgorithmSpecification"]["TrainingImage"] == \
        "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.9-0-cpu-py3"
    hyper = {k: json.loads(v) for k, v in req["HyperParameters"].items()}
    assert hyper["sagemaker_program"] == "train.py"
    assert hyper["sagemaker_submit_directory"] == "/opt/ml/input/data/code/abc123.gz"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in req["InputDataConfig"]}
    prefix = "s3://artifacts-bucket/training-jobs/loans/loans-0123456789abcdef/input/"
    assert channels == {"train": prefix + "data/data.csv", "config": prefix + "config/job.json",
                        "code": JOBS.code_uri, "vendor": JOBS.vendor_uri}
    assert req["RoleArn"] == JOBS.roles["loans"] and req["EnableNetworkIsolation"] is True


def test_request_carries_the_familys_instance_volume_runtime_spot_and_key():
    req = request(instance_type="ml.c5.2xlarge", volume_size_gb=100, max_runtime_seconds=7200, managed_spot=True,
                  max_wait_seconds=9000, network_isolation=False)
    assert req["ResourceConfig"] == {"InstanceType": "ml.c5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 100,
                                     "VolumeKmsKeyId": JOBS.platform_key_arn}
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 9000}
    assert req["EnableManagedSpotTraining"] is True and req["EnableNetworkIsolation"] is False
    assert req["OutputDataConfig"] == {"S3OutputPath": "s3://artifacts-bucket/training-jobs/loans/"
                                                       "loans-0123456789abcdef/output",
                                       "KmsKeyId": JOBS.platform_key_arn}


def test_instance_storage_types_get_no_volume_key_and_a_family_key_wins():
    key = "arn:aws:kms:eu-west-1:123456789012:key/99999999-2222-3333-4444-555555555555"
    req = request(instance_type="ml.m5d.xlarge", kms_key_arn=key)
    assert "VolumeKmsKeyId" not in req["ResourceConfig"] and req["OutputDataConfig"]["KmsKeyId"] == key


def test_request_matches_botocores_create_training_job_model():
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob")
    report = ParamValidator().validate(request(managed_spot=True), model.input_shape)
    assert not report.has_errors(), report.generate_report()


def test_a_family_without_a_role_is_a_configuration_error():
    from mlops.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="no SageMaker training role"):
        engines.training_job_request(synthetic.credit_risk_family(name="other"), JOBS, "x", "data.csv", "csv", "r")


def test_job_names_are_deterministic_per_run_and_valid():
    name = engines.job_name("a-family-name-that-is-quite-long-indeed-really", "run-1")
    assert name == engines.job_name("a-family-name-that-is-quite-long-indeed-really", "run-1")
    assert name != engines.job_name("a-family-name-that-is-quite-long-indeed-really", "run-2")
    assert len(name) <= 63 and all(c.isalnum() or c == "-" for c in name)


def test_state_timeout_covers_the_jobs_own_bound():
    assert engines.state_timeout_seconds(family(max_runtime_seconds=600)) == 600 + engines.JOB_OVERHEAD_SECONDS
    spot = family(managed_spot=True, max_runtime_seconds=600, max_wait_seconds=1200)
    assert engines.state_timeout_seconds(spot) == 1200 + engines.JOB_OVERHEAD_SECONDS


def test_unknown_region_has_no_image():
    from mlops.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="no SageMaker scikit-learn image"):
        engines.training_image_uri("xx-nowhere-1")
    assert engines.training_image_uri("cn-north-1").endswith(".amazonaws.com.cn/sagemaker-scikit-learn:1.9-0-cpu-py3")


# ---- failures --------------------------------------------------------------------------------------------------

def test_a_failed_jobs_reason_reaches_the_run_record():
    cause = orjson.dumps({"TrainingJobName": "loans-1", "TrainingJobStatus": "Failed", "SecondaryStatus": "Failed",
                          "FailureReason": "DataSetError: data set lacks required columns: 'income'"}).decode()
    name, message = history.error_message({"Error": "States.TaskFailed", "Cause": cause})
    assert name == "States.TaskFailed"
    assert message == "training job loans-1 failed: DataSetError: data set lacks required columns: 'income'"


def test_a_timed_out_job_names_its_limit_and_what_to_change():
    message = engines.sagemaker_failure_message({"TrainingJobName": "loans-1", "TrainingJobStatus": "Stopped",
                                                 "SecondaryStatus": "MaxRuntimeExceeded",
                                                 "StoppingCondition": {"MaxRuntimeInSeconds": 60}})
    assert "timed out (MaxRuntimeExceeded: over 60 s)" in message and "max_runtime_seconds" in message


# ---- reading in blocks ------------------------------------------------------------------------------------------

def test_parsing_a_file_equals_parsing_its_bytes_across_many_blocks():
    data = synthetic.credit_risk_csv(20 * datasets.CHUNK_ROWS + 17, 3)  # past the first capacity: it grows
    fam = synthetic.credit_risk_family(name="loans", max_dataset_bytes=2**30)
    from_bytes = datasets.parse_dataset(data, fam, "a.csv")
    from_file = datasets.parse_dataset(io.BytesIO(data), fam, "a.csv")
    for name in ("X", "y", "row_ids", "line_numbers", "sensitive"):
        np.testing.assert_array_equal(getattr(from_bytes, name), getattr(from_file, name))
    assert from_file.rows == 20 * datasets.CHUNK_ROWS + 17 and from_file.classes == from_bytes.classes


def test_gzip_file_and_invalid_utf8_in_a_file_are_read_like_bytes():
    fam = synthetic.credit_risk_family(name="loans")
    data = synthetic.credit_risk_csv(300, 4)
    packed = gzip.compress(data)
    np.testing.assert_array_equal(datasets.parse_dataset(io.BytesIO(packed), fam, "a.csv.gz").X,
                                  datasets.parse_dataset(data, fam, "a.csv").X)
    broken = data.replace(b"north", b"n\xffrth", 1)
    with pytest.raises(DataSetError) as from_file:
        datasets.parse_dataset(io.BytesIO(broken), fam, "a.csv")
    with pytest.raises(DataSetError) as from_bytes:
        datasets.parse_dataset(broken, fam, "a.csv")
    assert from_file.value.message == from_bytes.value.message
    assert "invalid byte 0xff at line" in from_file.value.message


def test_lambda_engine_has_no_parquet_reader_but_the_job_registers_one():
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa
    from mlops.data.columnar import parse_parquet

    fam = synthetic.credit_risk_family(name="loans")
    columns = synthetic.credit_risk_columns(400, 5)
    buffer = io.BytesIO()
    pq.write_table(pa.table({k: v for k, v in columns.items()}), buffer)
    assert "EXTRA_READERS" in dir(datasets) and ".parquet" not in datasets.EXTRA_READERS
    with pytest.raises(DataSetError, match="sagemaker training engine"):
        datasets.parse_dataset(buffer.getvalue(), fam, "datasets/loans/a.parquet")
    from_parquet = parse_parquet(buffer.getvalue(), fam, "a.parquet")
    from_csv = datasets.parse_dataset(synthetic.to_csv(columns), fam, "a.csv")
    np.testing.assert_array_equal(from_parquet.X, from_csv.X)
    np.testing.assert_array_equal(from_parquet.y, from_csv.y)
    assert from_parquet.classes == from_csv.classes and list(from_parquet.sensitive[:3]) == list(columns["sex"][:3])


def test_parquet_rows_are_validated_like_csv_rows():
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa
    from mlops.data.columnar import parse_parquet

    fam = synthetic.credit_risk_family(name="loans")
    columns = synthetic.credit_risk_columns(400, 5)
    table = {k: list(v) for k, v in columns.items()}
    table["age"][3] = None
    table["region"][7] = "atlantis"
    buffer = io.BytesIO()
    pq.write_table(pa.table(table), buffer)
    with pytest.raises(DataSetError) as error:
        parse_parquet(buffer.getvalue(), fam, "a.parquet")
    assert "'age': 1 row missing" in error.value.message and "'region': 1 row with undeclared" in error.value.message
    assert "row 4:" in error.value.message and "line" not in error.value.message  # index 3: the file's 4th row
    with pytest.raises(DataSetError, match="is named .parquet but is not Parquet data"):
        parse_parquet(b"a,b\n1,2\n", fam, "a.parquet")
