"""A data set whose labels are inverted (or recoded) is refused by the gate: the live model scores far below its
own holdout AUC on the new data, a signal the canary cannot see when the classes are balanced (an inverted model
predicts the positive class as often) (fresh-user pass on issue 12, HIGH 1)."""

from __future__ import annotations

import numpy as np
from mlops.registry.store import LIVE

from .test_verdicts_live_overlap import _check, _columns, _family, _run


def _flipped(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    flipped = dict(columns)
    flipped["default"] = 1 - np.asarray(columns["default"])
    return flipped


def test_a_data_set_with_inverted_labels_is_rejected_naming_the_disagreement(platform):
    family = _family(min_auc_margin=-0.5)  # the margin alone would let it through
    first = _run(platform, family, _columns(3000, 1), "run-1")
    platform.registry.transition(family.name, first["register"]["version"], LIVE, "test", "first model")
    second = _run(platform, family, _flipped(_columns(3000, 2)), "run-2")
    gate = second["evaluation"]["gate"]
    check = _check(gate, "labels_agree_with_live")
    assert not gate["passed"] and not check["passed"] and check["value"] < 0.5
    assert "disagree with it wholesale" in check["detail"]


def test_new_data_from_the_same_population_agrees_and_the_check_can_be_turned_off(platform):
    family = _family(min_auc_margin=-0.5)
    first = _run(platform, family, _columns(3000, 1), "run-1")
    platform.registry.transition(family.name, first["register"]["version"], LIVE, "test", "first model")
    same = _run(platform, family, _columns(3000, 3), "run-2")
    assert _check(same["evaluation"]["gate"], "labels_agree_with_live")["passed"]
    off = _family(min_auc_margin=-0.5, min_live_auc_on_new_data=None)
    flipped = _run(platform, off, _flipped(_columns(3000, 4)), "run-3")
    assert not [c for c in flipped["evaluation"]["gate"]["checks"] if c["check"] == "labels_agree_with_live"]
