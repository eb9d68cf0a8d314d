"""The shared scoring tier in the synthesized stack: nothing grows with shared-tier families (resources, alarms,
routes), the scoring roles read models only (never holdouts, baselines or data sets), the routes /models/{name}
reach the shared function's `live` alias, seed families travel in one asset, and code rollouts have their own
state machine from the shared definition file."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from .conftest import SHARED_SEED, cdk_context, synthesize


def _context_with_shared_families(count: int) -> dict:
    context = cdk_context()
    seed = context["mlops"]["families"][1]
    context["mlops"]["families"] = [{**seed, "name": f"family-{i:03d}"} for i in range(count)]
    return context


@pytest.fixture(scope="module")
def one_and_five_hundred(tmp_path_factory):
    return (synthesize(tmp_path_factory.mktemp("one"), _context_with_shared_families(1)),
            synthesize(tmp_path_factory.mktemp("many"), _context_with_shared_families(500)))


def test_resources_are_the_same_with_1_and_500_shared_tier_families(one_and_five_hundred):
    one, many = one_and_five_hundred
    assert set(one.template["Resources"]) == set(many.template["Resources"])
    assert Counter(r["Type"] for r in one.template["Resources"].values()) == \
        Counter(r["Type"] for r in many.template["Resources"].values())
    assert set(one.template["Outputs"]) == set(many.template["Outputs"])
    # The template's size does not grow either: the seed families are an asset, not properties.
    size = len(json.dumps(one.template)), len(json.dumps(many.template))
    assert abs(size[0] - size[1]) < 200, size


def test_seed_families_are_one_asset_registered_by_one_custom_resource(synthesized):
    (setup,) = synthesized.resources("Custom::SharedScoring").values()
    props = setup["Properties"]
    assert set(props) == {"ServiceToken", "ScoringFunction", "SeedFamilies"}
    assert set(props["SeedFamilies"]) == {"Bucket", "Key", "Sha256"}
    key = json.dumps(props["SeedFamilies"]["Key"])
    source = next(f["source"]["path"] for h, f in synthesized.manifest["files"].items() if h in key)
    raw = (synthesized.outdir / source).read_bytes()
    assert [f["name"] for f in json.loads(raw)] == [SHARED_SEED]
    import hashlib

    assert hashlib.sha256(raw).hexdigest() == props["SeedFamilies"]["Sha256"]


def _policy_statements(synthesized, role_prefix: str) -> list[dict]:
    statements = []
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"]["Roles"])
        if role_prefix in roles:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    assert statements, role_prefix
    return statements


def _actions(statement: dict) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


@pytest.mark.parametrize("role", ["SharedScoringRole", "FamilyCreditRiskScoringRole"])
def test_scoring_roles_read_models_only(synthesized, role):
    statements = _policy_statements(synthesized, role)
    reads = [json.dumps(s["Resource"]) for s in statements if "s3:GetObject" in _actions(s)]
    assert reads and all("/models/sha256/*" in r for r in reads), reads
    text = json.dumps(statements)
    assert "/artifacts/" not in text and "/datasets/" not in text and "/training-jobs/" not in text
    writes = [json.dumps(s["Resource"]) for s in statements if "s3:PutObject" in _actions(s)]
    assert all("/captures/" in w or "/decisions/" in w for w in writes), writes
    assert not any(a.startswith(("lambda:", "states:", "dynamodb:Put", "dynamodb:Query"))
                   for s in statements for a in _actions(s))
    # The one registry write: the capture mark on its families' META items, that attribute only, nothing returned.
    updates = [s for s in statements if any(a.startswith("dynamodb:Update") for a in _actions(s))]
    assert len(updates) == 1 and _actions(updates[0]) == ["dynamodb:UpdateItem"], updates
    conditions = updates[0]["Condition"]
    assert conditions["ForAllValues:StringEquals"]["dynamodb:Attributes"] == ["PK", "SK", "last_capture_at"]
    assert conditions["StringEqualsIfExists"]["dynamodb:ReturnValues"] == "NONE"
    leading = conditions["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    assert leading == (["FAMILY#*"] if role == "SharedScoringRole" else ["FAMILY#credit-risk"])


def test_pipeline_roles_reach_training_data_and_models_where_they_need_them(synthesized):
    evaluate = json.dumps(_policy_statements(synthesized, "PipelineEvaluateRole"))
    assert "/models/sha256/*" in evaluate and "/artifacts/sha256/*" in evaluate
    drift = json.dumps(_policy_statements(synthesized, "MonitoringDriftRole"))
    assert "/artifacts/sha256/*" in drift and "/models/" not in drift


def test_shared_routes_reach_the_shared_alias_and_dedicated_routes_stay_static(synthesized):
    resources = synthesized.resources("AWS::ApiGateway::Resource")
    parts = {k: r["Properties"]["PathPart"] for k, r in resources.items()}
    assert "{name}" in parts.values() and "credit-risk" in parts.values()
    assert SHARED_SEED not in parts.values(), "a shared-tier family has no resources of its own"
    methods = synthesized.resources("AWS::ApiGateway::Method").values()
    shared = [m for m in methods if "SharedScoringFunction" in json.dumps(m["Properties"].get("Integration", {}))]
    assert len(shared) == 3
    for method in shared:
        assert ":live/invocations" in json.dumps(method["Properties"]["Integration"]["Uri"])
        assert method["Properties"]["AuthorizationType"] == "AWS_IAM"


def test_shared_function_settings_and_no_alias_managed_by_cloudformation(synthesized):
    shared = next(f for f in synthesized.resources("AWS::Lambda::Function").values()
                  if f["Properties"]["Environment"]["Variables"].get("POWERTOOLS_SERVICE_NAME") == "mlops-score-shared")
    variables = shared["Properties"]["Environment"]["Variables"]
    assert variables["MLOPS_ROUTING_TTL_SECONDS"] == "5" and variables["MLOPS_MODEL_CACHE_MIB"] == "1536"
    assert "MLOPS_MODEL_FAMILY" not in variables and shared["Properties"]["MemorySize"] == 2048


def test_code_rollout_state_machine_is_the_shared_definition_run_by_the_control_function(synthesized):
    from infra.code_rollout import DEFINITION_FILE

    machines = synthesized.resources("AWS::StepFunctions::StateMachine")
    (machine,) = (m["Properties"] for k, m in machines.items() if k.startswith("SharedCodeRollout"))
    deployed = (synthesized.outdir / f"asset.{machine['DefinitionS3Location']['Key']}").read_text()
    assert json.loads(deployed) == json.loads(DEFINITION_FILE.read_text())
    assert set(machine["DefinitionSubstitutions"]) == {"ControlFunctionArn"}
    control = next(f for f in synthesized.resources("AWS::Lambda::Function").values()
                   if f["Properties"]["Environment"]["Variables"].get("POWERTOOLS_SERVICE_NAME") == "mlops-control")
    names = json.dumps(control["Properties"]["Environment"]["Variables"]["MLOPS_CODE_ROLLOUT_STATE_MACHINE_ARN"])
    assert machine["StateMachineName"] == "MlopsPlatform-SharedCodeRollout" and machine["StateMachineName"] in names


def test_alarms_are_per_tier_with_the_family_as_a_dimension(one_and_five_hundred):
    one, many = one_and_five_hundred
    alarms = one.resources("AWS::CloudWatch::Alarm")
    assert len(alarms) == len(many.resources("AWS::CloudWatch::Alarm"))
    queries = [a["Properties"]["Metrics"][0].get("Expression", "") for a in alarms.values()
               if "Metrics" in a["Properties"]]
    assert all("GROUP BY Family" in q for q in queries if q.startswith("SELECT"))
    assert not any("family-000" in json.dumps(a) for a in alarms.values()), "no alarm names a family"


def test_the_shared_custom_resource_registers_seed_families_and_creates_the_alias_once():
    import hashlib
    import io
    import zipfile

    import boto3
    from mlops.core import aws
    from mlops.data.synthetic import credit_risk_family
    from mlops.registry.store import TABLE_DEFINITION, ModelRegistry
    from mlops.rollout.bootstrap import SHARED_RESOURCE_TYPE, handle
    from moto import mock_aws

    with mock_aws(config={"core": {"reset_boto3_session": True}}):
        aws.reset_clients()
        boto3.client("dynamodb").create_table(TableName="registry", **TABLE_DEFINITION)
        registry = ModelRegistry("registry")
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("handler.py", "")
        lam = boto3.client("lambda")
        lam.create_function(FunctionName="shared", Runtime="python3.12", Role=role, Handler="handler.lambda_handler",
                            Code={"ZipFile": buffer.getvalue()})
        body = json.dumps([credit_risk_family(name=n).model_dump(mode="json") for n in ("fam-a", "fam-b")]).encode()
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="cdk-assets")
        s3.put_object(Bucket="cdk-assets", Key="seed.json", Body=body)
        location = {"Bucket": "cdk-assets", "Key": "seed.json", "Sha256": hashlib.sha256(body).hexdigest()}

        def event(kind: str, seed: dict) -> dict:
            return {"RequestType": kind, "ResourceType": SHARED_RESOURCE_TYPE, "PhysicalResourceId": "shared-scoring",
                    "ResourceProperties": {"ScoringFunction": "shared", "SeedFamilies": seed}}

        created = handle(event("Create", location), registry)
        assert created["Data"] == {"AliasVersion": "1", "SeedFamilies": 2}
        assert registry.get_family("fam-b").scoring_function == "shared"
        lam.update_function_code(FunctionName="shared", ZipFile=buffer.getvalue() + b" ")
        version = lam.publish_version(FunctionName="shared")["Version"]  # a code rollout moved the alias to it
        lam.update_alias(FunctionName="shared", Name="live", FunctionVersion=version)
        assert handle(event("Update", location), registry)["Data"]["AliasVersion"] == version != "1", \
            "a deploy moves nothing"
        with pytest.raises(ValueError, match="does not match its sha256"):
            handle(event("Update", {**location, "Sha256": "0" * 64}), registry)
        aws.reset_clients()
