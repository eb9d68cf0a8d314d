"""Families are data in the template (issue 12, part A): the management routes beside the audit route, IAM-authorized
and integrated with their own registry-only function; the sharded family index with its INCLUDE projection; TTL
on the registry; no role keeps a permission only the old history loops needed; cdk.json seeds are optional."""

from __future__ import annotations

import json

from mlops.registry.store import FAMILY_INDEX, FAMILY_LISTING_ATTRIBUTES, TTL_ATTRIBUTE

from infra.config import load_config

from .conftest import cdk_context
from .test_audit_infra import _statements
from .test_stack import _one


def _family_methods(synth):
    resources = synth.template["Resources"]
    out = {}
    for method in synth.resources("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        if "FamiliesFunction" not in json.dumps(props["Integration"]["Uri"]):
            continue
        resource = resources[props["ResourceId"]["Ref"]]["Properties"]["PathPart"]
        out[(props["HttpMethod"], resource)] = props
    return out


def test_family_routes_are_iam_authorized_and_integrated_with_the_families_function(synthesized):
    methods = _family_methods(synthesized)
    assert set(methods) == {("GET", "families"), ("GET", "{name}"), ("PUT", "{name}"), ("DELETE", "{name}")}
    for props in methods.values():
        assert props["AuthorizationType"] == "AWS_IAM"
        assert props["Integration"]["Type"] == "AWS_PROXY"
    assert set(methods[("GET", "families")]["RequestParameters"]) == {
        "method.request.querystring.limit", "method.request.querystring.next_token",
        "method.request.querystring.status"}


def test_families_function_touches_the_registry_only_and_runs_without_the_scoring_layer(synthesized):
    statements = _statements(synthesized, "FamilyManagementFamiliesRole")
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"} <= actions
    assert not {a for a in actions if a.startswith(("s3:", "lambda:", "states:"))}
    index = [s for s in statements if s["Action"] == "dynamodb:Query" and "index" in json.dumps(s["Resource"])]
    assert index and f"/index/{FAMILY_INDEX}" in json.dumps(index[0]["Resource"])
    function = next(f for k, f in synthesized.resources("AWS::Lambda::Function").items()
                    if k.startswith("FamilyManagementFamilies"))
    layers = json.dumps(function["Properties"]["Layers"])
    assert "ScoringLayer" not in layers and "TrainingLayer" not in layers


def test_registry_has_ttl_and_a_sharded_family_index_projecting_listing_attributes_only(synthesized):
    props = _one(synthesized, "AWS::DynamoDB::Table")["Properties"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    index = next(i for i in props["GlobalSecondaryIndexes"] if i["IndexName"] == FAMILY_INDEX)
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["GSI2PK", "GSI2SK"]
    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    assert sorted(index["Projection"]["NonKeyAttributes"]) == sorted(FAMILY_LISTING_ATTRIBUTES)
    assert "config_json" not in index["Projection"]["NonKeyAttributes"]


def test_no_role_keeps_the_permissions_of_the_removed_history_loops(synthesized):
    everything = json.dumps([p["Properties"]["PolicyDocument"] for p in synthesized.resources("AWS::IAM::Policy")
                             .values()])
    assert "lambda:ListVersionsByFunction" not in everything
    assert "s3:ListBucketVersions" not in everything


def test_trigger_and_control_write_run_summaries_under_reports_runs_only(synthesized):
    for role in ("TriggersTriggerRole", "PipelineControlRole"):
        puts = [json.dumps(s["Resource"]) for s in _statements(synthesized, role) if s["Action"] == "s3:PutObject"]
        assert any("/reports/runs/*" in p for p in puts), role


def test_seed_families_are_optional_in_cdk_json():
    context = cdk_context()["mlops"]
    config = load_config({k: v for k, v in context.items() if k != "families"})
    assert config.families == ()
