"""Family management: GET /families and GET|PUT|DELETE /families/{name} on the platform's API (beside the audit
route) and the function behind them (families registered, updated and retired at run time)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct
from mlops.registry.store import FAMILY_INDEX

from .functions import FunctionDefaults, PlatformFunction
from .scoring import ScoringApi
from .storage import Storage


@dataclass(frozen=True)
class FamilyManagementProps:
    storage: Storage
    api: ScoringApi
    defaults: FunctionDefaults
    layers: tuple[lambda_.ILayerVersion, ...] = ()


class FamilyManagement(Construct):
    """IAM-authorized like every method of the API: grant execute-api:Invoke on GET /families* to readers and on
    PUT/DELETE /families/* to the operators who change families (docs/families.md). The function reads and writes
    family items of the registry only (META and CONFIG# history items, in transactions) and runs on the base
    layers (no numpy, no onnxruntime)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: FamilyManagementProps) -> None:
        super().__init__(scope, construct_id)
        storage = props.storage
        self.handler = PlatformFunction(
            self, "Families", source="families", description="Family management: register, update, retire, list",
            defaults=props.defaults, layers=props.layers, memory_size=512, timeout=Duration.seconds(29))
        self.handler.allow(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"],
                           [storage.table.table_arn])
        self.handler.allow(["dynamodb:Query"], [f"{storage.table.table_arn}/index/{FAMILY_INDEX}"])
        self.handler.allow(["kms:Decrypt"], [storage.key.key_arn])
        integration = apigw.LambdaIntegration(self.handler.function, proxy=True, allow_test_invoke=False)
        families = props.api.api.root.add_resource("families")
        families.add_method("GET", integration, request_parameters={
            "method.request.querystring.limit": False, "method.request.querystring.next_token": False,
            "method.request.querystring.status": False})
        family = families.add_resource("{name}")
        family.add_method("GET", integration, request_parameters={"method.request.querystring.history": False})
        family.add_method("PUT", integration)
        family.add_method("DELETE", integration)
        self.routes = ["GET /families", "GET /families/{name}", "PUT /families/{name}", "DELETE /families/{name}"]
