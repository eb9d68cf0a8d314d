"""`mlops performance show FAMILY [--version V] [--json]`: realised performance from delayed labels and the CBPE
estimate, per model version and window (docs/performance.md)."""

from __future__ import annotations

from typing import Any

import click

from ..client import NotFound, Platform, TargetOptions, connect, echo_json, platform_options, reaching
from . import tables

VERDICT_STYLE = {"ok": "green", "breach": "bold red", "insufficient_data": "yellow", "not_checked": "dim",
                 "untrusted": "yellow"}


def register(cli: click.Group) -> None:
    """Add `performance` to the CLI."""
    cli.add_command(performance)


@click.group()
def performance() -> None:
    """Model performance with delayed labels: realised metrics once ground truth arrives (`mlops labels upload`),
    estimated (CBPE) before, judged against the family's performance policy.

    \b
    Examples:
      mlops performance show credit-risk
      mlops performance show credit-risk --version 3 --json
    """


def performance_report(platform: Platform, family: str, fresh: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """The newest stored report of `family`, or one computed now when no report is newer than the newest labels
    (or `fresh`): (report, {"computed_on_demand", "reason"}). NotFound for an unknown family."""
    from mlops.monitoring.performance import PerformanceMonitor

    from .. import views

    record = views.family_record(platform, family)
    monitor = PerformanceMonitor(platform.registry, platform.bucket, None, s3=platform.client("s3"))
    return monitor.current(record, fresh=fresh)


def performance_page(platform: Platform, family: str, version: int) -> tuple[str, dict[str, Any]] | None:
    """(HTML, report) of the family's performance report for `mlops report` (current: recomputed when labels
    arrived since the stored one), or None when the family has never been checked (no labels, no schedule yet).
    NotFound when the report holds no decision of `version`."""
    from mlops.monitoring.performance import PerformanceMonitor
    from mlops.reports.performance_report import render_performance_report

    from .. import views

    record = views.family_record(platform, family)
    monitor = PerformanceMonitor(platform.registry, platform.bucket, None, s3=platform.client("s3"))
    if not monitor.report_keys(family):
        return None
    report, _ = monitor.current(record)
    if not any(v.get("version") == version and v.get("windows") for v in report.get("versions") or []):
        raise NotFound(f"the performance report of {family} holds no decision of v{version}")
    return render_performance_report(report), report


def _verdict(value: Any) -> str:
    style = VERDICT_STYLE.get(str(value), "")
    return f"[{style}]{value}[/]" if style else str(value)


@performance.command("show")
@click.argument("family")
@click.option("--version", "version", type=click.IntRange(min=1), default=None,
              help="Show this model version's windows (default: every version in the lookback).")
@click.option("--fresh", is_flag=True, help="Compute the report now from every decision and label (read-only), "
              "instead of the stored one (which counts the decisions up to its check).")
@platform_options
def show(family: str, version: int | None, fresh: bool, target: TargetOptions) -> None:
    """Show a family's performance: the verdict on realised metrics (the live version's newest window with enough
    labels) and on the estimate, the policy's checks, and per version and window the decisions, labels, coverage,
    realised metrics and the estimate with its error. The newest stored report is shown; when labels arrived after
    it (or none exists) the report is computed now, read-only, and says so. Exits 2 for an unknown family or
    version.

    \b
    Examples:
      mlops performance show credit-risk
      mlops performance show credit-risk --version 3 --json
      mlops performance show credit-risk --fresh
    """
    from .. import views

    platform = connect(target)
    with reaching(platform):
        report, meta = performance_report(platform, family, fresh)
        if version is not None:
            views.version_record(platform, family, version)  # NotFound naming the versions that exist
    versions = report.get("versions") or []
    if version is not None:
        versions = [v for v in versions if v.get("version") == version]
        if not versions:
            stale = "" if meta["computed_on_demand"] else \
                f"; the stored report was checked at {report.get('checked_at')}: --fresh counts decisions since"
            raise NotFound(f"{family} v{version} has no decision in the performance lookback "
                           f"({report.get('window', {}).get('lookback_days')} days){stale}")
    if target.as_json:
        echo_json({**meta, "report": {**report, "versions": versions}})
        return
    out = tables.console()
    if meta["computed_on_demand"]:
        out.print(f"[dim]computed on demand: {tables.escape(meta['reason'])}[/]")
    else:
        out.print(f"[dim]stored report checked at {tables.when(report.get('checked_at'))}; decisions scored since "
                  "are counted at the next check (or now with --fresh)[/]")
    judged = report.get("judged") or {}
    out.print(f"[bold]{family}[/] ({report.get('task', '').replace('_', ' ')}), live v{report.get('live_version')}: "
              f"realised {_verdict(report.get('verdict'))}, estimate {_verdict(report.get('estimate_verdict'))}")
    out.print(f"  {tables.escape(report.get('reason'))}")
    out.print(f"  estimate: {tables.escape(report.get('estimate_reason'))}")
    retrain = report.get("retrain")
    if isinstance(retrain, dict):
        out.print("  retrain: " + (f"started {tables.escape(retrain.get('execution'))}" if retrain.get("started")
                                   else f"not started ({tables.escape(retrain.get('reason') or '-')})"))
    alert = report.get("alert")
    if isinstance(alert, dict) and alert:
        out.print("  alert: " + ("sent" if alert.get("sent") else f"not sent ({tables.escape(alert.get('reason'))})"))
    if judged:
        out.print(f"  judged window from {tables.when(judged.get('start'))}: {judged.get('labelled')} labelled "
                  f"decisions, coverage {judged.get('coverage', 0):.1%}")
    checks = (report.get("checks") or []) + [{**c, "check": f"estimated {c['check']}"}
                                              for c in report.get("estimate_checks") or []]
    if checks:
        table = tables.table("Policy checks", ["Check", ("Value", {"justify": "right"}),
                                               ("Threshold", {"justify": "right"}), "Result",
                                               ("Detail", {"max_width": 90})])
        for check in checks:
            table.add_row(check["check"], tables.figure(check.get("value")), tables.figure(check.get("threshold")),
                          tables.passed(check.get("passed")) if check.get("status") == "checked" else
                          str(check.get("status")), tables.escape(check.get("detail")))
        out.print(table)
    metrics = _columns(report.get("task"))
    for entry in versions:
        estimate = entry.get("estimate") or {}
        primary = report.get("primary_metric")
        title = (f"v{entry['version']}{' (live)' if entry.get('live') else ''}: holdout "
                 f"{primary} {tables.figure((entry.get('holdout') or {}).get(primary))}"
                 + (f"; estimate {'trusted' if estimate.get('trusted') else 'untrusted'}"
                    if estimate.get("status") != "not_applicable" else ""))
        columns = ["Window", ("Decisions", {"justify": "right"}), ("Labelled", {"justify": "right"}),
                   ("Coverage", {"justify": "right"})] + [(m, {"justify": "right"}) for m in metrics]
        has_estimate = estimate.get("status") not in (None, "not_applicable")
        if has_estimate:
            columns += [("est. AUC", {"justify": "right"}), ("est. accuracy", {"justify": "right"}),
                        ("AUC error", {"justify": "right"})]
        table = tables.table(title, columns)
        for window in entry.get("windows") or []:
            realised = window.get("realised") or {}
            row = [tables.when(window.get("start"))[:10], str(window.get("decisions")), str(window.get("labelled")),
                   f"{window.get('coverage', 0):.1%}"] + [tables.figure(realised.get(m)) for m in metrics]
            if has_estimate:
                estimated, error = window.get("estimated") or {}, window.get("estimate_error") or {}
                row += [tables.figure(estimated.get("auc")), tables.figure(estimated.get("accuracy")),
                        tables.figure(error.get("auc"), 2)]
            table.add_row(*row)
        out.print(table)
        if not estimate.get("trusted") and has_estimate:
            out.print(f"[yellow]estimate untrusted:[/] {tables.escape(estimate.get('reason'))}")
    labels = report.get("labels") or {}
    out.print(f"Labels: {labels.get('labels', 0)} read from {labels.get('uploads', 0)} upload(s), "
              f"{labels.get('matched', 0)} joined, {labels.get('unknown_ids', 0)} unknown ids, "
              f"{labels.get('ambiguous_ids', 0)} ambiguous, {labels.get('outside_classes', 0)} outside the classes")
    for pending in labels.get("pending_uploads") or []:
        out.print(f"[dim]not ingested yet: {tables.escape(pending.get('key'))} ({pending.get('status')})[/]")
    if report.get("report_key"):
        out.print(f"[dim]report: s3://{platform.bucket}/{report['report_key']}[/]")


def _columns(task: Any) -> tuple[str, ...]:
    from mlops.reports.performance_report import COLUMNS

    return COLUMNS.get(str(task), ())
