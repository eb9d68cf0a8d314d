"""Pure parts of performance monitoring: labels files read (dialects, problems counted, the last line winning, clear
refusals), the performance policy in the family schema, the policy's judgement of a window, the estimate's trust,
and the report page (self-contained, every verdict drawn)."""

from __future__ import annotations

import gzip
import re

import pytest
from mlops.core.errors import ValidationError
from mlops.data import synthetic
from mlops.monitoring.labels import LabelsFileError, family_of_key, parse_event_time, parse_labels
from mlops.monitoring.performance import estimate_trust, judge
from mlops.reports.performance_report import build_performance_view, render_performance_report
from pydantic import ValidationError as PydanticValidationError

from .test_reports import external_references

FAMILY = synthetic.credit_risk_family(name="credit-risk")


def test_labels_are_read_with_bom_crlf_semicolons_gzip_and_labels_in_the_familys_terms():
    family = synthetic.credit_risk_family(name="credit-risk", positive_label="bad")
    text = "\ufeffrequest_id;label;event_time\r\nr-1;bad;2025-06-01\r\nr-2; good ;1748736000\r\nr-3;BAD;\r\n"
    for data in (text.encode(), gzip.compress(text.encode())):
        parsed = parse_labels(data, family, ["good", "bad"], "labels/credit-risk/june.csv.gz"
                              if data[:2] == b"\x1f\x8b" else "labels/credit-risk/june.csv")
        assert [(r.decision_id, r.label) for r in parsed.rows] == [("r-1", "bad"), ("r-2", "good")]
        assert parsed.counts["outside_classes"] == 1 and parsed.examples["outside_classes"] == [
            "line 4: 'BAD' (did you mean 'bad'? labels match case-sensitively)"]
        assert parsed.rows[0].event_time == parse_event_time("2025-06-01T00:00:00Z") == 1748736000.0
        assert parsed.rows[1].event_time == 1748736000.0


def test_labels_problems_are_counted_with_examples_and_the_last_line_wins():
    data = ("decision_id,label\nr-1,1\nr-1,0\nr-1,0\n,1\nbad id,1\nr-2,NA\nr-3,true\n" + "r-4,1\n").encode()
    parsed = parse_labels(data, FAMILY, [0, 1])
    assert parsed.columns["id"] == "decision_id"
    assert {k: v for k, v in parsed.counts.items() if v} == {
        "lines": 8, "rows": 2, "duplicates": 2, "conflicting_duplicates": 1, "missing_id": 1, "bad_id": 1,
        "missing_label": 1, "outside_classes": 1}
    assert [(r.decision_id, r.label, r.line) for r in parsed.rows] == [("r-1", "0", 4), ("r-4", "1", 9)]
    unchecked = parse_labels(data, FAMILY, None)  # no model yet: every label is kept for the join to check
    assert unchecked.counts["outside_classes"] == 0 and unchecked.counts["rows"] == 3


def test_regression_labels_must_be_numbers():
    family = synthetic.loss_given_default_family(name="lgd")
    parsed = parse_labels(b"request_id,label\nr-1,0.25\nr-2,lots\nr-3,inf\n", family)
    assert [(r.decision_id, r.label) for r in parsed.rows] == [("r-1", "0.25")]
    assert parsed.counts["not_a_number"] == 2


@pytest.mark.parametrize(("data", "key", "message"), [
    (b"request_id,outcome\nr-1,1\n", "a.csv", "has no label column"),
    (b"id,label\nr-1,1\n", "a.csv", "no request_id (or decision_id)"),
    (b"", "a.csv", "labels file is empty"),
    (b"\xff\xfe\x00r", "a.csv", "UTF-16"),
    (b"request_id,label\n", "a.csv", "no data rows"),
    (b"request_id,label\nr-1,1\n", "a.json", "not a .csv or .csv.gz"),
])
def test_a_file_that_is_not_a_labels_table_is_refused_naming_the_problem(data, key, message):
    with pytest.raises(LabelsFileError, match=re.escape(message)) as caught:
        parse_labels(data, FAMILY, [0, 1], key)
    assert "data set" not in str(caught.value)


