"""Every family's scoring API serves its own OpenAPI document: GET /models/{name}/openapi.json, IAM-authorized and
integrated with the `live` alias like the other routes."""

from __future__ import annotations

import json


def test_each_family_has_an_openapi_json_route_on_its_live_alias(synthesized):
    resources = synthesized.resources("AWS::ApiGateway::Resource")
    documents = [rid for rid, r in resources.items() if r["Properties"]["PathPart"] == "openapi.json"]
    assert len(documents) == 2, "the dedicated family's own route and the shared tier's /models/{name}/openapi.json"
    for document in documents:
        methods = [m["Properties"] for m in synthesized.resources("AWS::ApiGateway::Method").values()
                   if m["Properties"].get("ResourceId") == {"Ref": document}]
        assert [m["HttpMethod"] for m in methods] == ["GET"]
        assert methods[0]["AuthorizationType"] == "AWS_IAM"
        assert ":live/invocations" in json.dumps(methods[0]["Integration"]["Uri"])
