"""Scoring: the REST API; the shared scoring tier (one function, its `live` alias and the /models/{name} routes for
every shared-tier family); per dedicated family, its own scoring function, `live` alias and routes."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import CustomResource, Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct
from mlops.core.schemas import ModelFamily
from mlops.core.settings import Env
from mlops.registry.artifacts import MODEL_PREFIX
from mlops.registry.store import LAST_CAPTURE_ATTRIBUTE
from mlops.rollout.bootstrap import SHARED_RESOURCE_TYPE
from mlops.serving.capture import CAPTURE_PREFIX
from mlops.serving.decisions import DECISION_PREFIX, family_prefix
from mlops.serving.scoring import MAX_RECORDS

from .config import ApiConfig, SharedScoringConfig
from .functions import CONTENT_ADDRESSED, METRIC_REASON, FunctionDefaults, PlatformFunction
from .storage import Storage

ERROR_TEMPLATE = json.dumps({"error": "$context.error.responseType", "message": "$context.error.messageString",
                             "request_id": "$context.requestId"})


def allow_capture_mark(function: PlatformFunction, storage: Storage, leading_key: str) -> None:
    """The one registry write a scoring function makes: `last_capture_at` on a family's META item after each
    capture object (`ModelRegistry.mark_captured`), which lets the drift fan-out skip idle families. Fine-grained
    access control (docs.aws.amazon.com/amazondynamodb/latest/developerguide/specifying-conditions.html): only
    UpdateItem, only items whose partition key matches `leading_key` (a dedicated function's own family; the shared
    tier's `FAMILY#*`), only the key attributes and that one attribute, and nothing returned."""
    function.allow(["dynamodb:UpdateItem"], [storage.table.table_arn], conditions={
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [leading_key]},
        "ForAllValues:StringEquals": {"dynamodb:Attributes": ["PK", "SK", LAST_CAPTURE_ATTRIBUTE]},
        "StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"},
    })


class ScoringApi(Construct):
    """One REST API for every family. Authorization: IAM (SigV4) on every method: callers are AWS principals
    (applications' roles) granted execute-api:Invoke on the routes they need; API keys are not authorization."""

    def __init__(self, scope: Construct, construct_id: str, *, config: ApiConfig, defaults: FunctionDefaults) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=defaults.log_retention,
                                         encryption_key=defaults.log_key, removal_policy=RemovalPolicy.RETAIN)
        self.api = apigw.RestApi(
            self, "Api",
            description="Model scoring API: POST /models/{name}/predict, GET /models/{name}",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=config.stage_name,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # request bodies are credit data: never in execution logs
                throttling_rate_limit=config.throttle_rate_limit,
                throttling_burst_limit=config.throttle_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True, http_method=True, ip=True, protocol=True, request_time=True, resource_path=True,
                    response_length=True, status=True, user=True),
            ),
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
        )
        for response_type, status in ((apigw.ResponseType.DEFAULT_4_XX, None), (apigw.ResponseType.DEFAULT_5_XX, None),
                                      (apigw.ResponseType.BAD_REQUEST_BODY, "400")):
            template = ERROR_TEMPLATE
            if response_type == apigw.ResponseType.BAD_REQUEST_BODY:
                template = json.dumps({"error": "ValidationError",
                                       "message": "$context.error.validationErrorString",
                                       "request_id": "$context.requestId"})
            self.api.add_gateway_response(f"Gateway{response_type.response_type}", type=response_type,
                                          status_code=status, templates={"application/json": template})
        self.models = self.api.root.add_resource("models")
        self.validator = apigw.RequestValidator(self, "BodyValidator", rest_api=self.api,
                                                validate_request_body=True, validate_request_parameters=True)
        self.predict_model = self.api.add_model(
            "PredictRequest", content_type="application/json", model_name="PredictRequest",
            schema=apigw.JsonSchema(
                schema=apigw.JsonSchemaVersion.DRAFT4, type=apigw.JsonSchemaType.OBJECT,
                required=["instances"], additional_properties=False,
                properties={"instances": apigw.JsonSchema(
                    type=apigw.JsonSchemaType.ARRAY, min_items=1, max_items=MAX_RECORDS,
                    items=apigw.JsonSchema(type=apigw.JsonSchemaType.OBJECT)),
                    "explain": apigw.JsonSchema(type=apigw.JsonSchemaType.BOOLEAN),
                    "top": apigw.JsonSchema(type=[apigw.JsonSchemaType.INTEGER, apigw.JsonSchemaType.NULL],
                                            minimum=0)},
            ),
        )


