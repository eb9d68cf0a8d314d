"""Audit: the management route GET /audit/{request_id} on the platform's API and the function behind it."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct
from mlops.registry.artifacts import ARTIFACT_PREFIX, MODEL_PREFIX
from mlops.serving.decisions import DECISION_PREFIX

from .functions import CONTENT_ADDRESSED, FunctionDefaults, PlatformFunction
from .scoring import ScoringApi
from .storage import Storage


@dataclass(frozen=True)
class AuditProps:
    storage: Storage
    api: ScoringApi
    defaults: FunctionDefaults
    layers: tuple[lambda_.ILayerVersion, ...]


class Audit(Construct):
    """GET /audit/{request_id}: IAM-authorized like every method of the API (grant execute-api:Invoke on this
    route to auditors' roles only). The function reads decision records, the registry and artifacts, and
    recomputes explanations with onnxruntime (the scoring layer); it writes nothing."""

    def __init__(self, scope: Construct, construct_id: str, *, props: AuditProps) -> None:
        super().__init__(scope, construct_id)
        storage = props.storage
        self.audit = PlatformFunction(
            self, "Audit", source="audit", description="Audit trail: reconstructs one scored request",
            defaults=props.defaults, layers=props.layers, memory_size=1024, timeout=Duration.seconds(29))
        self.audit.allow(["s3:ListBucket"], [storage.bucket.bucket_arn],
                         {"StringLike": {"s3:prefix": [f"{DECISION_PREFIX}*"]}})
        self.audit.allow(["s3:GetObject"], [storage.object_arns(DECISION_PREFIX)],
                         reason="decision records are keyed by family, date and hour, written at run time")
        # The served model (explanations are recomputed from it); models stored before the prefixes were split
        # are under artifacts/.
        self.audit.allow(["s3:GetObject"], [storage.object_arns(MODEL_PREFIX), storage.object_arns(ARTIFACT_PREFIX)],
                         reason=CONTENT_ADDRESSED)
        self.audit.allow(["dynamodb:GetItem", "dynamodb:Query"], [storage.table.table_arn])
        self.audit.allow(["kms:Decrypt"], [storage.key.key_arn])
        resource = props.api.api.root.add_resource("audit").add_resource("{request_id}")
        resource.add_method("GET", apigw.LambdaIntegration(self.audit.function, proxy=True, allow_test_invoke=False),
                            request_parameters={"method.request.querystring.family": False,
                                                "method.request.querystring.at": False})
        self.route = "GET /audit/{request_id}"
