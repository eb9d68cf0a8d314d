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
    """List a family's drift checks, newest first: verdict, rows, drifted features, retrain decision; a failed
    check (verdict error) with its error. The RUN column is the id `mlops drift show --run` takes (a unique prefix
    is enough) and the check's time (UTC).

    \b
    Example:
      mlops drift list credit-risk --json
    """
    from .. import views

    platform = connect(target)
    with reaching(platform):
        runs = views.drift_runs(platform, family, limit)
        record = views.family_record(platform, family) if not runs and not target.as_json else None
    if target.as_json:
        echo_json({"family": family, "runs": runs})
        return
    out = tables.console()
    if not runs:
        out.print(no_checks_text(record))
        return
    table = tables.table(f"Drift checks of {family}", [
        ("Run", {"no_wrap": True, "min_width": 27}), "Verdict", ("Live", {"justify": "right"}),
        ("Rows", {"justify": "right"}),
        ("Drifted features or error", {"max_width": 60}), ("Predictions", {"max_width": 60}),
        ("Retrain", {"max_width": 60})])
    for run in runs:
        if run["verdict"] == "error":  # a failed check judged nothing: its error instead of figures
            table.add_row(str(run["run"]), tables.verdict("error"), _version(run["live_version"]), "-",
                          f"[red]failed: {tables.escape(run['error'] or 'no message recorded')}[/]", "-", "-")
            continue
        table.add_row(str(run["run"]), tables.verdict(run["verdict"]), _version(run["live_version"]),
                      tables.figure(run["rows"]), tables.escape(", ".join(run["drifted_features"]) or "-"),
                      tables.escape(run["prediction_drift"]), tables.escape(_retrain(run["retrain"])))
    out.print(table)
    failures = sum(1 for run in runs if run["verdict"] == "error")
    if failures:
        out.print(f"[dim]{failures} failed check(s): each judged nothing, so its traffic is judged by the next "
                  f"check; `mlops drift show {family} --run RUN` shows one (error, time, window).[/]")


def _version(value: Any) -> str:
    return f"v{value}" if value else "-"


def no_checks_text(record: Any) -> str:
    """Why a family has no drift check yet, for people, on a deployed stack and locally: no live model (checks
    compare a live model's traffic with its training baseline), captures off, or none run yet (deployed, the
    family's drift schedule runs them; locally nothing runs on a schedule: `mlops drift check`)."""
    from .. import views

    name = record.family.name
    if getattr(record, "retired", False):
        return f"No drift check of {name} recorded: it is retired, and retired families are not checked."
    if not record.live_version:
        return (f"No drift check of {name} recorded yet: it has no live model (a check compares a live model's "
                f"captured traffic with its training baseline; upload a data set first: `mlops upload DATA "
                f"--family {name}`).")
    if views.captures_off(record.family):
        return (f"No drift check of {name} recorded: {views.CAPTURES_OFF}, so it has no captured traffic to "
                "judge (raise capture_sample_rate with `mlops families apply` to monitor it).")
    return (f"No drift check of {name} recorded yet. On a deployed stack checks run on the family's drift "
            f"schedule ({record.family.drift.schedule}); locally nothing runs on a schedule: run `mlops drift "
            f"check {name}` after sending traffic. A check with no new captured traffic records nothing.")


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
    missing rate training -> now, and the reasons. A failed check (verdict error): its error, when it ran, the
    window it would have judged (still open: the next check judges it) and the newest completed check. Exits 2
    when the family or the run is unknown.

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
        echo_json(check_json(found))
        return
    print_check(tables.console(), platform, family, found)


def check_json(found: dict[str, Any]) -> dict[str, Any]:
    """`--json` of one check: {"summary", "report"}, and for a failed check (verdict "error") "failure": its
    error, time, window and the newest completed check (`views.failed_check`)."""
    return {"summary": found["summary"], "report": found["report"],
            **({"failure": found["failure"]} if "failure" in found else {})}


