"""Nothing lost silently, on the synthesized template: alarms can publish, failed events have a queue, executions
ending outside the definition's Catch reach the control function, and outcomes are alarmed."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

from .conftest import ROOT

DEFINITION = json.loads((ROOT / "infra" / "statemachine" / "pipeline.asl.json").read_text())


def _logical(synthesized, kind: str, prefix: str) -> str:
    found = [k for k in synthesized.resources(kind) if k.startswith(prefix)]
    assert len(found) == 1, (kind, prefix, found)
    return found[0]


def test_alerts_topic_policy_lets_cloudwatch_alarms_of_this_account_publish(synthesized):
    topic = _logical(synthesized, "AWS::SNS::Topic", "MonitoringAlerts")
    synthesized.assertions.has_resource_properties("AWS::SNS::TopicPolicy", {
        "Topics": [{"Ref": topic}],
        "PolicyDocument": {"Statement": Match.array_with([
            Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
            Match.object_like({
                "Effect": "Allow", "Action": "sns:Publish", "Resource": {"Ref": topic},
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                              "ArnLike": {"aws:SourceArn": Match.any_value()}},
            }),
        ])},
    })


def test_failed_events_queue_is_encrypted_tls_only_and_kept_14_days(synthesized):
    queue = _logical(synthesized, "AWS::SQS::Queue", "FailedEventsQueue")
    props = synthesized.resources("AWS::SQS::Queue")[queue]["Properties"]
    assert "StorageKey" in json.dumps(props["KmsMasterKeyId"]) and props["MessageRetentionPeriod"] == 14 * 86400
    synthesized.assertions.has_resource_properties("AWS::SQS::QueuePolicy", {
        "Queues": [{"Ref": queue}],
        "PolicyDocument": {"Statement": Match.array_with([Match.object_like(
            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])},
    })


def test_trigger_drift_performance_and_control_send_failed_asynchronous_events_to_the_queue(synthesized):
    queue = _logical(synthesized, "AWS::SQS::Queue", "FailedEventsQueue")
    configs = synthesized.resources("AWS::Lambda::EventInvokeConfig").values()
    guarded = set()
    for config in configs:
        props = config["Properties"]
        assert props["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": [queue, "Arn"]}
        assert props["MaximumRetryAttempts"] == 2
        guarded.add(props["FunctionName"]["Ref"].split("Function")[0])
    assert guarded == {"TriggersTrigger", "MonitoringDrift", "PipelineControl", "PerformanceChecks"}
    policies = synthesized.resources("AWS::IAM::Policy")
    for prefix in ("TriggersTrigger", "MonitoringDrift", "PipelineControl", "PerformanceChecks"):
        statements = next(p for k, p in policies.items() if k.startswith(prefix))["Properties"]["PolicyDocument"][
            "Statement"]
        assert any(s["Action"] == "sqs:SendMessage" and s["Resource"] == {"Fn::GetAtt": [queue, "Arn"]}
                   for s in statements), prefix


def test_executions_ending_outside_the_catch_reach_the_control_function(synthesized):
    queue = _logical(synthesized, "AWS::SQS::Queue", "FailedEventsQueue")
    control = _logical(synthesized, "AWS::Lambda::Function", "PipelineControlFunction")
    synthesized.assertions.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {
            "source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"],
            "detail": {"status": ["ABORTED", "FAILED", "TIMED_OUT"],
                       "stateMachineArn": [Match.object_like({"Fn::Join": Match.any_value()})]},
        },
        "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [control, "Arn"]},
                                       "DeadLetterConfig": {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}})],
    })
    rule = next(r for r in synthesized.resources("AWS::Events::Rule").values() if "EventPattern" in r["Properties"])
    assert "ModelPipeline" in json.dumps(rule["Properties"]["EventPattern"]["detail"]["stateMachineArn"])
    synthesized.assertions.has_resource_properties("AWS::Lambda::Permission", {
        "Action": "lambda:InvokeFunction", "FunctionName": {"Fn::GetAtt": [control, "Arn"]},
        "Principal": "events.amazonaws.com",
    })


def test_drift_schedules_have_a_dead_letter_queue(synthesized):
    queue = _logical(synthesized, "AWS::SQS::Queue", "FailedEventsQueue")
    for rule in synthesized.resources("AWS::Events::Rule").values():
        for target in rule["Properties"]["Targets"]:
            assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}


def test_failed_runs_and_waiting_failed_events_are_alarmed(synthesized):
    queue = _logical(synthesized, "AWS::SQS::Queue", "FailedEventsQueue")
    synthesized.assertions.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "ApproximateNumberOfMessagesVisible", "Namespace": "AWS/SQS",
        "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}],
        "Threshold": 1, "AlarmActions": Match.any_value(),
    })
    synthesized.assertions.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "RolloutOutcome", "Namespace": "MLOpsPlatform", "Statistic": "Sum",
        "Dimensions": [{"Name": "Outcome", "Value": "failed"}], "Threshold": 1, "AlarmActions": Match.any_value(),
    })


def test_roles_can_record_outcomes_and_read_run_histories(synthesized):
    policies = synthesized.resources("AWS::IAM::Policy")

    def statements(prefix):
        return next(p for k, p in policies.items() if k.startswith(prefix))["Properties"]["PolicyDocument"][
            "Statement"]

    trigger = statements("TriggersTrigger")
    assert any(s["Action"] == "cloudwatch:PutMetricData"
               and s["Condition"] == {"StringEquals": {"cloudwatch:namespace": "MLOpsPlatform"}} for s in trigger)
    control = statements("PipelineControl")
    assert any("states:GetExecutionHistory" in s["Action"] and "execution" in json.dumps(s["Resource"])
               for s in control)
    train = statements("PipelineTrain")
    assert any("dynamodb:UpdateItem" in s["Action"] for s in train), "Train records the data set's sha256 on its run"


def test_definition_ends_identical_content_at_a_duplicate_state_and_gated_out_runs_at_gated_out():
    states = DEFINITION["States"]
    assert states["Train"]["Next"] == "DuplicateContent?" and states["Train"]["Parameters"]["trigger.$"] == "$.trigger"
    choice = states["DuplicateContent?"]
    assert choice["Choices"] == [{"Variable": "$.train.duplicate_of", "IsPresent": True, "Next": "FinishDuplicate"}]
    assert choice["Default"] == "SameModel?"
    # PlanTraining recognises most duplicates before the rollout lock; Train those judged while it waited.
    early = states["DuplicateUpload?"]
    assert early["Choices"] == [{"Variable": "$.plan.duplicate_of", "IsPresent": True, "Next": "FinishDuplicate"}]
    assert states["PlanTraining"]["Next"] == "DuplicateUpload?" and early["Default"] == "AcquireRolloutLock"
    assert states["FinishDuplicate"]["Parameters"]["action"] == "finish:duplicate"
    assert states["FinishDuplicate"]["Catch"][0]["Next"] == "HandleFailure"
    assert states[states["FinishDuplicate"]["Next"]] == {"Type": "Succeed", "OutputPath": "$.outcome"}
    assert states["Gate"]["Choices"][0]["Next"] == "FinishGatedOut"
    assert states["FinishGatedOut"]["Parameters"]["action"] == "finish:gated_out"


def test_operators_get_the_failed_events_queue_as_an_output(synthesized):
    queue = _logical(synthesized, "AWS::SQS::Queue", "FailedEventsQueue")
    assert synthesized.template["Outputs"]["FailedEventsQueue"]["Value"] == {"Ref": queue}


def test_definition_ends_a_run_whose_model_is_an_existing_versions_at_unchanged_before_evaluate():
    # Train and CollectTrainingJob both lead here: a byte-identical ONNX artifact is never registered or canaried.
    states = DEFINITION["States"]
    assert states["Train"]["Next"] == states["CollectTrainingJob"]["Next"] == "DuplicateContent?"
    same = states["SameModel?"]
    assert same["Choices"] == [{"Variable": "$.train.identical_to", "IsPresent": True, "Next": "FinishUnchanged"}]
    assert same["Default"] == "Evaluate"
    finish = states["FinishUnchanged"]
    assert finish["Parameters"]["action"] == "finish:unchanged" and finish["Resource"] == "${ControlFunctionArn}"
    assert finish["Catch"][0]["Next"] == "HandleFailure"
    assert states[finish["Next"]] == {"Type": "Succeed", "OutputPath": "$.outcome"}
    from mlops.rollout.control import ACTIONS

    assert "finish:unchanged" in ACTIONS
