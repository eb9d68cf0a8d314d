"""`mlops audit REQUEST_ID`: how one scored request was decided, by which model, trained on what, and why."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click

from ..client import NotFound, TargetOptions, connect, echo_json, platform_options, reaching
from .runs import _console, _number, _short_time


def register(cli: click.Group) -> None:
    """Add `audit` to the CLI."""
    cli.add_command(audit)


@click.command()
@click.argument("request_id", metavar="REQUEST_ID")
@click.option("--family", metavar="NAME", help="The request's family (default: search every family).")
@click.option("--at", "at", metavar="TIME", help="A time near the decision (ISO 8601, e.g. 2025-03-14 or "
                                                  "2025-03-14T09:30Z): the days around it are searched first.")
@platform_options
def audit(request_id: str, family: str | None, at: str | None, target: TargetOptions) -> None:
    """Reconstruct one scored request from the request id its response carried: the decision (prediction,
    probability, threshold, inputs when the capture policy kept them), the model version and what was live at
    that moment, lineage (data set version and sha256, code revision and whether the tree was clean,
    hyperparameters, seed, metrics), the gate with every threshold, fairness, the rollout history, and the
    explanation: recomputed exactly from the captured inputs and the artifact, or the reason codes stored with
    the decision.

    \b
    Examples:
      mlops audit 4f9c2b7e-1d2a-4c55-9d8e-0b7a6f3e2c11
      mlops audit 4f9c2b7e-... --family credit-risk --at 2025-03-14 --json
      mlops audit 4f9c2b7e-... --stack MlopsPlatform --profile audit --region eu-west-1
    """
    from mlops.core.errors import DecisionNotFoundError, UnknownFamilyError, ValidationError
    from mlops.serving.audit import Auditor, parse_time

    try:
        around = parse_time(at) if at else None
    except ValidationError as exc:
        raise click.BadParameter(exc.message, param_hint="--at") from None
    platform = connect(target)
    auditor = Auditor(platform.bucket, platform.registry, s3=platform.client("s3"))
    with reaching(platform), _search_display(request_id) as progress:
        try:
            report = auditor.audit(request_id, family, around, progress)
        except ValidationError as exc:
            raise click.BadParameter(exc.message, param_hint="REQUEST_ID") from None
        except UnknownFamilyError as exc:
            known = _family_names(platform)
            raise NotFound(f"{exc.message} on {platform.description}"
                           + (f"; families: {', '.join(known)}" if known else "")) from None
        except DecisionNotFoundError as exc:
            raise NotFound(f"{exc.message} on {platform.description}") from None
    if target.as_json:
        echo_json(report)
        return
    print_report(_console(), report)


def _family_names(platform: Any) -> list[str]:
    """Registered family names (at most 50), for an unknown --family message; [] when they cannot be read."""
    try:
        return sorted(f.name for f in platform.registry.list_families(limit=50).items)
    except Exception:  # noqa: BLE001 - the message is complete without them
        return []


@contextlib.contextmanager
def _search_display(request_id: str) -> Iterator[Callable[[Any], None]]:
    """A live line on stderr while the decision records are searched (partition, objects scanned by key and
    read), then one line saying how many were scanned. Nothing on stderr when it is not a terminal, except that
    closing line."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = _console(stderr=True)
    progress = Progress(TextColumn("[bold]Searching decision records[/] {task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True,
                        disable=not console.is_terminal)
    task = progress.add_task("", total=None)
    last: list[Any] = []

    def update(at: Any) -> None:
        last[:] = [at]
        where = f"{at.family} {at.date}" + (f" {at.hour}h" if at.hour else "")
        progress.update(task, completed=at.partitions_done, total=at.partitions,
                        description=f"{where}: {at.listed} objects scanned, {at.read} read")

    with progress:
        try:
            yield update
        finally:
            progress.stop()
            if last:
                at = last[0]
                console.print(f"Searched {at.partitions_done} hour partition(s) of decision records for {request_id}: "
                              f"{at.listed} object(s) scanned by key (Bloom filter), {at.read} read")


def _decision_rule(decision: dict[str, Any]) -> str:
    """How the served model decided: a binary model at its threshold; a regression answers its predicted value and
    a multiclass model its most probable class (no threshold)."""
    task = decision.get("task") or "binary_classification"
    if task == "regression":
        return "regression (the predicted value, no threshold)"
    if task == "multiclass_classification":
        return "multiclass (the most probable class, no threshold)"
    return f"threshold {decision.get('threshold')}"


def print_report(console: Any, report: dict[str, Any]) -> None:
    """The audit for people: one section per question an auditor asks."""
    from rich.table import Table

    decision, model, then = report["decision"], report["model"], report["at_decision"]
    lineage = report["lineage"]
    console.print(f"[bold]Request[/] {report['request_id']}  [bold]family[/] {decision['family']}  "
                  f"[bold]decided[/] {_short_time(decision['at'])} UTC")
    console.print(f"Served by v{decision['version']} ({then['served_by']}; live at that moment: "
                  f"{'v' + str(then['live_version']) if then['live_version'] else 'none'}), function version "
                  f"{decision.get('function_version') or '-'}, " + _decision_rule(decision))
    table = Table(title="Decision", title_justify="left")
    for name in ("#", "Prediction", "Probability", "Inputs"):
        table.add_column(name, overflow="fold")
    for record in decision["records"][:50]:
        inputs = record.get("inputs")
        table.add_row(str(record["index"]), str(record["prediction"]), _number(record.get("probability")),
                      ", ".join(f"{k}={v}" for k, v in inputs.items()) if inputs else "not captured")
    console.print(table)

    console.print(f"[bold]Model v{model['version']}[/]: now {model['status']} ({model['status_reason']}); "
                  f"artifact sha256 {model['artifact_sha256']}"
                  + ("" if model["artifact_matches_decision"] else " [red](the decision names another artifact)[/]"))
    dataset, code = lineage.get("dataset") or {}, lineage.get("code") or {}
    console.print(f"Data set s3://{dataset.get('bucket')}/{dataset.get('key')}  version "
                  f"{dataset.get('version_id') or '-'}  sha256 {dataset.get('sha256')}  {dataset.get('rows')} rows")
    clean = {True: "[yellow]uncommitted changes[/]", False: "clean tree", None: "tree state unknown"}
    console.print(f"Code {code.get('package')} {code.get('package_version')}  revision "
                  f"{code.get('git_revision') or 'unknown'} ({clean[code.get('dirty')]})")
    console.print(f"Trained {_short_time(lineage.get('trained_at'))} UTC: {lineage.get('algorithm')} "
                  f"{lineage.get('hyperparameters')}  seed {lineage.get('seed')}")
    metrics = lineage.get("metrics") or {}
    console.print("Holdout metrics: " + ", ".join(f"{k} {_number(v)}" for k, v in metrics.items()
                                                   if isinstance(v, int | float)))
    gate = report.get("gate") or {}
    if gate.get("checks"):
        table = Table(title=f"Gate: {'passed' if gate.get('passed') else 'failed'}", title_justify="left")
        for name in ("Check", "Value", "Threshold", "Passed", "Detail"):
            table.add_column(name, overflow="fold")
        for check in gate["checks"]:
            table.add_row(str(check.get("check")), _number(check.get("value")), _number(check.get("threshold")),
                          "yes" if check.get("passed") else "[red]no[/]", str(check.get("detail", "")))
        console.print(table)
    for note in gate.get("notes") or []:
        console.print(f"Gate note: {note}")
    fairness = report.get("fairness") or {}
    if fairness:
        console.print("Fairness: " + ", ".join(f"{k} {_number(v)}" for k, v in fairness.items()
                                                if k != "groups" and not isinstance(v, dict | list)))
    if report.get("rollout"):
        table = Table(title="Rollout history", title_justify="left")
        for name in ("At (UTC)", "Version", "From", "To", "Actor", "Reason"):
            table.add_column(name, overflow="fold")
        for event in report["rollout"]:
            table.add_row(_short_time(event["at"]), f"v{event['version']}", event["from_status"] or "-",
                          event["to_status"], event["actor"], event["reason"])
        console.print(table)
    print_explanation(console, report["explanation"])


def print_explanation(console: Any, explanation: dict[str, Any]) -> None:
    """The explanation for people: the reason codes the client received (stored with the decision, the top-k it
    asked for), checked against the recomputation when the inputs were captured; a request that did not ask for
    explanations is said to be so, and recomputed reasons are then labelled as recomputed now."""
    from rich.table import Table

    console.print(f"[bold]Explanation[/] ({explanation['source']}): {explanation['note']}")
    if explanation.get("prediction_reproduced") is not None:
        console.print("The captured inputs reproduce the recorded probability"
                      if explanation["prediction_reproduced"] else
                      f"[red]The captured inputs do not reproduce the recorded probability (max difference "
                      f"{_number(explanation.get('max_probability_difference'))})[/]")
    asked = explanation.get("explained_at_request")
    if asked is False:
        console.print("[yellow]Not explained at request time[/]: the request did not ask for explanations, so the "
                      "client received no reason codes.")
    match = explanation.get("returned_match")
    if match is not None:
        console.print("The recomputation gives the same reason codes as were returned to the client"
                      if match else "[red]The recomputation does not give the reason codes returned to the client[/]")
    returned = explanation.get("returned")
    recomputed = explanation.get("records") if explanation.get("source") == "recomputed" else None
    shown = returned if returned else recomputed or []
    for index, record in enumerate(shown[:20]):
        again = (recomputed or [])[index] if recomputed and index < len(recomputed) else None
        contributions = (again or record).get("contributions") or {}
        raw = record["base_value"] + sum(contributions.values()) if contributions else None
        what = "reason codes returned to the client" if returned else "reasons recomputed now (none were returned)"
        table = Table(title=f"Record {index}: {what}, toward the unfavourable outcome ({record['output']}, base value "
                            f"{_number(record['base_value'])}" + (f", output {_number(raw)})" if raw is not None
                                                                   else ")"), title_justify="left")
        for name in ("Feature", "Value", "Contribution", "Reason"):
            table.add_column(name, overflow="fold")
        for reason in record.get("reasons") or []:
            table.add_row(str(reason["feature"]), str(reason.get("value", "(not stored)")),
                          _number(reason["contribution"]), str(reason.get("description") or ""))
        console.print(table)
