"""`mlops versions list|show`, `mlops compare` and `mlops history`: the registry's versions, side by side, and
what served traffic at a moment."""

from __future__ import annotations

from typing import Any

import click

from ..client import TargetOptions, connect, echo_json, platform_options, reaching
from . import tables


def register(cli: click.Group) -> None:
    """Add `versions`, `compare` and `history` to the CLI."""
    cli.add_command(versions)
    cli.add_command(compare)
    cli.add_command(history)


@click.group()
def versions() -> None:
    """Model versions of a family: status, metrics, gate decision, lineage, status history.

    \b
    Examples:
      mlops versions list credit-risk
      mlops versions show credit-risk 3
      mlops versions show credit-risk 3 --json | jq .record.lineage.gate.checks
    """


@versions.command("list")
@click.argument("family")
@platform_options
def list_(family: str, target: TargetOptions) -> None:
    """List a family's versions, newest first: status, algorithm, holdout AUC, gate verdict, data set.

    \b
    Example:
      mlops versions list credit-risk --json
    """
    from .. import views

    platform = connect(target)
    with reaching(platform):
        listed = [views.version_summary(v) for v in views.versions(platform, family)]
    if target.as_json:
        echo_json({"family": family, "versions": listed})
        return
    out = tables.console()
    if not listed:
        out.print(f"{family} has no versions yet: `mlops upload DATA.csv --family {family}` trains one.")
        return
    first, second = views.headline_metrics(listed[0]["task"])
    table = tables.table(f"Versions of {family} on {platform.description}", [
        ("Version", {"justify": "right"}), "Status", ("Created (UTC)", {"no_wrap": True}), "Algorithm",
        (views.metric_label(first), {"justify": "right"}), (views.metric_label(second), {"justify": "right"}), "Gate",
        ("Data set", {"max_width": 40}), ("Rows", {"justify": "right"}), ("Reason", {"max_width": 60})])
    for v in listed:
        metrics = v["metrics"]
        gate = tables.passed(v["gate_passed"])
        if v["failed_checks"]:
            gate += f" ({', '.join(v['failed_checks'])})"
        table.add_row(f"v{v['version']}", tables.status(v["status"]), tables.when(v["created_at"]),
                      v["algorithm"] or "-", tables.figure(metrics.get(first)), tables.figure(metrics.get(second)),
                      gate, tables.escape(v["dataset"]["key"]), tables.figure(v["dataset"]["rows"]),
                      tables.escape(tables.truncate(v["status_reason"], 160)))
    out.print(table)


@versions.command("show")
@click.argument("family")
@click.argument("version", type=click.IntRange(min=1))
@platform_options
def show(family: str, version: int, target: TargetOptions) -> None:
    """Everything about one version: lineage (data set version and sha256, code revision, libraries, algorithm,
    hyperparameters, seed, holdout, artifact), holdout metrics, the gate decision with every check, fairness by
    group with group sizes, and its status history (who, when, why). Exits 2 for an unknown family or version.

    \b
    Examples:
      mlops versions show credit-risk 3
      mlops versions show credit-risk 3 --json
    """
    from .. import views

    platform = connect(target)
    with reaching(platform):
        detail = views.version_detail(platform, family, version)
    if target.as_json:
        echo_json(detail)
        return
    print_version(tables.console(), detail)