@dataclass(frozen=True)
class FamilyScoringProps:
    family: ModelFamily
    storage: Storage
    api: ScoringApi
    defaults: FunctionDefaults
    layers: tuple[lambda_.ILayerVersion, ...]
    bootstrap: lambda_.IFunction
    memory_size: int
    metrics_namespace: str


class FamilyScoring(Construct):
    """Scoring function of one family, its `live` alias (created once by the bootstrap custom resource), and
    its routes integrated with the alias, never with $LATEST or a CDK-managed version."""

    def __init__(self, scope: Construct, construct_id: str, *, props: FamilyScoringProps) -> None:
        super().__init__(scope, construct_id)
        family, storage = props.family, props.storage
        self.scoring = PlatformFunction(
            self, "Scoring", source="score", description=f"Scoring API for model family {family.name}",
            defaults=props.defaults, layers=props.layers, memory_size=props.memory_size,
            timeout=Duration.seconds(30), service=f"mlops-score-{family.name}",
            environment={
                Env.MODEL_FAMILY: family.name,
                Env.CAPTURE_SAMPLE_RATE: str(family.capture_sample_rate),
                Env.NEVER_CAPTURE: ",".join(family.never_capture),
            },
        )
        fn = self.scoring.function
        self.function = fn
        # Models only: holdouts and baselines (training rows, the sensitive attribute) live under artifacts/.
        self.scoring.allow(["s3:GetObject"], [storage.object_arns(MODEL_PREFIX)], reason=CONTENT_ADDRESSED)
        self.scoring.allow(["s3:PutObject"], [storage.object_arns(f"{CAPTURE_PREFIX}family={family.name}/")],
                           reason="capture batches keyed by version and time, only under this family's prefix")
        self.scoring.allow(["s3:PutObject"], [storage.object_arns(family_prefix(family.name))],
                           reason="decision record batches keyed by date and hour, only under this family's prefix")
        self.scoring.allow(["dynamodb:GetItem"], [storage.table.table_arn])
        allow_capture_mark(self.scoring, storage, f"FAMILY#{family.name}")
        self.scoring.allow(["kms:Decrypt", "kms:GenerateDataKey"], [storage.key.key_arn])
        self.scoring.allow(["cloudwatch:PutMetricData"], ["*"],
                           {"StringEquals": {"cloudwatch:namespace": props.metrics_namespace}}, reason=METRIC_REASON)

        self.setup = CustomResource(
            self, "FamilySetup", service_token=props.bootstrap.function_arn,
            resource_type="Custom::ModelFamily",
            properties={"Family": json.dumps(family.model_dump(mode="json"), sort_keys=True),
                        "ScoringFunction": fn.function_name},
        )
        self.alias_name = "live"
        self.alias_arn = f"{fn.function_arn}:{self.alias_name}"
        alias = lambda_.Function.from_function_attributes(self, "LiveAlias", function_arn=self.alias_arn,
                                                          same_environment=True)

        resource = props.api.models.add_resource(family.name)
        predict = resource.add_resource("predict")
        integration = apigw.LambdaIntegration(alias, proxy=True, allow_test_invoke=False)
        methods = [
            predict.add_method("POST", integration, request_validator=props.api.validator,
                               request_models={"application/json": props.api.predict_model}),
            resource.add_method("GET", integration),
            # The family's own OpenAPI document, generated from its schema (mlops.serving.openapi).
            resource.add_resource("openapi.json").add_method("GET", integration),
        ]
        for method in methods:  # the alias must exist before its invoke permissions and integrations
            method.node.add_dependency(self.setup)
        self.routes = [f"POST /models/{family.name}/predict", f"GET /models/{family.name}",
                       f"GET /models/{family.name}/openapi.json"]


@dataclass(frozen=True)
class SharedScoringProps:
    config: SharedScoringConfig
    seed_families: tuple[ModelFamily, ...]
    storage: Storage
    api: ScoringApi
    defaults: FunctionDefaults
    layers: tuple[lambda_.ILayerVersion, ...]
    bootstrap: PlatformFunction
    metrics_namespace: str


