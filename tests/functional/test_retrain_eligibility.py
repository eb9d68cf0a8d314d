"""A drift or performance retrain picks a data set only when training on it could give a model the family does not
already have (fresh-user pass: turning on auto_retrain retrained a byte-identical model, canaried it, and its
rollback for too little traffic then made the live model's own data set "unusable"):
- the live model's data set is usable again only after a training-relevant change of the declaration
  (mlops.core.declarations), never after a drift, canary or other policy change, and older uploads are never used;
- a canary rolled back for too little traffic is no verdict: its data set stays usable, but not to reproduce that
  version under the same training-relevant declaration; rollbacks on a verdict keep ruling it out;
- the registry finds the version a trained ONNX artifact is identical to (the pipeline's `unchanged` outcome)."""

from __future__ import annotations

import boto3
from mlops.data.synthetic import credit_risk_family
from mlops.registry.runs import check_identical_model
from mlops.registry.store import (
    CANARY,
    LIVE,
    RETIRED,
    ROLLBACK_INSUFFICIENT_TRAFFIC,
    ROLLBACK_MISBEHAVED,
    ROLLED_BACK,
)

from .conftest import BUCKET
from .test_drift_retrain_dataset import FAMILY, monitor, state_machine, uploads  # noqa: F401

IDLE_REASON = "not enough canary traffic to judge after 1 bake windows (0 requests, 0 captured canary and 0 live " \
              "predictions; 50 needed)"


def _apply(platform, **overrides):
    """`mlops families apply`: the family's next declaration (a new config version)."""
    return platform.registry.register_family(credit_risk_family(name=FAMILY, **overrides), "t", "apply").record


def _ident(filename: str) -> dict:
    key = f"datasets/{FAMILY}/{filename}"
    version_id = boto3.client("s3").list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"][0]["VersionId"]
    return {"bucket": BUCKET, "key": key, "version_id": version_id}


def _version(platform, filename: str, sha: str, config_version: int | None = None) -> int:
    """A candidate trained on `filename` under `config_version` (default: the current one)."""
    record = platform.registry.get_family(FAMILY)
    lineage = {"dataset": _ident(filename), "artifact_sha256": sha * 64,
               "family_config_version": record.config_version if config_version is None else config_version}
    return platform.registry.allocate_version(FAMILY, lineage, actor="t").version


def _live(platform, filename: str, config_version: int | None = None) -> int:
    version = _version(platform, filename, "a", config_version)
    platform.registry.transition(FAMILY, version, LIVE, "t", "first")
    return version


def _canary_rolled_back(platform, filename: str, sha: str, cause: str) -> int:
    version = _version(platform, filename, sha)
    platform.registry.transition(FAMILY, version, CANARY, "pipeline:run", "canary at 10%")
    platform.registry.transition(FAMILY, version, ROLLED_BACK, "pipeline:run", "canary: ...", cause=cause)
    return version


def _retrain(monitor, platform):  # noqa: F811
    return monitor._maybe_retrain(platform.registry.get_family(FAMILY), {"verdict": "drift"})


def test_turning_on_auto_retrain_and_changing_the_canary_does_not_retrain_the_live_models_data_set(
        platform, monitor, uploads):  # noqa: F811
    # The reported case: v1 live on fam_b.csv, then `families apply` with only drift.auto_retrain and canary changed.
    _apply(platform)
    uploads("fam_b.csv", "promoted")
    live = _live(platform, "fam_b.csv")
    _apply(platform, drift={"auto_retrain": True}, canary={"max_idle_windows": 1, "min_requests": 50})
    retrain = _retrain(monitor, platform)
    assert retrain["started"] is False, retrain
    assert retrain["reason"] == (
        f"no usable data set under datasets/{FAMILY}/: no data set newer than live v{live}'s is usable, and no "
        "training-relevant part of the declaration changed since it was trained (config version 1 -> 2, changed: "
        f"canary, drift; none training-relevant): a retrain would reproduce v{live}; upload newer data, or change "
        "what training uses (features, target, algorithm, hyperparameters...); considered: "
        f"datasets/{FAMILY}/fam_b.csv (version {_ident('fam_b.csv')['version_id']}): the live model v{live} was "
        "trained on it")
    assert not boto3.client("stepfunctions").list_executions(
        stateMachineArn=monitor.retrainer.state_machine_arn)["executions"]


