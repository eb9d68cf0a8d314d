"""Following a run (fresh-user pass on issues 10 and 11): the canary's requests against min_requests while it
waits for traffic, its weight, last check and divergence test in `mlops runs show`, Ctrl-C on `mlops upload
--follow` (exit 130, the run goes on) and `mlops runs show RUN --follow`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from mlops.data import synthetic

from mlops_local.cli import cli
from mlops_local.commands import runs as runs_command
from mlops_local.commands.runs import canary_progress

from .conftest import live_model


def mlops(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def wait_for_run(platform, family: str, run_id: str, ready, what: str, seconds: float = 90) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        run = platform.registry.get_run(family, run_id) or {}
        if ready(run):
            return run
        assert time.monotonic() < deadline, f"{what}: {run}"
        time.sleep(0.05)


def test_a_waiting_canary_shows_its_requests_against_min_requests_and_runs_show_its_test(
        platform, new_family, traffic, stack, tmp_path):
    family = new_family(gate={"min_auc_margin": -0.5}, canary={"steps": [10, 100]})
    live_model(platform, family, rows=1500)
    path = tmp_path / "v2.csv"
    path.write_bytes(synthetic.credit_risk_csv(1500, 31))

    # Given an upload whose follow is stopped (Ctrl-C during its first wait) while the run goes on.
    def interrupted(seconds):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runs_command, "time", SimpleNamespace(monotonic=time.monotonic, sleep=interrupted))
        stopped = mlops("upload", str(path), "--family", family.name, "--follow", *stack)
    assert stopped.exit_code == 130, stopped.output
    run_id = json.loads(mlops("runs", "--family", family.name, "--json", *stack).stdout)["runs"][0]["run_id"]
    assert f"Run {run_id} goes on in the background" in stopped.stderr
    assert f"mlops runs show {run_id} --follow --stack mlops-test" in stopped.stderr

    # When its canary has been checked without traffic.
    waiting = wait_for_run(platform, family.name, run_id,
                           lambda r: ((r.get("canary") or {}).get("last_check") or {}).get("decision") == "wait",
                           "the canary never waited for traffic")

    # Then the follow display and `runs show` give the requests against min_requests, and how to send some.
    progress = canary_progress(waiting)
    assert progress.startswith("Canary v2 at 10% (step 1 of 2): 0 requests (min 5: 5 more needed)"), progress
    assert f"send scoring requests to POST /models/{family.name}/predict" in progress
    shown = mlops("runs", "show", run_id, *stack)
    assert "Canary v2 at 10% of traffic (step 1 of 2: 10%, 100%)" in shown.stdout
    assert "0 requests (min 5: 5 more needed)" in shown.stdout

    # And `runs show --follow` follows the run to its end once traffic arrives, with the divergence test.
    generator = traffic(family).start()
    followed = mlops("runs", "show", run_id, "--follow", "--poll-seconds", "0.05", *stack)
    generator.stop()
    assert followed.exit_code == 0, followed.output
    assert "outcome promoted" in followed.stdout and "Canary v2 promoted (all traffic)" in followed.stdout
    assert "divergence: Fisher's exact p " in followed.stdout and "Cohen's h " in followed.stdout
    story = json.loads(mlops("runs", "show", run_id, "--json", *stack).stdout)
    canary = story["run"]["canary"]
    assert canary["ended"] == "promoted" and canary["weight"] == 100
    assert canary["last_check"]["divergence"]["test"] == "fisher_exact"
    assert canary["last_check"]["requests"] >= canary["min_requests"] == 5


def test_runs_show_follow_of_a_finished_run_tells_its_story_and_exits_by_outcome(platform, new_family, stack,
                                                                                 tmp_path):
    family = new_family()
    path = Path(tmp_path) / "first.csv"
    path.write_bytes(synthetic.credit_risk_csv(1500, 32))
    assert mlops("upload", str(path), "--family", family.name, "--follow", "--poll-seconds", "0.05",
                 *stack).exit_code == 0
    run_id = json.loads(mlops("runs", "--family", family.name, "--json", *stack).stdout)["runs"][0]["run_id"]
    shown = mlops("runs", "show", run_id, "--follow", *stack)
    assert shown.exit_code == 0 and "outcome promoted" in shown.stdout