class SharedScoring(Construct):
    """The shared scoring tier: one function serving every shared-tier family, routed by the registry (live and
    canary versions, canary weight), its `live` alias (created once by a custom resource; moved only by code
    rollouts), and the routes /models/{name}, /models/{name}/predict and /models/{name}/openapi.json integrated
    with the alias (a dedicated family's own routes are static resources, which API Gateway matches first).

    Nothing here depends on the number of families: the seed families travel in one JSON asset that the custom
    resource registers; families added at run time need no deployment."""

    def __init__(self, scope: Construct, construct_id: str, *, props: SharedScoringProps) -> None:
        super().__init__(scope, construct_id)
        storage, config = props.storage, props.config
        self.scoring = PlatformFunction(
            self, "Scoring", source="score_shared", description="Shared scoring tier: every shared-tier family",
            defaults=props.defaults, layers=props.layers, memory_size=config.memory_mb,
            timeout=Duration.seconds(30), service="mlops-score-shared",
            environment={Env.ROUTING_TTL_SECONDS: f"{config.routing_ttl_seconds:g}",
                         Env.MODEL_CACHE_MIB: str(config.cache_mib)})
        fn = self.function = self.scoring.function
        if config.reserved_concurrency is not None:
            fn.node.default_child.add_property_override("ReservedConcurrentExecutions", config.reserved_concurrency)
        # Models only (content-addressed): never holdouts, baselines or data sets.
        self.scoring.allow(["s3:GetObject"], [storage.object_arns(MODEL_PREFIX)], reason=CONTENT_ADDRESSED)
        records = [storage.object_arns(CAPTURE_PREFIX), storage.object_arns(DECISION_PREFIX)]
        self.scoring.allow(["s3:PutObject"], records,
                           reason="capture and decision record batches keyed by family, version and time; families "
                                  "are registered at run time, so the prefixes cannot name them")
        self.scoring.allow(["dynamodb:GetItem"], [storage.table.table_arn])
        allow_capture_mark(self.scoring, storage, "FAMILY#*")
        self.scoring.allow(["kms:Decrypt", "kms:GenerateDataKey"], [storage.key.key_arn])
        self.scoring.allow(["cloudwatch:PutMetricData"], ["*"],
                           {"StringEquals": {"cloudwatch:namespace": props.metrics_namespace}}, reason=METRIC_REASON)

        properties: dict[str, object] = {"ScoringFunction": fn.function_name}
        if props.seed_families:
            document = json.dumps([f.model_dump(mode="json") for f in props.seed_families], sort_keys=True).encode()
            folder = Path(tempfile.mkdtemp(prefix="mlops-seed-families-"))
            (folder / "families.json").write_bytes(document)
            asset = s3_assets.Asset(self, "SeedFamilies", path=str(folder / "families.json"))
            props.bootstrap.allow(["s3:GetObject"], [asset.bucket.arn_for_objects(asset.s3_object_key)])
            properties["SeedFamilies"] = {"Bucket": asset.s3_bucket_name, "Key": asset.s3_object_key,
                                          "Sha256": hashlib.sha256(document).hexdigest()}
        self.setup = CustomResource(self, "Setup", service_token=props.bootstrap.function.function_arn,
                                    resource_type=SHARED_RESOURCE_TYPE, properties=properties)
        self.alias_name = "live"
        self.alias_arn = f"{fn.function_arn}:{self.alias_name}"
        alias = lambda_.Function.from_function_attributes(self, "LiveAlias", function_arn=self.alias_arn,
                                                          same_environment=True)
        resource = props.api.models.add_resource("{name}")
        integration = apigw.LambdaIntegration(alias, proxy=True, allow_test_invoke=False)
        methods = [
            resource.add_resource("predict").add_method(
                "POST", integration, request_validator=props.api.validator,
                request_models={"application/json": props.api.predict_model}),
            resource.add_method("GET", integration),
            resource.add_resource("openapi.json").add_method("GET", integration),
        ]
        for method in methods:
            method.node.add_dependency(self.setup)
        self.routes = ["POST /models/{name}/predict", "GET /models/{name}", "GET /models/{name}/openapi.json"]
