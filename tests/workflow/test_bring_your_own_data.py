"""Bring your own data, as a new user does it from the README: a public credit data set as published (text labels,
NA cells, categoricals) goes from `mlops families infer` to a live model through `mlops local serve --family` and
`mlops upload --follow`, and the model answers a request with `null` for an imputed feature in the data set's own
class labels."""

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
import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "public" / "credit_data_sample.csv"

pytestmark = pytest.mark.slow


def mlops(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "common" / "python"),
                                                        str(ROOT / "src")])}
    return subprocess.run([sys.executable, "-m", "mlops_local.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture()
def served(tmp_path):
    """`mlops families infer` on the sample, then `mlops local serve --family` on the file it wrote."""
    inferred = mlops("families", "infer", str(SAMPLE), "--target", "Status", "--name", "credit-data",
                     "-o", "credit-data.yaml", cwd=tmp_path)
    assert inferred.returncode == 0, inferred.stderr
    assert "positive label GUESSED: 'bad'" in inferred.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "common" / "python"),
                                                        str(ROOT / "src")])}
    process = subprocess.Popen([sys.executable, "-m", "mlops_local.cli", "local", "serve", "--port", "0", "--json",
                                "--family", "credit-data.yaml"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        assert line, "mlops local serve exited before printing its endpoints"
        yield tmp_path, json.loads(line)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def test_public_credit_data_goes_live_from_infer_through_serve_and_upload_and_scores_null(served):
    folder, info = served
    family = yaml.safe_load((folder / "credit-data.yaml").read_text())
    imputed = {f["name"]: f for f in family["features"] if f.get("missing", "reject") != "reject"}
    assert "Income" in imputed and imputed["Income"]["missing"] == "median"

    # Given the family's file served beside the built-in family, when the data set is uploaded and followed...
    started = time.monotonic()
    upload = mlops("upload", str(SAMPLE), "--family", "credit-data", "--follow", "--json", cwd=folder)
    # ...then the run ends with the model live, and the CLI says so with exit code 0.
    assert upload.returncode == 0, upload.stdout + upload.stderr
    run = json.loads(upload.stdout.strip().splitlines()[-1])["run"]
    assert run["outcome"] == "promoted" and run["version"] == 1, run
    assert time.monotonic() - started < 240

    runs = mlops("runs", "--family", "credit-data", "--json", cwd=folder)
    assert runs.returncode == 0, runs.stderr
    assert [r["outcome"] for r in json.loads(runs.stdout)["runs"]] == ["promoted"]

    # A record as an application sends it: Income unknown (null), a Home category the data set never had.
    record = {"Seniority": 9, "Home": "castle", "Time": 60, "Age": 30, "Marital": "married", "Records": "no",
              "Job": "freelance", "Expenses": 73, "Income": None, "Assets": 0, "Debt": 0, "Amount": 800,
              "Price": 846}
    status, body = post(f"{info['api_url']}/models/credit-data/predict", {"instances": [record]})
    assert status == 200, body
    assert body["classes"] == ["good", "bad"]
    assert body["predictions"][0] in ("good", "bad")
    assert 0.0 <= body["probabilities"][0][1] <= 1.0

    # A feature the family does not impute still refuses null, naming the feature.
    status, body = post(f"{info['api_url']}/models/credit-data/predict",
                        {"instances": [{**record, "Seniority": None}]})
    assert status == 400 and "Seniority" in body["message"], body
