"""Artifacts on moto S3 and the training step: tamper detection, ONNX parity per algorithm, determinism."""

from __future__ import annotations

import boto3
import numpy as np
import pytest
from mlops.core.errors import ArtifactNotFoundError, DataSetError, IntegrityError
from mlops.data import synthetic
from mlops.registry.artifacts import ArtifactStore
from mlops.serving.scoring import ScoringModel
from mlops.training import steps

from .conftest import BUCKET

FAMILY = "credit-risk"


def _upload(key: str, body: bytes) -> dict:
    response = boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    return {"bucket": BUCKET, "key": key, "version_id": response["VersionId"]}


def test_artifact_round_trip_verifies_hash(platform):
    ref = platform.artifacts.put(b"model-bytes", "model/onnx")
    assert ref.key == f"models/sha256/{ref.sha256}"
    assert platform.artifacts.get_model(ref.sha256) == b"model-bytes"
    data = platform.artifacts.put(b"holdout-bytes", "holdout/npz")
    assert data.key == f"artifacts/sha256/{data.sha256}"
    assert platform.artifacts.get(data.sha256) == b"holdout-bytes"


def test_tampered_artifact_is_refused_with_integrity_error(platform):
    ref = platform.artifacts.put(b"original", "model/onnx")
    boto3.client("s3").put_object(Bucket=BUCKET, Key=ref.key, Body=b"tampered")
    with pytest.raises(IntegrityError, match=ref.sha256):
        platform.artifacts.get_model(ref.sha256)


def test_missing_artifact_is_a_named_error(platform):
    with pytest.raises(ArtifactNotFoundError):
        ArtifactStore(BUCKET).get("f" * 64)


@pytest.mark.parametrize("algorithm", ["logistic_regression", "random_forest", "hist_gradient_boosting"])
def test_onnx_probabilities_match_sklearn_on_holdout(platform, algorithm):
    family = synthetic.credit_risk_family(algorithm=algorithm,
                                          hyperparameters={"n_estimators": 30} if algorithm == "random_forest" else {})
    platform.registry.put_family(family)
    event = {"family": FAMILY, "dataset": _upload("datasets/credit-risk/a.csv", synthetic.credit_risk_csv(3000, 7))}
    event["train"] = steps.train_step(platform, event)
    holdout = steps.load_holdout(platform.artifacts, event["train"]["holdout"]["artifact_sha256"])
    model = ScoringModel(platform.artifacts.get_model(event["train"]["artifact"]["sha256"]))
    labels, proba = model.predict_matrix(holdout["X"])
    assert np.max(np.abs(proba - holdout["sklearn_proba"])) <= 1e-5
    assert (labels == holdout["sklearn_labels"]).all()
    # The pre-bound single-row path answers exactly as session.run on the same row, row after row (distinct
    # rows, so a stale buffer or a missed copy would show).
    assert model._binding is not None
    for i in range(200):
        row = holdout["X"][i:i + 1]
        one_labels, one_proba = model.predict_matrix(row)
        assert model.predict_lists(row) == (one_labels.tolist(), one_proba.tolist())
    evaluation = steps.evaluate_step(platform, event)
    assert evaluation["parity"]["ok"] and evaluation["gate"]["passed"], evaluation["gate"]


def test_training_is_deterministic_and_records_the_exact_data_version(platform):
    first = _upload("datasets/credit-risk/a.csv", synthetic.credit_risk_csv(1500, 3))
    _upload("datasets/credit-risk/a.csv", synthetic.credit_risk_csv(1500, 4))  # newer version, same key
    runs = [steps.train_step(platform, {"family": FAMILY, "dataset": first}) for _ in range(2)]
    assert runs[0]["artifact"]["sha256"] == runs[1]["artifact"]["sha256"]
    assert runs[0]["holdout"]["row_ids_sha256"] == runs[1]["holdout"]["row_ids_sha256"]
    assert runs[0]["dataset"]["version_id"] == first["version_id"]
    assert runs[0]["dataset"]["rows"] == 1500


def test_baseline_profile_has_bins_frequencies_and_predictions(platform):
    event = {"family": FAMILY, "dataset": _upload("datasets/credit-risk/a.csv", synthetic.credit_risk_csv(2000, 5))}
    profile = platform.artifacts.get_json(steps.train_step(platform, event)["baseline_profile"]["sha256"])
    income = profile["features"]["income"]
    assert len(income["psi_counts"]) == len(income["psi_edges"]) + 1 and sum(income["psi_counts"]) == income["n"]
    region = profile["features"]["region"]
    assert region["categories"] == list(synthetic.REGIONS) and sum(region["counts"]) == region["n"]
    assert sum(profile["prediction"]["psi_counts"]) == profile["prediction"]["n"]


def test_bad_data_set_fails_before_anything_is_stored(platform):
    event = {"family": FAMILY, "dataset": _upload("datasets/credit-risk/bad.csv", b"age,income\n1,2\n")}
    with pytest.raises(DataSetError, match="default"):
        steps.train_step(platform, event)
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="artifacts/")
    assert listed.get("KeyCount", 0) == 0
