"""The synthesized template: every property the infrastructure promises, checked on the real template."""

from __future__ import annotations

import json
import re

from mlops.core import settings as settings_module
from mlops.core.settings import Env, load_settings

from .conftest import ROOT

DEFINITION = json.loads((ROOT / "infra" / "statemachine" / "pipeline.asl.json").read_text())


def _one(synth, kind):
    found = synth.resources(kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return next(iter(found.values()))


def test_artifact_bucket_is_versioned_kms_encrypted_tls_only_private_and_logged(synth_bucket):
    props = synth_bucket["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms" and rule["BucketKeyEnabled"]
    assert props["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                       "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert "DestinationBucketName" in props["LoggingConfiguration"]
    rules = {r.get("Id"): r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireCaptures"]["Prefix"] == "captures/" and rules["ExpireCaptures"]["ExpirationInDays"] == 90
    assert synth_bucket["DeletionPolicy"] == "Retain"


def test_buckets_deny_plain_http(synthesized):
    policies = synthesized.resources("AWS::S3::BucketPolicy").values()
    assert len(policies) == 2
    for policy in policies:
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(s["Effect"] == "Deny" and s["Condition"].get("Bool", {}).get("aws:SecureTransport") == "false"
                   for s in statements)


def test_registry_table_on_demand_pitr_deletion_protected_kms(synthesized):
    table = _one(synthesized, "AWS::DynamoDB::Table")
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["DeletionProtectionEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True and props["SSESpecification"]["SSEType"] == "KMS"
    assert [k["AttributeName"] for k in props["KeySchema"]] == ["PK", "SK"]
    assert [i["IndexName"] for i in props["GlobalSecondaryIndexes"]] == ["GSI1", "GSI2"]
    assert table["DeletionPolicy"] == "Retain"


def test_kms_key_rotates(synthesized):
    assert _one(synthesized, "AWS::KMS::Key")["Properties"]["EnableKeyRotation"] is True


def test_state_machine_is_the_shared_definition_with_logging_all_and_tracing(synthesized):
    (machine,) = (m["Properties"] for k, m in synthesized.resources("AWS::StepFunctions::StateMachine").items()
                  if k.startswith("Pipeline"))
    assert machine["StateMachineType"] == "STANDARD"
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["LoggingConfiguration"]["IncludeExecutionData"] is True
    assert machine["TracingConfiguration"] == {"Enabled": True}
    # The deployed definition is the shared file itself (an asset), with CDK substituting the function ARNs.
    deployed = (synthesized.outdir / f"asset.{machine['DefinitionS3Location']['Key']}").read_text()
    assert json.loads(deployed) == DEFINITION
    placeholders = set(re.findall(r"\$\{(\w+)\}", deployed))
    substitutions = machine["DefinitionSubstitutions"]
    assert set(substitutions) == placeholders == {"TrainFunctionArn", "EvaluateFunctionArn", "ControlFunctionArn"}
    for name, prefix in (("TrainFunctionArn", "PipelineTrainFunction"), ("EvaluateFunctionArn", "PipelineEvaluate"),
                         ("ControlFunctionArn", "PipelineControlFunction")):
        assert substitutions[name]["Fn::GetAtt"][0].startswith(prefix)


FUNCTION_SETTINGS = {
    "trigger": settings_module.TriggerSettings, "train": settings_module.TrainSettings,
    "evaluate": settings_module.EvaluateSettings, "control": settings_module.RolloutSettings,
    "score": settings_module.ScoringSettings, "drift": settings_module.DriftSettings,
    "bootstrap": settings_module.StorageSettings, "audit": settings_module.AuditSettings,
    "families": settings_module.FamiliesSettings, "score_shared": settings_module.SharedScoringSettings,
    "performance": settings_module.PerformanceSettings,
}


def test_every_function_environment_validates_against_its_settings_model(synthesized):
    functions = {k: v for k, v in synthesized.resources("AWS::Lambda::Function").items()
                 if "BucketNotificationsHandler" not in k}
    assert len(functions) == 11
    seen = set()
    for function in functions.values():
        variables = function["Properties"]["Environment"]["Variables"]
        service = variables[Env.SERVICE_NAME]
        source = "score_shared" if service == "mlops-score-shared" else re.sub(r"^mlops-", "", service).split("-")[0]
        model = FUNCTION_SETTINGS[source]
        concrete = {k: (v if isinstance(v, str) else _placeholder(k)) for k, v in variables.items()}
        load_settings(model, concrete)  # raises ConfigurationError naming the variable on any gap
        seen.add(source)
        assert function["Properties"]["Runtime"] == "python3.12"
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}
        assert function["Properties"]["LoggingConfig"]["LogFormat"] == "JSON"
        assert function["Properties"]["Architectures"] == ["x86_64"]
    assert seen == set(FUNCTION_SETTINGS)


def _placeholder(name):
    return {Env.ARTIFACT_BUCKET: "bucket-name", Env.REGISTRY_TABLE: "table-name",
            Env.STATE_MACHINE_ARN: "arn:aws:states:us-east-1:123456789012:stateMachine:x",
            Env.ALERTS_TOPIC_ARN: "arn:aws:sns:us-east-1:123456789012:alerts",
            Env.TRAINING_CODE_URI: "s3://assets/code.gz", Env.TRAINING_VENDOR_URI: "s3://assets/vendor.gz",
            Env.TRAINING_ROLES: '{"credit-risk": "arn:aws:iam::123456789012:role/x"}',
            Env.CODE_ROLLOUT_STATE_MACHINE_ARN: "arn:aws:states:us-east-1:123456789012:stateMachine:y"}.get(name, "x")


def test_scoring_api_routes_are_iam_authorized_validated_and_integrated_with_the_live_alias(synthesized):
    methods = synthesized.resources("AWS::ApiGateway::Method")
    by_route = {}
    for method in methods.values():
        props = method["Properties"]
        assert props["AuthorizationType"] == "AWS_IAM"
        uri = json.dumps(props["Integration"]["Uri"])
        if "AuditFunction" in uri or "FamiliesFunction" in uri:  # management routes (test_audit_infra.py,
            continue                                                 # test_families_infra.py)
        assert ("FamilyCreditRiskScoringFunction" in uri or "SharedScoringFunction" in uri) and \
            ":live/invocations" in uri
        by_route[(props["HttpMethod"], "SharedScoringFunction" in uri)] = props
    assert set(by_route) == {("GET", True), ("POST", True), ("GET", False), ("POST", False)}
    by_route = {method: props for (method, _), props in by_route.items()}
    assert "RequestValidatorId" in by_route["POST"] and "RequestModels" in by_route["POST"]
    stage = _one(synthesized, "AWS::ApiGateway::Stage")["Properties"]
    assert stage["TracingEnabled"] is True and "AccessLogSetting" in stage
    settings = stage["MethodSettings"][0]
    assert settings["ThrottlingRateLimit"] == 100 and settings["ThrottlingBurstLimit"] == 200
    assert settings["DataTraceEnabled"] is False


def test_predict_request_model_bounds_the_record_count(synthesized):
    model = _one(synthesized, "AWS::ApiGateway::Model")["Properties"]["Schema"]
    assert model["required"] == ["instances"] and model["properties"]["instances"]["maxItems"] == 1000


def test_gateway_errors_are_json_with_request_id(synthesized):
    responses = synthesized.resources("AWS::ApiGateway::GatewayResponse").values()
    types = {r["Properties"]["ResponseType"] for r in responses}
    assert {"DEFAULT_4XX", "DEFAULT_5XX", "BAD_REQUEST_BODY"} <= types
    for response in responses:
        assert "$context.requestId" in response["Properties"]["ResponseTemplates"]["application/json"]


def test_s3_notification_sends_datasets_prefix_to_the_trigger(synthesized):
    notification = _one(synthesized, "Custom::S3BucketNotifications")["Properties"]["NotificationConfiguration"]
    config = notification["LambdaFunctionConfigurations"][0]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "datasets/"}]
    assert "TriggersTrigger" in json.dumps(config["LambdaFunctionArn"])


def test_drift_schedule_alarms_topic_and_dashboard(synthesized):
    rules = {k: r for k, r in synthesized.resources("AWS::Events::Rule").items()
             if "ScheduleExpression" in r["Properties"] and k.startswith("Monitoring")}
    details = sorted((r["Properties"]["ScheduleExpression"],
                      json.dumps(json.loads(r["Properties"]["Targets"][0]["Input"]), sort_keys=True))
                     for r in rules.values())
    # The dedicated family's own schedule, and one for every shared-tier family: both start the drift fan-out.
    # Schedules skip families with no capture since their last check (skip_idle): an idle family costs nothing.
    assert details == [("rate(1 hour)", '{"families": ["credit-risk"], "skip_idle": true, "tier": ""}'),
                       ("rate(1 hour)", '{"families": [], "skip_idle": true, "tier": "shared"}')]
    fanout = next(k for k, v in synthesized.resources("AWS::StepFunctions::StateMachine").items()
                  if "DriftFanout" in k)
    for rule in rules.values():
        assert rule["Properties"]["Targets"][0]["Arn"] == {"Ref": fanout}
    topic = _one(synthesized, "AWS::SNS::Topic")["Properties"]
    assert "KmsMasterKeyId" in topic
    alarms = synthesized.resources("AWS::CloudWatch::Alarm").values()
    names = set()
    for a in alarms:
        props = a["Properties"]
        if props.get("MetricName"):
            names.add(props["MetricName"])
        else:
            query = props["Metrics"][0]
            names.add(query["MetricStat"]["Metric"]["MetricName"] if "MetricStat" in query else query["Expression"])
    assert {"Duration", "5XXError", "ExecutionsFailed"} <= names
    insights = [n for n in names if n.startswith("SELECT")]
    for metric in ("SUM(Errors)", "AVG(Latency)", "SUM(ArtifactIntegrityFailures)", "MAX(DriftedFeatures)"):
        assert any(q.startswith(f"SELECT {metric}") and "GROUP BY Family" in q for q in insights), metric
    scoring = [q for q in insights if "(Errors)" in q or "(Latency)" in q]
    assert sum("WHERE Tier = 'shared'" in q for q in scoring) == 2
    assert sum("WHERE Tier = 'dedicated'" in q for q in scoring) == 2
    assert all(a["Properties"]["AlarmActions"] for a in alarms)
    dashboard = json.dumps(_one(synthesized, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    for metric in ("Latency", "Duration", "Errors", "CanaryWeight"):
        assert metric in dashboard


def test_log_groups_are_encrypted_with_retention(synthesized):
    groups = synthesized.resources("AWS::Logs::LogGroup").values()
    assert len(groups) >= 9
    for group in groups:
        assert group["Properties"]["RetentionInDays"] == 90 and "KmsKeyId" in group["Properties"]


def test_outputs_name_what_operators_need(synthesized):
    outputs = synthesized.template["Outputs"]
    for name in ("ArtifactBucket", "RegistryTable", "ScoringApiUrl", "PipelineStateMachine", "AlertsTopic",
                 "Dashboard", "ScoringFunctionCreditRisk", "DriftFunction", "DriftFanout", "SharedScoringFunction"):
        assert name in outputs


def test_no_physical_names_on_storage_functions_roles_topics(synthesized):
    named = []
    for logical, resource in synthesized.template["Resources"].items():
        props = resource.get("Properties", {})
        for key in ("BucketName", "TableName", "FunctionName", "RoleName", "TopicName", "LogGroupName"):
            if key in props and not resource["Type"].startswith(
                    ("Custom::", "AWS::Lambda::Permission", "AWS::Lambda::EventInvokeConfig")):
                named.append((logical, key))
    assert named == []


def test_the_drift_fanout_is_a_bounded_distributed_map_and_concurrency_is_reserved_apart_from_scoring(synthesized):
    machine = next(v for k, v in synthesized.resources("AWS::StepFunctions::StateMachine").items()
                   if "DriftFanout" in k)["Properties"]
    # The deployed definition is the file the local runtime runs, with the function and the bound substituted.
    deployed = (synthesized.outdir / f"asset.{machine['DefinitionS3Location']['Key']}").read_text()
    assert deployed == (ROOT / "infra" / "statemachine" / "drift_fanout.asl.json").read_text()
    assert machine["DefinitionSubstitutions"]["MaxConcurrency"] == "10"
    assert machine["DefinitionSubstitutions"]["BatchSize"] == "10"
    mapped = json.loads(deployed.replace("${MaxConcurrency}", "10").replace("${BatchSize}", "10"))["States"][
        "CheckFamilies"]
    assert mapped["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED" and mapped["MaxConcurrency"] == 10
    functions = synthesized.resources("AWS::Lambda::Function")
    reserved = {k: f["Properties"].get("ReservedConcurrentExecutions") for k, f in functions.items()}
    drift = next(v for k, v in reserved.items() if "MonitoringDriftFunction" in k)
    train = next(v for k, v in reserved.items() if "PipelineTrainFunction" in k)
    evaluate = next(v for k, v in reserved.items() if "PipelineEvaluateFunction" in k)
    assert (drift, train, evaluate) == (10, 10, 10)
    role = next(v for k, v in synthesized.resources("AWS::IAM::Policy").items() if "DriftFanoutRole" in k)
    actions = {a for st in role["Properties"]["PolicyDocument"]["Statement"]
               for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    assert {"states:StartExecution", "states:DescribeExecution", "s3:GetObject", "lambda:InvokeFunction"} <= actions
    alarms = json.dumps(synthesized.resources("AWS::CloudWatch::Alarm"))
    assert "SUM(DriftCheckErrors)" in alarms and "GROUP BY Family" in alarms
