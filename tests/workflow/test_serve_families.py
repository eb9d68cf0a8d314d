"""`mlops local serve --family FILE` and `mlops demo --family FILE[=DATA]`: invalid input is refused before
anything starts (exit 2, the file, field and problem named); a server records itself in its folder and removes
the record when it stops."""

from __future__ import annotations

import contextlib
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


# serve.main with the platform replaced by stand-ins: the signal handling and the record's life, in a second.
# argv: the folder, then optionally the seconds its start-up takes.
STUB_SERVER = r"""
import sys
import time
from pathlib import Path
from mlops_local import serve

class Stub:
    endpoint_url, bucket, table, state_machine_arn = "http://127.0.0.1:2", "b", "t", "arn"
    server_address = ("127.0.0.1", 3)
    registry = None
    function_names = {"drift": "mlops-local-drift"}
    def shutdown(self): print("front stopped", file=sys.stderr, flush=True)
    def executions(self): return []
    def stop(self): print("platform stopped", file=sys.stderr, flush=True)

def start(port, families=()):
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
    return Stub(), Stub()

serve.start = start
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


def stub_server(folder: Path, startup_seconds: float = 0.0) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", STUB_SERVER, str(folder), str(startup_seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_second_server_in_a_folder_with_a_running_one_exits_2_and_leaves_its_record(tmp_path):
    first = stub_server(tmp_path)
    try:
        info = json.loads(first.stdout.readline() or "{}")
        record = (tmp_path / ".mlops" / "local-serve.json").read_text()
        done = mlops("local", "serve", "--port", str(free_port()), cwd=tmp_path)
        assert done.returncode == 2 and "already running" in done.stderr, done.stderr
        assert f"pid {info['pid']}" in done.stderr and "Traceback" not in done.stderr
        assert (tmp_path / ".mlops" / "local-serve.json").read_text() == record
    finally:
        stop(first)


def test_two_servers_started_at_once_in_one_folder_one_runs_and_the_other_is_refused(tmp_path):
    # Each takes a second to start: the record is written only then, so only a lock taken first can tell.
    servers = [stub_server(tmp_path, 1.0) for _ in range(2)]
    try:
        refused = []
        for server in servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                refused.append((server.wait(timeout=10), server.stderr.read()))
        assert len(refused) == 1, "both servers kept running (or both stopped)"
        code, stderr = refused[0]
        assert code == 2 and "already running from this folder" in stderr and "Traceback" not in stderr
        running = next(s for s in servers if s.poll() is None)
        info = json.loads(running.stdout.readline() or "{}")
        assert info.get("pid") == running.pid
    finally:
        for server in servers:
            stop(server)


@pytest.mark.parametrize("owner", ["dead", "reused"])
def test_server_file_of_a_gone_server_does_not_block_a_new_start(tmp_path, owner):
    """A record left by a killed server is stale, whether its pid no longer runs or now belongs to another program
    (here: this test's own process, alive but no server): a new server starts and replaces the record."""
    if owner == "dead":
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        pid = int(dead.stdout)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        pid = os.getpid()
    (tmp_path / ".mlops").mkdir()
    (tmp_path / ".mlops" / "local-serve.json").write_text(json.dumps({"pid": pid}))
    (tmp_path / ".mlops" / "local-serve.lock").write_text(f"{pid}\n")
    server = stub_server(tmp_path)
    try:
        info = json.loads(server.stdout.readline() or "{}")
        assert info.get("pid") == server.pid, server.stderr.read() if server.poll() is not None else ""
        assert json.loads((tmp_path / ".mlops" / "local-serve.json").read_text()) == info
    finally:
        stop(server)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
