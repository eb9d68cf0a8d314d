"""Who owns the `live` alias: CDK creates it once; a later deploy never moves it, the rollout does.

Template side: no CDK-managed alias or version exists (nothing for CloudFormation to update), the custom
resource that creates the alias carries only the family declaration and the function name, and the API calls the
alias. Runtime side (moto): after a promotion, the same custom resource receiving an Update (a redeploy with a
changed config) and a new $LATEST configuration leave the alias and what it serves untouched.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from mlops.core import aws
from mlops.core.settings import Env
from mlops.data.synthetic import credit_risk_family
from mlops.registry.store import TABLE_DEFINITION, ModelRegistry
from mlops.rollout.bootstrap import handle, respond
from mlops.rollout.control import LambdaAliasRouter
from moto import mock_aws


def test_template_has_no_cdk_managed_alias_or_version(synthesized):
    kinds = {r["Type"] for r in synthesized.template["Resources"].values()}
    assert "AWS::Lambda::Alias" not in kinds and "AWS::Lambda::Version" not in kinds


def test_alias_is_created_by_a_custom_resource_whose_properties_never_name_a_version(synthesized):
    setups = synthesized.resources("Custom::ModelFamily")
    assert len(setups) == 1
    props = next(iter(setups.values()))["Properties"]
    assert set(props) == {"ServiceToken", "Family", "ScoringFunction"}
    assert json.loads(props["Family"])["name"] == "credit-risk"


def test_scoring_function_environment_binds_no_model(synthesized):
    for resource in synthesized.resources("AWS::Lambda::Function").values():
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        assert Env.MODEL_VERSION not in variables and Env.MODEL_SHA256 not in variables


def test_api_permissions_target_the_alias_only(synthesized):
    permissions = synthesized.resources("AWS::Lambda::Permission")
    api_permissions = [p for p in permissions.values() if p["Properties"]["Principal"] == "apigateway.amazonaws.com"]
    assert api_permissions
    for permission in api_permissions:
        target = json.dumps(permission["Properties"]["FunctionName"])
        if "AuditFunction" in target or "FamiliesFunction" in target:  # management routes (no model, no alias)
            continue
        assert ":live" in target


@pytest.fixture()
def aws_with_scoring_function():
    with mock_aws(config={"core": {"reset_boto3_session": True}}):
        aws.reset_clients()
        boto3.client("dynamodb").create_table(TableName="registry", **TABLE_DEFINITION)
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        import io
        import zipfile

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("handler.py", "")
        boto3.client("lambda").create_function(
            FunctionName="score-credit-risk", Runtime="python3.12", Role=role, Handler="handler.lambda_handler",
            Code={"ZipFile": buffer.getvalue()}, Environment={"Variables": {Env.MODEL_FAMILY: "credit-risk"}})
        yield ModelRegistry("registry")
        aws.reset_clients()


def _event(request_type, family, physical=None):
    return {"RequestType": request_type, "ResponseURL": "https://cloudformation-response.invalid/",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/MlopsPlatform/1", "RequestId": "r1",
            "LogicalResourceId": "FamilySetup", "PhysicalResourceId": physical,
            "ResourceProperties": {"Family": json.dumps(family.model_dump(mode="json")),
                                   "ScoringFunction": "score-credit-risk"}}


def _alias():
    alias = boto3.client("lambda").get_alias(FunctionName="score-credit-risk", Name="live")
    return alias["FunctionVersion"], (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}


def test_redeploy_after_promotion_neither_reverts_nor_moves_the_alias(aws_with_scoring_function):
    registry = aws_with_scoring_function
    family = credit_risk_family()
    created = handle(_event("Create", family), registry)
    bootstrap_version = created["Data"]["AliasVersion"]
    assert _alias() == (bootstrap_version, {})

    router = LambdaAliasRouter()  # the rollout publishes model 7 and promotes it
    promoted = router.publish_bound("score-credit-risk", "credit-risk", 7, "a" * 64)
    router.route("score-credit-risk", promoted)
    assert _alias() == (promoted, {})

    # A later `cdk deploy`: new $LATEST configuration (CloudFormation) and an Update of the custom resource.
    boto3.client("lambda").update_function_configuration(
        FunctionName="score-credit-risk", Environment={"Variables": {Env.MODEL_FAMILY: "credit-risk", "NEW": "1"}})
    changed = credit_risk_family(capture_sample_rate=0.5)
    handle(_event("Update", changed, created["PhysicalResourceId"]), registry)

    assert _alias() == (promoted, {}), "a deploy must never move the alias"
    served = boto3.client("lambda").get_function_configuration(FunctionName="score-credit-risk", Qualifier="live")
    assert served["Environment"]["Variables"][Env.MODEL_VERSION] == "7"
    # cdk.json only seeds: a registered declaration (perhaps changed at run time) is never overwritten by a deploy.
    assert registry.get_family("credit-risk").family.capture_sample_rate == credit_risk_family().capture_sample_rate
    assert registry.get_family("credit-risk").config_version == 1


def test_code_change_reaches_traffic_only_through_a_published_version(aws_with_scoring_function):
    registry = aws_with_scoring_function
    handle(_event("Create", credit_risk_family()), registry)
    router = LambdaAliasRouter()
    v1 = router.publish_bound("score-credit-risk", "credit-risk", 1, "b" * 64)
    router.route("score-credit-risk", v1)
    assert router.publish_bound("score-credit-risk", "credit-risk", 1, "b" * 64) == v1, "a retried step reuses it"
    boto3.client("lambda").update_function_code(FunctionName="score-credit-risk", ZipFile=b"PK\x05\x06" + b"\0" * 18)
    assert _alias() == (v1, {})
    assert router.publish_bound("score-credit-risk", "credit-risk", 1, "b" * 64) != v1, \
        "new code must be a new published version, never the old one reused"


def test_custom_resource_always_answers_cloudformation(aws_with_scoring_function):
    sent = []
    bad = _event("Create", credit_risk_family())
    bad["ResourceProperties"]["Family"] = "{not json"
    respond(bad, SimpleNamespace(log_stream_name="stream"), aws_with_scoring_function,
            send=lambda url, body: sent.append(body))
    assert sent[0]["Status"] == "FAILED" and "JSONDecodeError" in sent[0]["Reason"]
    respond(_event("Delete", credit_risk_family(), "family-credit-risk"), SimpleNamespace(log_stream_name="s"),
            aws_with_scoring_function, send=lambda url, body: sent.append(body))
    assert sent[1]["Status"] == "SUCCESS"
