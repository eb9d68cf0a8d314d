"""The drift fan-out (issue 12, monitoring at scale): one scheduled run lists the live families once and checks
each in a Distributed Map on the same definition file the stack deploys; a family that fails its check is named
and the others are still checked; retired families and families without traffic cost nothing."""

from __future__ import annotations

import json

from mlops.core import aws

from .conftest import live_model


def _fanout_items(platform, described) -> list[dict]:
    """The families the run's ListFamilies step listed (its output names the S3 object the Map read)."""
    listing = json.loads(described["output"])["listing"]
    assert listing["bucket"] == platform.bucket and listing["key"].startswith("reports/drift-fanout/")
    items = json.loads(aws.client("s3").get_object(Bucket=listing["bucket"], Key=listing["key"])["Body"].read())
    assert sum(len(i["families"]) for i in items) == listing["count"] and len(items) == listing["batches"]
    assert all(len(i["families"]) <= 5 for i in items)  # the local batch size
    return items


def test_one_scheduled_run_checks_every_live_family_of_the_tier_and_names_a_failing_one(platform, new_family,
                                                                                       traffic, monkeypatch):
    drifting = new_family(drift={"min_samples": 300})
    steady = new_family(drift={"min_samples": 300})
    idle = new_family(drift={"min_samples": 300})
    broken = new_family(drift={"min_samples": 300})
    never_trained = new_family()
    for family in (drifting, steady, idle, broken):
        live_model(platform, family)
    traffic(drifting).send(100, "drifted")
    traffic(steady).send(100, "normal")
    traffic(broken).send(100, "normal")
    # The broken family's baseline profile is gone: its check fails, the others go on.
    live = platform.registry.get_version(broken.name, platform.registry.get_family(broken.name).live_version)
    aws.client("s3").delete_object(Bucket=platform.bucket, Key=f"artifacts/sha256/"
                                   f"{live.lineage['baseline_profile']['sha256']}")
    ours = [drifting.name, steady.name, idle.name, broken.name, never_trained.name]
    before = {f: len(platform.registry.drift_records(f)) for f in ours}

    described = platform.run_drift_fanout(families=ours)
    assert described["status"] == "SUCCEEDED", described
    listed = {f for i in _fanout_items(platform, described) for f in i["families"]}
    assert listed == {drifting.name, steady.name, idle.name, broken.name}  # one listing: live families only
    records = {f: platform.registry.drift_records(f) for f in ours}
    assert len(records[drifting.name]) == before[drifting.name] + 1
    assert records[drifting.name][0]["verdict"] == "drift"
    assert records[steady.name][0]["verdict"] == "no_drift"
    assert len(records[idle.name]) == before[idle.name]  # no traffic: nothing written, nothing judged
    # The failed check is recorded as such, with its error (drift list, check-all and auditors see it).
    assert len(records[broken.name]) == before[broken.name] + 1
    failed = records[broken.name][0]
    assert failed["verdict"] == "error" and "does not exist" in failed["report"]["error"]
    errors = aws.client("cloudwatch").list_metrics(Namespace="MLOpsPlatform", MetricName="DriftCheckErrors")
    named = {d["Value"] for m in errors["Metrics"] for d in m["Dimensions"] if d["Name"] == "Family"}
    assert broken.name in named and drifting.name not in named


