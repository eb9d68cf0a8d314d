"""`mlops report` (the model card, latest drift report and rollout timeline as local HTML + JSON) and
`mlops reproduce` (train a version again from its lineage and prove the same artifact)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..client import NotFound, TargetOptions, connect, echo_json, platform_options, reaching
from . import tables


def register(cli: click.Group) -> None:
    """Add `report` and `reproduce` to the CLI."""
    cli.add_command(report)
    cli.add_command(reproduce)


@click.command()
@click.argument("family")
@click.argument("version", type=click.IntRange(min=1))
@click.option("-o", "--output", "output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write to (created). Default: ./mlops-reports/FAMILY-vVERSION/.")
@click.option("--open", "open_", is_flag=True, help="Open the model card in your browser afterwards.")
@platform_options
def report(family: str, version: int, output: Path | None, open_: bool, target: TargetOptions) -> None:
    """Write a version's reports as self-contained HTML pages (no scripts, nothing loaded from the network) with
    their JSON: the model card (metrics, ROC and calibration curves, confusion matrix, fairness by group, gate,
    lineage, status history), the newest drift report of this version that can be drawn (per-feature
    distributions, training vs current; a failed check has no report, so the newest completed one is used and a
    note names it), the family's performance report (delayed labels: realised and estimated metrics per version and
    window), and the rollout timeline when the version had a canary.

    \b
    Examples:
      mlops report credit-risk 3 --open
      mlops report credit-risk 3 -o ./audit/credit-risk-v3 --json
    """
    from .. import views

    folder = output or Path("mlops-reports") / f"{family}-v{version}"
    _writable_folder(folder)  # a bad -o is a usage error (exit 2), said before the platform is asked anything
    platform = connect(target)
    written: dict[str, str] = {}
    notes: list[str] = []
    with reaching(platform), tables.progress(not target.as_json, f"Drawing reports of {family} v{version}") as step:
        step("model card")
        card_html, card = _draw("the model card", views.model_card_page, platform, family, version)
        pages: list[tuple[str, str, Any]] = [("model-card", card_html, card)]
        step("drift report")
        try:
            # The newest check of this version that can be drawn: failed checks (verdict "error") have no report.
            drift_html, drift, used = _draw("the drift report", views.drawable_drift_page, platform, family,
                                            version)
            pages.append(("drift-report", drift_html, drift))
            if used:
                notes.append(used)
        except NotFound as exc:
            notes.append(f"no drift report: {exc.message}")
        except click.ClickException as exc:
            notes.append(exc.message)
        step("performance report")
        try:
            from .performance import performance_page

            drawn = _draw("the performance report", performance_page, platform, family, version)
            if drawn is not None:  # a family never checked (no labels, no scheduled check yet) has no page
                pages.append(("performance-report", *drawn))
        except NotFound as exc:
            notes.append(f"no performance report: {exc.message}")
        except click.ClickException as exc:
            notes.append(exc.message)
        step("rollout timeline")
        try:
            timeline_html, rollout = _draw("the rollout timeline", views.timeline_page, platform, family, version)
            pages.append(("rollout-timeline", timeline_html, rollout))
            if not rollout["history_kept"]:
                notes.append("rollout timeline without canary checks: the run's execution history is no longer "
                             "kept (Step Functions keeps 90 days)")
        except NotFound as exc:
            notes.append(f"no rollout timeline: {exc.message}")
        except click.ClickException as exc:
            notes.append(exc.message)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, html, data in pages:
            (folder / f"{name}.html").write_text(html, encoding="utf-8")
            (folder / f"{name}.json").write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n",
                                                 encoding="utf-8")
            written[name] = str(folder / f"{name}.html")
    except OSError as exc:
        raise click.BadParameter(f"cannot write to {folder}: {exc.strerror}", param_hint="-o/--output") from None
    if open_:
        failed = open_in_browser((folder / "model-card.html").resolve())
        if failed:
            tables.console(stderr=True).print(f"[yellow]{tables.escape(failed)}[/]")
    if target.as_json:
        echo_json({"family": family, "version": version, "folder": str(folder), "pages": written, "notes": notes})
        return
    out = tables.console()
    for name, path in written.items():
        out.print(f"wrote {path} (+ {Path(path).with_suffix('.json').name})  [dim]{name}[/]")
    for note in notes:
        out.print(f"[dim]{tables.escape(note)}[/]")


def _writable_folder(folder: Path) -> None:
    """Check, without creating anything, that `folder` can be created and written to: it is a folder or does not
    exist, and its nearest existing ancestor is a writable folder. Raises click.BadParameter (exit 2) naming it
    and the reason."""
    import os

    if folder.exists() and not folder.is_dir():
        raise click.BadParameter(f"cannot write to {folder}: it is a file, not a folder", param_hint="-o/--output")
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise click.BadParameter(f"cannot create {folder}: {existing} is a file, not a folder",
                                 param_hint="-o/--output")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write to {folder}: {existing} is not writable (permission denied)",
                                 param_hint="-o/--output")


def open_in_browser(page: Path) -> str | None:
    """Open `page` in the desktop's browser (click.launch: xdg-open, open, start). Returns None when a browser
    was started, else a sentence saying why not and where the page is (no display on Linux, launcher failed)."""
    import os
    import sys

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return f"no browser can be opened here (no display); the model card is at {page}"
    code = click.launch(str(page))
    if code != 0:
        return f"the browser could not be opened (launcher exit code {code}); the model card is at {page}"
    return None


def _draw(what: str, draw: Any, *args: Any, **kwargs: Any) -> Any:
    """One page drawn from the registry; a record the renderer cannot draw is a ClickException naming the page
    and the error (exit 1), not a traceback. NotFound and AWS errors pass through."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return draw(*args, **kwargs)
    except (click.ClickException, ClientError, BotoCoreError):
        raise
    except Exception as exc:  # noqa: BLE001 - any renderer failure on a stored record
        raise click.ClickException(f"{what} could not be drawn: {type(exc).__name__}: {exc}") from None


