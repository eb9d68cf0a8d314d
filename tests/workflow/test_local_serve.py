"""`mlops local serve --json`: a real process, endpoints on the first stdout line, the API answering."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mlops_local.runtime import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "mlops_local.cli", "local", "serve", "--port", str(port),
                                "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read()
        yield json.loads(line)
    finally:
        process.terminate()
        process.wait(timeout=30)


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


def test_seeded_family_scores_and_describes(served):
    record = {"age": 35, "income": 52000, "debt_ratio": 0.31, "credit_history_years": 9.5, "late_payments": 1,
              "employment_years": 4.0, "open_credit_lines": 5, "region": "south"}
    status, headers, body = _request(f"{served['api_url']}/models/credit-risk/predict",
                                     json.dumps({"instances": [record]}).encode())
    assert status == 200 and body["version"] == 1 and headers["X-Model-Version"] == "1"
    status, _, body = _request(f"{served['api_url']}/models/credit-risk")
    assert status == 200 and body["live_version"] == 1
    status, _, body = _request(f"{served['api_url']}/models/credit-risk/predict", b"{oops")
    assert status == 400 and "not valid JSON" in body["message"]
    status, _, body = _request(f"{served['api_url']}/models/unknown/predict", b"{}")
    assert status == 404


def test_upload_through_the_endpoint_runs_the_real_pipeline(served):
    import time

    import boto3
    from mlops import synthetic

    s3 = boto3.client("s3", endpoint_url=served["aws_endpoint_url"])
    s3.put_object(Bucket=served["bucket"], Key="datasets/credit-risk/more.csv", Body=synthetic.credit_risk_csv(2000, 9))
    sfn = boto3.client("stepfunctions", endpoint_url=served["aws_endpoint_url"])
    machine = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    deadline = time.monotonic() + 90
    while True:
        executions = sfn.list_executions(stateMachineArn=machine)["executions"]
        if len(executions) == 2 and all(e["status"] != "RUNNING" for e in executions):
            break
        assert time.monotonic() < deadline, executions
        time.sleep(0.2)
    assert all(e["status"] == "SUCCEEDED" for e in executions)


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