def test_a_training_relevant_change_makes_the_live_models_data_set_usable(platform, monitor, uploads):  # noqa: F811
    _apply(platform, drift={"auto_retrain": True})
    uploads("fam_b.csv", "promoted")
    _live(platform, "fam_b.csv")
    _apply(platform, drift={"auto_retrain": True}, hyperparameters={"C": 0.5})
    retrain = _retrain(monitor, platform)
    assert retrain["started"] is True and retrain["dataset"]["key"] == f"datasets/{FAMILY}/fam_b.csv"


def test_a_live_model_whose_declaration_is_unknown_may_be_retrained_on_its_data_set(
        platform, monitor, uploads):  # noqa: F811
    # Trained before declarations were versioned (config version 0): nothing says the retrain would reproduce it.
    _apply(platform, drift={"auto_retrain": True})
    uploads("fam_b.csv", "promoted")
    _live(platform, "fam_b.csv", config_version=0)
    assert monitor.newest_dataset(FAMILY, platform.registry.get_family(FAMILY))["key"] == \
        f"datasets/{FAMILY}/fam_b.csv"


def test_uploads_older_than_the_live_models_data_set_are_not_considered(platform, monitor, uploads):  # noqa: F811
    _apply(platform, drift={"auto_retrain": True})
    uploads("older.csv", "promoted")
    uploads("live.csv", "promoted")
    live = _live(platform, "live.csv")
    _canary_rolled_back(platform, "live.csv", "b", ROLLBACK_MISBEHAVED)  # a retrain on it misbehaved
    _apply(platform, drift={"auto_retrain": True}, hyperparameters={"C": 0.5})
    skipped: list[str] = []
    assert monitor.newest_dataset(FAMILY, platform.registry.get_family(FAMILY), skipped) is None
    assert skipped == [f"datasets/{FAMILY}/live.csv (version {_ident('live.csv')['version_id']}): a model trained "
                       "on it (v2) was later rolled back"]
    assert f"no usable data set: none newer than live v{live}'s, and that one is passed over" in \
        _retrain(monitor, platform)["reason"]


def test_a_canary_rolled_back_for_too_little_traffic_does_not_mark_its_data_set_unusable(platform, uploads):  # noqa: F811
    _apply(platform)
    uploads("idle.csv", "promoted")
    uploads("bad.csv", "promoted")
    registry = platform.registry
    _live(platform, "idle.csv")
    idle = _canary_rolled_back(platform, "idle.csv", "b", ROLLBACK_INSUFFICIENT_TRAFFIC)
    bad = _canary_rolled_back(platform, "bad.csv", "c", ROLLBACK_MISBEHAVED)
    ident = _ident("idle.csv")
    assert registry.dataset_unusable(FAMILY, ident["key"], ident["version_id"]) is None
    assert registry.dataset_unjudged(FAMILY, ident["key"], ident["version_id"])["version"] == idle
    # A verdict (errors, latency, diverging predictions) still marks it, as an operator's rollback does.
    ident = _ident("bad.csv")
    assert registry.dataset_unusable(FAMILY, ident["key"], ident["version_id"])["version"] == bad
    assert registry.dataset_unjudged(FAMILY, ident["key"], ident["version_id"]) is None


def test_a_data_set_whose_canary_lacked_traffic_is_not_retrained_into_the_same_model_until_training_changes(
        platform, monitor, uploads):  # noqa: F811
    _apply(platform, drift={"auto_retrain": True})
    uploads("live.csv", "promoted")
    _live(platform, "live.csv")
    # new.csv's upload run trained v2, whose canary got no traffic: the run ended rolled_back, no verdict.
    run_id = uploads("new.csv", "started")
    platform.registry.record_run(FAMILY, run_id, "rolled_back", {"canary_cause": ROLLBACK_INSUFFICIENT_TRAFFIC,
                                                                  "canary_reasons": [IDLE_REASON]},
                                 step="Rollback", reason="canary: " + IDLE_REASON)
    idle = _canary_rolled_back(platform, "new.csv", "b", ROLLBACK_INSUFFICIENT_TRAFFIC)
    skipped: list[str] = []
    assert monitor.newest_dataset(FAMILY, platform.registry.get_family(FAMILY), skipped) is None
    assert skipped[0] == (
        f"datasets/{FAMILY}/new.csv (version {_ident('new.csv')['version_id']}): v{idle} was trained on it and no "
        "training-relevant part of the declaration changed since (config version 1, unchanged): a retrain would "
        f"reproduce v{idle}, whose canary was rolled back for too little traffic, not for what it did (an operator "
        f"can still promote it: mlops promote {FAMILY} {idle} --reason ...)")
    # A policy change is still no reason to train it again; a training-relevant one is.
    _apply(platform, drift={"auto_retrain": True, "min_samples": 100})
    assert monitor.newest_dataset(FAMILY, platform.registry.get_family(FAMILY)) is None
    _apply(platform, drift={"auto_retrain": True}, hyperparameters={"C": 0.5})
    chosen = monitor.newest_dataset(FAMILY, platform.registry.get_family(FAMILY))
    assert chosen["key"] == f"datasets/{FAMILY}/new.csv" and chosen["run_id"] == run_id


