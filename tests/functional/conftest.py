"""One moto mock for the whole session, reset between tests; a platform bucket and registry table per test."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from mlops.core import aws
from mlops.data.synthetic import credit_risk_family
from mlops.registry.store import TABLE_DEFINITION
from mlops.training.steps import PipelineContext
from moto import mock_aws

BUCKET = "mlops-test-artifacts"
TABLE = "mlops-test-registry"


@pytest.fixture(scope="package")
def _moto() -> Iterator[object]:
    mock = mock_aws(config={"core": {"reset_boto3_session": False}})
    mock.start()
    yield mock
    mock.stop()


@pytest.fixture()
def platform(_moto) -> Iterator[PipelineContext]:
    """An empty platform: versioned artifact bucket, registry table, the credit-risk family declared."""
    _moto.reset()
    aws.reset_clients()
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    boto3.client("dynamodb").create_table(TableName=TABLE, **TABLE_DEFINITION)
    ctx = PipelineContext.create(BUCKET, TABLE)
    ctx.registry.put_family(credit_risk_family(), scoring_function="credit-risk-scoring")
    yield ctx
