"""`mlops local serve --json`: a real process, endpoints on the first stdout line, the API answering."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlops.data import synthetic

from mlops_local.runtime import free_port

# These tests start their own processes (or none) and share no embedded AWS with the workflow group: a group of
# their own lets the second test worker run them beside it.
pytestmark = pytest.mark.xdist_group("own-processes")

ROOT = Path(__file__).resolve().parents[2]
RECORD = {"age": 35, "income": 52000, "debt_ratio": 0.31, "credit_history_years": 9.5, "late_payments": 1,
          "employment_years": 4.0, "open_credit_lines": 5, "region": "south"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server for the module, started from its own folder with a user family beside the built-in one."""
    folder = tmp_path_factory.mktemp("serve")
    (folder / "my-credit.json").write_text(
        synthetic.credit_risk_family(name="my-credit", capture_sample_rate=1.0).model_dump_json())
    port = free_port()
    log = folder / "stderr.log"  # a file, not a pipe: a full pipe would block the server's logging
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "mlops_local.cli", "local", "serve", "--port", str(port),
                                    "--json", "--family", "my-credit.json"], cwd=folder,
                                   stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        line = process.stdout.readline()
        assert line, log.read_text()[-4000:]
        yield {**json.loads(line), "folder": folder}
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        process.wait(timeout=60)
    assert process.returncode == 0, log.read_text()[-4000:]
    assert not (folder / ".mlops" / "local-serve.json").exists(), "Ctrl-C must remove the server file"


def _request(url: str, body: bytes | None = None, content_type: str = "application/json"):
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_first_line_names_the_endpoints(served):
    assert set(served) >= {"api_url", "aws_endpoint_url", "bucket"}
    assert served["api_url"].startswith("http://127.0.0.1:") and served["aws_endpoint_url"].startswith("http://127.0.0.1:")


def test_server_file_in_the_start_folder_holds_the_endpoints_the_pid_and_every_family(served):
    recorded = json.loads((served["folder"] / ".mlops" / "local-serve.json").read_text())
    assert set(recorded) == {"api_url", "aws_endpoint_url", "bucket", "registry_table", "state_machine_arn", "pid",
                             "families", "console_url", "drift_function", "drift_fanout"}
    assert recorded["console_url"] == recorded["api_url"] + "/console"
    assert recorded == {k: v for k, v in served.items() if k != "folder"}
    assert recorded["families"] == ["credit-risk", "my-credit"]
    os.kill(recorded["pid"], 0)  # the running server's own process


def test_user_family_is_routed_then_goes_live_from_an_upload_and_scores(served):
    import boto3

    status, _, body = _request(f"{served['api_url']}/models/my-credit")
    assert status == 200 and body["live_version"] is None and body["model"] == "my-credit"
    status, _, body = _request(f"{served['api_url']}/models/my-credit/predict",
                               json.dumps({"instances": [RECORD]}).encode())
    assert status == 503, body
    s3 = boto3.client("s3", endpoint_url=served["aws_endpoint_url"])
    s3.put_object(Bucket=served["bucket"], Key="datasets/my-credit/first.csv", Body=synthetic.credit_risk_csv(1500, 4))
    deadline = time.monotonic() + 120
    while _request(f"{served['api_url']}/models/my-credit")[2]["live_version"] != 1:
        assert time.monotonic() < deadline, "my-credit v1 did not go live"
        time.sleep(0.2)
    status, headers, body = _request(f"{served['api_url']}/models/my-credit/predict",
                                     json.dumps({"instances": [RECORD]}).encode())
    assert status == 200 and body["model"] == "my-credit" and headers["X-Model-Version"] == "1"
    assert body["classes"] == [0, 1] and body["predictions"][0] in (0, 1)


def test_seeded_family_scores_and_describes(served):
    status, headers, body = _request(f"{served['api_url']}/models/credit-risk/predict",
                                     json.dumps({"instances": [RECORD]}).encode())
    assert status == 200 and body["version"] == 1 and headers["X-Model-Version"] == "1"
    status, _, body = _request(f"{served['api_url']}/models/credit-risk")
    assert status == 200 and body["live_version"] == 1
    status, _, body = _request(f"{served['api_url']}/models/credit-risk/predict", b"{oops")
    assert status == 400 and "not valid JSON" in body["message"]
    status, _, body = _request(f"{served['api_url']}/models/unknown/predict", b"{}")
    assert status == 404


def test_upload_through_the_endpoint_runs_the_real_pipeline(served):
    import boto3

    s3 = boto3.client("s3", endpoint_url=served["aws_endpoint_url"])
    sfn = boto3.client("stepfunctions", endpoint_url=served["aws_endpoint_url"])
    before = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=served["state_machine_arn"])["executions"]}
    s3.put_object(Bucket=served["bucket"], Key="datasets/credit-risk/more.csv", Body=synthetic.credit_risk_csv(2000, 9))
    deadline = time.monotonic() + 90
    while True:
        started = [e for e in sfn.list_executions(stateMachineArn=served["state_machine_arn"])["executions"]
                   if e["executionArn"] not in before]
        if len(started) == 1 and started[0]["status"] != "RUNNING":
            break
        assert time.monotonic() < deadline, started
        time.sleep(0.2)
    assert started[0]["status"] == "SUCCEEDED"


@pytest.mark.slow  # about 20-55 s each under load: run by `make test-slow` (CI runs both)
def test_openapi_document_matches_the_real_api_under_schema_driven_fuzzing(served, tmp_path):
    """schemathesis generates schema-valid and schema-violating requests from docs/openapi.yaml and checks every
    response: no server errors, documented status codes, content types, headers and response schemas, invalid
    data rejected, valid data accepted, undeclared methods answered 405. Local serve has no SigV4, so the
    document's security requirement is removed for this run."""
    import yaml

    document = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    document.pop("security")
    document["components"].pop("securitySchemes")
    local = tmp_path / "openapi-local.yaml"
    local.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", str(local), "--url", served["api_url"], "--checks", "all",
         "--max-examples", "60", "--workers", "1", "--seed", "20261126"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "No issues found" in result.stdout
