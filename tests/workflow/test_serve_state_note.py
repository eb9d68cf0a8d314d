"""`mlops local serve` says at start that its state is in memory only (restarting loses it), in both modes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from mlops_local.serve import STATE_NOTE, help_lines

pytestmark = pytest.mark.xdist_group("own-processes")

STUB_SERVER = r"""
import sys
from pathlib import Path
from mlops_local import serve

class Stub:
    endpoint_url, bucket, table, state_machine_arn = "http://127.0.0.1:2", "b", "t", "arn"
    server_address = ("127.0.0.1", 3)
    function_names = {"drift": "d"}
    def shutdown(self): pass
    def executions(self): return []
    def stop(self): pass

serve.start = lambda port, families=(): (Stub(), Stub())
sys.exit(serve.main(as_json=True, folder=Path(sys.argv[1])))
"""


def test_help_lines_say_the_state_is_in_memory_and_lost_on_restart():
    info = {"api_url": "http://127.0.0.1:8080", "aws_endpoint_url": "http://127.0.0.1:5000", "bucket": "b",
            "families": ["credit-risk"]}
    lines = help_lines(info, {"credit-risk": 1})
    assert STATE_NOTE in lines and lines.index(STATE_NOTE) < lines.index("Ctrl-C to stop.")
    assert "in memory only" in STATE_NOTE and "loses the registry, models, runs, data sets" in STATE_NOTE


def test_json_mode_keeps_stdout_to_the_endpoints_and_says_it_on_stderr(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", STUB_SERVER, str(tmp_path)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(process.stdout.readline() or "{}")
        assert info.get("pid") == process.pid
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert stdout == "" and STATE_NOTE in stderr
