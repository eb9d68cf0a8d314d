"""The shared scoring tier on the local runtime: its code rolls out through its `live` alias in weighted steps,
judged on every family's errors and latency (promoted when healthy, rolled back naming the family that fails on
the new code), nothing happens when the code did not change, and a family-level code rollout is refused for a
shared-tier family."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from mlops.core import aws
from mlops.core.settings import environ
from mlops.serving import shared

from .conftest import entered_states, live_model, serving_state


def new_code() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("handler.py", f"# shared scoring code {id(buffer)}\n")
    return buffer.getvalue()


def start_code_rollout(platform, attempt: str = "") -> dict:
    response = aws.client("lambda").invoke(FunctionName=platform.function_names["trigger"], Payload=json.dumps(
        {"rollout_shared_code": True, "attempt": attempt}).encode())
    payload = json.loads(response["Payload"].read())
    assert not response.get("FunctionError"), payload
    return payload["outcomes"][0]


def shared_alias(platform) -> tuple[str, dict]:
    alias = aws.client("lambda").get_alias(FunctionName=platform.shared_scoring_function, Name="live")
    return alias["FunctionVersion"], (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}


@pytest.fixture()
def two_live_families(platform, new_family, traffic):
    families = [new_family(), new_family()]
    for family in families:
        live_model(platform, family, rows=1500)
    generators = [traffic(f).start() for f in families]
    return families, generators


def test_new_shared_code_is_canaried_on_every_familys_traffic_then_promoted(platform, two_live_families):
    families, generators = two_live_families
    before, _ = shared_alias(platform)
    aws.client("lambda").update_function_code(FunctionName=platform.shared_scoring_function, ZipFile=new_code())
    assert shared_alias(platform) == (before, {}), "a deploy alone moves no traffic"
    outcome = start_code_rollout(platform)
    assert outcome["started"] is True
    described = platform.wait_for(outcome["execution_arn"], 180)
    for generator in generators:
        generator.stop()
    output = json.loads(described["output"])
    assert described["status"] == "SUCCEEDED" and output["outcome"]["outcome"] == "promoted", output
    states = entered_states(described["executionArn"])
    assert "CodeCanaryCheck" in states and "CodeStepUp" in states and "CodePromote" in states
    primary, weights = shared_alias(platform)
    assert primary == output["canary"]["target"] != before and weights == {}
    figures = output["check"]["figures"]
    assert figures["families_judged"] >= 1 and figures["invocations"] >= 5
    for family in families:  # model routing untouched by the code rollout
        assert serving_state(platform, family) == (1, {})
    again = start_code_rollout(platform)
    assert again["started"] is False and "already rolled out" in again["reason"]


def test_new_shared_code_failing_one_family_is_rolled_back_naming_it(platform, two_live_families, monkeypatch):
    families, generators = two_live_families
    broken = families[0].name
    before, _ = shared_alias(platform)
    original = shared.predict_response

    def predict_response(model, family, version, *args):
        if family == broken and environ().get("AWS_LAMBDA_FUNCTION_VERSION") != before:
            raise RuntimeError("new code cannot score this family")
        return original(model, family, version, *args)

    monkeypatch.setattr(shared, "predict_response", predict_response)
    aws.client("lambda").update_function_code(FunctionName=platform.shared_scoring_function, ZipFile=new_code())
    described = platform.wait_for(start_code_rollout(platform)["execution_arn"], 180)
    for generator in generators:
        generator.stop()
    output = json.loads(described["output"])
    assert output["outcome"]["outcome"] == "rolled_back", output
    assert any(r.startswith(f"family {broken}: error rate") for r in output["outcome"]["reasons"]), output
    assert shared_alias(platform) == (before, {}), "the alias is back on the previous code only"
    assert "CodeStepUp" not in entered_states(described["executionArn"])


def test_a_rollout_without_new_code_ends_at_once(platform):
    lam = aws.client("lambda")  # the alias serves what $LATEST holds (whatever earlier tests left there)
    current = lam.publish_version(FunctionName=platform.shared_scoring_function)["Version"]
    lam.update_alias(FunctionName=platform.shared_scoring_function, Name="live", FunctionVersion=current,
                     RoutingConfig={"AdditionalVersionWeights": {}})
    described = platform.wait_for(start_code_rollout(platform, attempt="unchanged")["execution_arn"], 60)
    assert entered_states(described["executionArn"])[-1] == "CodeUnchanged"
    assert shared_alias(platform)[1] == {}


def test_a_family_code_rollout_is_refused_for_a_shared_tier_family(platform, new_family):
    family = new_family()
    live_model(platform, family, rows=1500)
    response = aws.client("lambda").invoke(FunctionName=platform.function_names["trigger"],
                                           Payload=json.dumps({"rollout_code": family.name}).encode())
    payload = json.loads(response["Payload"].read())
    assert response.get("FunctionError") and "rollout_shared_code" in payload["errorMessage"]
