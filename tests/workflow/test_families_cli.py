"""`mlops families apply | list | show | retire` against a real `mlops local serve` (its own process, found through
its server file): the CLI reaches the management routes through the server's front, `--family FILE` applies the
file at start, every change is versioned with the local user, and a retired family's scoring answers 404."""

from __future__ import annotations

import getpass
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

from mlops_local.familyfile import dump_family
from mlops_local.runtime import FAMILY_STATUS_TTL_SECONDS, free_port

# End to end through processes (the server, one per CLI command): about a minute, run by `make test-slow` (CI).
pytestmark = [pytest.mark.xdist_group("own-processes"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'layers' / 'common' / 'python'}"}
USER = f"local:{getpass.getuser()}"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("families-cli")
    (folder / "my-credit.yaml").write_text(dump_family(synthetic.credit_risk_family(name="my-credit")))
    log = folder / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "mlops_local.cli", "local", "serve", "--port",
                                    str(free_port()), "--json", "--family", "my-credit.yaml"], cwd=folder, env=ENV,
                                   stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        line = process.stdout.readline()
        assert line, log.read_text()[-4000:]
        yield {**json.loads(line), "folder": folder}
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def mlops(served, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlops_local.cli", *args], cwd=served["folder"], env=ENV,
                          capture_output=True, text=True, timeout=300)


def predict(served, name: str) -> tuple[int, dict]:
    body = json.dumps({"instances": synthetic.to_instances(synthetic.credit_risk_columns(1, 2),
                                                           synthetic.credit_risk_family())}).encode()
    request = urllib.request.Request(f"{served['api_url']}/models/{name}/predict", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_family_file_of_local_serve_is_applied_as_config_version_1_by_the_local_user(served):
    shown = mlops(served, "families", "show", "my-credit", "--json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["config_version"] == 1 and detail["status"] == "active"
    assert [(c["change"], c["actor"]) for c in detail["history"]] == [("created", USER)]


def test_apply_list_show_retire_and_apply_again_through_the_management_routes(served):
    folder = served["folder"]
    loans = synthetic.credit_risk_family(name="loans")
    (folder / "loans.yaml").write_text(dump_family(loans))
    applied = mlops(served, "families", "apply", "loans.yaml", "--reason", "first declaration")
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.startswith("loans: registered as config version 1")
    assert "unchanged" in mlops(served, "families", "apply", "loans.yaml").stdout
    assert predict(served, "loans")[0] == 503  # served, no model yet

    (folder / "loans.yaml").write_text(dump_family(loans.model_copy(update={"threshold": 0.35})))
    updated = json.loads(mlops(served, "families", "apply", "loans.yaml", "--reason", "fewer misses",
                               "--json").stdout)
    assert updated == {"applied": [{"name": "loans", "change": "updated", "config_version": 2, "status": "active"}]}

    (folder / "broken.yaml").write_text("name: loans\ntarget: default\nfeatures: []\n")
    broken = mlops(served, "families", "apply", "broken.yaml")
    assert broken.returncode == 2 and "broken.yaml" in broken.stderr and "at least one feature" in broken.stderr

    retired = mlops(served, "families", "retire", "loans", "--reason", "product closed")
    assert retired.returncode == 0 and "retired as config version 3" in retired.stdout
    listed = json.loads(mlops(served, "families", "list", "--status", "retired", "--json").stdout)["families"]
    assert [(f["name"], f["status"], f["config_version"]) for f in listed] == [("loans", "retired", 3)]
    time.sleep(FAMILY_STATUS_TTL_SECONDS + 0.2)
    status, answer = predict(served, "loans")
    assert status == 404 and answer["error"] == "FamilyRetiredError" and "'loans' is retired" in answer["message"]

    unknown = mlops(served, "families", "retire", "nope", "--reason", "x")
    assert unknown.returncode == 2 and "'nope' is not registered" in unknown.stderr
    back = mlops(served, "families", "apply", "loans.yaml", "--reason", "reopened")
    assert "active again as config version 4" in back.stdout

    history = json.loads(mlops(served, "families", "show", "loans", "--json").stdout)["history"]
    assert [(c["config_version"], c["change"], c["reason"]) for c in history] == [
        (4, "reactivated", "reopened"), (3, "retired", "product closed"), (2, "updated", "fewer misses"),
        (1, "created", "first declaration")]
    assert {c["actor"] for c in history} == {USER}
    first = json.loads(mlops(served, "families", "show", "loans", "--config-version", "1", "--json").stdout)
    assert first["declaration"]["threshold"] == 0.5 and first["change"] == "created"
    table = mlops(served, "families", "show", "loans")
    assert table.returncode == 0 and "Configuration history" in table.stdout and "reopened" in table.stdout
