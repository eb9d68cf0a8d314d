"""`mlops local serve --family FILE` and `mlops demo --family FILE[=DATA]`: invalid input is refused before
anything starts (exit 2, the file, field and problem named); a server records itself in its folder and removes
the record when it stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlops import synthetic

from mlops_local.runtime import free_port
from mlops_local.serve import help_lines

INVALID_FAMILY = """\
name: my-loans
target: default
features:
  - name: income
    kind: numeric
  - name: grade
    kind: ordinal
"""


def mlops(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlops_local.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def family_file(folder: Path, name: str) -> Path:
    path = folder / f"{name}.json"
    path.write_text(synthetic.credit_risk_family(name=name).model_dump_json())
    return path


def test_help_lines_list_every_served_family_with_its_routes_and_state():
    info = {"api_url": "http://127.0.0.1:8080", "aws_endpoint_url": "http://127.0.0.1:5000", "bucket": "b",
            "families": ["credit-risk", "my-loans", "other"]}
    lines = help_lines(info, {"credit-risk": 1, "my-loans": 0, "other": 3})
    routes = [line for line in lines if "POST /models/" in line]
    assert [line.split()[0] for line in routes] == ["credit-risk", "my-loans", "other"]
    assert "GET /models/my-loans" in routes[1] and "no model yet: mlops upload DATA.csv --family my-loans" in routes[1]
    assert "live v3" in routes[2]


@pytest.mark.parametrize("command", [["local", "serve"], ["demo"]])
def test_invalid_family_file_exits_2_naming_file_field_and_problem_before_anything_starts(tmp_path, command):
    (tmp_path / "my-loans.yaml").write_text(INVALID_FAMILY)
    port = free_port()
    extra = ["--port", str(port)] if command == ["local", "serve"] else []
    done = mlops(*command, *extra, "--family", "my-loans.yaml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "my-loans.yaml" in done.stderr and "features" in done.stderr and "kind" in done.stderr
    assert "ordinal" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / ".mlops").exists() and done.stdout == ""


@pytest.mark.parametrize(("names", "needle"), [(["credit-risk"], "built-in"), (["twin", "twin"], "declared twice")])
def test_serve_refuses_a_family_that_takes_a_served_name(tmp_path, names, needle):
    args = []
    for number, name in enumerate(names):
        folder = tmp_path / str(number)
        folder.mkdir()
        args += ["--family", str(family_file(folder, name))]
    done = mlops("local", "serve", "--port", str(free_port()), *args, cwd=tmp_path)
    assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / ".mlops").exists()


def test_demo_refuses_a_data_file_that_does_not_exist(tmp_path):
    family_file(tmp_path, "my-loans")
    done = mlops("demo", "--family", "my-loans.json=nowhere.csv", cwd=tmp_path)
    assert done.returncode == 2 and "nowhere.csv" in done.stderr and "Traceback" not in done.stderr


def test_server_refuses_a_second_start_in_its_folder_and_ctrl_c_removes_its_file(tmp_path):
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        first = subprocess.Popen([sys.executable, "-m", "mlops_local.cli", "local", "serve", "--port",
                                  str(free_port()), "--json"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=stderr,
                                 text=True)
    try:
        info = json.loads(first.stdout.readline() or "{}")
        assert info.get("pid") == first.pid, log.read_text()[-4000:]
        server_file = tmp_path / ".mlops" / "local-serve.json"
        assert json.loads(server_file.read_text()) == info
        second = mlops("local", "serve", "--port", str(free_port()), cwd=tmp_path)
        assert second.returncode == 2 and f"pid {first.pid}" in second.stderr
        assert json.loads(server_file.read_text()) == info, "the refused start must leave the record alone"
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=60) == 0, log.read_text()[-4000:]
        assert not server_file.exists()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_server_file_of_a_dead_server_does_not_block_a_new_start(tmp_path):
    """A record left by a killed server (pid no longer running) is stale: the check ignores it."""
    from mlops_local.serve import running_server

    (tmp_path / ".mlops").mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / ".mlops" / "local-serve.json").write_text(json.dumps({"pid": pid}))
    assert running_server(tmp_path) is None
    (tmp_path / ".mlops" / "local-serve.json").write_text(json.dumps({"pid": os.getpid()}))
    assert running_server(tmp_path) == {"pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
