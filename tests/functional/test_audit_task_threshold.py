"""`mlops audit` of a regression or multiclass decision says how that model decides (its value, its most probable
class), never a binary threshold it does not have (fresh-user pass on issue 17: "threshold 0.5" was printed)."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from mlops.core.settings import Env, ScoringSettings
from mlops.data import synthetic
from mlops.registry.store import LIVE
from mlops.serving import decisions
from mlops.serving.api import ScoringService
from mlops.serving.audit import Auditor
from mlops.training import steps
from rich.console import Console

from mlops_local.apigw import proxy_event
from mlops_local.commands.audit import print_report

from .conftest import BUCKET, TABLE

FAMILIES = {"regression": synthetic.loss_given_default_family(name="lgd"),
            "multiclass_classification": synthetic.risk_grade_family(name="grades")}


def _live(ctx, family) -> tuple[int, str]:
    ctx.registry.put_family(family, scoring_function=f"{family.name}-scoring")
    key = f"datasets/{family.name}/a.csv"
    body = synthetic.credit_task_csv(family.task, 1500, 5)
    event = {"family": family.name, "dataset": {"bucket": BUCKET, "key": key, "version_id": boto3.client(
        "s3").put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"]}}
    event["train"] = steps.train_step(ctx, event)
    event["evaluation"] = steps.evaluate_step(ctx, event)
    version = steps.register_step(ctx, event, run_id=f"{family.name}-run-1")["version"]
    ctx.registry.transition(family.name, version, LIVE, "test", "first model")
    return version, event["train"]["artifact"]["sha256"]


@pytest.mark.parametrize(("task", "rule"), [("regression", "regression (the predicted value, no threshold)"),
                                            ("multiclass_classification",
                                             "multiclass (the most probable class, no threshold)")])
def test_an_audited_decision_of_another_task_carries_no_threshold(platform, task, rule):
    decisions._writers.clear()
    family = FAMILIES[task]
    version, sha256 = _live(platform, family)
    service = ScoringService(ScoringSettings.model_validate({
        Env.ARTIFACT_BUCKET: BUCKET, Env.REGISTRY_TABLE: TABLE, Env.MODEL_FAMILY: family.name,
        Env.MODEL_VERSION: str(version), Env.MODEL_SHA256: sha256, Env.CAPTURE_SAMPLE_RATE: "0",
        Env.FUNCTION_VERSION: "7"}))
    instances = synthetic.to_instances(synthetic.credit_task_columns(task, 2, 9), family)
    event = proxy_event("POST", f"/models/{family.name}/predict", json.dumps({"instances": instances}))
    event["requestContext"]["requestId"] = f"req-{family.name}"
    assert service.handle(event, "lambda-id")["statusCode"] == 200
    assert decisions.flush_all(10)

    report = Auditor(BUCKET, platform.registry).audit(f"req-{family.name}")
    assert report["decision"]["task"] == task and report["decision"]["threshold"] is None
    console = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    print_report(console, report)
    text = console.file.getvalue()
    assert rule in text and "threshold 0.5" not in text
