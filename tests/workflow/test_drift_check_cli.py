"""`mlops drift check FAMILY` runs a family's drift check on demand (locally nothing runs on a schedule) through
the platform's drift function, and the drift summaries show a multiclass model's predicted-class chi-square and
Cramér's V (fresh-user pass on issue 17)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mlops_local.cli import cli

from .test_task_families import MULTICLASS, task_family, upload


def mlops(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_drift_check_runs_the_check_now_and_shows_the_predicted_class_test(platform, traffic, stack):
    family = task_family(platform, MULTICLASS)
    output, described = upload(platform, family, "v1.csv", 400, 11)
    assert output["outcome"] == "promoted", described
    before = len(platform.registry.drift_records(family.name))
    traffic(family).send(100, "drifted")
    platform.flush_captures()

    checked = mlops("drift", "check", family.name, *stack)
    assert checked.exit_code == 1, checked.output  # drift confirmed
    assert len(platform.registry.drift_records(family.name)) == before + 1
    assert f"{family.name} drift check" in checked.output and "drift" in checked.output
    assert "predicted classes: chi-square p" in checked.output and "Cramér's V" in checked.output

    listed = json.loads(mlops("drift", "list", family.name, "--json", *stack).stdout)
    (run,) = listed["runs"][:1]
    assert run["prediction_drift"].startswith("predicted classes: chi-square p")
    assert run["prediction"]["kind"] == "categorical" and run["prediction"]["status"] == "checked"

    again = json.loads(mlops("drift", "check", family.name, "--json", *stack).stdout)
    # Only the traffic since the last check, and there is none: nothing judged, nothing recorded.
    assert again["summary"]["verdict"] == "no_traffic" and again["report"] is None
    assert len(platform.registry.drift_records(family.name)) == before + 1
    idle = mlops("drift", "check", family.name, *stack)
    assert idle.exit_code == 0 and "no captured traffic since" in idle.output


def test_drift_check_refuses_an_unknown_family_or_one_without_a_live_model(platform, stack):
    unknown = mlops("drift", "check", "no-such-family", *stack)
    assert unknown.exit_code == 2 and "unknown model family 'no-such-family'" in unknown.output
    family = task_family(platform, MULTICLASS)
    empty = mlops("drift", "check", family.name, *stack)
    assert empty.exit_code == 2 and "has no live model" in empty.output