def test_after_a_drift_retrain_of_the_live_data_set_lacked_traffic_the_data_set_is_not_called_rolled_back(
        platform, monitor, uploads):  # noqa: F811
    # The reported aftermath: a retrain on the live model's data set rolled back for "not enough canary traffic"
    # made the next check say "a model trained on it was later rolled back" about the live model's data set.
    _apply(platform, drift={"auto_retrain": True})
    uploads("fam_b.csv", "promoted")
    live = _live(platform, "fam_b.csv")
    _apply(platform, drift={"auto_retrain": True}, hyperparameters={"C": 0.5})
    retrained = _canary_rolled_back(platform, "fam_b.csv", "b", ROLLBACK_INSUFFICIENT_TRAFFIC)
    reason = _retrain(monitor, platform)["reason"]
    assert "later rolled back" not in reason
    assert (f"fam_b.csv (version {_ident('fam_b.csv')['version_id']}): v{retrained} was trained on it and no "
            "training-relevant part of the declaration changed since (config version 2, unchanged)") in reason
    assert f"no usable data set: none newer than live v{live}'s" in reason


def test_a_rollback_marker_written_for_too_little_traffic_before_the_fix_is_read_as_no_verdict(
        platform, monitor, uploads):  # noqa: F811
    # Before the fix such a rollback wrote the unusable marker, then the lineage's canary_result said why.
    _apply(platform, drift={"auto_retrain": True})
    uploads("live.csv", "promoted")
    _live(platform, "live.csv")
    uploads("new.csv", "promoted")
    old = _version(platform, "new.csv", "b")
    platform.registry.transition(FAMILY, old, CANARY, "pipeline:run", "canary at 10%")
    platform.registry.transition(FAMILY, old, ROLLED_BACK, "pipeline:run", "canary: " + IDLE_REASON)
    platform.registry.update_lineage(FAMILY, old, {"canary_result": {
        "decision": "rollback", "reasons": [IDLE_REASON], "cause": ROLLBACK_INSUFFICIENT_TRAFFIC}})
    ident = _ident("new.csv")
    assert platform.registry.dataset_unusable(FAMILY, ident["key"], ident["version_id"]) is not None
    skipped: list[str] = []
    assert monitor.newest_dataset(FAMILY, platform.registry.get_family(FAMILY), skipped) is None
    assert f"v{old} was trained on it and no training-relevant part" in skipped[0]
    _apply(platform, drift={"auto_retrain": True}, hyperparameters={"C": 0.5})
    assert monitor.newest_dataset(FAMILY, platform.registry.get_family(FAMILY))["key"] == ident["key"]


def test_a_verdict_rollback_rules_the_data_set_out_even_after_a_training_change(
        platform, monitor, uploads):  # noqa: F811
    _apply(platform, drift={"auto_retrain": True})
    uploads("live.csv", "promoted")
    _live(platform, "live.csv")
    uploads("new.csv", "promoted")
    bad = _canary_rolled_back(platform, "new.csv", "b", ROLLBACK_MISBEHAVED)
    _apply(platform, drift={"auto_retrain": True}, hyperparameters={"C": 0.5})
    skipped: list[str] = []
    chosen = monitor.newest_dataset(FAMILY, platform.registry.get_family(FAMILY), skipped)
    assert skipped[0].endswith(f"a model trained on it (v{bad}) was later rolled back")
    assert chosen["key"] == f"datasets/{FAMILY}/live.csv"  # the live model's, after the training change