def test_family_of_key_and_event_times():
    assert family_of_key("labels/credit-risk/a.csv") == "credit-risk"
    assert family_of_key("labels/a.csv") is None and family_of_key("datasets/x/a.csv") is None
    assert parse_event_time("2025-06-01T12:00:00+02:00") == 1748772000.0
    assert parse_event_time("-5") is None and parse_event_time("soon") is None
    # Epoch milliseconds are read as such; times before 2000 or after tomorrow are not outcome times.
    now = 1_796_000_000.0
    assert parse_event_time("1796000000000", now=now) == 1_796_000_000.0
    assert parse_event_time("1970-01-01", now=now) is None and parse_event_time("2999-01-01", now=now) is None
    assert parse_event_time(str(now + 3600), now=now) == now + 3600  # clocks disagree a little: kept


def test_a_file_with_both_id_columns_is_joined_by_the_decision_id():
    data = b"request_id,decision_id,label\nreq-1,req-1:0,1\nreq-1,req-1:1,0\nreq-1,req-1:2,1\n"
    parsed = parse_labels(data, FAMILY, [0, 1], "both.csv")
    assert [row.decision_id for row in parsed.rows] == ["req-1:0", "req-1:1", "req-1:2"]


def test_performance_policy_bounds_must_fit_the_task():
    family = synthetic.credit_risk_family(performance={"floors": {"auc": 0.7, "recall": 0.4},
                                                       "ceilings": {"calibration_error": 0.08}})
    assert family.performance.bounds_for(family.task) == [("auc", "floor", 0.7), ("recall", "floor", 0.4),
                                                         ("calibration_error", "ceiling", 0.08)]
    with pytest.raises(PydanticValidationError, match="'rmse' is not a metric of binary_classification"):
        synthetic.credit_risk_family(performance={"ceilings": {"rmse": 0.1}})
    with pytest.raises(PydanticValidationError, match="'mae' is bounded under ceilings"):
        synthetic.loss_given_default_family(performance={"floors": {"mae": 0.1}})
    with pytest.raises(PydanticValidationError, match="finite"):
        synthetic.credit_risk_family(performance={"floors": {"auc": float("nan")}})
    assert synthetic.loss_given_default_family(performance={"ceilings": {"rmse": 0.2}}).performance.ceilings


def test_judge_applies_floors_ceilings_and_degradation_in_each_metrics_direction():
    family = synthetic.credit_risk_family(performance={"floors": {"auc": 0.7}, "ceilings": {"calibration_error": 0.1},
                                                       "max_degradation": 0.05})
    checks = {c["check"]: c for c in judge(family, {"auc": 0.72, "calibration_error": 0.2}, {"auc": 0.8})}
    assert checks["auc_floor"]["passed"] and not checks["calibration_error_ceiling"]["passed"]
    assert not checks["degradation"]["passed"] and checks["degradation"]["value"] == pytest.approx(0.08)
    one_class = {c["check"]: c for c in judge(family, {"auc": None, "calibration_error": 0.01}, {"auc": 0.8})}
    assert one_class["auc_floor"]["status"] == "not_computed" and one_class["auc_floor"]["passed"]
    regression = synthetic.loss_given_default_family(performance={"max_degradation": 0.1})
    (worse,) = judge(regression, {"rmse": 0.23}, {"rmse": 0.2})
    assert worse["value"] == pytest.approx(0.15) and not worse["passed"]  # +15% error, at most +10%
    (better,) = judge(regression, {"rmse": 0.19}, {"rmse": 0.2})
    assert better["passed"]
    assert judge(family, {"accuracy": 0.1}, {}, only=("accuracy",)) == []  # no bound on it, no primary among them


