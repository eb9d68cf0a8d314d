"""Performance monitoring in the template: labels/ notifications and one platform schedule to the performance
function, alarms per serving tier whatever the number of families, least-privilege writes (its records and reports
only, never the labels or decisions it reads), the alerts topic, and the dashboard row."""

from __future__ import annotations

import json

import pytest

from .conftest import cdk_context, synthesize
from .test_audit_infra import _statements


def _actions(statement):
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def _resources(statement):
    return statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]


def test_labels_prefix_notifies_the_performance_function(synthesized):
    (notifications,) = synthesized.resources("Custom::S3BucketNotifications").values()
    configs = notifications["Properties"]["NotificationConfiguration"]["LambdaFunctionConfigurations"]
    labels = [c for c in configs if c["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "labels/"}]]
    assert len(labels) == 1 and labels[0]["Events"] == ["s3:ObjectCreated:*"]
    assert "PerformanceChecksFunction" in json.dumps(labels[0]["LambdaFunctionArn"])


def test_one_platform_schedule_checks_every_family(synthesized):
    rules = [r["Properties"] for k, r in synthesized.resources("AWS::Events::Rule").items()
             if k.startswith("PerformanceSchedule")]
    assert len(rules) == 1 and rules[0]["ScheduleExpression"] == "rate(6 hours)"
    (target,) = rules[0]["Targets"]
    assert json.loads(target["Input"]) == {"detail-type": "Scheduled Event", "source": "mlops.performance",
                                           "detail": {}}
    assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] == 2


def _performance_alarms(synth):
    """(properties, Metrics Insights query) of each alarm on a breach metric."""
    found = []
    for alarm in synth.resources("AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        query = (props.get("Metrics") or [{}])[0].get("Expression") or ""
        if "PerformanceBreaches" in query:
            found.append((props, query))
    return found


def test_breaches_are_alarmed_per_tier_grouped_by_family_never_per_family(synthesized):
    alarms = _performance_alarms(synthesized)
    queries = sorted(q for _, q in alarms)
    assert len(queries) == 4  # realised and estimated, for each of the two tiers
    for metric in ("EstimatedPerformanceBreaches", "PerformanceBreaches"):
        for tier in ("shared", "dedicated"):
            assert sum(q.startswith(f"SELECT MAX({metric}) ") and f"WHERE Tier = '{tier}'" in q for q in queries) \
                == 1, (metric, tier)
    for alarm, query in alarms:
        assert 'SCHEMA("MLOpsPlatform", Family, Tier)' in query and "GROUP BY Family" in query
        assert "credit-risk" not in query  # no family is named: the contributors are
        assert alarm["Threshold"] == 1 and alarm["AlarmActions"]
        assert alarm["TreatMissingData"] == "notBreaching"
    dashboard = json.dumps(next(iter(synthesized.resources("AWS::CloudWatch::Dashboard").values()))["Properties"])
    assert "PerformanceBreaches" in dashboard and "RealisedMetric" in dashboard and "LabelCoverage" in dashboard


@pytest.mark.slow
def test_more_families_add_no_performance_alarm_schedule_or_function(tmp_path):
    context = cdk_context()
    base = context["mlops"]["families"][0]
    context["mlops"] = {**context["mlops"], "families": [{**base, "name": f"family-{i}"} for i in range(3)]}
    many = synthesize(tmp_path, context)
    assert len(_performance_alarms(many)) == 4
    assert len([k for k in many.resources("AWS::Events::Rule") if k.startswith("PerformanceSchedule")]) == 1
    assert len([k for k in many.resources("AWS::Lambda::Function") if k.startswith("PerformanceChecks")]) == 1


def test_performance_role_writes_only_its_records_and_reports(synthesized):
    statements = _statements(synthesized, "PerformanceChecksRole")
    puts = [s for s in statements if "s3:PutObject" in _actions(s)]
    written = json.dumps([_resources(s) for s in puts])
    assert "/labels-ingested/*" in written and "/reports/performance/*" in written
    assert "/labels/*" not in written and "/decisions/" not in written and "/datasets/" not in written
    assert not any(a.startswith(("s3:Delete", "dynamodb:PutItem", "dynamodb:DeleteItem", "lambda:"))
                   for s in statements for a in _actions(s))
    reads = json.dumps([_resources(s) for s in statements if "s3:GetObject" in _actions(s)])
    assert all(p in reads for p in ("/decisions/*", "/labels/*", "/labels-ingested/*"))
    assert "/artifacts/" not in reads  # no model artifacts or holdout copies: the lineage in the registry suffices
    publish = [s for s in statements if "sns:Publish" in _actions(s)]
    assert len(publish) == 1 and publish[0]["Resource"] == {"Ref": next(
        k for k in synthesized.resources("AWS::SNS::Topic") if k.startswith("MonitoringAlerts"))}