def test_an_upload_whose_run_ended_unchanged_is_not_retrained(platform, monitor, uploads):  # noqa: F811
    _apply(platform, drift={"auto_retrain": True})
    uploads("older.csv", "promoted")
    uploads("same.csv", "unchanged")
    skipped: list[str] = []
    assert monitor.newest_dataset(FAMILY, platform.registry.get_family(FAMILY), skipped)["key"] == \
        f"datasets/{FAMILY}/older.csv"
    assert skipped[0].endswith("its run ended unchanged")


def test_the_registry_finds_the_version_an_artifact_is_identical_to(platform):
    registry = platform.registry
    family = "credit-risk"
    first = registry.allocate_version(family, {"artifact_sha256": "a" * 64, "dataset": {}}, actor="t").version
    registry.transition(family, first, LIVE, "t", "first")
    second = registry.allocate_version(family, {"artifact_sha256": "b" * 64, "dataset": {}}, actor="t").version
    registry.transition(family, second, CANARY, "t", "canary")
    registry.transition(family, second, LIVE, "t", "promoted")
    assert registry.get_version(family, first).status == RETIRED
    # Any version, whatever its status, by one index item.
    assert registry.version_with_artifact(family, "a" * 64).version == first
    assert registry.version_with_artifact(family, "b" * 64).version == second
    assert registry.version_with_artifact(family, "c" * 64) is None
    drift = {"trigger": {"source": "drift"}}
    found = check_identical_model(registry, family, {"artifact": {"sha256": "a" * 64}}, drift)
    assert found == {"identical_to": {"version": first, "status": RETIRED, "artifact_sha256": "a" * 64}}
    assert check_identical_model(registry, family, {"artifact": {"sha256": "a" * 64}}, {"trigger": {}}) == found
    assert check_identical_model(registry, family, {"artifact": {"sha256": "c" * 64}}, drift) is None
    # A code rollout retrains the live model on purpose: the same artifact on new scoring code.
    assert check_identical_model(registry, family, {"artifact": {"sha256": "b" * 64}},
                                 {"trigger": {"source": "code"}}) is None
    # A live version registered before the index existed is still found (compared directly).
    boto3.client("dynamodb").delete_item(TableName=platform.registry.table,
                                         Key={"PK": {"S": f"FAMILY#{family}"}, "SK": {"S": "ARTIFACT#" + "b" * 64}})
    assert registry.version_with_artifact(family, "b" * 64).version == second


def test_an_upload_refused_because_the_family_stayed_busy_is_retrained_on(platform, monitor, uploads):  # noqa: F811
    """A refused upload never trained (the family's lock stayed held): it is the newest data its owners supplied,
    not a verdict on it, so a retrain uses it instead of passing over it."""
    _apply(platform, drift={"auto_retrain": True})
    uploads("older.csv", "promoted")
    uploads("busy.csv", "refused")
    assert monitor.newest_dataset(FAMILY, platform.registry.get_family(FAMILY))["key"] == f"datasets/{FAMILY}/busy.csv"


def test_undoing_a_training_change_does_not_retrain_into_an_earlier_version(platform, monitor, uploads):  # noqa: F811
    """Second fresh-user pass: v1 trained on d1 under config 1; a hyperparameter change retrained d1 into v2 (live);
    undoing the change made d1 "changed since the live model" again, so every drift check retrained it into a
    byte-identical copy of v1 (run `unchanged`, 13 s of training each). Every version trained on a data set counts,
    not only the live one."""
    _apply(platform, drift={"auto_retrain": True})
    uploads("d1.csv", "promoted")
    first = _live(platform, "d1.csv")
    _apply(platform, drift={"auto_retrain": True}, hyperparameters={"C": 0.5})
    second = _version(platform, "d1.csv", "c")
    platform.registry.transition(FAMILY, second, CANARY, "pipeline:run", "canary at 10%")
    platform.registry.transition(FAMILY, second, LIVE, "pipeline:run", "promoted")
    assert platform.registry.get_version(FAMILY, first).status == RETIRED
    assert [t["version"] for t in platform.registry.versions_trained_on(FAMILY, **_ident_args("d1.csv"))] == \
        [first, second]
    _apply(platform, drift={"auto_retrain": True})  # back to config 1's training declaration
    retrain = _retrain(monitor, platform)
    assert retrain["started"] is False
    assert f"a retrain would reproduce v{first}, retired (an operator can bring it back: mlops promote " \
           f"{FAMILY} {first}" in retrain["reason"], retrain["reason"]
    _apply(platform, drift={"auto_retrain": True}, hyperparameters={"C": 2.0})  # a third training declaration
    assert _retrain(monitor, platform)["started"] is True


