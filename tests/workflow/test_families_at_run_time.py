"""Families registered, updated, retired and brought back at run time through the management route, on the local
runtime with the real state machine: the model records the configuration version it was trained and gated under,
a retired family starts no run (the upload is rejected with a run record saying so) and its scoring answers 404
naming the retirement, and applying it again brings it back."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from mlops.data import synthetic

from mlops_local.apigw import management_event, proxy_event
from mlops_local.runtime import FAMILY_STATUS_TTL_SECONDS

from .conftest import fast_family, run_upload

OPERATOR = "arn:aws:sts::123456789012:assumed-role/MlopsOperators/alice"
_names = itertools.count(1)


def manage(platform: Any, method: str, name: str | None = None, body: Any = None,
           query: dict | None = None) -> tuple[int, dict]:
    path = f"/families/{name}" if name else "/families"
    event = management_event(method, path, query, None if body is None else json.dumps(body), principal=OPERATOR)
    response = platform.invoke_management(event)
    return response["statusCode"], json.loads(response["body"])


def predict(platform: Any, family: Any) -> tuple[int, dict]:
    records = synthetic.to_instances(synthetic.credit_risk_columns(2, 3), family)
    answer, _ = platform.invoke_scoring(family.name, proxy_event("POST", f"/models/{family.name}/predict",
                                                                 json.dumps({"instances": records})))
    return answer["statusCode"], json.loads(answer["body"])


def test_a_family_registered_at_run_time_trains_retires_and_comes_back(platform):
    family = fast_family(f"runtime-{next(_names)}")
    status, body = manage(platform, "PUT", family.name, {"family": family.model_dump(mode="json"),
                                                         "reason": "first declaration"})
    assert status == 201 and body["change"] == "created" and family.name in platform.scoring_functions

    output, described = run_upload(platform, family.name, "v1.csv", synthetic.credit_risk_csv(3000, 1))
    assert output["outcome"] == "promoted", described
    v1 = platform.registry.get_version(family.name, 1)
    assert v1.lineage["family_config_version"] == 1
    assert predict(platform, family)[0] == 200

    changed = family.model_copy(update={"threshold": 0.4})
    status, body = manage(platform, "PUT", family.name, {"family": changed.model_dump(mode="json"),
                                                         "reason": "fewer missed defaults"})
    assert (status, body["change"], body["family"]["config_version"]) == (200, "updated", 2)

    status, body = manage(platform, "DELETE", family.name, {"reason": "product discontinued"})
    assert (status, body["change"], body["family"]["status"]) == (200, "retired", "retired")
    platform.upload_dataset(family.name, "late.csv", synthetic.credit_risk_csv(500, 2))
    run = platform.registry.list_runs(family=family.name, limit=1)[0]
    assert run["outcome"] == "rejected" and run["step"] == "Trigger"
    assert "is retired" in run["reason"] and "product discontinued" in run["reason"] and OPERATOR in run["reason"]
    time.sleep(FAMILY_STATUS_TTL_SECONDS + 0.2)  # the scoring sandbox re-reads the status after its TTL
    status, answer = predict(platform, family)
    assert status == 404 and answer["error"] == "FamilyRetiredError" and "is retired" in answer["message"]

    status, body = manage(platform, "PUT", family.name, {"family": changed.model_dump(mode="json"),
                                                         "reason": "product relaunched"})
    assert (status, body["change"], body["family"]["config_version"]) == (200, "reactivated", 4)
    time.sleep(FAMILY_STATUS_TTL_SECONDS + 0.2)
    assert predict(platform, family)[0] == 200
    status, shown = manage(platform, "GET", family.name)
    assert [(c["config_version"], c["change"], c["actor"]) for c in shown["history"]] == [
        (4, "reactivated", OPERATOR), (3, "retired", OPERATOR), (2, "updated", OPERATOR), (1, "created", OPERATOR)]


def test_runs_are_gated_under_the_configuration_version_current_when_they_were_planned(platform):
    family = fast_family(f"runtime-{next(_names)}")
    manage(platform, "PUT", family.name, {"family": family.model_dump(mode="json"), "reason": "v1"})
    manage(platform, "PUT", family.name, {"family": family.model_copy(update={"seed": 7}).model_dump(mode="json"),
                                          "reason": "another seed"})
    output, described = run_upload(platform, family.name, "v1.csv", synthetic.credit_risk_csv(3000, 4))
    assert output["outcome"] == "promoted", described
    lineage = platform.registry.get_version(family.name, 1).lineage
    assert lineage["family_config_version"] == 2 and lineage["seed"] == 7
    status, listed = manage(platform, "GET", query={"status": "active", "limit": "1000"})
    mine = next(f for f in listed["families"] if f["name"] == family.name)
    assert mine["config_version"] == 2 and mine["live_version"] == 1
