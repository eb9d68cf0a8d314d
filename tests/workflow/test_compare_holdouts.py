"""`mlops compare` says when two versions' metrics were computed on different holdouts, and shows the figure that
compares them on the same rows (the gate's re-scoring of the live model on the candidate's holdout)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlops.registry.artifacts import ArtifactStore, S3ObjectStore
from mlops.serving.scoring import ScoringModel
from mlops.training.steps import load_holdout
from sklearn.metrics import roc_auc_score

from mlops_local.cli import cli

from .operator_story import shared_story

pytestmark = pytest.mark.xdist_group("operator-story")


@pytest.fixture()
def story(platform):
    return shared_story(platform)


def mlops(*args: str):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _rescored_auc(platform, name: str, model_version: int, holdout_version: int) -> float:
    """Reference: `model_version`'s artifact scored by onnxruntime on `holdout_version`'s stored holdout, AUC by
    scikit-learn."""
    artifacts = ArtifactStore(platform.bucket, S3ObjectStore())
    model = platform.registry.get_version(name, model_version)
    holdout = load_holdout(artifacts, platform.registry.get_version(name, holdout_version)
                           .lineage["holdout"]["artifact_sha256"])
    _, proba = ScoringModel(artifacts.get_model(model.artifact_sha256)).predict_matrix(holdout["X"])
    return float(roc_auc_score(holdout["y"], np.asarray(proba)[:, 1]))


def test_metrics_on_different_holdouts_are_footnoted_and_the_gates_same_rows_figure_is_shown(platform, story,
                                                                                             stack):
    name = story["name"]
    result = mlops("compare", name, "1", "2", "--json", *stack)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["holdouts"]["same"] is False
    assert {r["basis"] for r in body["rows"] if r["section"] == "metrics" and "holdout" not in r["field"]} == \
        {"own holdouts"}
    [figure] = body["comparable"]
    assert (figure["metric"], figure["version"], figure["holdout_of"]) == ("auc", 1, 2)
    assert figure["value"] == pytest.approx(_rescored_auc(platform, name, 1, 2), abs=1e-5)
    assert figure["candidate"] == platform.registry.get_version(name, 2).lineage["metrics"]["auc"]
    row = next(r for r in body["rows"] if r["field"] == "auc on v2's holdout")
    assert (row["a"], row["b"], row["basis"]) == (figure["value"], figure["candidate"], "gate: same holdout")

    text = mlops("compare", name, "1", "2", *stack)
    assert text.exit_code == 0, text.output
    assert "auc (1)" in text.stdout and "auc on v2's holdout (2)" in text.stdout
    assert "(1) Holdout metrics computed on different holdouts" in text.stdout
    assert "(2) The comparable figure: the gate of v2 re-scored v1 on v2's holdout" in text.stdout


def test_versions_no_gate_compared_say_no_figure_compares_them(platform, story, stack):
    name = story["name"]
    body = json.loads(mlops("compare", name, "1", "3", "--json", *stack).stdout)
    assert body["comparable"] == [] and body["holdouts"]["same"] is False
    text = mlops("compare", name, "1", "3", *stack).stdout
    assert "no figure compares them on the same rows" in text


def test_the_later_version_may_be_named_first(platform, story, stack):
    name = story["name"]
    body = json.loads(mlops("compare", name, "3", "2", "--json", *stack).stdout)
    [figure] = body["comparable"]
    assert (figure["version"], figure["holdout_of"]) == (2, 3)
    row = next(r for r in body["rows"] if r["field"] == "auc on v3's holdout")
    assert (row["a"], row["b"]) == (figure["candidate"], figure["value"]), "columns stay v3 then v2"
    assert figure["value"] == pytest.approx(_rescored_auc(platform, name, 2, 3), abs=1e-5)


def test_console_compare_page_carries_the_same_notes(platform, story):
    from mlops_local.console import for_local

    status, page, _ = for_local(platform).handle("GET", f"/console/families/{story['name']}/compare?a=1&b=2")
    assert status == 200
    assert "computed on different holdouts" in page and "The comparable figure" in page