@click.command()
@click.argument("family")
@click.argument("version", type=click.IntRange(min=1))
@platform_options
def reproduce(family: str, version: int, target: TargetOptions) -> None:
    """Train VERSION again from its lineage (the data set's exact S3 object version, the family configuration it
    was trained with, seed, hyperparameters), here, with the code the Train step runs; compare the code revision
    and libraries with the recorded ones; and prove the ONNX artifact has the same sha256, or say exactly what
    differs (model fields, graph, initializers) and whether any prediction on the holdout differs.

    Exit code 0 when the artifact is identical, 1 when it differs or the version cannot be trained again (its
    data set version was deleted), 2 for an unknown family or version.

    \b
    Examples:
      mlops reproduce credit-risk 3
      mlops reproduce credit-risk 3 --stack MlopsPlatform --json
    """
    from ..reproduce import ReproduceError
    from ..reproduce import reproduce as run_reproduce

    platform = connect(target)
    with reaching(platform), tables.progress(not target.as_json, f"Reproducing {family} v{version}") as step:
        try:
            result = run_reproduce(platform, family, version, progress=step)
        except ReproduceError as exc:
            raise click.ClickException(str(exc)) from None
    if target.as_json:
        echo_json(result)
    else:
        print_reproduction(tables.console(), result)
    if not result["identical"]:
        raise click.exceptions.Exit(1)


def print_reproduction(out: Any, result: dict[str, Any]) -> None:
    artifact = result["artifact"]
    if result["identical"]:
        out.print(f"[bold green]reproduced[/]: {result['family']} v{result['version']} trained again gives the same "
                  f"artifact, sha256 {artifact['reproduced']} ({artifact['bytes']} bytes)")
    else:
        out.print(f"[bold red]not reproduced[/]: {result['family']} v{result['version']} recorded sha256 "
                  f"{artifact['recorded']}, trained again {artifact['reproduced']}")
    checks = tables.table("Inputs and code", ["Check", "", ("Recorded", {"max_width": 66}),
                                              ("Now", {"max_width": 66}), ("Detail", {"max_width": 60})])
    for check in result["checks"]:
        checks.add_row(check["check"], "[green]same[/]" if check["same"] else "[yellow]differs[/]",
                       tables.escape(_value(check["recorded"])), tables.escape(_value(check["now"])),
                       tables.escape(check["detail"]))
    out.print(checks)
    for difference in result["differences"]:
        out.print(f"[yellow]differs:[/] {tables.escape(difference)}")
    predictions = result.get("predictions")
    if predictions:
        out.print(f"On the {predictions['rows']} holdout rows: largest probability difference "
                  f"{predictions['max_abs_probability_difference']:.3g}, {predictions['decisions_differing']} "
                  "decisions differ at the threshold")
    env = result["environment"]
    out.print(f"[dim]trained by {env['trained_on']}; reproduced on {env['reproduced_on']}[/]")
    if env.get("note") and not result["identical"]:
        out.print(f"[dim]{tables.escape(env['note'])}[/]")


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    return tables.figure(value)