def _ident_args(filename: str) -> dict:
    ident = _ident(filename)
    return {"key": ident["key"], "version_id": ident["version_id"]}


def test_a_run_that_reproduced_a_version_is_not_repeated_under_the_same_declaration(  # noqa: F811
        platform, monitor, uploads):  # noqa: F811
    """Third fresh-user pass (HIGH): a training-relevant change that does not change the model (C: 1.0, the default,
    written out) retrained the live model's data set at every drift check, each run ending `unchanged`. The
    `unchanged` run records that the data set under that declaration reproduces the version."""
    _apply(platform, drift={"auto_retrain": True})
    uploads("d1.csv", "promoted")
    live = _live(platform, "d1.csv")
    config = _apply(platform, drift={"auto_retrain": True}, hyperparameters={"C": 1.0}).config_version
    assert _retrain(monitor, platform)["started"] is True  # the first try: nothing says it reproduces v1 yet
    platform.registry.record_reproduced(FAMILY, _ident("d1.csv"), live, config)  # what the run ending unchanged does
    retrain = _retrain(monitor, platform)
    assert retrain["started"] is False
    assert f"already reproduced v{live} byte for byte (its run ended unchanged)" in retrain["reason"], retrain
    _apply(platform, drift={"auto_retrain": True}, hyperparameters={"C": 0.3})  # a real change: worth a retrain
    assert _retrain(monitor, platform)["started"] is True


def test_a_model_the_gate_rejected_rules_its_data_set_out_only_under_the_same_training(  # noqa: F811
        platform, monitor, uploads):  # noqa: F811
    """Third fresh-user pass (MED): a hyperparameter tried and turned down by the gate ruled the live model's own
    data set out for good, even after another training change. The rejection judged that training of the data."""
    _apply(platform, drift={"auto_retrain": True})
    uploads("d1.csv", "promoted")
    _live(platform, "d1.csv")
    _apply(platform, drift={"auto_retrain": True}, hyperparameters={"C": 0.1})
    rejected = _version(platform, "d1.csv", "d")
    platform.registry.transition(FAMILY, rejected, "rejected", "pipeline:run", "gate: AUC margin")
    skipped: list[str] = []
    assert monitor.newest_dataset(FAMILY, platform.registry.get_family(FAMILY), skipped) is None
    assert f"a model trained on it (v{rejected}) was later rejected" in skipped[0]
    _apply(platform, drift={"auto_retrain": True}, hyperparameters={"C": 0.05})
    assert monitor.newest_dataset(FAMILY, platform.registry.get_family(FAMILY))["key"] == f"datasets/{FAMILY}/d1.csv"


def test_a_data_set_whose_only_model_the_gate_rejected_stays_out_after_a_training_change(  # noqa: F811
        platform, monitor, uploads):  # noqa: F811
    """The demo's noisy upload (story 3): its model was rejected, and no model trained on it ever passed the gate,
    so a later training change does not bring it back (the rejection judged the data, not the hyperparameters)."""
    _apply(platform, drift={"auto_retrain": True})
    uploads("d1.csv", "promoted")
    _live(platform, "d1.csv")
    uploads("noisy.csv", "promoted")
    rejected = _version(platform, "noisy.csv", "e")
    platform.registry.transition(FAMILY, rejected, "rejected", "pipeline:run", "gate: AUC")
    _apply(platform, drift={"auto_retrain": True}, hyperparameters={"C": 0.1})
    skipped: list[str] = []
    found = monitor.newest_dataset(FAMILY, platform.registry.get_family(FAMILY), skipped)
    assert found["key"] == f"datasets/{FAMILY}/d1.csv"  # the live model's, after a training change
    assert f"a model trained on it (v{rejected}) was later rejected" in skipped[0]
