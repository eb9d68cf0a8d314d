"""`mlops drift list|show|check`: the scheduled drift checks of a family, one check feature by feature, and a check
run now."""

from __future__ import annotations

from typing import Any

import click

from ..client import TargetOptions, connect, echo_json, platform_options, reaching
from . import tables


def register(cli: click.Group) -> None:
    """Add `drift` to the CLI."""
    cli.add_command(drift)


@click.group()
def drift() -> None:
    """Drift checks of live models: captured traffic against the training baseline (PSI, KS, chi-square with
    effect sizes; docs/statistics.md).

    \b
    Examples:
      mlops drift list credit-risk
      mlops drift show credit-risk
      mlops drift show credit-risk --run 2026-03-01T12:00
      mlops drift check credit-risk     # run the check now (locally: there is no schedule)
      mlops report credit-risk 3        # the drift report as an HTML page with distributions
    """


@drift.command("list")
@click.argument("family")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="Newest checks shown.")
@platform_options
def list_(family: str, limit: int, target: TargetOptions) -> None:
    """List a family's drift checks, newest first: verdict, rows, drifted features, retrain decision. The RUN
    column is the id `mlops drift show --run` takes (a unique prefix is enough).

    \b
    Example:
      mlops drift list credit-risk --json
    """
    from .. import views

    platform = connect(target)
    with reaching(platform):
        runs = views.drift_runs(platform, family, limit)
    if target.as_json:
        echo_json({"family": family, "runs": runs})
        return
    out = tables.console()
    if not runs:
        out.print(f"No drift check of {family} recorded yet (checks run on the family's drift schedule while a "
                  "model is live).")
        return
    table = tables.table(f"Drift checks of {family}", [
        ("Run", {"no_wrap": True, "min_width": 27}), "Verdict", ("Live", {"justify": "right"}),
        ("Rows", {"justify": "right"}),
        ("Drifted features", {"max_width": 50}), ("Predictions", {"max_width": 60}),
        ("Retrain", {"max_width": 60})])
    for run in runs:
        table.add_row(str(run["run"]), tables.verdict(run["verdict"]), f"v{run['live_version']}",
                      tables.figure(run["rows"]), tables.escape(", ".join(run["drifted_features"]) or "-"),
                      tables.escape(run["prediction_drift"]), tables.escape(_retrain(run["retrain"])))
    out.print(table)


def _retrain(retrain: Any) -> str:
    if not isinstance(retrain, dict):
        return "-"
    return "started" if retrain.get("started") else f"no: {retrain.get('reason', '-')}"


@drift.command("show")
@click.argument("family")
@click.option("--run", "run", metavar="ID", help="The check to show: the RUN of `mlops drift list` or its report's "
                                                 "S3 key or file name (a unique prefix is enough); default the "
                                                 "newest.")
@platform_options
def show(family: str, run: str | None, target: TargetOptions) -> None:
    """Show one drift check feature by feature: status, PSI, KS D and p-value, chi-square and p-value, Cramér's V,
    missing rate training -> now, and the reasons. Exits 2 when the family or the run is unknown.

    \b
    Examples:
      mlops drift show credit-risk
      mlops drift show credit-risk --run 2026-03-01T12:00 --json
    """
    from .. import views

    platform = connect(target)
    with reaching(platform):
        found = views.drift_run(platform, family, run)
    if target.as_json:
        echo_json({"summary": found["summary"], "report": found["report"]})
        return
    print_check(tables.console(), platform, family, found)


@drift.command("check")
@click.argument("family")
@platform_options
def check(family: str, target: TargetOptions) -> None:
    """Run FAMILY's drift check now, as its schedule would: the live model's captured traffic since the last check
    against its training baseline, recorded and reported like a scheduled check (and a retrain started when the
    family's policy says so). Locally, where nothing runs on a schedule, this is how a check happens; on a stack
    (--stack) it invokes the stack's drift function (output DriftFunction) with the same scheduled event, naming
    the family. Then prints the check as `mlops drift show` does.

    Exit codes: 0 checked (no drift, too little traffic to judge yet, or no traffic since the last check), 1 drift
    confirmed, 2 unknown family or
    no live model, 3 platform unreachable.

    \b
    Examples:
      mlops drift check credit-risk
      mlops drift check credit-risk --stack MlopsPlatform --json
    """
    from .. import views

    platform = connect(target)
    with reaching(platform):
        found = views.drift_check(platform, family)
    if target.as_json:
        echo_json({"summary": found["summary"], "report": found["report"]})
    else:
        print_check(tables.console(), platform, family, found)
    if found["summary"].get("verdict") == "drift":
        raise click.exceptions.Exit(1)


@drift.command("check-all")
@click.option("--tier", type=click.Choice(["shared", "dedicated"]), default=None,
              help="Only the families of this serving tier (default: every live family).")
@click.option("--include-idle", is_flag=True,
              help="Also check families with no capture written since their last check (the schedules skip them).")