def test_estimate_trust_follows_the_training_time_calibration_check():
    assert estimate_trust("regression", {})["status"] == "not_applicable"
    assert estimate_trust("binary_classification", {})["status"] == "unknown"
    lineage = {"calibration": {"status": "miscalibrated", "trusted": False, "reason": "ECE 0.2 > 0.05"}}
    trust = estimate_trust("binary_classification", lineage)
    assert trust["trusted"] is False and trust["reason"] == "ECE 0.2 > 0.05"


def _report(verdict: str, estimate_verdict: str, task: str = "binary_classification") -> dict:
    window = {"start": "2025-06-02T00:00:00+00:00", "end": "2025-06-09T00:00:00+00:00", "decisions": 900,
              "labelled": 400, "coverage": 0.444, "mature": True,
              "realised": {"auc": 0.61, "accuracy": 0.7, "rmse": 0.2}, "estimated": {"auc": 0.78, "accuracy": 0.8},
              "estimate_error": {"auc": 0.17, "accuracy": 0.1},
              "fairness": {"checked": True, "sensitive_attribute": "sex", "min_group_size": 30,
                           "demographic_parity_difference": 0.05, "equal_opportunity_difference": 0.1,
                           "groups": {"F": {"rows": 190, "favorable_rate": 0.7}, "M": {"rows": 210}}}}
    return {"family": "credit-risk", "task": task, "tier": "dedicated", "live_version": 3,
            "checked_at": "2025-07-01T00:00:00+00:00", "primary_metric": "auc", "verdict": verdict,
            "reason": "auc 0.61 vs 0.80 on the holdout: a drop of 0.19", "estimate_verdict": estimate_verdict,
            "estimate_reason": "expected calibration error 0.2 > 0.05", "judged": {"start": window["start"],
                                                                                 "labelled": 400, "coverage": 0.444},
            "checks": [{"check": "degradation", "value": 0.19, "threshold": 0.05, "passed": False,
                        "status": "checked", "detail": "auc 0.61 vs 0.80 <b>"}],
            "estimate_checks": [], "window": {"window_days": 7}, "policy": {"min_labelled_rows": 200},
            "labels": {"labels": 420, "matched": 400, "unknown_ids": 20, "examples": {"unknown_ids": ["x-1"]}},
            "versions": [{"version": 3, "live": True, "holdout": {"auc": 0.8}, "estimate": {"trusted": False,
                          "reason": "miscalibrated"}, "windows": [window, {**window, "start": "2025-06-09T00:00:00"
                                                                                        "+00:00", "mature": False}]}]}


@pytest.mark.parametrize(("verdict", "estimate", "task"), [("breach", "untrusted", "binary_classification"),
                                                           ("ok", "ok", "binary_classification"),
                                                           ("insufficient_data", "not_checked", "regression")])
def test_report_page_is_self_contained_and_escapes_what_it_quotes(verdict, estimate, task):
    html = render_performance_report(_report(verdict, estimate, task))
    urls, scripts = external_references(html)
    assert html.startswith("<!doctype html>") and urls == [] and scripts == 0
    assert "credit-risk" in html and "auc 0.61 vs 0.80 &lt;b&gt;" in html and "x-1" in html
    assert ("estimate:" in html) == (task == "binary_classification")
    assert "<svg" in html  # the trend of the primary metric per window


def test_report_view_refuses_what_is_not_a_performance_report():
    with pytest.raises(ValidationError, match="no `versions` list"):
        build_performance_view({"family": "x"})


def test_performance_retrain_run_ids_name_their_family():
    from mlops.registry.runs import family_prefix_of_run

    assert family_prefix_of_run("credit-risk-performance-" + "0a" * 12) == "credit-risk"
    assert family_prefix_of_run("credit-risk-performance-12") is None


def test_a_label_in_another_case_is_outside_the_classes_with_a_hint():
    family = synthetic.credit_risk_family(name="credit-risk", positive_label="bad")
    parsed = parse_labels(b"request_id,label\nr-1,GOOD\nr-2,bad\n", family, ["good", "bad"], "case.csv")
    assert parsed.counts["outside_classes"] == 1 and parsed.counts["rows"] == 1
    assert "did you mean 'good'?" in parsed.examples["outside_classes"][0]
