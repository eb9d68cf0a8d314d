"""The operator commands and the console against a real `mlops local serve` (its own process, found through its
server file), each command in its own process: the one code path the tests on moto take through stack outputs."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from mlops_local.runtime import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("operator-served")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'layers' / 'common' / 'python'}"}
    command = [sys.executable, "-m", "mlops_local.cli", "local", "serve", "--port", str(free_port()), "--json"]
    process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read()
        yield {"folder": folder, "env": env, "info": json.loads(line)}
    finally:
        process.terminate()
        process.wait(timeout=60)


def mlops(served, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlops_local.cli", *args], cwd=served["folder"], env=served["env"],
                          capture_output=True, text=True, timeout=600)


def test_operator_commands_and_console_work_against_a_local_server(served):
    listed = json.loads(mlops(served, "families", "list", "--json").stdout)["families"]
    assert [(f["name"], f["live_version"]) for f in listed] == [("credit-risk", 1)]
    shown = json.loads(mlops(served, "versions", "show", "credit-risk", "1", "--json").stdout)
    assert shown["summary"]["status"] == "live" and shown["record"]["lineage"]["curves"]["roc"]["auc"] > 0.7

    # The seed model was trained in the server's process; this one has another string hash seed.
    reproduced = mlops(served, "reproduce", "credit-risk", "1", "--json")
    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr
    assert json.loads(reproduced.stdout)["identical"] is True

    promoted = mlops(served, "promote", "credit-risk", "1", "--reason", "already live", "--json")
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["actor"] == f"cli:local:{getpass.getuser()}"
    refused = mlops(served, "rollback", "credit-risk", "--reason", "nothing to go back to")
    assert refused.returncode == 4 and "no retired version to restore" in refused.stderr

    written = mlops(served, "report", "credit-risk", "1", "-o", "reports", "--json")
    assert written.returncode == 0, written.stderr
    assert set(json.loads(written.stdout)["pages"]) == {"model-card"}
    assert (served["folder"] / "reports" / "model-card.html").read_text().startswith("<!doctype html>")
    unknown = mlops(served, "versions", "show", "credit-risk", "9")
    assert unknown.returncode == 2 and "has no version 9" in unknown.stderr

    assert served["info"]["console_url"] == served["info"]["api_url"] + "/console"
    with urllib.request.urlopen(served["info"]["console_url"] + "/families/credit-risk", timeout=60) as page:
        assert page.status == 200 and "credit-risk" in page.read().decode()