@drift.command("check")
@click.argument("family")
@platform_options
def check(family: str, target: TargetOptions) -> None:
    """Run FAMILY's drift check now, as its schedule would: the live model's captured traffic since the last check
    against its training baseline, recorded and reported like a scheduled check (and a retrain started when the
    family's policy says so). Locally, where nothing runs on a schedule, this is how a check happens; on a stack
    (--stack) it invokes the stack's drift function (output DriftFunction) with the same scheduled event, naming
    the family. Then prints the check as `mlops drift show` does.

    Exit codes: 0 checked (no drift, too little traffic to judge yet, or no traffic since the last check,
    captures off included), 1 drift confirmed or the check failed (its error is printed; a failure the drift
    function recorded shows as verdict "error" in `mlops drift list` and in --json), 2 unknown family or no live
    model, 3 platform unreachable.

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
        echo_json(check_json(found))
    else:
        print_check(tables.console(), platform, family, found)
    if found["summary"].get("verdict") in ("drift", "error"):
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
    its last check ("captures off" when it declares capture_sample_rate 0); an idle family (no capture written
    since its last check) is not checked, as the schedules leave it out, unless --include-idle. A last line counts
    the registered families that were not listed, by reason (retired, never trained, no live model).

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
        if not found["families"]:
            out.print(f"drift fan-out {found['execution'].rsplit(':', 1)[-1]}: no live families"
                      + (f" in tier {tier}" if tier else "") + ": nothing to check")
        else:
            out.print(f"drift fan-out {found['execution'].rsplit(':', 1)[-1]}: {checked} live "
                      f"famil{'y' if checked == 1 else 'ies'} checked in {found['seconds']} s; "
                      f"{len(drifted)} with drift, {len(failed)} failed"
                      + (f"; {idle} idle (no capture since their last check: not checked)" if idle else ""))
            table = tables.table("Families", ["Family", "Verdict", "Drifted features or error", "Check"])
            for f in found["families"]:
                table.add_row(f["family"], fanout_verdict(f), tables.escape(
                    (f["error"] if f["verdict"] == "error" else ", ".join(f["drifted_features"])) or "-"),
                    f["run"] or "-")
            out.print(table)
        line = not_listed_text(found.get("not_listed") or [], tier)
        if line:
            out.print(f"[dim]{tables.escape(line)}[/]")
    if drifted or failed:
        raise click.exceptions.Exit(1)


def fanout_verdict(entry: dict[str, Any]) -> str:
    """A check-all row's verdict cell: what the family's check recorded, or why nothing was judged."""
    from .. import views

    verdict = entry["verdict"]
    if verdict in ("not_recorded", "idle") and entry.get("captures_off"):
        return f"[yellow]{views.CAPTURES_OFF}: nothing judged[/]" if verdict == "not_recorded" else \
            f"[yellow]{views.CAPTURES_OFF}: idle, not checked[/]"
    if verdict == "not_recorded":
        return "[dim]no new traffic: nothing judged[/]"
    if verdict == "idle":
        return "[dim]idle: not checked[/]"
    if verdict == "error":
        return "[red bold]failed[/]"
    return tables.verdict(verdict)


def not_listed_text(not_listed: list[dict[str, Any]], tier: str | None) -> str | None:
    """check-all's last line: the registered families (of `tier`) the fan-out did not list, counted by reason,
    with their names when a reason has at most 10; None when every family was listed."""
    if not not_listed:
        return None
    by_reason: dict[str, list[str]] = {}
    for entry in not_listed:
        by_reason.setdefault(entry["reason"], []).append(entry["family"])
    parts = [f"{len(names)} {reason}" + (f" ({', '.join(names)})" if len(names) <= 10 else "")
             for reason, names in by_reason.items()]
    scope = f" of tier {tier}" if tier else ""
    count = len(not_listed)
    return f"not listed: {count} registered famil{'y' if count == 1 else 'ies'}{scope}: {'; '.join(parts)}"


def window_lines(summary: dict[str, Any], report: dict[str, Any]) -> list[str]:
    """What a check's window held, for people, when there is more to say than its row count: the rows per model
    version that served them (a promotion or rollback between two checks; inputs are judged against the live
    model's baseline, predictions are the live model's), versions left out (trained with other inputs), capture
    objects that could not be read, and a window kept open (too few rows)."""
    lines: list[str] = []
    by_version = summary.get("rows_by_version") or {}
    live = str(summary.get("live_version"))
    if set(by_version) - {live}:
        served = ", ".join(f"v{v} {tables.figure(n)}" for v, n in sorted(by_version.items(), key=lambda i: int(i[0])))
        lines.append(f"  rows by serving version: {served} (inputs judged against live v{live}'s baseline; "
                     f"predictions: v{live}'s {tables.figure(summary.get('prediction_rows') or 0)})")
    for left in summary.get("not_judged") or []:
        lines.append(f"  not judged: {tables.figure(left['rows'])} rows of v{left['version']}: "
                     f"{tables.escape(left['reason'])}")
    if summary.get("unreadable_count"):
        objects = report.get("unreadable_objects") or []
        named = "; ".join(f"{o['key']} ({o['error']})" for o in objects[:3])
        lines.append(f"  [yellow]{summary['unreadable_count']} capture object(s) could not be read and were "
                     f"skipped[/]: {tables.escape(named)}")
    if summary.get("window_open"):
        lines.append("  the window stays open: too few rows to judge, they are read again with the next traffic")
    return lines


def print_check(out: Any, platform: Any, family: str, found: dict[str, Any]) -> None:
    """One drift check for people: the verdict line (with the predictions' own test, per task) and a row per
    feature."""
    from .. import views

    report = found["report"]
    summary = found["summary"]
    if summary["verdict"] == "no_traffic":
        if summary.get("captures_off"):
            out.print(f"[bold]{family}[/] drift check of live v{summary['live_version']}: [yellow]"
                      f"{views.CAPTURES_OFF}[/]: the family captures no scored request, so there is no traffic to "
                      "judge and nothing was recorded (raise capture_sample_rate with `mlops families apply` to "
                      "monitor it)")
            return
        since = (f"since {summary['window_start']} (the end of the last judged window)" if summary["window_start"]
                 else "yet (no check has judged traffic)")
        out.print(f"[bold]{family}[/] drift check of live v{summary['live_version']}: no captured traffic {since}: "
                  "nothing to judge and nothing recorded; the window stays open")
        for line in window_lines(summary, {}):  # versions trained with other inputs, left out
            out.print(line)
        return
    if "failure" in found:
        print_failure(out, family, summary, found["failure"])
        return
    out.print(f"[bold]{family}[/] drift check {summary['run']} of live v{summary['live_version']}: "
              f"{tables.verdict(summary['verdict'])} on {tables.figure(summary['rows'])} rows "
              f"(at least {report.get('min_samples')} needed); predictions: "
              f"{tables.escape(summary['prediction_drift'])}; retrain: {tables.escape(_retrain(summary['retrain']))}")
    for line in window_lines(summary, report):
        out.print(line)
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


def print_failure(out: Any, family: str, summary: dict[str, Any], failure: dict[str, Any]) -> None:
    """A failed check (verdict "error") for people: when, its error, the window it would have judged (still open:
    the next check judges that traffic) and the newest check that did judge traffic."""
    live = f" of live v{summary['live_version']}" if summary.get("live_version") else ""
    out.print(f"[bold]{family}[/] drift check {summary['run']}{live}: [red bold]failed[/] at "
              f"{tables.when(failure['checked_at'])} UTC: {tables.escape(failure['error'])}")
    window = failure["window"]
    start = tables.when(window["start"]) if window["start"] else "-"
    out.print(f"Window: captures written from {start} ({tables.escape(window['basis'])}) to "
              f"{tables.when(window['end'])}: nothing was judged, and the window stays open (the next check judges "
              "that traffic).")
    newest = failure.get("newest_completed")
    if newest:
        out.print(f"Newest completed check: {newest['run']} of v{newest['live_version']}: "
                  f"{tables.verdict(newest['verdict'])} on {tables.figure(newest['rows'])} rows "
                  f"(`mlops drift show {family} --run {newest['run']}`)")
    else:
        out.print("No completed check of this family is recorded.")
