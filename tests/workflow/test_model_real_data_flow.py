"""A family with string labels, missing cells, an unknown category and a leaking feature, through the real state
machine: the run record carries the leakage warning, and the live model scores `null` with the original labels."""

from __future__ import annotations

import json

from tests.functional.test_training_real_data import loans_csv, loans_family

from .conftest import run_upload


def test_leaky_string_label_family_goes_live_warns_in_the_run_and_scores_null(platform):
    family = loans_family("wf-loans", leak=True, capture_sample_rate=1.0,
                          canary={"steps": [10, 50, 100], "bake_seconds": 1, "min_requests": 5,
                                  "max_p99_latency_ms": 10_000, "lock_poll_seconds": 1})
    platform.add_family(family)
    output, described = run_upload(platform, family.name, "loans.csv", loans_csv(2000, 4, leak=True))
    assert output.get("outcome") == "promoted", described
    run = platform.registry.get_run(family.name, described["name"])
    assert any("'recovery_fee' alone separates the classes" in w for w in run["detail"]["warnings"]), run
    record = {"annual income": None, "utilization": 0.4, "region": "islands", "recovery_fee": 0.0}
    event = {"httpMethod": "POST", "resource": "/models/{name}/predict", "path": f"/models/{family.name}/predict",
             "pathParameters": {"name": family.name}, "headers": {"Content-Type": "application/json"},
             "requestContext": {"requestId": "real-data"}, "body": json.dumps({"instances": [record]}),
             "isBase64Encoded": False}
    response, _ = platform.invoke_scoring(family.name, event)
    body = json.loads(response["body"])
    assert response["statusCode"] == 200, body
    assert body["classes"] == ["good", "bad"] and body["predictions"][0] in ("good", "bad")
    record["utilization"] = None
    record["recovery_fee"] = None  # no strategy declared: refused, naming the feature
    response, _ = platform.invoke_scoring(family.name, {**event, "body": json.dumps({"instances": [record]})})
    assert response["statusCode"] == 400 and "recovery_fee is null" in json.loads(response["body"])["message"]