def test_a_tier_filter_and_an_empty_listing_end_without_a_map(platform, new_family):
    family = new_family(serving="dedicated")
    live_model(platform, family)
    described = platform.run_drift_fanout(tier="no-such-tier")
    assert described["status"] == "SUCCEEDED"
    assert _fanout_items(platform, described) == []
    history = aws.client("stepfunctions").get_execution_history(executionArn=described["executionArn"])["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert entered == ["ListFamilies", "AnyFamilies", "NothingToCheck"]


def test_mlops_drift_check_all_runs_the_fanout_now_and_says_what_each_family_recorded(platform, new_family, traffic,
                                                                                      stack):
    from click.testing import CliRunner

    from mlops_local.cli import cli

    drifting = new_family(drift={"min_samples": 300})
    quiet = new_family(drift={"min_samples": 300})
    for family in (drifting, quiet):
        live_model(platform, family)
    traffic(drifting).send(100, "drifted")
    platform.flush_captures()
    result = CliRunner().invoke(cli, ["drift", "check-all", "--json", *stack],
                                catch_exceptions=False)
    assert result.exit_code == 1, result.output  # drift in one family
    found = {f["family"]: f for f in json.loads(result.stdout)["families"]}
    assert found[drifting.name]["verdict"] == "drift" and found[drifting.name]["drifted_features"]
    assert found[quiet.name]["verdict"] == "not_recorded"  # no traffic since it went live: nothing written
    # Other tests' families share this platform (one may fail its checks): only ours are asserted on.
    table = CliRunner().invoke(cli, ["drift", "check-all", *stack], catch_exceptions=False)
    assert "live famil" in table.output and drifting.name in table.output
    again = CliRunner().invoke(cli, ["drift", "check-all", "--json", *stack],
                               catch_exceptions=False)
    # Nothing captured since its checks: left out as the schedules leave it out ...
    assert {f["family"]: f for f in json.loads(again.stdout)["families"]}[drifting.name]["verdict"] == "idle"
    shown = CliRunner().invoke(cli, ["drift", "check-all", *stack], catch_exceptions=False)
    assert "idle (no capture since their last check: not checked)" in " ".join(shown.output.split())
    # ... unless asked for: then checked, and with nothing new, nothing judged.
    forced = CliRunner().invoke(cli, ["drift", "check-all", "--include-idle", "--json", *stack],
                                catch_exceptions=False)
    assert {f["family"]: f for f in json.loads(forced.stdout)["families"]}[drifting.name]["verdict"] == \
        "not_recorded"


def test_scheduled_runs_skip_families_with_no_capture_since_their_last_check(platform, new_family, traffic):
    """As the schedules run it (skip_idle): a family is checked when the scoring function wrote captures after
    its last check, and left out (no invocation, transition or read: an idle family costs nothing) otherwise."""
    busy = new_family(drift={"min_samples": 300})
    quiet = new_family(drift={"min_samples": 300})
    for family in (busy, quiet):
        live_model(platform, family)
    traffic(busy).send(100, "normal")
    ours = [busy.name, quiet.name]

    def listed_and_idle(described) -> tuple[set[str], set[str]]:
        assert described["status"] == "SUCCEEDED", described
        listing = json.loads(described["output"])["listing"]
        listed = {f for i in _fanout_items(platform, described) for f in i["families"]}
        idle = set()
        if listing.get("idle_key"):
            idle = set(json.loads(aws.client("s3").get_object(Bucket=platform.bucket,
                                                               Key=listing["idle_key"])["Body"].read()))
        assert listing["idle"] == len(idle)
        return listed & set(ours), idle & set(ours)

    # First run: neither was ever checked, so both are (the first check sets the mark).
    first = platform.run_drift_fanout(families=ours, skip_idle=True)
    assert listed_and_idle(first) == ({busy.name, quiet.name}, set())
    assert platform.registry.drift_records(busy.name)[0]["verdict"] == "no_drift"
    # Nothing new since: both left out, nothing recorded.
    before = len(platform.registry.drift_records(busy.name))
    second = platform.run_drift_fanout(families=ours, skip_idle=True)
    assert listed_and_idle(second) == (set(), {busy.name, quiet.name})
    assert len(platform.registry.drift_records(busy.name)) == before
    # New traffic for one: its writer's mark brings it back; the other stays out.
    traffic(busy).send(100, "drifted")
    third = platform.run_drift_fanout(families=ours, skip_idle=True)
    assert listed_and_idle(third) == ({busy.name}, {quiet.name})
    assert platform.registry.drift_records(busy.name)[0]["verdict"] == "drift"
    # Named without skip_idle (an operator's check): every live family is checked.
    assert listed_and_idle(platform.run_drift_fanout(families=ours)) == ({busy.name, quiet.name}, set())


def test_records_a_sandbox_still_held_at_a_check_are_judged_by_the_next_one(platform, new_family, traffic):
    """Fresh-user pass (HIGH): records captured before a check but written after it (a writer's buffer, up to 5,000
    records or 60 s deployed) fell between two windows, and the family looked idle. Objects are keyed by their
    write time and a check's window is the objects written since the last one, so the next check judges them."""
    from mlops.data.synthetic import credit_risk_columns, to_instances
    from mlops.serving import capture
    from mlops.serving.capture import CaptureWriter

    family = new_family(drift={"min_samples": 300})
    live_model(platform, family)
    traffic(family).send(100, "normal")  # written at once (the local runtime flushes every record)
    version = platform.registry.get_family(family.name).live_version
    held = CaptureWriter(platform.bucket, family.name, version, 1.0, frozenset(), flush_records=10**6,
                         max_age_seconds=1e9, on_written=lambda at: platform.registry.mark_captured(family.name, at))
    capture._writers.discard(held)  # another sandbox's writer: the local runtime's flush before a check misses it
    drifted = to_instances(credit_risk_columns(400, 77, drift=1.0), family)
    held.record("held-request", drifted, [0] * len(drifted), [[0.5, 0.5]] * len(drifted))  # buffered, not written

    first = platform.run_drift_fanout(families=[family.name], skip_idle=True)
    assert first["status"] == "SUCCEEDED"
    judged = platform.registry.drift_records(family.name)[0]
    assert judged["verdict"] == "no_drift" and judged["report"]["rows"] == 500  # 100 requests of 5: the normal ones

    assert held.flush()  # the sandbox writes its batch after the check
    second = platform.run_drift_fanout(families=[family.name], skip_idle=True)
    assert second["status"] == "SUCCEEDED"
    assert json.loads(second["output"])["listing"]["count"] == 1  # not idle: an object was written since
    latest = platform.registry.drift_records(family.name)[0]
    assert latest["verdict"] == "drift" and latest["report"]["rows"] == 400, latest["report"]
