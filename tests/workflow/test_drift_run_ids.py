"""`mlops drift show --run` takes the id `mlops drift list` shows, and its report's key or file name."""

from __future__ import annotations

import json

import pytest

from mlops_local.cli import cli

from .operator_story import shared_story

pytestmark = pytest.mark.xdist_group("operator-story")


def mlops(*args: str):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_drift_show_accepts_the_listed_id_and_the_report_names(platform, stack):
    name = shared_story(platform)["name"]
    listed = json.loads(mlops("drift", "list", name, "--json", *stack).stdout)["runs"]
    older = listed[-1]
    stem = older["report_key"].rsplit("/", 1)[-1].removesuffix(".json")
    for given in (older["run"], stem, stem[:19], older["report_html_key"].rsplit("/", 1)[-1],
                  f"s3://{platform.bucket}/{older['report_key']}"):
        shown = mlops("drift", "show", name, "--run", given, "--json", *stack)
        assert shown.exit_code == 0, (given, shown.output)
        assert json.loads(shown.stdout)["summary"]["run"] == older["run"], given

    text = mlops("drift", "list", name, *stack)
    assert all(run["run"] in text.stdout for run in listed), "the whole id is printed, never cut"
