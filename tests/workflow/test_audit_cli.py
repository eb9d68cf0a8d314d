"""`mlops audit` end to end against a real `mlops local serve`: score a request over HTTP with explanations, then
audit it from its request id (version, what was live, lineage, gate, rollout, the explanation recomputed from the
captured inputs); unknown ids and malformed options exit 2 with a message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlops.data import synthetic

from mlops_local.runtime import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`mlops local serve` with its built-in family (seeded with a live model, every request captured)."""
    folder = tmp_path_factory.mktemp("audited")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'layers' / 'common' / 'python'}"}
    process = subprocess.Popen([sys.executable, "-m", "mlops_local.cli", "local", "serve", "--port",
                                str(free_port()), "--json"], cwd=folder, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read()
        yield {"folder": folder, "env": env, "info": json.loads(line)}
    finally:
        process.terminate()
        process.wait(timeout=60)


def _cli(served, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlops_local.cli", *args], cwd=served["folder"], env=served["env"],
                          capture_output=True, text=True, timeout=300)


def _predict(served, body: dict) -> dict:
    request = urllib.request.Request(f"{served['info']['api_url']}/models/credit-risk/predict",
                                      data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _audit(served, request_id: str, *options: str) -> subprocess.CompletedProcess:
    """The audit as soon as the decision is in S3 (the server writes each record right after its answer)."""
    deadline = time.monotonic() + 60
    while True:
        result = _cli(served, "audit", request_id, *options)
        if result.returncode != 2 or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_audit_reconstructs_a_scored_request_from_its_id(served):
    family = synthetic.credit_risk_family()
    records = synthetic.to_instances(synthetic.credit_risk_columns(2, 17), family)
    body = _predict(served, {"instances": records, "explain": True, "top": 3})
    request_id = body["request_id"]

    result = _audit(served, request_id, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    decision = report["decision"]
    assert report["request_id"] == request_id and decision["family"] == "credit-risk"
    assert decision["version"] == body["version"] and decision["function_version"]
    assert [r["prediction"] for r in decision["records"]] == body["predictions"]
    assert [r["probability"] for r in decision["records"]] == [p[1] for p in body["probabilities"]]
    assert [r["inputs"] for r in decision["records"]] == records
    assert report["at_decision"]["live_version"] == body["version"] and report["at_decision"]["served_by"] == "live"
    lineage = report["lineage"]
    assert lineage["dataset"]["key"] == "datasets/credit-risk/seed.csv" and lineage["dataset"]["version_id"]
    assert lineage["dataset"]["rows"] == 5000 and len(lineage["dataset"]["sha256"]) == 64
    assert lineage["code"]["git_revision"] and lineage["code"]["dirty"] in (True, False)
    assert lineage["hyperparameters"] and lineage["seed"] == family.seed and lineage["metrics"]["auc"] > 0.6
    assert {f["feature"] for f in lineage["feature_importance"]} == set(family.feature_names)
    gate = report["gate"]
    assert gate["passed"] and {c["check"] for c in gate["checks"]} >= {"onnx_parity", "min_auc"}
    assert all("threshold" in c for c in gate["checks"])
    assert [e["to_status"] for e in report["rollout"]][:2] == ["candidate", "live"]
    explanation = report["explanation"]
    assert explanation["source"] == "recomputed" and explanation["prediction_reproduced"] is True
    for ours, answered in zip(explanation["records"], body["explanations"], strict=True):
        assert ours["contributions"] == answered["contributions"] and ours["reasons"][:3] == answered["reasons"]

    text = _cli(served, "audit", request_id)
    assert text.returncode == 0, text.stderr
    for needle in ("Request", request_id, "Gate: passed", "min_auc", "Rollout history", "datasets/credit-risk/seed.csv",
                   "Explanation (recomputed)", "reproduce the recorded probability", answered["reasons"][0]["feature"]):
        assert needle in text.stdout, needle


def test_unknown_request_id_and_malformed_options_exit_2_with_a_message(served):
    unknown = _cli(served, "audit", "0b5e3f8e-0000-4000-8000-000000000000")
    assert unknown.returncode == 2
    assert "no decision record holds request id '0b5e3f8e-0000-4000-8000-000000000000'" in unknown.stderr
    malformed = _cli(served, "audit", "not/an/id")
    assert malformed.returncode == 2 and "is not a request id" in malformed.stderr
    bad_time = _cli(served, "audit", "0b5e3f8e-0000-4000-8000-000000000000", "--at", "last tuesday")
    assert bad_time.returncode == 2 and "ISO 8601" in bad_time.stderr
