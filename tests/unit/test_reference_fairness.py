"""Fairness figures against fairlearn and textbook formulas, the group-size rule (tiny groups reported, not judged),
constant attributes, groups without favourable truths, and 20,000 groups through the evaluate step."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import orjson
import pytest
from fairlearn import metrics as fairlearn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlops.core.schemas import GatePolicy
from mlops.registry.artifacts import ArtifactStore, StoredObject, sha256_hex
from mlops.stats.fairness import (
    MAX_GROUPS_IN_STATE,
    fairness_checks,
    fairness_for_state,
    fairness_metrics,
    fairness_not_checked,
    fairness_notes,
)

SETTINGS = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
STATE_LIMIT = 256 * 1024


@st.composite
def holdouts(draw, max_rows: int = 300, max_groups: int = 6):
    rows = draw(st.integers(2, max_rows))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, draw(st.integers(1, max_groups)), rows).astype(str)
    y = (rng.random(rows) < draw(st.floats(0.0, 1.0))).astype(np.int64)
    labels = (rng.random(rows) < draw(st.floats(0.0, 1.0))).astype(np.int64)
    return y, labels, np.char.add("g", groups), draw(st.sampled_from([0, 1]))


def _textbook(y, labels, groups, favorable, min_size=1):
    """max - min of P(decision favourable | group) and of P(decision favourable | group, truly favourable), over
    groups whose rate rests on at least `min_size` rows, written out with Python lists."""
    selection, opportunity = [], []
    for g in sorted(set(groups.tolist())):
        members = [i for i in range(len(y)) if groups[i] == g]
        truly = [i for i in members if y[i] == favorable]
        if len(members) >= min_size:
            selection.append(sum(labels[i] == favorable for i in members) / len(members))
        if truly and len(truly) >= min_size:
            opportunity.append(sum(labels[i] == favorable for i in truly) / len(truly))
    def spread(rates):
        return max(rates) - min(rates) if len(rates) >= 2 else None

    return spread(selection), spread(opportunity)


@SETTINGS
@given(holdout=holdouts())
def test_parity_and_opportunity_equal_fairlearn_when_every_group_is_measured(holdout):
    y, labels, groups, favorable = holdout
    result = fairness_metrics(y, labels, groups, favorable, min_group_size=1)
    truly_everywhere = all((y[groups == g] == favorable).any() for g in np.unique(groups))
    if np.unique(groups).size < 2:
        assert result["demographic_parity_difference"] is None
        assert result["demographic_parity"]["status"] == "insufficient_data"
        return
    y_fav, decided_fav = (y == favorable).astype(int), (labels == favorable).astype(int)
    dp = fairlearn.demographic_parity_difference(y_fav, decided_fav, sensitive_features=groups)
    assert result["demographic_parity_difference"] == pytest.approx(dp, abs=1e-12)
    if truly_everywhere:
        eo = fairlearn.equal_opportunity_difference(y_fav, decided_fav, sensitive_features=groups)
        assert result["equal_opportunity_difference"] == pytest.approx(eo, abs=1e-12)


@SETTINGS
@given(holdout=holdouts(max_rows=400, max_groups=12), min_size=st.integers(1, 60))
def test_figures_equal_the_textbook_formulas_over_the_groups_large_enough(holdout, min_size):
    y, labels, groups, favorable = holdout
    result = fairness_metrics(y, labels, groups, favorable, min_group_size=min_size)
    dp, eo = _textbook(y, labels, groups, favorable, min_size)
    assert result["demographic_parity_difference"] == (None if dp is None else pytest.approx(dp, abs=1e-12))
    assert result["equal_opportunity_difference"] == (None if eo is None else pytest.approx(eo, abs=1e-12))
    assert sum(g["rows"] for g in result["groups"].values()) == len(y)
    assert result["small_groups"] == sum(g["rows"] < min_size for g in result["groups"].values())


@SETTINGS
@given(holdout=holdouts(max_rows=300, max_groups=3), tiny=st.lists(st.integers(1, 29), max_size=8),
       seed=st.integers(0, 1000))
def test_groups_under_the_minimum_size_never_change_the_figures(holdout, tiny, seed):
    y, labels, groups, favorable = holdout
    rng = np.random.default_rng(seed)
    extra = sum(tiny)
    more_groups = np.concatenate([groups, np.repeat([f"tiny{i}" for i in range(len(tiny))], tiny).astype(str)])
    more_y = np.concatenate([y, rng.integers(0, 2, extra)])
    more_labels = np.concatenate([labels, rng.integers(0, 2, extra)])
    before = fairness_metrics(y, labels, groups, favorable)
    after = fairness_metrics(more_y, more_labels, more_groups, favorable)
    for key in ("demographic_parity_difference", "equal_opportunity_difference"):
        assert after[key] == before[key]
    assert after["small_groups"] == before["small_groups"] + len(tiny)


def test_one_row_of_a_rare_group_no_longer_decides_the_gate():
    # Two groups of 500 with favourable rates 0.700 and 0.686 (parity 0.014), plus one row of a rare value whose
    # decision is unfavourable: taken at face value it made the parity difference 0.7 and rejected the model.
    y = np.zeros(1001, np.int64)
    labels = np.concatenate([np.repeat([0, 1], [350, 150]), np.repeat([0, 1], [343, 157]), [1]])
    groups = np.array(["A"] * 500 + ["B"] * 500 + ["rare"])
    result = fairness_metrics(y, labels, groups, favorable=0)
    assert result["demographic_parity_difference"] == pytest.approx(0.014)
    assert result["groups"]["rare"] == {"rows": 1, "favorable_rate": 0.0, "true_favorable_rows": 1,
                                        "true_favorable_rate": 0.0, "in_parity": False, "in_opportunity": False}
    checks = fairness_checks(GatePolicy(), result)
    assert all(c["passed"] for c in checks)
    assert "1 groups under 30 rows not compared" in checks[0]["detail"]
    naive = fairlearn.demographic_parity_difference(y, (labels == 0).astype(int), sensitive_features=groups)
    assert naive == pytest.approx(0.7)


def test_a_constant_sensitive_attribute_is_insufficient_data_not_a_pass_at_zero():
    rng = np.random.default_rng(4)
    result = fairness_metrics(rng.integers(0, 2, 500), rng.integers(0, 2, 500), np.array(["F"] * 500), 0)
    assert result["demographic_parity_difference"] is None and result["equal_opportunity_difference"] is None
    assert result["status"] == "insufficient_data"
    assert "one value in the holdout ('F')" in result["demographic_parity"]["reason"]
    checks = fairness_checks(GatePolicy(), result)
    assert [(c["value"], c["passed"], c["status"]) for c in checks] == [(None, True, "insufficient_data")] * 2
    assert "insufficient data" in checks[0]["detail"]
    assert len(fairness_notes(result)) == 2 and "one value" in fairness_notes(result)[0]


def test_fewer_than_two_groups_of_the_minimum_size_is_insufficient_data_with_the_sizes():
    groups = np.array(["A"] * 40 + ["B"] * 5 + ["C"] * 4)
    result = fairness_metrics(np.zeros(49, np.int64), np.zeros(49, np.int64), groups, 0)
    reason = result["demographic_parity"]["reason"]
    assert result["demographic_parity_difference"] is None
    assert "1 of 3 groups have at least 30 rows" in reason and "'A' 40, 'B' 5, 'C' 4" in reason


def test_a_group_without_favourable_truths_is_left_out_of_equal_opportunity_where_fairlearn_scores_it_zero():
    # Group B has 40 rows and no truly favourable one: its true favourable rate does not exist.
    y = np.concatenate([np.repeat([0, 1], [40, 10]), np.repeat([0, 1], [35, 5]), np.ones(40, np.int64)])
    labels = np.concatenate([np.repeat([0, 1], [36, 14]), np.repeat([0, 1], [31, 9]), np.zeros(40, np.int64)])
    groups = np.array(["A"] * 50 + ["C"] * 40 + ["B"] * 40)
    result = fairness_metrics(y, labels, groups, favorable=0)
    assert result["groups"]["B"]["true_favorable_rate"] is None and result["groups"]["B"]["true_favorable_rows"] == 0
    assert result["equal_opportunity_difference"] == pytest.approx(36 / 40 - 31 / 35)
    fairlearn_eo = fairlearn.equal_opportunity_difference((y == 0).astype(int), (labels == 0).astype(int),
                                                          sensitive_features=groups)
    assert fairlearn_eo == pytest.approx(36 / 40)  # B's rate scored 0: the gap is A's whole rate


def test_an_empty_holdout_is_insufficient_data():
    empty = np.array([], np.int64)
    result = fairness_metrics(empty, empty, np.array([], str), 0)
    assert result["demographic_parity"]["reason"] == "the holdout has no rows" and result["groups_total"] == 0


def test_mismatched_lengths_and_non_index_labels_are_refused():
    with pytest.raises(ValueError, match="one value per row"):
        fairness_metrics(np.zeros(3, np.int64), np.zeros(4, np.int64), np.array(["a"] * 3), 0)
    with pytest.raises(ValueError, match="class indices"):
        fairness_metrics(np.zeros(3, np.int64), np.array([0.2, 0.6, 0.9]), np.array(["a"] * 3), 0)


def test_checks_pass_or_fail_on_the_policy_maximum_and_a_family_without_attribute_has_none():
    y = np.zeros(200, np.int64)
    labels = np.concatenate([np.zeros(100, np.int64), np.repeat([0, 1], [60, 40])])
    result = fairness_metrics(y, labels, np.array(["A"] * 100 + ["B"] * 100), 0)
    checks = fairness_checks(GatePolicy(max_demographic_parity_difference=0.3,
                                        max_equal_opportunity_difference=0.5), result)
    assert [(c["check"], c["value"], c["passed"]) for c in checks] == [
        ("demographic_parity_difference", pytest.approx(0.4), False),
        ("equal_opportunity_difference", pytest.approx(0.4), True)]
    assert "highest 'A' 1.0000, lowest 'B' 0.6000" in checks[0]["detail"]
    unchecked = fairness_not_checked("the family declares no sensitive attribute")
    assert fairness_checks(GatePolicy(), unchecked) == []
    assert fairness_notes(unchecked) == ["fairness not checked: the family declares no sensitive attribute"]


def test_twenty_thousand_groups_keep_the_state_small_and_the_detail_whole():
    rng = np.random.default_rng(7)
    groups = np.concatenate([np.repeat(["large-1", "large-2"], 5_000), [f"g{i:05d}" for i in range(20_000)]])
    y, labels = rng.integers(0, 2, groups.size), rng.integers(0, 2, groups.size)
    full = fairness_metrics(y, labels, groups, 0)
    state = fairness_for_state(full, {"bucket": "b", "key": "k", "sha256": "0" * 64, "size": 1})
    assert full["groups_total"] == 20_002 and len(full["groups"]) == 20_002
    assert MAX_GROUPS_IN_STATE <= len(state["groups"]) <= MAX_GROUPS_IN_STATE + 4
    assert {"large-1", "large-2"} <= set(state["groups"])
    assert state["groups_omitted"] == 20_002 - len(state["groups"]) and state["small_groups"] == 20_000
    assert len(orjson.dumps(state)) < 32 * 1024


class MemoryObjects:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put(self, bucket, key, data, metadata, content_type):
        self.data[key] = data

    def get(self, bucket, key, version_id=None, max_bytes=None):
        data = self.data[key]
        return StoredObject(bucket, key, None, "etag", sha256_hex(data), data)


def test_evaluate_step_with_twenty_thousand_groups_stays_far_under_the_state_limit():
    from mlops.data.datasets import parse_dataset
    from mlops.data.synthetic import credit_risk_csv, credit_risk_family
    from mlops.serving.scoring import ScoringModel
    from mlops.training import fit, steps

    family = credit_risk_family(name="many-groups")
    train = parse_dataset(credit_risk_csv(1_500, 3), family)
    model = fit.train(family, train.X, train.y, classes=train.classes)
    holdout = parse_dataset(credit_risk_csv(20_400, 4), family)
    sensitive = np.concatenate([np.repeat(["F", "M"], 200), [f"id-{i}" for i in range(20_000)]])
    scored = ScoringModel(model.onnx_bytes)
    graph_labels, proba = scored.predict_matrix(holdout.X)
    store = ArtifactStore("bucket", MemoryObjects())
    onnx_ref = store.put(model.onnx_bytes, "model/onnx")
    holdout_ref = store.put(fit.holdout_bytes(holdout.X, holdout.y, sensitive, holdout.row_ids,
                                                   proba.astype(np.float64), graph_labels), "holdout/npz")
    registry = SimpleNamespace(get_family=lambda name: SimpleNamespace(family=family, live_version=0))
    ctx = steps.PipelineContext(artifacts=store, registry=registry, objects=store.objects)
    event = {"family": family.name, "train": {"holdout": {"artifact_sha256": holdout_ref.sha256},
                                              "artifact": {"sha256": onnx_ref.sha256},
                                              "training_positive_rate": float(train.y.mean())}}
    output = steps.evaluate_step(ctx, event)
    size = len(orjson.dumps(output))
    assert size < STATE_LIMIT / 4, size
    fairness = output["fairness"]
    assert fairness["groups_total"] == 20_002 and fairness["small_groups"] == 20_000
    assert fairness["demographic_parity"]["groups_compared"] == 2
    detail = orjson.loads(store.get(fairness["detail"]["sha256"]))
    assert len(detail["groups"]) == 20_002 and detail["groups"]["id-17"]["rows"] == 1
    assert any(c["check"] == "demographic_parity_difference" for c in output["gate"]["checks"])


@pytest.mark.parametrize(("classes", "favorable", "index"), [
    (["good", "bad"], "good", 0), (["no", "yes"], "yes", 1), (["0", "1"], 0, 0), ([0, 1], "1", 1),
    (["false", "true"], False, 0), (["1.0", "2.0"], 2, 1)])
def test_the_favourable_label_is_found_among_the_classes_in_the_targets_own_terms(classes, favorable, index):
    from mlops.data.synthetic import credit_risk_family
    from mlops.training.steps import _favorable_index

    assert _favorable_index(credit_risk_family(favorable_label=favorable), classes) == index


def test_a_favourable_label_that_is_not_a_class_is_a_configuration_error():
    from mlops.core.errors import ConfigurationError
    from mlops.data.synthetic import credit_risk_family
    from mlops.training.steps import _favorable_index

    with pytest.raises(ConfigurationError, match="favorable_label 'Good' is not one of the classes"):
        _favorable_index(credit_risk_family(favorable_label="Good"), ["good", "bad"])