def print_version(out: Any, detail: dict[str, Any]) -> None:
    from mlops.reports.model_card import training_engine

    record, summary = detail["record"], detail["summary"]
    lineage = record.get("lineage") or {}
    out.print(f"[bold]{record['family']} v{record['version']}[/]: {tables.status(record['status'])} "
              f"({tables.escape(record['status_reason'])}); created {tables.when(record['created_at'])} UTC"
              + (f"; serves as function version {record['function_version']}" if record.get("function_version")
                 else ""))
    dataset, code, holdout = lineage.get("dataset") or {}, lineage.get("code") or {}, lineage.get("holdout") or {}
    facts = tables.table("Lineage", ["", ("", {"max_width": 150})])
    facts.add_row("Data set", tables.escape(f"s3://{dataset.get('bucket')}/{dataset.get('key')}"))
    facts.add_row("Object version", str(dataset.get("version_id") or "-"))
    facts.add_row("Data set sha256", str(dataset.get("sha256") or "-"))
    facts.add_row("Rows", f"{tables.figure(dataset.get('rows'))} ({tables.figure(holdout.get('rows'))} held out, "
                          f"fraction {holdout.get('fraction')}, seed {holdout.get('seed')})")
    facts.add_row("Algorithm", f"{lineage.get('algorithm')} seed {lineage.get('seed')}")
    facts.add_row("Hyperparameters", tables.escape(", ".join(f"{k}={v}" for k, v in
                                                             sorted((lineage.get("hyperparameters") or {}).items()))))
    if lineage.get("threshold") is not None:
        facts.add_row("Decision", f"positive {lineage.get('positive_label')!r} when P >= {lineage.get('threshold')}; "
                                  f"classes {lineage.get('classes')}")
    else:
        facts.add_row("Task", f"{summary['task'].replace('_', ' ')}"
                              + (f"; classes {lineage.get('classes')}" if lineage.get("classes") else ""))
    revision = code.get("git_revision") or "unknown"
    dirty = " (uncommitted changes)" if code.get("dirty") else ""
    facts.add_row("Code", f"mlops {code.get('package_version')} at {revision}{dirty}")
    facts.add_row("Libraries", ", ".join(f"{k} {v}" for k, v in sorted((code.get("libraries") or {}).items())))
    facts.add_row("Artifact", f"{lineage.get('artifact_sha256')} ({lineage.get('input_dtype')} input)")
    engine = training_engine(lineage.get("training"))
    facts.add_row("Trained on", tables.escape(engine["text"]) if engine else "not recorded")
    run = lineage.get("pipeline_execution") or "-"
    facts.add_row("Run", f"{run}; trained {tables.when(lineage.get('trained_at'))}")
    out.print(facts)
    metrics = tables.table("Holdout metrics", ["Metric", ("Value", {"justify": "right"})])
    for name, value in summary["metrics"].items():
        metrics.add_row(name, tables.figure(value))
    out.print(metrics)
    gate = lineage.get("gate") or {}
    if gate:
        checks = tables.table(f"Gate: {'passed' if gate.get('passed') else 'failed'}", [
            "Check", ("Value", {"justify": "right"}), ("Threshold", {"justify": "right"}), "Verdict",
            ("Detail", {"max_width": 110})])
        for check in gate.get("checks") or []:
            checks.add_row(str(check.get("check")), tables.figure(check.get("value")),
                           tables.figure(check.get("threshold")), tables.check_verdict(check),
                           tables.escape(check.get("detail", "")))
        out.print(checks)
        for note in gate.get("notes") or []:
            out.print(f"[dim]note: {tables.escape(note)}[/]")
        for warning in gate.get("warnings") or []:
            out.print(f"[yellow]warning: {tables.escape(warning)}[/]")
    attribute = next((c.get("name") for c in dataset.get("columns") or [] if c.get("kind") == "sensitive"), None)
    print_fairness(out, lineage.get("fairness") or {}, attribute)
    events = tables.table("Status history", [("At (UTC)", {"no_wrap": True}), "Change", ("Actor", {"max_width": 50}),
                                             ("Reason", {"max_width": 100})])
    for event in detail["history"]:
        change = f"{event['from_status'] or '(new)'} -> {tables.status(event['to_status'])}"
        events.add_row(tables.when(event["at"]), change, tables.escape(event["actor"]), tables.escape(event["reason"]))
    out.print(events)


def print_fairness(out: Any, fairness: dict[str, Any], attribute: str | None = None) -> None:
    """Fairness by group as the task computed it: classification parity (favourable rates) or, for a regression
    (mlops.stats.tasks.regression_fairness), the spreads of the group mean prediction and of the group MAE."""
    if fairness.get("checked") is False or not fairness.get("groups"):
        out.print(f"Fairness: not checked ({tables.escape(fairness.get('reason') or 'no figures recorded')})")
        return
    attribute = fairness.get("sensitive_attribute") or attribute
    if "mean_prediction_spread" in fairness:
        least = fairness.get("min_group_size") or 0
        title = (f"Fairness by {attribute or 'group'} (regression): group mean prediction spread "
                 f"{tables.figure(fairness.get('mean_prediction_spread'))}, group MAE spread "
                 f"{tables.figure(fairness.get('mae_spread'))}, in target standard deviations "
                 f"({tables.figure(fairness.get('scale'))}; groups of at least {least} rows compared)")
        groups = tables.table(title, ["Group", ("Rows", {"justify": "right"}),
                                      ("Mean prediction", {"justify": "right"}),
                                      ("Mean target", {"justify": "right"}), ("MAE", {"justify": "right"}),
                                      "Compared"])
        for name, group in sorted(fairness["groups"].items(), key=lambda kv: -(kv[1].get("rows") or 0)):
            groups.add_row(tables.escape(name), tables.figure(group.get("rows")),
                           tables.figure(group.get("mean_prediction"), 12),
                           tables.figure(group.get("mean_target"), 12),
                           tables.figure(group.get("mae")),
                           "yes" if (group.get("rows") or 0) >= least else "no (too small)")
        out.print(groups)
        return
    title = (f"Fairness by {attribute or 'group'}: demographic parity difference "
             f"{tables.figure(fairness.get('demographic_parity_difference'))}, equal opportunity difference "
             f"{tables.figure(fairness.get('equal_opportunity_difference'))} (groups of at least "
             f"{fairness.get('min_group_size')} rows compared)")
    groups = tables.table(title, ["Group", ("Rows", {"justify": "right"}), ("Favourable rate", {"justify": "right"}),
                                  ("Truly favourable rows", {"justify": "right"}),
                                  ("True favourable rate", {"justify": "right"}), "Compared"])
    items = sorted(fairness["groups"].items(), key=lambda kv: -(kv[1].get("rows") or 0))
    for name, group in items:
        groups.add_row(tables.escape(name), tables.figure(group.get("rows")),
                       tables.figure(group.get("favorable_rate")), tables.figure(group.get("true_favorable_rows")),
                       tables.figure(group.get("true_favorable_rate")),
                       "yes" if group.get("in_parity", True) else "no (too small)")
    out.print(groups)
    if fairness.get("groups_omitted"):
        out.print(f"[dim]{fairness['groups_omitted']} smaller groups are stored with the run's fairness detail[/]")


