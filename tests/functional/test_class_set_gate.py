"""A multiclass candidate whose classes differ from the live model's (a class dropped from the data, or renamed
"D" -> "d") is refused by the gate unless the family declares the new class list; the live comparison says on
which rows it was made (fresh-user pass on issue 17)."""

from __future__ import annotations

import boto3
import numpy as np
from mlops.data import synthetic
from mlops.registry.store import LIVE
from mlops.training import steps

from .conftest import BUCKET


def _upload(key: str, body: bytes) -> dict:
    response = boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    return {"bucket": BUCKET, "key": key, "version_id": response["VersionId"]}


def _grades(seed: int, rename: dict[str, str] | None = None, drop: str | None = None) -> bytes:
    columns = synthetic.credit_task_columns("multiclass_classification", 1500, seed)
    if rename:
        columns["grade"] = np.asarray([rename.get(g, g) for g in columns["grade"]])
    if drop:
        keep = columns["grade"] != drop
        columns = {name: values[keep] for name, values in columns.items()}
    return synthetic.to_csv(columns)


def _family(**overrides):
    return synthetic.risk_grade_family(name="grades", sensitive_attribute=None, **overrides)


def _run(platform, family, body: bytes, run_id: str) -> dict:
    platform.registry.put_family(family)
    event = {"family": family.name, "dataset": _upload(f"datasets/{family.name}/{run_id}.csv", body)}
    event["train"] = steps.train_step(platform, event)
    event["evaluation"] = steps.evaluate_step(platform, event)
    event["register"] = steps.register_step(platform, event, run_id)
    return event


def _live_v1(platform) -> None:
    first = _run(platform, _family(), _grades(1), "run-1")
    assert first["train"]["classes"] == ["A", "B", "C", "D"]
    platform.registry.transition("grades", first["register"]["version"], LIVE, "test", "first model")


def _check(gate: dict, name: str) -> dict:
    (check,) = [c for c in gate["checks"] if c["check"] == name]
    return check


def test_a_candidate_that_drops_or_renames_a_class_is_refused_by_the_gate(platform):
    _live_v1(platform)
    for run_id, body, change in (("run-2", _grades(2, drop="D"), "dropped ['D']"),
                                 ("run-3", _grades(3, rename={"D": "d"}), "dropped ['D']; added ['d']")):
        event = _run(platform, _family(), body, run_id)
        gate = event["evaluation"]["gate"]
        check = _check(gate, "classes_vs_live")
        assert not gate["passed"] and not check["passed"] and event["register"]["status"] == "rejected"
        assert f"differ from live v1's ['A', 'B', 'C', 'D'] ({change})" in check["detail"]
        assert "declare the new class list in the family's `classes`" in check["detail"]
        # The live model cannot score these rows into the same classes: its figure is its recorded one, said so.
        assert gate["live_basis"] == "recorded metrics"
        (vs_live,) = [c for c in gate["checks"] if c["check"].endswith("_vs_live") and c is not check]
        assert "as recorded at its training, on its own holdout" in vs_live["detail"]
        assert "on the same holdout" not in vs_live["detail"]


def test_a_declared_class_change_passes_the_class_check(platform):
    _live_v1(platform)
    event = _run(platform, _family(classes=["A", "B", "C", "d"]), _grades(3, rename={"D": "d"}), "run-2")
    check = _check(event["evaluation"]["gate"], "classes_vs_live")
    assert check["passed"] and check["value"] == "changed as declared"
    assert "the API's classes change on promotion" in check["detail"]


def test_unchanged_classes_are_compared_on_the_same_holdout(platform):
    _live_v1(platform)
    gate = _run(platform, _family(), _grades(2), "run-2")["evaluation"]["gate"]
    assert _check(gate, "classes_vs_live")["passed"]
    assert gate["live_basis"] == "candidate holdout"
    assert "on the same holdout" in _check(gate, "macro_auc_vs_live")["detail"]
