"""Reports: curve data against scikit-learn, model cards, drift reports and rollout timelines from plain dicts."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser

import numpy as np
import orjson
import pytest
from mlops.core.errors import ValidationError
from mlops.reports import charts
from mlops.reports.curves import MAX_ROC_POINTS, curve_data, roc_points
from mlops.reports.drift_report import bin_labels, build_drift_view, current_histograms, render_drift_report
from mlops.reports.html import number, p_value, when
from mlops.reports.model_card import CARD_SCHEMA, build_model_card, model_card, render_model_card
from mlops.reports.timeline import build_rollout_view, render_rollout_timeline, rollout_from_execution
from mlops.stats.distributions import psi
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from tests.browser import samples

GENERATED = "2026-11-29T12:00:00Z"


def scores(n: int, seed: int = 0, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    p = np.clip(0.3 + 0.25 * (y - 0.3) + rng.normal(0, 0.2, n), 0, 1)
    return y, (np.round(p, 2) if ties else p)


class References(HTMLParser):
    """Every URL a page could load: src/href/xlink:href/srcset/action attributes and CSS url(...)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "srcset", "action", "poster", "data") and value:
                self.urls.append(value)
            if name == "style" and value and "url(" in value:
                self.urls.append(value)


def external_references(html: str) -> tuple[list[str], int]:
    parser = References()
    parser.feed(html)
    css_urls = re.findall(r"url\(([^)]*)\)", html)
    return [u for u in parser.urls + css_urls if not u.startswith(("#", "data:"))], parser.scripts


# ---- curve data ---------------------------------------------------------------------------------------------


def test_roc_points_equal_scikit_learn_roc_curve_without_dropping_points() -> None:
    y, p = scores(300, ties=True)
    fpr, tpr, thresholds = roc_points(y, p)
    ref_fpr, ref_tpr, ref_thresholds = roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tpr, ref_tpr, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(thresholds, ref_thresholds)


