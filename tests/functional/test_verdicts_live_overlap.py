"""The gate compares a candidate with the live model only on holdout rows the live model did not train on: an
upload that is the old data plus new rows puts the live model's own training rows into the candidate's holdout,
where it looks better than it is (fresh-user pass on issues 10 and 11, HIGH 1)."""

from __future__ import annotations

import boto3
import numpy as np
from mlops.data import synthetic
from mlops.data.fingerprints import fingerprint_set, row_fingerprints, seen_in
from mlops.registry.store import LIVE
from mlops.serving.scoring import ScoringModel
from mlops.stats.metrics import roc_auc
from mlops.training import steps

from .conftest import BUCKET


def _family(**gate):
    # A forest fits its training rows far better than new ones: the flattering overlap shows plainly.
    return synthetic.credit_risk_family(name="overlap", algorithm="random_forest", sensitive_attribute=None,
                                        hyperparameters={"max_depth": 14, "min_samples_leaf": 1},
                                        gate={"min_auc_margin": -0.02, "min_auc": 0.5, "min_lift_over_trivial": 0.0,
                                              **gate})


def _columns(rows: int, seed: int) -> dict[str, np.ndarray]:
    return synthetic.credit_risk_columns(rows, seed, label_noise=0.3)


def _run(platform, family, columns: dict[str, np.ndarray], run_id: str, *, fingerprints: bool = True) -> dict:
    platform.registry.put_family(family)
    key = f"datasets/{family.name}/{run_id}.csv"
    response = boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=synthetic.to_csv(columns))
    event = {"family": family.name, "dataset": {"bucket": BUCKET, "key": key, "version_id": response["VersionId"]}}
    event["train"] = steps.train_step(platform, event)
    if not fingerprints:  # a version trained before training-row fingerprints were recorded
        event["train"].pop("training_fingerprints")
    event["evaluation"] = steps.evaluate_step(platform, event)
    event["register"] = steps.register_step(platform, event, run_id)
    return event


def _superset_after_live_v1(platform, family, *, fingerprints: bool = True) -> tuple[dict, dict]:
    old = _columns(2500, 1)
    first = _run(platform, family, old, "run-1", fingerprints=fingerprints)
    assert first["evaluation"]["gate"]["passed"], first["evaluation"]["gate"]["reasons"]
    platform.registry.transition(family.name, first["register"]["version"], LIVE, "test", "first model")
    new = _columns(2500, 2)
    both = {name: np.concatenate([old[name], new[name]]) for name in old}
    return first, _run(platform, family, both, "run-2")


def _check(gate: dict, name: str) -> dict:
    (check,) = [c for c in gate["checks"] if c["check"] == name]
    return check


def test_superset_upload_is_compared_on_rows_live_did_not_train_on(platform):
    family = _family()
    first, second = _superset_after_live_v1(platform, family)
    gate = second["evaluation"]["gate"]
    comparison = gate["live_comparison"]
    holdout = steps.load_holdout(platform.artifacts, second["train"]["holdout"]["artifact_sha256"])
    # What the old gate did: the live model scored on the whole holdout, a third of it rows it learned.
    live = ScoringModel(platform.artifacts.get_model(first["train"]["artifact"]["sha256"]))
    candidate = ScoringModel(platform.artifacts.get_model(second["train"]["artifact"]["sha256"]))
    y = holdout["y"]
    biased_margin = roc_auc(y, candidate.predict_matrix(holdout["X"])[1][:, 1]) - \
        roc_auc(y, live.predict_matrix(holdout["X"])[1][:, 1])
    seen = seen_in(row_fingerprints(family, holdout["X"], y, second["train"]["classes"]),
                   fingerprint_set(platform.artifacts.get(first["train"]["training_fingerprints"]["sha256"])))
    fair_margin = roc_auc(y[~seen], candidate.predict_matrix(holdout["X"][~seen])[1][:, 1]) - \
        roc_auc(y[~seen], live.predict_matrix(holdout["X"][~seen])[1][:, 1])
    assert biased_margin < -0.05, "the overlap flatters the live model enough to reject an equal candidate"
    assert fair_margin > -0.02
    assert comparison["overlap"] == "checked" and comparison["judged"]
    assert comparison["excluded_seen_by_live"] == int(seen.sum()) > 300
    assert comparison["compared_rows"] + comparison["excluded_seen_by_live"] == comparison["holdout_rows"] == y.size
    check = _check(gate, "auc_vs_live")
    assert check["passed"] and check["value"] == round(fair_margin, 6), check
    assert f"on the {comparison['compared_rows']} holdout rows it did not train on" in check["detail"]
    assert "DeLong p = " in check["detail"] and 0.0 <= comparison["delong"]["p_value"] <= 1.0
    assert second["register"]["status"] != "rejected"


def test_too_few_unseen_rows_leave_the_comparison_not_judged_never_a_silent_verdict(platform):
    _, second = _superset_after_live_v1(platform, _family(min_comparison_rows=5000))
    gate = second["evaluation"]["gate"]
    check = _check(gate, "auc_vs_live")
    assert check["status"] == "not_judged" and check["value"] is None and check["passed"]
    assert "not judged: only" in check["detail"] and "gate.min_comparison_rows" in check["detail"]
    assert gate["live_comparison"]["judged"] is False
    assert any("was not judged" in note for note in gate["notes"])


def test_live_version_without_fingerprints_is_compared_as_before_and_flagged(platform):
    _, second = _superset_after_live_v1(platform, _family(), fingerprints=False)
    gate = second["evaluation"]["gate"]
    assert gate["live_comparison"]["overlap"] == "unknown"
    assert gate["live_comparison"]["excluded_seen_by_live"] is None
    assert "overlap unknown" in _check(gate, "auc_vs_live")["detail"]
    assert any("overlap unknown" in note for note in gate["notes"])


def test_fingerprints_do_not_depend_on_category_order_and_see_every_value():
    family = synthetic.credit_risk_family()
    columns = _columns(200, 3)
    from mlops.data.datasets import parse_csv

    data = parse_csv(synthetic.to_csv(columns), family)
    prints = row_fingerprints(family, data.X, data.y, data.classes)
    reordered = family.model_copy(update={"features": tuple(
        f.model_copy(update={"categories": tuple(reversed(f.categories))}) if f.kind == "categorical" else f
        for f in family.features)})
    again = parse_csv(synthetic.to_csv(columns), reordered)
    assert (row_fingerprints(reordered, again.X, again.y, again.classes) == prints).all()
    changed = data.X.copy()
    changed[7, 1] += 100.0
    assert (row_fingerprints(family, changed, data.y, data.classes) != prints).sum() == 1
    flipped = data.y.copy()
    flipped[3] = 1 - flipped[3]
    assert (row_fingerprints(family, data.X, flipped, data.classes) != prints).sum() == 1
