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
from mlops.data import synthetic

from mlops_local.runtime import free_port
from mlops_local.serve import help_lines

# These tests start their own processes (or none) and share no embedded AWS with the workflow group: a group of
# their own lets the second test worker run them beside it.
pytestmark = pytest.mark.xdist_group("own-processes")

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


def test_second_server_in_a_folder_with_a_running_one_exits_2_and_leaves_its_record(tmp_path):
    record = {"api_url": "http://127.0.0.1:1", "pid": os.getpid()}  # this test's process: alive
    (tmp_path / ".mlops").mkdir()
    (tmp_path / ".mlops" / "local-serve.json").write_text(json.dumps(record))
    done = mlops("local", "serve", "--port", str(free_port()), cwd=tmp_path)
    assert done.returncode == 2 and f"pid {os.getpid()}" in done.stderr and "already running" in done.stderr
    assert json.loads((tmp_path / ".mlops" / "local-serve.json").read_text()) == record


# serve.main with the platform replaced by stand-ins: the signal handling and the record's life, in a second.
STUB_SERVER = r"""
import sys
from pathlib import Path
from mlops_local import serve

class Stub:
    endpoint_url, bucket, table, state_machine_arn = "http://127.0.0.1:2", "b", "t", "arn"
    server_address = ("127.0.0.1", 3)
    registry = None
    def shutdown(self): print("front stopped", file=sys.stderr, flush=True)
    def executions(self): return []
    def stop(self): print("platform stopped", file=sys.stderr, flush=True)

serve.start = lambda port, families=(): (Stub(), Stub())
sys.exit(serve.main(as_json=True, folder=Path(sys.argv[1])))
"""


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_stop_signal_removes_the_server_record_and_stops_everything(tmp_path, number):
    process = subprocess.Popen([sys.executable, "-c", STUB_SERVER, str(tmp_path)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(process.stdout.readline() or "{}")
        record = tmp_path / ".mlops" / "local-serve.json"
        assert info.get("pid") == process.pid and json.loads(record.read_text()) == info, process.stderr.read()
        process.send_signal(number)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert not record.exists()
    assert "front stopped" in stderr and "platform stopped" in stderr


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
