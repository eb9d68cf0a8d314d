"""The audit trail in the template: GET /audit/{request_id} (IAM, its own read-only function), decision-record
writes scoped to each family's prefix, and the predict request model accepting the explanation options."""

from __future__ import annotations

import json

from .test_stack import _one


def _statements(synth, role_prefix):
    out = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"]["Roles"])
        if role_prefix in roles:
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_audit_route_is_an_iam_authorized_get_integrated_with_the_audit_function(synthesized):
    methods = [m["Properties"] for m in synthesized.resources("AWS::ApiGateway::Method").values()
               if "AuditFunction" in json.dumps(m["Properties"]["Integration"]["Uri"])]
    assert len(methods) == 1
    method = methods[0]
    assert method["HttpMethod"] == "GET" and method["AuthorizationType"] == "AWS_IAM"
    assert set(method["RequestParameters"]) == {"method.request.querystring.family",
                                                "method.request.querystring.at"}
    parts = {r["Properties"]["PathPart"] for r in synthesized.resources("AWS::ApiGateway::Resource").values()}
    assert {"audit", "{request_id}"} <= parts


def test_audit_function_reads_decisions_registry_and_artifacts_and_writes_nothing(synthesized):
    statements = _statements(synthesized, "AuditRole")
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"s3:ListBucket", "s3:GetObject", "dynamodb:GetItem", "dynamodb:Query", "kms:Decrypt"} <= actions
    writes = {a for a in actions if a.split(":")[1].startswith(("Put", "Delete", "Update", "Create"))}
    assert writes <= {"logs:PutLogEvents", "logs:CreateLogStream", "xray:PutTraceSegments",
                      "xray:PutTelemetryRecords"}
    listing = next(s for s in statements if s["Action"] == "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["decisions/*"]}}


def test_scoring_function_writes_decision_records_only_under_its_family_prefix(synthesized):
    statements = _statements(synthesized, "FamilyCreditRiskScoringRole")
    puts = [json.dumps(s["Resource"]) for s in statements if s["Action"] == "s3:PutObject"]
    assert any("/decisions/family=credit-risk/*" in p for p in puts), puts
    assert not any(p.endswith('/decisions/*"]}') for p in puts)


def test_predict_request_model_accepts_explain_and_top_and_nothing_else(synthesized):
    schema = _one(synthesized, "AWS::ApiGateway::Model")["Properties"]["Schema"]
    assert set(schema["properties"]) == {"instances", "explain", "top"}
    assert schema["properties"]["explain"] == {"type": "boolean"}
    assert schema["properties"]["top"]["minimum"] == 0 and schema["additionalProperties"] is False
