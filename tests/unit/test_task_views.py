"""The human views of a regression and a multiclass version show the task's own fairness and trivial model, and
every view names the engine that trained the version: the model card (also the console's version page),
`mlops versions show`, `versions compare`, `runs show` and `reproduce` (fresh-user pass on issues 15 and 17)."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import numpy as np
from mlops.reports.model_card import model_card
from mlops.stats.tasks import regression_fairness
from mlops.training.engines import training_record
from mlops.training.evaluation import task_trivial_comparison
from rich.console import Console

from mlops_local.commands.runs import print_story
from mlops_local.commands.versions import print_version
from mlops_local.reproduce import environment
from mlops_local.views import compare

JOB = {"TrainingJobName": "lgd-1f2e3d4c5b6a7988", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/x",
       "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}, "BillableTimeInSeconds": 61,
       "AlgorithmSpecification": {"TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/x:1"}}


def regression_lineage() -> dict:
    rng = np.random.default_rng(3)
    y = rng.uniform(0, 1, 600)
    predictions = y + rng.normal(0, 0.1, 600)
    sex = np.where(rng.random(600) < 0.5, "F", "M")
    metrics = {"rmse": 0.1, "mae": 0.08, "r2": 0.88, "rows": 600}
    return {
        "task": "regression", "algorithm": "random_forest", "classes": [], "positive_label": None, "threshold": None,
        "metrics": metrics, "fairness": regression_fairness(y, predictions, sex, 30),
        "trivial_model": task_trivial_comparison("regression", "rmse", y, metrics, target_mean=0.5),
        "gate": {"passed": True, "checks": [], "compared_with_live_version": None, "threshold": None},
        "dataset": {"bucket": "b", "key": "datasets/lgd/a.csv", "rows": 3000, "columns": [
            {"name": "x", "kind": "numeric"}, {"name": "lgd", "kind": "target"}, {"name": "sex", "kind": "sensitive"}]},
        "training": training_record(JOB), "holdout": {"rows": 600, "fraction": 0.2, "seed": 42},
    }


def multiclass_lineage() -> dict:
    return {"task": "multiclass_classification", "algorithm": "logistic_regression", "classes": ["A", "B", "C"],
            "positive_label": None, "threshold": None,
            "metrics": {"macro_auc": 0.83, "accuracy": 0.7, "macro_f1": 0.66, "log_loss": 0.7, "rows": 300},
            "trivial_model": {"metric": "macro_auc", "candidate": 0.83, "trivial": 0.5, "lift": 0.33,
                              "training_prior": [0.5, 0.3, 0.2]},
            "training": {"engine": "lambda", "memory_mb": 3008, "seconds": 12.4}}


def record(lineage: dict, version: int = 2) -> dict:
    return {"family": "lgd", "version": version, "status": "live", "status_reason": "promoted",
            "created_at": "2026-01-05T09:00:00Z", "updated_at": "2026-01-05T09:10:00Z", "function_version": "3",
            "lineage": lineage}


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_a_regression_model_card_shows_the_group_spreads_the_training_mean_and_the_job():
    html, card = model_card(record(regression_lineage()), [], {"name": "lgd", "task": "regression",
                                                                "prediction_range": [0, None]})
    text = _text(html)
    assert card["model_parameters"]["problem_type"] == "regression"
    assert "Regression of family lgd (random_forest) predicting lgd as a number, clipped to [0, no bound]" in text
    assert "favourable outcome" not in text and "training prior" not in text and "at threshold" not in text
    fairness = card["quantitative_analysis"]["fairness"]
    assert fairness["kind"] == "regression" and fairness["sensitive_attribute"] == "sex"
    assert "group mean prediction spread" in text and "Mean absolute error" in text
    assert "always predicting the training mean 0.5" in text and "relative reduction" in text
    assert "RMSE" in text and "R\u00b2" in text  # the task's metrics as tiles
    assert "sagemaker: job lgd-1f2e3d4c5b6a7988 on ml.m5.xlarge (61 s billed)" in text


def test_a_multiclass_model_card_shows_its_classes_and_the_class_prior():
    html, _ = model_card(record(multiclass_lineage()), [], {"name": "grades", "task": "multiclass_classification"})
    text = _text(html)
    assert "Multiclass classifier of family lgd (logistic_regression) predicting" in text
    assert "among 3 classes (A, B, C); a request is labelled with the most probable class" in text
    assert "always predicting the training class prior 0.5, 0.3, 0.2" in text
    assert "Macro AUC" in text and "lambda: 3,008 MB, 12.4 s" in text


def _console() -> Console:
    return Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)


def test_versions_show_prints_a_regressions_spreads_and_group_means_and_the_engine():
    out = _console()
    lineage = regression_lineage()
    print_version(out, {"record": record(lineage), "history": [],
                        "summary": {"task": "regression", "metrics": lineage["metrics"]}})
    text = out.file.getvalue()
    assert "Fairness by sex (regression): group mean prediction spread" in text
    assert "Mean prediction" in text and "Favourable rate" not in text
    assert "Trained on" in text and "sagemaker: job lgd-1f2e3d4c5b6a7988 on ml.m5.xlarge" in text


def test_versions_compare_shows_regression_spreads():
    a, b = regression_lineage(), regression_lineage()
    b["fairness"]["mae_spread"] = 0.5
    records = {1: SimpleNamespace(**{**record(a, 1), "lineage": a}), 2: SimpleNamespace(**{**record(b), "lineage": b})}
    import mlops_local.views as views

    original = views.version_record
    views.version_record = lambda platform, family, version: records[version]
    try:
        rows = compare(None, "lgd", 1, 2)["rows"]
    finally:
        views.version_record = original
    fields = {r["field"]: r for r in rows if r["section"] == "fairness"}
    assert fields["mae_spread"]["differs"] and "demographic_parity_difference" not in fields
    assert "mean prediction" in fields["group F"]["a"]


def test_runs_show_names_the_engine_of_the_registered_version():
    out = _console()
    story = {"run": {"run_id": "lgd-1", "family": "lgd", "outcome": "promoted", "version": 2}, "states": [],
             "version": {"version": 2, "status": "live", "status_reason": "promoted", "gate": {},
                         "training": {"text": "sagemaker: job lgd-1f2e3d4c5b6a7988 on ml.m5.xlarge"}}}
    print_story(out, story)
    assert "Trained on sagemaker: job lgd-1f2e3d4c5b6a7988 on ml.m5.xlarge" in out.file.getvalue()


def test_reproduce_of_a_sagemaker_version_says_what_it_re_ran_and_where_the_version_was_trained():
    local = SimpleNamespace(endpoint_url="http://127.0.0.1:5000")
    env = environment(local, training_record(JOB))
    assert "local runtime's Train step" not in env["trained_on"]
    assert "SageMaker training job (job lgd-1f2e3d4c5b6a7988 on ml.m5.xlarge)" in env["trained_on"]
    assert "re-running the Train step's code" in env["reproduced_on"] and "did not start a SageMaker job" in env["note"]
    assert environment(local, {"engine": "lambda"})["trained_on"].startswith("the local runtime's Train step")


def test_the_console_run_page_names_the_engine():
    from mlops_local.console import render

    story = {"run": {"run_id": "lgd-1", "family": "lgd", "outcome": "promoted", "version": 2}, "states": [],
             "version": {"version": 2, "status": "live", "status_reason": "promoted", "gate": {},
                         "training": {"text": "sagemaker: job lgd-1f2e3d4c5b6a7988 on ml.m5.xlarge"}}}
    html = render("console_run.html.j2", story=story, crumbs=[("lgd", None)])
    assert "Trained on sagemaker: job lgd-1f2e3d4c5b6a7988 on ml.m5.xlarge" in _text(html)
