"""`mlops runs`, `mlops runs show` and `mlops upload --follow`: one code path for a deployed stack (here the
session's platform on moto, reached through its stack outputs) and for a running `mlops local serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner
from mlops.data import synthetic

from mlops_local import client
from mlops_local.cli import cli
from mlops_local.runtime import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def stack(platform, monkeypatch):
    """`--stack mlops-test` resolves to the session's platform: its outputs as CloudFormation would give them."""
    outputs = {"ArtifactBucket": platform.bucket, "RegistryTable": platform.table,
               "PipelineStateMachine": platform.state_machine_arn, "ScoringApiUrl": "https://api.example/prod/"}
    looked_up = []

    def stack_outputs(session, name):
        looked_up.append((name, session.region_name))
        return outputs

    monkeypatch.setattr(client, "stack_outputs", stack_outputs)
    return {"args": ["--stack", "mlops-test"], "looked_up": looked_up}


def mlops(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _csv(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_upload_follow_exits_0_when_the_model_goes_live_and_1_when_gated_out(platform, new_family, stack,
                                                                             tmp_path):
    family = new_family()
    good = _csv(tmp_path, "first.csv", synthetic.credit_risk_csv(1500, 1))
    result = mlops("upload", good, "--family", family.name, "--follow", "--poll-seconds", "0.05", *stack["args"])
    assert result.exit_code == 0, result.output
    assert "promoted" in result.stdout and "v1 is live" in result.stdout
    assert stack["looked_up"] == [("mlops-test", "us-east-1")]
    assert platform.registry.get_family(family.name).live_version == 1

    noisy = _csv(tmp_path, "noise.csv", synthetic.credit_risk_csv(3000, 13, label_noise=0.9))
    result = mlops("upload", noisy, "--family", family.name, "--follow", "--poll-seconds", "0.05", "--json",
                   *stack["args"])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["key"] == f"datasets/{family.name}/noise.csv" and summary["version_id"]
    assert summary["run"]["outcome"] == "gated_out" and summary["run"]["step"] == "Gate"
    assert summary["run"]["reason"].startswith("gate: ") and summary["run"]["seconds"] > 0


def test_upload_follow_exits_1_for_a_rejected_or_duplicate_upload(platform, new_family, stack, tmp_path):
    family = new_family()
    parquet = _csv(tmp_path, "data.parquet", b"PAR1")
    result = mlops("upload", parquet, "--family", family.name, "--follow", "--poll-seconds", "0.05", *stack["args"])
    assert result.exit_code == 1 and "rejected" in result.stdout and "unsupported file type" in result.stdout

    data = synthetic.credit_risk_csv(1500, 3)
    first = mlops("upload", _csv(tmp_path, "a.csv", data), "--family", family.name, "--follow", "--poll-seconds",
                  "0.05", *stack["args"])
    assert first.exit_code == 0, first.output
    again = mlops("upload", _csv(tmp_path, "b.csv", data), "--family", family.name, "--follow", "--poll-seconds",
                  "0.05", *stack["args"])
    assert again.exit_code == 1 and "duplicate" in again.stdout and "already promoted" in again.stdout


def test_upload_to_an_unknown_family_is_a_usage_error_and_uploads_nothing(platform, stack, tmp_path):
    result = mlops("upload", _csv(tmp_path, "a.csv", b"a\n1\n"), "--family", "never-registered", *stack["args"])
    assert result.exit_code == 2 and "unknown model family 'never-registered'" in result.output
    listed = boto3.client("s3").list_objects_v2(Bucket=platform.bucket, Prefix="datasets/never-registered/")
    assert listed.get("KeyCount", 0) == 0


def test_runs_list_and_show_tell_the_story_of_each_run(platform, new_family, stack, tmp_path):
    family = new_family()
    for name, data in (("v1.csv", synthetic.credit_risk_csv(1500, 1)),
                       ("noise.csv", synthetic.credit_risk_csv(3000, 13, label_noise=0.9))):
        mlops("upload", _csv(tmp_path, name, data), "--family", family.name, "--follow", "--poll-seconds", "0.05",
              *stack["args"])

    listed = json.loads(mlops("runs", "--family", family.name, "--json", *stack["args"]).stdout)["runs"]
    assert [r["outcome"] for r in listed] == ["gated_out", "promoted"], "newest first"
    assert [r["step"] for r in listed] == ["Gate", "GoLiveFirstModel"]
    assert all(r["seconds"] > 0 and r["started_at"] and r["ended_at"] for r in listed)
    everyone = json.loads(mlops("runs", "--json", "--limit", "1000", *stack["args"]).stdout)["runs"]
    assert {r["run_id"] for r in listed} <= {r["run_id"] for r in everyone}

    table = mlops("runs", "--family", family.name, *stack["args"])
    assert table.exit_code == 0 and "gated_out" in table.stdout and "promoted" in table.stdout

    gated = listed[0]["run_id"]
    story = json.loads(mlops("runs", "show", gated, "--json", *stack["args"]).stdout)
    assert story["run"]["run_id"] == gated and story["version"]["status"] == "rejected"
    states = [s["state"] for s in story["states"]]
    assert states[:6] == ["PlanTraining", "DuplicateUpload?", "AcquireRolloutLock", "RolloutLockAcquired?",
                          "TrainingEngine?", "Train"] and "Gate" in states
    assert all(s["seconds"] is not None for s in story["states"][:-1])
    assert any(not c["passed"] for c in story["version"]["gate"]["checks"])
    text = mlops("runs", "show", gated, *stack["args"])
    assert text.exit_code == 0 and "Gate: failed" in text.stdout and "Evaluate" in text.stdout
    assert "min_auc" in text.stdout and "onnx_parity" in text.stdout  # every check by name

    missing = mlops("runs", "show", f"{family.name}-{'0' * 32}", *stack["args"])
    assert missing.exit_code == 2 and "no run" in missing.output


def test_stack_outputs_are_read_from_cloudformation(platform, new_family):
    # moto's CloudFormation holds a stack with the platform's outputs: no stub between the CLI and boto3.
    template = {"Resources": {"Marker": {"Type": "AWS::SNS::Topic"}}, "Outputs": {
        "ArtifactBucket": {"Value": platform.bucket}, "RegistryTable": {"Value": platform.table},
        "PipelineStateMachine": {"Value": platform.state_machine_arn},
        "ScoringApiUrl": {"Value": "https://api.example/prod/"}}}
    boto3.client("cloudformation").create_stack(StackName="mlops-cfn", TemplateBody=json.dumps(template))
    family = new_family()
    platform.registry.record_run(family.name, "r-1", "failed", step="Train", reason="DataSetError: empty")
    result = mlops("runs", "--family", family.name, "--json", "--stack", "mlops-cfn", "--region", "us-east-1")
    assert result.exit_code == 0, result.output
    assert [r["reason"] for r in json.loads(result.stdout)["runs"]] == ["DataSetError: empty"]

    unknown = mlops("runs", "--stack", "no-such-stack")
    assert unknown.exit_code == 3 and "no-such-stack" in unknown.output
    boto3.client("cloudformation").create_stack(StackName="not-mlops", TemplateBody=json.dumps(
        {"Resources": {"Marker": {"Type": "AWS::SNS::Topic"}}}))
    other = mlops("runs", "--stack", "not-mlops")
    assert other.exit_code == 3 and "is it an MLOps platform stack?" in other.output


# ---- finding a local server ----------------------------------------------------------------------------------


def _server_file(folder: Path, **overrides) -> Path:
    info = {"api_url": "http://127.0.0.1:8080", "aws_endpoint_url": "http://127.0.0.1:5999", "bucket": "b",
            "registry_table": "t", "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:p",
            "pid": os.getpid(), "families": ["credit-risk"], **overrides}
    path = folder / ".mlops" / "local-serve.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info))
    return path


def test_without_a_server_file_the_cli_says_no_server_runs_here_and_exits_3(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = mlops("runs")
    assert result.exit_code == 3 and "no `mlops local serve` is running from" in result.output
    assert "--stack NAME" in result.output


def test_a_server_file_of_a_stopped_server_exits_3(tmp_path, monkeypatch):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    _server_file(tmp_path, pid=int(finished.stdout))
    monkeypatch.chdir(tmp_path)
    result = mlops("upload", __file__, "--family", "credit-risk")
    assert result.exit_code == 3 and "is not running" in result.output


def test_a_server_file_naming_a_remote_endpoint_is_refused(tmp_path):
    _server_file(tmp_path, aws_endpoint_url="https://s3.amazonaws.com")
    with pytest.raises(client.PlatformUnreachable, match="not a local endpoint"):
        client.connect(client.TargetOptions(), cwd=tmp_path)


def test_a_running_server_is_found_through_its_file(tmp_path):
    _server_file(tmp_path)
    found = client.connect(client.TargetOptions(), cwd=tmp_path)
    assert (found.endpoint_url, found.bucket, found.registry_table) == ("http://127.0.0.1:5999", "b", "t")
    assert found.families == ("credit-risk",) and found.client("s3").meta.endpoint_url == "http://127.0.0.1:5999"


def test_profile_and_region_without_a_stack_are_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = mlops("runs", "--region", "eu-west-1")
    assert result.exit_code == 2 and "add --stack NAME" in result.output


# ---- the same commands against `mlops local serve` -----------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real `mlops local serve` in its own folder, with one extra family that has no model yet."""
    folder = tmp_path_factory.mktemp("served")
    family = synthetic.credit_risk_family(
        name="cli-local", capture_sample_rate=1.0,
        canary={"steps": [50, 100], "bake_seconds": 1, "min_requests": 5, "lock_poll_seconds": 1})
    (folder / "family.json").write_text(json.dumps(family.model_dump(mode="json")))
    (folder / "first.csv").write_bytes(synthetic.credit_risk_csv(1500, 1))
    (folder / "noise.csv").write_bytes(synthetic.credit_risk_csv(3000, 13, label_noise=0.9))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'layers' / 'common' / 'python'}"}
    command = [sys.executable, "-m", "mlops_local.cli", "local", "serve", "--port", str(free_port()), "--json",
               "--family", "family.json"]
    process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read()
        yield {"folder": folder, "env": env, "info": json.loads(line)}
    finally:
        process.terminate()
        process.wait(timeout=30)


def _cli(served, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlops_local.cli", *args], cwd=served["folder"], env=served["env"],
                          capture_output=True, text=True, timeout=300)


def test_local_serve_is_found_from_its_folder_and_upload_follow_tells_the_outcome(served):
    live = _cli(served, "upload", "first.csv", "--family", "cli-local", "--follow")
    assert live.returncode == 0, live.stdout + live.stderr
    assert "promoted" in live.stdout
    gated = _cli(served, "upload", "noise.csv", "--family", "cli-local", "--follow", "--json")
    assert gated.returncode == 1, gated.stdout + gated.stderr
    assert json.loads(gated.stdout)["run"]["outcome"] == "gated_out"
    listed = json.loads(_cli(served, "runs", "--family", "cli-local", "--json").stdout)["runs"]
    assert [r["outcome"] for r in listed] == ["gated_out", "promoted"]
    seeded = json.loads(_cli(served, "runs", "--family", "credit-risk", "--json").stdout)["runs"]
    assert seeded and seeded[-1]["outcome"] == "promoted", "the server's seed model has its run too"
