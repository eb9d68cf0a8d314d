"""`mlops reproduce`: a registered version trained again from its lineage alone gives the identical artifact
(sha256) for every algorithm; a lineage that no longer matches, or a data set version that is gone, is reported
with what differs."""

from __future__ import annotations

import json

import boto3
import pytest

from mlops_local.cli import cli

from .conftest import live_model


def mlops(*args: str):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.slow  # about 20-55 s each under load: run by `make test-slow` (CI runs both)
@pytest.mark.parametrize("algorithm", ["logistic_regression", "random_forest", "hist_gradient_boosting"])
def test_reproduce_trains_the_identical_artifact_from_lineage(platform, new_family, stack, algorithm):
    family = new_family(algorithm=algorithm,
                        hyperparameters={"n_estimators": 40} if algorithm == "random_forest" else {})
    live_model(platform, family, rows=1500, seed=3)
    lineage = platform.registry.get_version(family.name, 1).lineage

    result = mlops("reproduce", family.name, "1", "--json", *stack)

    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["identical"] is True and payload["differences"] == []
    assert payload["artifact"]["recorded"] == payload["artifact"]["reproduced"] == lineage["artifact_sha256"]
    checks = {c["check"]: c for c in payload["checks"]}
    for name in ("family configuration", "data set sha256", "hyperparameters", "holdout rows", "baseline profile",
                 "library scikit-learn", "code revision"):
        assert checks[name]["same"], checks[name]
    assert checks["data set sha256"]["recorded"] == lineage["dataset"]["sha256"]


def test_reproduce_says_what_differs_when_the_lineage_no_longer_matches(platform, new_family, stack):
    family = new_family()
    live_model(platform, family, rows=1500, seed=4)
    # A record that lies about the seed: training again with it gives another holdout and other coefficients.
    platform.registry.update_lineage(family.name, 1, {"seed": 7})

    result = mlops("reproduce", family.name, "1", "--json", *stack)

    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert payload["identical"] is False
    assert payload["artifact"]["recorded"] != payload["artifact"]["reproduced"]
    assert any("LinearClassifier" in d and "attribute coefficients" in d and "values differ, largest by" in d
               for d in payload["differences"]), payload["differences"]
    checks = {c["check"]: c for c in payload["checks"]}
    assert not checks["holdout rows"]["same"] and checks["data set sha256"]["same"]
    assert payload["predictions"]["rows"] == 300 and payload["predictions"]["max_abs_probability_difference"] > 0
    text = mlops("reproduce", family.name, "1", *stack)
    assert text.exit_code == 1 and "not reproduced" in text.stdout and "differs:" in text.stdout


def test_reproduce_fails_clearly_when_the_data_set_version_is_gone_or_the_version_is_unknown(
        platform, new_family, stack):
    family = new_family()
    live_model(platform, family, rows=1500, seed=6)
    dataset = platform.registry.get_version(family.name, 1).lineage["dataset"]
    boto3.client("s3").delete_object(Bucket=dataset["bucket"], Key=dataset["key"], VersionId=dataset["version_id"])

    gone = mlops("reproduce", family.name, "1", *stack)
    assert gone.exit_code == 1 and "cannot be read" in gone.output and dataset["version_id"] in gone.output

    unknown = mlops("reproduce", family.name, "5", *stack)
    assert unknown.exit_code == 2 and "no version 5" in unknown.output