@click.command()
@click.argument("family")
@click.argument("first", metavar="V1", type=click.IntRange(min=1))
@click.argument("second", metavar="V2", type=click.IntRange(min=1))
@click.option("--all", "show_all", is_flag=True, help="Show every row, not only those that differ.")
@platform_options
def compare(family: str, first: int, second: int, show_all: bool, target: TargetOptions) -> None:
    """Compare two versions side by side: parameters, holdout metrics, gate checks, fairness by group, data set
    and code. Rows that differ are marked; --json gives every row with `differs`.

    \b
    Examples:
      mlops compare credit-risk 2 3
      mlops compare credit-risk 2 3 --all
      mlops compare credit-risk 2 3 --json | jq '.rows[] | select(.differs)'
    """
    from .. import views

    platform = connect(target)
    with reaching(platform):
        result = views.compare(platform, family, first, second)
    if target.as_json:
        echo_json(result)
        return
    out = tables.console()
    table = tables.table(f"{family}: v{first} vs v{second} ({result['differences']} rows differ)", [
        "Section", "Field", (f"v{first}", {"max_width": 60}), (f"v{second}", {"max_width": 60}), ""])
    marks = {"own holdouts": " (1)", "gate: same holdout": " (2)"}
    for row in result["rows"]:
        if not (row["differs"] or show_all or row.get("basis") == "gate: same holdout"):
            continue
        table.add_row(row["section"], row["field"] + marks.get(row.get("basis"), ""),
                      tables.escape(_cell(row["a"])), tables.escape(_cell(row["b"])),
                      "[yellow]differs[/]" if row["differs"] else "")
    out.print(table)
    for line in holdout_footnotes(result, first, second):
        out.print(line)


def holdout_footnotes(result: dict[str, Any], first: int, second: int) -> list[str]:
    """`views.holdout_notes` escaped for rich."""
    from .. import views

    return [tables.escape(line) for line in views.holdout_notes(result, first, second)]


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return tables.figure(value)


@click.command()
@click.argument("family")
@click.option("--at", "at", metavar="TIME", help="A past moment (ISO-8601, e.g. 2026-03-01T12:00:00Z; naive is "
                                                  "UTC): what was live then, and at what weight.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=30, show_default=True,
              help="Status events shown (newest).")
@platform_options
def history(family: str, at: str | None, limit: int, target: TargetOptions) -> None:
    """What served a family's traffic, and at what weight, now or at a past moment; and the status events that
    led there (who changed what, when, why).

    \b
    Examples:
      mlops history credit-risk
      mlops history credit-risk --at 2026-03-01T12:00:00Z --json
    """
    from .. import views

    moment = views.parse_moment(at) if at else None
    platform = connect(target)
    with reaching(platform):
        result = views.traffic_at(platform, family, moment)
    result["events"] = result["events"][-limit:]
    if target.as_json:
        echo_json(result)
        return
    out = tables.console()
    when = f"at {tables.when(result['at'])} UTC" if result["at"] else "now"
    if not result["traffic"]:
        out.print(f"{family} served no model {when}.")
    for share in result["traffic"]:
        weight = "unknown weight" if share["weight"] is None else f"{share['weight']:g}% of traffic"
        out.print(f"{family} {when}: v{share['version']} ({share['role']}) with {weight}")
    if result["weight_source"]:
        out.print(f"[dim]canary weight from {tables.escape(result['weight_source'])}[/]")
    if result.get("rollout_holder"):
        out.print(f"[cyan]rollout running: {tables.escape(result['rollout_holder'])} holds the family's lock[/]")
    events = tables.table(f"Status events{' up to that moment' if result['at'] else ''} (newest last)", [
        ("At (UTC)", {"no_wrap": True}), ("Version", {"justify": "right"}), "Change",
        ("Live after", {"justify": "right"}), ("Actor", {"max_width": 50}), ("Reason", {"max_width": 90})])
    for event in result["events"]:
        change = f"{event['from_status'] or '(new)'} -> {tables.status(event['to_status'])}"
        events.add_row(tables.when(event["at"]), f"v{event['version']}", change,
                       f"v{event['live_version_after']}" if event["live_version_after"] else "-",
                       tables.escape(event["actor"]), tables.escape(event["reason"]))
    out.print(events)
