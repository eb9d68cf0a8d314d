"""cdk-nag AwsSolutions and cfn-lint on the synthesized template; least-privilege IAM; config validation."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from infra.config import ConfigError, load_config

from .conftest import ROOT, cdk_context

# Actions that AWS offers without resource-level permissions, so Resource "*" is the only option.
STAR_ONLY_ACTIONS = {
    "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets",
    "cloudwatch:PutMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:ListMetrics",
    "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
    "s3:PutBucketNotification",  # CDK's notifications handler, scoped by the bucket it is given
}
BROAD_ACTION = re.compile(r"^[a-z0-9-]+:\*$|^\*$")


def test_cdk_nag_has_no_unacknowledged_findings_and_every_acknowledgment_has_a_reason(synthesized):
    report = json.loads((synthesized.outdir / "validation-report.json").read_text())
    plugin = report["pluginReports"][0]
    assert plugin["pluginName"] == "AwsSolutions" and plugin["conclusion"] == "success"
    assert plugin["violations"] == []
    for suppressed in plugin["suppressedViolations"]:
        reason = suppressed.get("reason", "")
        assert len(reason) >= 40, f"{suppressed['ruleName']} acknowledged without a real reason: {reason!r}"
        assert suppressed["acknowledgedId"].endswith(suppressed["ruleName"])  # granular, never a blanket rule


def test_cfn_lint_reports_no_errors(synthesized):
    template = synthesized.outdir / "MlopsPlatform.template.json"
    result = subprocess.run([sys.executable, "-m", "cfnlint", "--config-file", str(ROOT / ".cfnlintrc.yaml"),
                             "--format", "parseable", str(template)], capture_output=True, text=True, cwd=ROOT)
    findings = [line for line in result.stdout.splitlines() if line.strip()]
    assert findings == [], "\n".join(findings)


def _statements(synthesized):
    for logical, resource in synthesized.template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Policy":
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                yield logical, statement
        if resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    yield logical, statement


def test_iam_statements_name_their_resources_and_never_grant_whole_services(synthesized):
    problems = []
    for logical, statement in _statements(synthesized):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if any(BROAD_ACTION.match(a) for a in actions):
            problems.append(f"{logical}: service-wide action in {actions}")
        if "*" in resources and not set(actions) <= STAR_ONLY_ACTIONS:
            problems.append(f"{logical}: Resource * for {sorted(set(actions) - STAR_ONLY_ACTIONS)}")
        if statement["Effect"] == "Allow" and any(a.startswith("cloudwatch:PutMetricData") for a in actions):
            assert statement.get("Condition", {}).get("StringEquals", {}).get("cloudwatch:namespace"), logical
    assert problems == []


def test_no_role_uses_managed_policies_except_cdk_and_api_gateway_singletons(synthesized):
    for logical, resource in synthesized.template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role" and resource["Properties"].get("ManagedPolicyArns"):
            assert logical.startswith(("BucketNotificationsHandler", "ScoringApiCloudWatchRole")), logical


def test_scoring_role_cannot_touch_data_sets_or_other_families_captures(synthesized):
    policies = {k: v for k, v in synthesized.resources("AWS::IAM::Policy").items() if "CreditRiskScoring" in k}
    text = json.dumps(policies)
    assert "/datasets/" not in text and "dynamodb:PutItem" not in text
    assert "/captures/family=credit-risk/*" in text and "lambda:" not in text
    # Its one registry write: the capture mark on its own family's item (tests/infra/test_shared_tier_infra.py).
    updates = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]
               if "dynamodb:UpdateItem" in json.dumps(s["Action"])]
    assert [u["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] for u in updates] == \
        [["FAMILY#credit-risk"]]


@pytest.mark.parametrize(("path", "value", "named"), [
    (("families", 0, "canary", "steps"), [50, 10, 100], "mlops.families[0].canary.steps"),
    (("families", 0, "name"), "Credit_Risk", "mlops.families[0].name"),
    (("families", 0, "drift", "schedule"), "hourly", "mlops.families[0].drift.schedule"),
    (("families", 0, "target"), "age", "mlops.families[0]"),
    (("log_retention_days",), 42, "mlops.log_retention_days"),
    (("architecture",), "sparc", "mlops.architecture"),
    (("alarm_email",), "not-an-address", "mlops.alarm_email"),
    (("api", "throttle_rate_limit"), -1, "mlops.api.throttle_rate_limit"),
    (("families", 0, "surprise"), 1, "mlops.families[0].surprise"),
])
def test_invalid_config_fails_synth_naming_the_field(path, value, named):
    config = json.loads(json.dumps(cdk_context()["mlops"]))
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert named in str(raised.value)


def test_duplicate_family_names_fail():
    config = json.loads(json.dumps(cdk_context()["mlops"]))
    config["families"].append(config["families"][0])
    with pytest.raises(ConfigError, match="repeated"):
        load_config(config)


def test_app_exits_with_the_config_error_not_a_stack_trace(tmp_path):
    bad = cdk_context()
    bad["mlops"] = {**bad["mlops"], "architecture": "sparc"}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True,
                            env={"CDK_CONTEXT_JSON": json.dumps(bad), "CDK_OUTDIR": str(tmp_path),
                                 "PATH": "/usr/bin:/bin", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"})
    assert result.returncode == 1
    assert "mlops.architecture" in result.stderr and "Traceback" not in result.stderr