def test_curve_data_roc_equals_scikit_learn_with_intermediate_points_dropped_when_under_the_limit() -> None:
    y, p = scores(150, seed=3)
    roc = curve_data(y, p, 0.5)["roc"]
    ref_fpr, ref_tpr, ref_thresholds = roc_curve(y, p, drop_intermediate=True)
    assert len(ref_fpr) <= MAX_ROC_POINTS
    np.testing.assert_allclose(roc["fpr"], ref_fpr, atol=1e-6)
    np.testing.assert_allclose(roc["tpr"], ref_tpr, atol=1e-6)
    assert roc["thresholds"][0] is None and np.isinf(ref_thresholds[0])
    np.testing.assert_allclose(roc["thresholds"][1:], ref_thresholds[1:], atol=1e-6)
    assert roc["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)


def test_curve_data_downsamples_a_large_roc_curve_to_the_limit_keeping_its_ends_and_area() -> None:
    y, p = scores(50_000, seed=5)
    roc = curve_data(y, p, 0.4)["roc"]
    fpr, tpr = np.asarray(roc["fpr"]), np.asarray(roc["tpr"])
    assert roc["points_total"] > 10_000 and 100 <= fpr.size <= MAX_ROC_POINTS
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert roc["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    assert float(np.trapezoid(tpr, fpr)) == pytest.approx(roc["auc"], abs=0.003)


def test_curve_data_calibration_equals_scikit_learn_uniform_bins_with_counts() -> None:
    y, p = scores(2_000, seed=7)
    p[:5] = [0.0, 0.1, 0.2, 0.9, 1.0]  # values on the bin edges
    calibration = curve_data(y, p, 0.5)["calibration"]
    ref_true, ref_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    filled = [i for i, c in enumerate(calibration["count"]) if c]
    np.testing.assert_allclose([calibration["fraction_positive"][i] for i in filled], ref_true, atol=1e-6)
    np.testing.assert_allclose([calibration["mean_predicted"][i] for i in filled], ref_pred, atol=1e-6)
    assert sum(calibration["count"]) == y.size
    ids = np.searchsorted(np.linspace(0, 1, 11)[1:-1], p)
    assert calibration["count"] == np.bincount(ids, minlength=10).tolist()


def test_curve_data_marks_empty_calibration_bins_as_none() -> None:
    y = np.array([0, 1, 0, 1])
    calibration = curve_data(y, np.array([0.05, 0.95, 0.05, 0.95]), 0.5)["calibration"]
    assert calibration["count"] == [2, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert calibration["mean_predicted"][1] is None and calibration["fraction_positive"][9] == 1.0


def test_curve_data_confusion_matrix_labels_a_probability_equal_to_the_threshold_positive() -> None:
    y, p = scores(1_000, seed=9)
    p[:3] = 0.35
    cm = curve_data(y, p, 0.35)["confusion_matrix"]
    tn, fp, fn, tp = confusion_matrix(y, (p >= 0.35).astype(int), labels=[0, 1]).ravel()
    assert cm == {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)}
    op = curve_data(y, p, 0.35)["roc"]["operating_point"]
    assert op == {"fpr": round(fp / (fp + tn), 6), "tpr": round(tp / (tp + fn), 6)}


def test_curve_data_score_histogram_counts_each_class_over_twenty_bins() -> None:
    y, p = scores(3_000, seed=2)
    hist = curve_data(y, p, 0.5)["score_histogram"]
    assert len(hist["edges"]) == 21
    assert sum(hist["negative"]) == int((y == 0).sum()) and sum(hist["positive"]) == int(y.sum())
    expected, _ = np.histogram(p[y == 1], bins=20, range=(0, 1))
    # numpy's histogram bins are left-closed, ours right-closed (as the calibration bins): equal without ties
    assert hist["positive"] == expected.tolist()


def test_curve_data_stays_small_for_step_functions_state_whatever_the_holdout_size() -> None:
    y, p = scores(200_000, seed=4)
    data = curve_data(y, p.astype(np.float32), 0.5)
    assert len(orjson.dumps(data)) < 10_000


def test_curve_data_without_both_classes_has_no_roc_curve_and_says_why() -> None:
    data = curve_data(np.zeros(20, dtype=int), np.linspace(0, 1, 20), 0.5)
    assert data["roc"] is None and "only negative" in data["roc_reason"]
    assert sum(data["calibration"]["count"]) == 20


@pytest.mark.parametrize(("y", "p", "threshold", "message"), [
    ([0, 1, 2], [0.1, 0.2, 0.3], 0.5, "class indices 0"),
    ([0, 1], [0.1, 0.2, 0.3], 0.5, "shape"),
    ([0, 1], [0.1, float("nan")], 0.5, "probabilities in [0, 1]"),
    ([0, 1], [0.1, 1.2], 0.5, "probabilities in [0, 1]"),
    ([0, 1], [0.1, 0.2], 1.0, "threshold must lie in (0, 1)"),
    ([], [], 0.5, "empty"),
    ([[0, 1]], [[0.1, 0.2]], 0.5, "one-dimensional"),
    ([0, 1], ["a", "b"], 0.5, "real numbers"),
])
def test_curve_data_rejects_bad_input_naming_the_problem(y: list, p: list, threshold: float, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        curve_data(np.asarray(y), np.asarray(p), threshold)


# ---- model card -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def card_html() -> tuple[str, dict]:
    return model_card(samples.version_record(), samples.status_history(), samples.family(), generated_at=GENERATED)


def test_model_card_json_carries_lineage_gate_metrics_and_this_versions_history(card_html: tuple[str, dict]) -> None:
    _, card = card_html
    record = samples.version_record()
    lineage = record["lineage"]
    assert card["schema_version"] == CARD_SCHEMA
    assert card["model_details"]["model_id"] == "credit-risk/v7"
    train = card["model_parameters"]["data"]["train"]
    assert (train["version_id"], train["sha256"], train["rows"]) == (
        lineage["dataset"]["version_id"], lineage["dataset"]["sha256"], 8000)
    assert train["link"] == f"s3://{lineage['dataset']['bucket']}/{lineage['dataset']['key']}?versionId=" \
                            f"{lineage['dataset']['version_id']}"
    assert {h["name"]: h["value"] for h in card["model_parameters"]["hyper_parameters"]} == lineage["hyperparameters"]
    assert card["lineage"]["code"]["git_revision"] == lineage["code"]["git_revision"]
    assert card["gate"]["checks"] == lineage["gate"]["checks"]
    assert [e["to_status"] for e in card["status_history"]] == ["candidate", "canary", "live"]
    assert card["quantitative_analysis"]["fairness"]["sensitive_attribute"] == "sex"
    auc = next(m for m in card["quantitative_analysis"]["performance_metrics"] if m["type"] == "auc")
    assert auc == {"type": "auc", "value": lineage["metrics"]["auc"], "slice": "holdout", "threshold": None}
    assert [i["feature"] for i in card["quantitative_analysis"]["feature_importance"]][:2] == ["debt ratio", "age"]
    orjson.dumps(card)  # JSON-ready


def test_model_card_html_shows_every_check_group_size_and_lineage_fact(card_html: tuple[str, dict]) -> None:
    html, card = card_html
    lineage = samples.version_record()["lineage"]
    for check in lineage["gate"]["checks"]:
        assert check["check"] in html
    for group, figures in lineage["fairness"]["groups"].items():
        assert f"{group} (n={figures['rows']:,})" in html
    for fact in (lineage["dataset"]["version_id"], lineage["dataset"]["sha256"], lineage["code"]["git_revision"],
                 lineage["artifact_sha256"], "max_iter=200", "Monthly debt payments over income"):
        assert fact in html
    assert html.count("<svg") == 5  # ROC, calibration, scores, fairness, importance
    assert "ROC curve on the holdout" in html and "true positives" in html


def test_model_card_html_is_self_contained_with_no_script(card_html: tuple[str, dict]) -> None:
    html, _ = card_html
    urls, scripts = external_references(html)
    assert urls == [] and scripts == 0
    assert "default-src 'none'" in html
    assert "kozea.github.io" not in html and "<!--" not in html


def test_model_card_escapes_text_from_the_record() -> None:
    record = samples.version_record()
    record["status_reason"] = "<script>alert(1)</script>"
    record["lineage"]["hyperparameters"] = {"<b>x</b>": "<img src=x>"}
    html, _ = model_card(record, [], generated_at=GENERATED)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x>" not in html and external_references(html) == ([], 0)


def test_model_card_is_reproducible_and_renders_again_from_its_json(card_html: tuple[str, dict]) -> None:
    html, card = card_html
    again, _ = model_card(samples.version_record(), samples.status_history(), samples.family(),
                          generated_at=GENERATED)
    assert again == html
    assert render_model_card(orjson.loads(orjson.dumps(card))) == html


def test_model_card_of_a_bare_record_renders_and_says_what_was_not_recorded() -> None:
    html, card = model_card({"family": "churn", "version": 1, "status": "candidate", "lineage": {}})
    assert card["quantitative_analysis"]["curves"] is None
    assert "No holdout metrics were recorded" in html
    assert "Curve data (ROC points, calibration bins, confusion matrix) was not recorded" in html
    assert "No gate decision was recorded" in html and "Not checked: no fairness figures were recorded" in html


def test_model_card_says_why_fairness_was_not_checked() -> None:
    record = samples.version_record()
    record["lineage"]["fairness"] = {"checked": False, "reason": "the family declares no sensitive attribute"}
    html, card = model_card(record)
    assert card["quantitative_analysis"]["fairness"]["checked"] is False
    assert "Not checked: the family declares no sensitive attribute" in html


def test_model_card_marks_groups_too_small_to_compare_and_says_why_a_difference_is_missing() -> None:
    record = samples.version_record()
    fairness = record["lineage"]["fairness"]
    fairness["groups"]["other"] = {"rows": 12, "favorable_rate": 0.5, "true_favorable_rows": 4,
                                   "true_favorable_rate": 0.75, "in_parity": False, "in_opportunity": False}
    fairness["equal_opportunity_difference"] = None
    fairness["equal_opportunity"] = {"status": "insufficient_data", "reason": "1 of 3 groups have at least 30 "
                                     "truly favourable rows; equal opportunity needs two"}
    record["lineage"]["gate"]["checks"][5] = {"check": "equal_opportunity_difference", "value": None,
                                              "threshold": 0.25, "passed": True, "status": "insufficient_data",
                                              "detail": "true-favourable-rate spread: insufficient data"}
    html, card = model_card(record)
    assert '<span class="badge warn">insufficient data</span>' in html
    groups = card["quantitative_analysis"]["fairness"]["groups"]
    assert [g["group"] for g in groups] == ["male", "female", "other"] and groups[2]["compared"] is False
    assert "too small</span>" in html
    assert "equal opportunity: 1 of 3 groups have at least 30 truly favourable rows" in html


def test_model_card_reads_feature_importance_as_a_list_too() -> None:
    record = samples.version_record()
    record["lineage"]["feature_importance"] = [{"feature": "a", "importance": -0.1}, {"name": "b", "value": 0.3}]
    _, card = model_card(record)
    assert card["quantitative_analysis"]["feature_importance"] == [{"feature": "b", "importance": 0.3},
                                                                   {"feature": "a", "importance": -0.1}]


@pytest.mark.parametrize(("record", "message"), [
    ("not a dict", "the version record must be a JSON object"),
    ({"family": "churn"}, "needs `family`"),
    ({"family": "churn", "version": "3"}, "needs `family`"),
    ({"family": "churn", "version": 1, "lineage": [1]}, "the version's lineage must be a JSON object"),
])
def test_model_card_rejects_a_record_it_cannot_read(record: object, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        build_model_card(record)


def test_render_model_card_rejects_a_dict_that_is_not_a_card() -> None:
    with pytest.raises(ValidationError, match="not a model card"):
        render_model_card({"model_details": {}})


# ---- drift report ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drift() -> tuple[dict, dict, dict]:
    return samples.drift_inputs()


def test_current_histograms_bin_like_the_baseline_so_their_psi_is_the_drift_checks(drift: tuple) -> None:
    report, profile, histograms = drift
    view = build_drift_view(report, profile, histograms, samples.family())
    for feature in view["features"]:
        figures = report["features"][feature["name"]]
        if figures.get("psi") is None:
            continue
        base = profile["features"][feature["name"]]["psi_counts"]
        current = histograms["features"][feature["name"]]["counts"]
        assert psi(np.asarray(base), np.asarray(current)) == pytest.approx(figures["psi"], abs=1e-6)
        assert sum(current) + histograms["features"][feature["name"]]["missing"] == report["rows"]


def test_drift_view_shares_include_missing_values_and_the_other_category(drift: tuple) -> None:
    report, profile, histograms = drift
    features = {f["name"]: f for f in build_drift_view(report, profile, histograms, samples.family())["features"]}
    income = features["income"]
    assert income["labels"][-1] == "(missing)" and income["labels"][0].startswith("\u2264 ")
    assert sum(income["baseline"]) == pytest.approx(1.0) and sum(income["current"]) == pytest.approx(1.0)
    assert income["current"][-1] == pytest.approx(report["features"]["income"]["missing_rate"], abs=1e-6)
    purpose = features["purpose"]
    assert purpose["labels"] == ["car", "education", "home", "business", "(other)"]
    assert purpose["baseline"][-1] == 0.0 and purpose["current"][-1] > 0.03
    assert features["housing"]["labels"] == ["own", "rent", "mortgage"]  # no "other" on either side: not drawn


def test_drift_report_html_shows_each_feature_its_verdict_and_the_reason_one_was_not_checked(drift: tuple) -> None:
    report, profile, histograms = drift
    html = render_drift_report(report, profile, histograms, samples.family(), generated_at=GENERATED)
    assert report["verdict"] == "drift"
    for name in ("age", "income", "debt ratio", "months employed", "housing", "purpose"):
        assert f"<code>{name}</code>" in html
    assert "listed in never_capture: its values are not captured" in html
    # every feature with a baseline (the uncaptured one drawn alone) + the predicted probability
    assert html.count("<svg") == 7
    assert external_references(html) == ([], 0)
    assert render_drift_report(report, profile, histograms, samples.family(), generated_at=GENERATED) == html


def test_drift_report_reads_the_older_report_and_profile_shapes() -> None:
    report = {"verdict": "drift", "rows": 900, "min_samples": 500, "drifted_features": ["x"], "prediction_psi": 0.3,
              "features": {"x": {"kind": "numeric", "psi": 0.41, "ks_statistic": 0.2, "ks_p_value": 1e-20,
                                 "mean": 2.0, "baseline_mean": 1.0, "drifted": True},
                           "c": {"kind": "categorical", "chi2": 1.5, "p_value": 0.47, "cramers_v": 0.02,
                                 "drifted": False}}}
    profile = {"features": {"x": {"kind": "numeric", "n": 100, "psi_edges": [1.0, 2.0], "psi_counts": [30, 40, 30],
                                  "ks_quantiles": [0.5, 1.5, 2.5], "mean": 1.0},
                            "c": {"kind": "categorical", "n": 10, "categories": ["a", "b"], "counts": [6, 4]}},
               "prediction": {"psi_edges": [0.5], "psi_counts": [5, 5]}}
    view = build_drift_view(report, profile)
    x, c = view["features"]
    assert (x["verdict_label"], c["verdict_label"]) == ("drift", "no drift")
    assert x["labels"] == ["\u2264 1", "1 \u2013 2", "> 2"] and x["current"] is None and "not recorded" in x["note"]
    assert c["labels"] == ["a", "b"] and c["baseline"] == [0.6, 0.4]
    html = render_drift_report(report, profile)
    assert "the baseline is drawn alone" in html and "PSI 0.41" in html


def test_drift_report_aligns_categories_by_name_and_counts_undeclared_ones_as_other() -> None:
    family = {"features": [{"name": "c", "kind": "categorical", "categories": ["b", "a"]}]}
    profile = {"features": {"c": {"kind": "categorical", "n": 10, "categories": ["a", "b", "z"],
                                  "counts": [5, 3, 1, 1]}}}
    histograms = {"features": {"c": {"kind": "categorical", "categories": ["b", "a", "(other)"],
                                     "counts": [2, 2, 4], "missing": 0}}}
    report = {"verdict": "no_drift", "features": {"c": {"kind": "categorical", "status": "checked", "drifted": False}}}
    (c,) = build_drift_view(report, profile, histograms, family)["features"]
    assert c["labels"] == ["b", "a", "(other)"]
    assert c["baseline"] == [0.3, 0.5, 0.2] and c["current"] == [0.25, 0.25, 0.5]


def test_drift_report_labels_insufficient_data_and_keeps_the_reason() -> None:
    report = {"verdict": "insufficient_data", "rows": 12, "features": {"x": {
        "kind": "numeric", "status": "insufficient_data", "reason": "12 captured rows, 500 needed", "drifted": None}}}
    html = render_drift_report(report)
    assert "insufficient data" in html and "12 captured rows, 500 needed" in html


def test_drift_report_says_what_a_window_spanning_a_promotion_held(drift: tuple) -> None:
    report, profile, histograms = drift
    spanning = {**report, "live_version": 2, "rows_by_version": {"1": 200, "2": 250}, "prediction_rows": 250,
                "not_judged": [{"version": 3, "rows": 12, "reason": "v3 was trained with other inputs (age)"}],
                "unreadable_count": 1, "unreadable_objects": [{"key": "captures/bad.cap", "error": "ValueError: x"}]}
    html = render_drift_report(spanning, profile, histograms, samples.family(), generated_at=GENERATED)
    assert "served by v1 200, v2 250" in html and "v2's 250 predictions only" in html
    assert "Not judged: 12 rows of v3" in html and "<code>captures/bad.cap</code>" in html
    plain = render_drift_report(report, profile, histograms, samples.family(), generated_at=GENERATED)
    assert "served by" not in plain and "Not judged" not in plain and "could not be read" not in plain


def test_drift_report_draws_at_most_the_chart_limit_with_drifted_features_first(monkeypatch: pytest.MonkeyPatch,
                                                                                drift: tuple) -> None:
    from mlops.reports import drift_report

    report, profile, histograms = drift
    monkeypatch.setattr(drift_report, "MAX_FEATURE_CHARTS", 2)
    html = render_drift_report(report, profile, histograms, samples.family())
    assert "2 of 6 features drawn" in html
    assert html.count("<svg") == 3  # two features + the predicted probability
    drawn = re.findall(r'id="chart-credit-risk-[^"]*-feature-\d+-([a-z-]+)"', html)
    assert drawn == ["age", "income"]  # the first two drifted features in schema order


@pytest.mark.parametrize(("report", "message"), [
    ([], "the drift report must be a JSON object"),
    ({"verdict": "drift"}, "no `features` object"),
])
def test_drift_report_rejects_what_is_not_a_drift_report(report: object, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        render_drift_report(report)


def test_bin_labels_name_right_closed_bins_with_compact_numbers() -> None:
    assert bin_labels([0.5, 22_400.0, 1_250_000.0]) == ["\u2264 0.5", "0.5 \u2013 22.4k", "22.4k \u2013 1.25M",
                                                        "> 1.25M"]


def test_current_histograms_skip_features_that_were_not_captured(drift: tuple) -> None:
    _, profile, _ = drift
    family = samples.family()
    columns = {"age": np.array([20.0, 30.0, np.nan]), "housing": np.array([0.0, 3.0, np.nan])}
    hist = current_histograms(family, profile, columns, np.array([0.1, 0.9, 0.5]))
    assert set(hist["features"]) == {"age", "housing"}
    assert hist["features"]["housing"] == {"kind": "categorical", "categories": ["own", "rent", "mortgage", "(other)"],
                                           "counts": [1, 0, 0, 1], "missing": 1}
    assert sum(hist["features"]["age"]["counts"]) == 2 and hist["features"]["age"]["missing"] == 1
    assert sum(hist["prediction"]["counts"]) == 3


# ---- rollout timeline -------------------------------------------------------------------------------------------


def test_rollout_weights_come_from_the_canary_start_the_step_up_and_the_promotion() -> None:
    view = build_rollout_view(samples.rollout())
    assert [(w["weight"], w["source"]) for w in view["weights"]] == [
        (10.0, "canary start"), (50.0, "step up"), (100.0, "promoted")]
    assert view["outcome"] == "promoted" and view["duration"] == "15 min 04 s"
    assert [c["decision"] for c in view["checks"]] == ["wait", "step_up", "promote"]


def test_rollout_that_rolled_back_ends_at_weight_zero_with_its_reasons() -> None:
    view = build_rollout_view(samples.rollout(rolled_back=True))
    assert view["weights"][-1]["weight"] == 0.0 and view["outcome"] == "rolled back"
    html = render_rollout_timeline(samples.rollout(rolled_back=True), generated_at=GENERATED)
    assert "error rate 3.06% over 1.00% (61 of 1994 requests)" in html and "roll back" in html
    assert external_references(html) == ([], 0)


def test_rollout_recorded_weights_take_precedence_over_derived_ones() -> None:
    rollout = samples.rollout()
    rollout["weights"] = [{"at": "2026-11-28T09:15:10Z", "weight": 5}, {"at": "2026-11-28T09:20:00Z", "weight": 25}]
    weights = [w["weight"] for w in build_rollout_view(rollout)["weights"]]
    assert weights == [5.0, 25.0, 100.0]


def test_rollout_from_execution_reads_checks_and_weights_from_the_state_outputs() -> None:
    from datetime import UTC, datetime

    check = samples.canary_checks()[1]
    state = {"canary": {"version": 7, "weight": 50, "step": 1}, "check": {k: v for k, v in check.items()
                                                                          if k != "at"}}
    at = datetime(2026, 11, 28, 9, 25, 12, tzinfo=UTC)
    history = [
        {"timestamp": at, "type": "TaskStateExited",
         "stateExitedEventDetails": {"name": "CanaryCheck", "output": orjson.dumps(state).decode()}},
        {"timestamp": at, "type": "TaskStateExited",
         "stateExitedEventDetails": {"name": "CanaryStepUp", "output": orjson.dumps(state).decode()}},
        {"timestamp": at, "type": "TaskStateExited", "stateExitedEventDetails": {"name": "Bake", "output": "{}"}},
        {"timestamp": at, "type": "TaskStateExited",
         "stateExitedEventDetails": {"name": "CanaryCheck", "output": "not json"}},
    ]
    found = rollout_from_execution(history)
    assert found["weights"] == [{"at": at.isoformat(), "weight": 50}]
    assert len(found["checks"]) == 1 and found["checks"][0]["decision"] == "step_up"
    assert found["checks"][0]["figures"] == check["figures"]


def test_rollout_timeline_html_lists_each_check_and_event() -> None:
    html = render_rollout_timeline(samples.rollout(), generated_at=GENERATED)
    assert html.count('class="badge pass">step up') == 1 and "wait for traffic" in html
    assert "waiting for traffic: 14 requests, 2 captured" in html
    assert html.count("<svg") == 4  # weights + error rate, p99 latency, prediction PSI
    assert "replaced by v7" in html


@pytest.mark.parametrize(("rollout", "message"), [
    (None, "the rollout must be a JSON object"),
    ({"family": "credit-risk"}, "needs `family`"),
    ({"family": "credit-risk", "version": 7, "checks": {"at": 1}}, "the rollout's checks must be a list"),
])
def test_rollout_timeline_rejects_input_it_cannot_read(rollout: object, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        build_rollout_view(rollout)


def test_rollout_without_checks_or_events_renders_and_says_so() -> None:
    html = render_rollout_timeline({"family": "churn", "version": 2})
    assert "No canary checks were recorded" in html and "No status events were given" in html


# ---- charts and formatting -------------------------------------------------------------------------------------


def test_charts_have_no_script_or_comment_and_a_deterministic_id() -> None:
    series = [charts.Series("a", [0.1, 0.2]), charts.Series("b", [0.3, None])]
    first = charts.bar_chart(charts.chart_id("Credit Risk", "v7", "debt ratio"), "label <x>", ["p", "q"], series,
                             percent=True)
    second = charts.bar_chart(charts.chart_id("Credit Risk", "v7", "debt ratio"), "label <x>", ["p", "q"],
                              copy.deepcopy(series), percent=True)
    assert first == second
    assert "<script" not in first and "<!--" not in first and "kozea" not in first
    assert 'id="chart-credit-risk-v7-debt-ratio"' in first and 'aria-label="label &lt;x&gt;"' in first


@pytest.mark.parametrize(("value", "text"), [
    (None, "\u2013"), (float("nan"), "\u2013"), (0.35, "0.35"), (0.6711234, "0.6711"), (1e-05, "1e-05"),
    (3.2e-07, "3.2e-07"), (8000, "8,000"), (43880.4, "43,880"), (0.0, "0"), (True, "yes"), (2.0, "2"),
])
def test_number_formats_figures_for_people(value: object, text: str) -> None:
    assert number(value) == text


def test_p_values_and_times_are_formatted_for_people() -> None:
    assert p_value(3.4e-112) == "< 1e-16" and p_value(0.0123) == "0.012" and p_value(None) == "\u2013"
    assert when("2026-11-28T09:14:02.118000Z") == "2026-11-28 09:14:02 UTC"
    assert when(1795857310.402) == "2026-11-28 09:15:10 UTC" and when("yesterday") == "yesterday"
