"""The safety net: fake credentials are in place and a real AWS endpoint is refused before any connection."""

from __future__ import annotations

import os

import boto3
import pytest

from mlops_local.guard import RealAwsEndpointError


def test_credentials_are_fake():
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing" and "AWS_PROFILE" not in os.environ


def test_request_to_real_aws_endpoint_fails_loudly():
    client = boto3.client("s3", region_name="us-east-1")
    with pytest.raises(RealAwsEndpointError, match="amazonaws.com"):
        client.list_buckets()