@platform_options
def check_all(tier: str | None, include_idle: bool, target: TargetOptions) -> None:
    """Run the scheduled drift fan-out now: every live family (of --tier) checked in batches, as the hourly
    schedule does (docs/architecture.md, "Monitoring at scale"), then one line per family: what its check
    recorded, a failed check with its error. A family whose check wrote nothing had no captured traffic since
    its last check; an idle family (no capture written since its last check) is not checked, as the schedules
    leave it out, unless --include-idle.

    Exit codes: 0 done (no drift, no failure), 1 drift confirmed or a check failed in some family, 2 usage,
    3 platform unreachable.

    \b
    Examples:
      mlops drift check-all
      mlops drift check-all --tier shared --stack MlopsPlatform --json
      mlops drift check-all --include-idle
    """
    from .. import views

    platform = connect(target)
    out = tables.console()
    with reaching(platform):
        if target.as_json:
            found = views.drift_fanout(platform, tier, include_idle=include_idle)
        else:
            with out.status("drift fan-out running...") as status:
                found = views.drift_fanout(platform, tier, include_idle=include_idle,
                                           progress=lambda seconds: status.update(
                                               f"drift fan-out running ({seconds:.0f} s)..."))
    drifted = [f for f in found["families"] if f["verdict"] == "drift"]
    failed = [f for f in found["families"] if f["verdict"] == "error"]
    if target.as_json:
        echo_json(found)
    else:
        idle = sum(1 for f in found["families"] if f["verdict"] == "idle")
        checked = len(found["families"]) - idle
        out.print(f"drift fan-out {found['execution'].rsplit(':', 1)[-1]}: {checked} live "
                  f"famil{'y' if checked == 1 else 'ies'} checked in {found['seconds']} s; "
                  f"{len(drifted)} with drift, {len(failed)} failed"
                  + (f"; {idle} idle (no capture since their last check: not checked)" if idle else ""))
        table = tables.table("Families", ["Family", "Verdict", "Drifted features or error", "Check"])
        for f in found["families"]:
            verdict = f["verdict"]
            if verdict == "not_recorded":
                shown = "[dim]no new traffic: nothing judged[/]"
            elif verdict == "idle":
                shown = "[dim]idle: not checked[/]"
            elif verdict == "error":
                shown = "[red bold]failed[/]"
            else:
                shown = tables.verdict(verdict)
            detail = f["error"] if verdict == "error" else ", ".join(f["drifted_features"])
            table.add_row(f["family"], shown, tables.escape(detail or "-"), f["run"] or "-")
        out.print(table)
    if drifted or failed:
        raise click.exceptions.Exit(1)


def print_check(out: Any, platform: Any, family: str, found: dict[str, Any]) -> None:
    """One drift check for people: the verdict line (with the predictions' own test, per task) and a row per
    feature."""
    report = found["report"]
    summary = found["summary"]
    if summary["verdict"] == "no_traffic":
        out.print(f"[bold]{family}[/] drift check of live v{summary['live_version']}: no captured traffic since "
                  f"{summary['window_start']} (the last check, or the model going live): nothing to judge and "
                  "nothing recorded; the window stays open")
        return
    out.print(f"[bold]{family}[/] drift check {summary['run']} of live v{summary['live_version']}: "
              f"{tables.verdict(summary['verdict'])} on {tables.figure(summary['rows'])} rows "
              f"(at least {report.get('min_samples')} needed); predictions: "
              f"{tables.escape(summary['prediction_drift'])}; retrain: {tables.escape(_retrain(summary['retrain']))}")
    table = tables.table("Features", [
        "Feature", "Kind", "Status", ("PSI", {"justify": "right"}), ("KS D", {"justify": "right"}),
        ("KS p", {"justify": "right"}), ("Chi2 p", {"justify": "right"}), ("Cramér's V", {"justify": "right"}),
        ("Missing", {"justify": "right"}), ("Reasons", {"max_width": 80})])
    for name, figures in (report.get("features") or {}).items():
        status = figures.get("status") or ("checked" if figures.get("drifted") is not None else "not_checked")
        shown = "drift" if figures.get("drifted") else status
        missing = "-"
        if figures.get("missing_rate") or figures.get("baseline_missing_rate"):
            missing = (f"{tables.figure(figures.get('baseline_missing_rate'), 2)} -> "
                       f"{tables.figure(figures.get('missing_rate'), 2)}")
        reasons = figures.get("drift_reasons") or ([figures["reason"]] if figures.get("reason") else [])
        table.add_row(name, figures.get("kind", "-"), tables.verdict("no_drift" if shown == "checked" else shown),
                      tables.figure(figures.get("psi"), 3), tables.figure(figures.get("ks_statistic"), 3),
                      tables.figure(figures.get("ks_p_value"), 2), tables.figure(figures.get("p_value"), 2),
                      tables.figure(figures.get("cramers_v_equal_weight", figures.get("cramers_v")), 3), missing,
                      tables.escape("; ".join(reasons)))
    out.print(table)
    if summary.get("report_html_key"):
        out.print(f"[dim]report page: s3://{platform.bucket}/{summary['report_html_key']} "
                  f"(or `mlops report {family} {summary['live_version']}`)[/]")
