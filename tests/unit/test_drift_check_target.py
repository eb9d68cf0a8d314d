"""Where `mlops drift check` finds the drift function: the local server's file names it, a stack's `DriftFunction`
output does; a platform that names none gets a clear message, not a traceback."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import click
import pytest

from mlops_local import client, views
from mlops_local.serve import SERVER_FILE


def test_the_local_server_file_names_the_drift_function(tmp_path):
    path = tmp_path / SERVER_FILE
    path.parent.mkdir()
    path.write_text(json.dumps({"pid": os.getpid(), "aws_endpoint_url": "http://127.0.0.1:5000", "bucket": "b",
                                "registry_table": "t", "state_machine_arn": "arn:sm", "api_url": "http://x",
                                "drift_function": "mlops-drift"}))
    assert client.from_local_server(tmp_path).drift_function == "mlops-drift"


def test_a_stack_names_its_drift_function_through_its_output(monkeypatch):
    outputs = {"ArtifactBucket": "b", "RegistryTable": "t", "PipelineStateMachine": "arn:sm", "ScoringApiUrl": "u",
               "DriftFunction": "MlopsPlatform-DriftFunction-1A2B"}
    monkeypatch.setattr(client, "stack_outputs", lambda session, name: outputs)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert client.from_stack("MlopsPlatform", None, "us-east-1").drift_function == "MlopsPlatform-DriftFunction-1A2B"


def test_a_platform_without_a_drift_function_is_told_how_to_get_one():
    registry = SimpleNamespace(get_family=lambda name: SimpleNamespace(live_version=1))
    platform = SimpleNamespace(registry=registry, drift_function=None, description="stack old (us-east-1)")
    with pytest.raises(click.ClickException, match="does not name its drift function .* redeploy the stack"):
        views.drift_check(platform, "credit-risk")
