"""Pure pieces of the operator views: reading a moment from the command line, the per-task headline metrics and
decision text, and report figures that are per-class lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import click
import pytest
from mlops.data import synthetic
from mlops.reports.html import number

from mlops_local import views


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-03-01T12:00:00Z", datetime(2026, 3, 1, 12, tzinfo=UTC)),
    ("2026-03-01 12:00", datetime(2026, 3, 1, 12, tzinfo=UTC)),
    ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
    ("2026-03-01T14:00:00+02:00", datetime(2026, 3, 1, 12, tzinfo=UTC)),
])
def test_parse_moment_reads_iso_8601_with_naive_times_as_utc(text, expected):
    assert views.parse_moment(text) == expected


def test_parse_moment_refuses_other_text_naming_the_accepted_forms():
    with pytest.raises(click.BadParameter, match="is not a time: use ISO-8601"):
        views.parse_moment("yesterday")
    assert datetime.now(UTC) - views.parse_moment("now") < timedelta(seconds=5)


def test_registry_time_is_utc_text_whatever_the_zone():
    moment = datetime(2026, 3, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert views.registry_time(moment) == "2026-03-01T12:00:00.123456Z"


def test_headline_metrics_and_decision_follow_the_task():
    assert views.headline_metrics("binary_classification") == ("auc", "balanced_accuracy")
    assert views.headline_metrics("regression") == ("rmse", "r2")
    assert views.headline_metrics("multiclass_classification") == ("macro_auc", "accuracy")
    assert views.decision_text(synthetic.credit_risk_family(threshold=0.3)) == "positive 1 at threshold 0.3"
    assert views.decision_text(synthetic.loss_given_default_family()) == "regression"


def test_ordered_metrics_puts_headline_figures_first_and_drops_non_numbers():
    ordered = views.ordered_metrics({"zeta": 1.0, "f1": 0.5, "auc": 0.9, "per_class": {"a": 1}, "passed": True})
    assert list(ordered) == ["auc", "f1", "zeta"]


def test_report_figures_accept_per_class_lists():
    assert number([0.25, 0.5, 0.123456]) == "0.25, 0.5, 0.1235"


def test_check_all_reads_its_own_runs_records_not_the_newest_by_time():
    """Fresh-user pass (MED): check-all took a family's newest drift record if it was newer than the client's
    clock at start, so a client clock ahead hid a drift (exit 0) and a concurrent check's record was claimed as
    this run's. Each check now records the fan-out execution that asked for it (`fanout_run`)."""
    import json as _json
    from types import SimpleNamespace

    from mlops_local import views

    arn = "arn:aws:states:us-east-1:123456789012:execution:fanout:cli-abc"
    listing = {"bucket": "b", "key": "reports/drift-fanout/cli-abc.json", "count": 2, "batches": 1, "idle": 0}
    records = {
        # this run's check, recorded at a time the client's clock calls "before the start"
        "ours": [{"at": "2000-01-01T00:00:00.000000Z", "verdict": "drift",
                  "report": {"fanout_run": "cli-abc", "drifted_features": ["x1"]}}],
        # a concurrent check of another family, recorded "after the start" by another run
        "theirs": [{"at": "2999-01-01T00:00:00.000000Z", "verdict": "drift",
                    "report": {"fanout_run": "other-run", "drifted_features": ["x2"]}}],
    }
    clients = {
        "stepfunctions": SimpleNamespace(
            start_execution=lambda **kw: {"executionArn": arn},
            describe_execution=lambda **kw: {"status": "SUCCEEDED", "output": _json.dumps({"listing": listing})}),
        "s3": SimpleNamespace(get_object=lambda **kw: {"Body": SimpleNamespace(
            read=lambda: _json.dumps([{"families": ["ours", "theirs"], "run": "cli-abc"}]).encode())}),
    }
    platform = SimpleNamespace(drift_fanout="arn:aws:states:us-east-1:123456789012:stateMachine:fanout",
                               client=clients.__getitem__, poll_seconds=0.0,
                               registry=SimpleNamespace(drift_records=lambda name, limit=10: records[name],
                                                        iter_families=lambda status=None: []))
    found = {f["family"]: f for f in views.drift_fanout(platform, None)["families"]}
    assert found["ours"]["verdict"] == "drift" and found["ours"]["drifted_features"] == ["x1"]
    assert found["theirs"]["verdict"] == "not_recorded" and found["theirs"]["drifted_features"] == []
