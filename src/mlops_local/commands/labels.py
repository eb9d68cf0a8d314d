"""`mlops labels upload FILE --family F` and `mlops labels list FAMILY`: delayed ground truth in, every upload's
record out (docs/performance.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from ..client import TargetOptions, connect, echo_json, platform_options, reaching
from . import tables

# The performance function records an upload within seconds; without a record by then, it never saw it.
RECORD_WAIT_SECONDS = 120


def register(cli: click.Group) -> None:
    """Add `labels` to the CLI."""
    cli.add_command(labels)


@click.group()
def labels() -> None:
    """Ground truth that arrives late (a default weeks after the decision), joined to decision records by decision
    id: realised performance per model version (`mlops performance show`).

    \b
    A labels file is CSV with a header: request_id (or decision_id), label, and optionally event_time and the
    family's sensitive attribute. The id is the `decision_ids` entry the scoring response carried.
    Examples:
      mlops labels upload defaults-2025-06.csv --family credit-risk
      mlops labels list credit-risk
    """


@labels.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--family", required=True, metavar="NAME", help="The model family whose decisions the labels name.")
@click.option("--wait", "wait", type=click.FloatRange(min=0), default=RECORD_WAIT_SECONDS, show_default=True,
              help="Seconds to wait for the upload's record (0: do not wait).")
@platform_options
def upload(file: Path, family: str, wait: float, target: TargetOptions) -> None:
    """Upload a labels file to labels/<family>/<file name> and show its record: rows accepted, duplicates, rows
    without an id or label, labels outside the classes, and how many joined a decision (unknown and ambiguous ids).
    Exit code 0 when the file was accepted, 1 when it was rejected (the reason is shown) or no record appeared in
    time, 2 for an unknown family or a file that is not .csv / .csv.gz.

    \b
    Examples:
      mlops labels upload defaults.csv --family credit-risk
      mlops labels upload defaults.csv.gz --family credit-risk --stack MlopsPlatform --json
    """
    from mlops.data.datasets import is_supported_key
    from mlops.monitoring.labels import LABELS_PREFIX, LabelStore, upload_id

    if not is_supported_key(file.name):
        raise click.BadParameter(f"{file.name!r} is not a .csv or .csv.gz file; labels are CSV with a header "
                                 "request_id,label[,event_time]", param_hint="FILE")
    platform = connect(target)
    with reaching(platform):
        from .. import views

        views.family_record(platform, family)
        key = f"{LABELS_PREFIX}{family}/{file.name}"
        with file.open("rb") as body:
            put = platform.client("s3").put_object(Bucket=platform.bucket, Key=key, Body=body)
        version = put.get("VersionId") or put.get("ETag", "").strip('"')
        upload = upload_id(platform.bucket, key, version)
        if not target.as_json:
            tables.console(stderr=True).print(f"Uploaded s3://{platform.bucket}/{key} (version "
                                              f"{put.get('VersionId') or '-'}); upload {upload}")
        store = LabelStore(platform.bucket, platform.client("s3"))
        record = _wait_for_record(store, family, upload, wait, platform.poll_seconds)
    if target.as_json:
        echo_json({"bucket": platform.bucket, "key": key, "version_id": put.get("VersionId"), "upload_id": upload,
                   "record": record})
    elif record is None:
        tables.console().print(f"No record of upload {upload} after {wait:.0f} s: the performance function has not "
                               "processed it yet (`mlops labels list " + family + "` later)")
    else:
        print_record(tables.console(), record)
    if record is None or record.get("status") != "accepted":
        raise click.exceptions.Exit(1)


def _wait_for_record(store: Any, family: str, upload: str, wait: float, poll: float) -> dict[str, Any] | None:
    """The upload's final record (with its join counts), polling until `wait` seconds have passed."""
    deadline = time.monotonic() + wait
    while True:
        record = store.find(family, upload)
        if record is not None and (record.get("status") != "accepted" or "performance" in record):
            return record
        if time.monotonic() >= deadline:
            return record
        time.sleep(max(0.05, poll))


def print_record(out: Any, record: dict[str, Any]) -> None:
    """One upload's record for people: accepted or rejected, counts, examples, the join and the check it ran."""
    if record.get("status") != "accepted":
        out.print(f"[bold red]rejected[/] {tables.escape(record.get('key'))}: {tables.escape(record.get('reason'))}")
        return
    counts, join = record.get("counts") or {}, record.get("join") or {}
    out.print(f"[bold green]accepted[/] {tables.escape(record.get('key'))}: {counts.get('rows', 0)} labels from "
              f"{counts.get('lines', 0)} rows; joined {join.get('matched', '-')} to decisions "
              f"({join.get('unknown_ids', '-')} unknown ids, {join.get('ambiguous_ids', '-')} ambiguous, "
              f"{join.get('same_decision', 0)} naming an already labelled decision)")
    problems = {k: v for k, v in counts.items() if v and k not in ("lines", "rows")}
    if problems:
        table = tables.table("Rows counted, not used (never fatal)", ["Problem", ("Rows", {"justify": "right"}),
                                                                     ("Examples", {"max_width": 90})])
        examples = record.get("examples") or {}
        for name, count in problems.items():
            table.add_row(name.replace("_", " "), str(count), tables.escape("; ".join(examples.get(name) or [])))
        out.print(table)
    for kind, shown in (join.get("examples") or {}).items():
        if shown:
            out.print(f"[dim]{kind.replace('_', ' ')}: {tables.escape(', '.join(shown))}[/]")
    performance = record.get("performance") or {}
    if performance.get("error"):
        out.print(f"[yellow]performance check not run:[/] {tables.escape(performance['error'])}")
    elif performance:
        out.print(f"Performance: {tables.verdict(performance.get('verdict'))}, estimate "
                  f"{tables.verdict(performance.get('estimate_verdict'))} (`mlops performance show "
                  f"{record.get('family')}`)")


@labels.command("list")
@click.argument("family")
@platform_options
def list_(family: str, target: TargetOptions) -> None:
    """List a family's labels uploads, oldest first: status, rows, problems, joined decisions.

    \b
    Example:
      mlops labels list credit-risk --json
    """
    from mlops.monitoring.labels import LabelStore

    platform = connect(target)
    with reaching(platform):
        from .. import views

        views.family_record(platform, family)
        records = LabelStore(platform.bucket, platform.client("s3")).records(family)
    if target.as_json:
        echo_json({"family": family, "uploads": records})
        return
    out = tables.console()
    if not records:
        out.print(f"No labels uploaded for {family} yet (`mlops labels upload FILE --family {family}`).")
        return
    table = tables.table(f"Labels uploads of {family}", [
        ("Uploaded", {"no_wrap": True}), ("File", {"max_width": 40}), "Status", ("Labels", {"justify": "right"}),
        ("Joined", {"justify": "right"}), ("Unknown ids", {"justify": "right"}), ("Problems", {"max_width": 60})])
    for record in records:
        counts, join = record.get("counts") or {}, record.get("join") or {}
        problems = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()
                             if v and k not in ("lines", "rows"))
        table.add_row(tables.when(record.get("uploaded_at")), tables.escape(str(record.get("key")).rsplit("/", 1)[-1]),
                      "[green]accepted[/]" if record.get("status") == "accepted" else "[red]rejected[/]",
                      tables.figure(counts.get("rows")), tables.figure(join.get("matched")),
                      tables.figure(join.get("unknown_ids")),
                      tables.escape(problems or record.get("reason") or "-"))
    out.print(table)
