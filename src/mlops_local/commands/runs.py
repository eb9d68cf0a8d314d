"""`mlops runs`, `mlops runs show RUN` and `mlops upload FILE --family F [--follow]`: every outcome visible."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ..client import NotFound, Platform, TargetOptions, connect, echo_json, platform_options, reaching
from . import tables

OUTCOME_STYLE = {"promoted": "bold green", "started": "cyan", "gated_out": "yellow", "rolled_back": "yellow",
                 "duplicate": "blue", "unchanged": "blue", "rejected": "red", "refused": "red", "failed": "bold red"}
# A failed execution's run is recorded by the failure handling; EventBridge delivers within seconds.
FAILURE_HANDLING_GRACE_SECONDS = 120.0
# The trigger records every upload within seconds; without a record after this, it never saw the upload.
NO_RECORD_GRACE_SECONDS = 120.0


def register(cli: click.Group) -> None:
    """Add `runs` and `upload` to the CLI."""
    cli.add_command(runs)
    cli.add_command(upload)


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start:
        return None
    begun = _parse(start)
    ended = _parse(end) if end else datetime.now(UTC)
    return round((ended - begun).total_seconds(), 3) if begun and ended else None


def _parse(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _short_time(value: str | None) -> str:
    parsed = _parse(value) if value else None
    return parsed.strftime("%Y-%m-%d %H:%M:%S") if parsed else "-"


def _duration(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _outcome(run: dict[str, Any]) -> str:
    style = OUTCOME_STYLE.get(run.get("outcome", ""), "")
    return f"[{style}]{run.get('outcome', '?')}[/]" if style else str(run.get("outcome", "?"))


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """The run record as scripts get it (--json): every recorded field plus `seconds` and `last_step`."""
    return {**run, "seconds": seconds_between(run.get("started_at"), run.get("ended_at")),
            "last_step": run_step(run)}


def run_step(run: dict[str, Any]) -> str | None:
    """The step to show for a run: the step that decided it (`step`), else the last state its execution entered
    (from the record's `steps`), marked "(running)" while the run goes on; None before any state ran."""
    if run.get("step"):
        return str(run["step"])
    steps = [s for s in run.get("steps") or [] if isinstance(s, dict) and s.get("step")]
    if not steps:
        return None
    last = steps[-1]
    running = run.get("outcome") in (None, "started") and not last.get("ended_at")
    return f"{last['step']} (running)" if running else str(last["step"])


def requests_text(requests: Any, minimum: Any) -> str:
    """A canary window's requests against the policy's minimum: "40 requests (min 20)"; more than the minimum
    is fine, fewer says how many are missing."""
    text = f"{_count(requests)} requests (min {minimum})"
    if isinstance(requests, int | float) and isinstance(minimum, int | float) and requests < minimum:
        text = f"{_count(requests)} requests (min {minimum}: {float(minimum) - float(requests):.0f} more needed)"
    return text


def _console(stderr: bool = False) -> Any:
    """Rich output for people; piped into a file or another program, lines are not cut at 80 columns."""
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 220
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


# ---- mlops runs ------------------------------------------------------------------------------------------------


class _RunsGroup(click.Group):
    """`mlops runs NAME` is a common slip for `mlops runs --family NAME`: the error says so."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            if args and not args[0].startswith("-"):
                raise click.UsageError(f"no such command {args[0]!r}: to list a family's runs, "
                                       f"`mlops runs --family {args[0]}`; one run: `mlops runs show RUN_ID`",
                                       ctx) from exc
            raise


@click.group(cls=_RunsGroup, invoke_without_command=True)
@click.option("--family", metavar="NAME", help="Only this family's runs (also unregistered names that were "
                                                "rejected).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Newest runs shown.")
@platform_options
@click.pass_context
def runs(ctx: click.Context, family: str | None, limit: int, target: TargetOptions) -> None:
    """List pipeline runs, newest first: outcome, deciding step, reason, timings.

    Every object uploaded under datasets/ has a run: started, rejected (no or unknown family, unsupported file,
    too big), duplicate (identical content already judged), unchanged (the trained model is byte-identical to an
    existing version), refused (family busy), failed (step and reason), gated_out (gate reasons), rolled_back
    (canary reasons) or promoted (the model went live).

    \b
    Examples:
      mlops runs
      mlops runs --family credit-risk --json
      mlops runs --stack MlopsPlatform --profile prod --region eu-west-1
      mlops runs show credit-risk-0123abcd...
    """
    if ctx.invoked_subcommand:
        return
    platform = connect(target)
    with reaching(platform):
        listed = platform.registry.list_runs(family=family, limit=limit)
    if target.as_json:
        echo_json({"runs": [run_summary(r) for r in listed]})
        return
    console = _console()
    if not listed:
        console.print(f"No runs{f' of {family}' if family else ''} on {platform.description}.")
        return
    from rich.table import Table

    table = Table(title=f"Runs on {platform.description}", title_justify="left", expand=False)
    for name, options in (("Started (UTC)", {"no_wrap": True, "min_width": 10}),
                          ("Family", {"overflow": "fold", "min_width": 8}),
                          ("Run", {"overflow": "fold", "min_width": 12}),
                          ("Outcome", {"no_wrap": True, "min_width": 9}),
                          ("Step", {"overflow": "fold", "min_width": 6}),
                          ("Version", {"justify": "right"}), ("Duration", {"justify": "right", "no_wrap": True}),
                          ("Reason", {"overflow": "fold", "ratio": 1, "min_width": 20})):
        table.add_column(name, **options)
    for run in listed:
        table.add_row(_short_time(run.get("started_at")), run.get("family", ""), run.get("run_id", ""),
                      _outcome(run), run_step(run) or "-", f"v{run['version']}" if run.get("version") else "-",
                      _duration(seconds_between(run.get("started_at"), run.get("ended_at"))),
                      _truncate(run.get("reason") or "", 160))
    console.print(table)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


@runs.command("show")
@click.argument("run_id", metavar="RUN")
@click.option("--family", metavar="NAME", help="The run's family (needed only for runs of unregistered names "
                                                "longer than 40 characters).")
@click.option("--follow", is_flag=True, help="Follow a running run until it ends (progress and the canary's "
                                             "requests), then tell its story; exit 0 only when the model went live.")
@click.option("--timeout", type=click.FloatRange(min=1), default=3600, show_default=True,
              help="With --follow: seconds to follow before giving up (the run goes on).")
@click.option("--poll-seconds", type=click.FloatRange(min=0.01), default=None, hidden=True)
@platform_options
def show(run_id: str, family: str | None, follow: bool, timeout: float, poll_seconds: float | None,
         target: TargetOptions) -> None:
    """Tell the whole story of one run: the record, every state of its execution with timings and errors, the
    model version it registered with the gate's checks, and the canary (weight, last check, divergence test).

    With --follow, a run still in progress is followed first, as `mlops upload --follow` does (exit 0 promoted,
    1 any other outcome or still running at --timeout, 130 on Ctrl-C: the run goes on).

    \b
    Examples:
      mlops runs show credit-risk-0123abcd... --json
      mlops runs show credit-risk-0123abcd... --follow
    """
    platform = connect(target)
    with reaching(platform):
        run = find_run(platform, run_id, family)
        if follow and run.get("outcome") == "started":
            run = follow_or_interrupt(platform, run["family"], run_id, timeout,
                                      poll_seconds or platform.poll_seconds,
                                      None if target.as_json else _console(stderr=True)) or run
        story = run_story(platform, run)
    if target.as_json:
        echo_json(story)
    else:
        print_story(_console(), story)
    if follow and run.get("outcome") != "promoted":
        raise click.exceptions.Exit(1)


def find_run(platform: Platform, run_id: str, family: str | None) -> dict[str, Any]:
    """The run record, its family taken from --family or from the run id's prefix."""
    from mlops.registry.runs import family_prefix_of_run

    registry = platform.registry
    candidates = [family] if family else []
    if not candidates:
        prefix = family_prefix_of_run(run_id)
        if prefix:
            candidates.append(prefix)
            if len(prefix) == 40:  # execution names keep the first 40 characters of the family name
                candidates += [r.name for r in registry.iter_families()
                               if r.name.startswith(prefix) and r.name != prefix]
    for name in candidates:
        run = registry.get_run(name, run_id)
        if run:
            return run
    raise NotFound(f"no run {run_id!r}{f' of family {family!r}' if family else ''} on {platform.description} "
                   "(`mlops runs` lists them)")


def run_story(platform: Platform, run: dict[str, Any]) -> dict[str, Any]:
    """{run, states, version}: the record, the execution's states (empty for runs that never started one) and
    the registered model version with its status, gate and canary result."""
    from mlops.rollout.history import read_history, state_visits

    states: list[dict[str, Any]] = []
    arn = run.get("execution_arn")
    if not arn and run.get("outcome") not in ("rejected",):
        from mlops.rollout.history import execution_arn

        arn = execution_arn(platform.state_machine_arn, run["run_id"])
    if arn:
        try:
            states = state_visits(read_history(arn, platform.client("stepfunctions")))
        except Exception as exc:  # a run without an execution (rejected by the trigger) has no history
            if "ExecutionDoesNotExist" not in type(exc).__name__ + str(exc):
                raise
    version = None
    if run.get("version"):
        try:
            record = platform.registry.get_version(run["family"], int(run["version"]))
        except Exception:  # noqa: BLE001 - the story goes on without the version record
            record = None
        if record is not None:
            lineage = record.lineage
            from mlops.reports.model_card import training_engine

            version = {"version": record.version, "status": record.status, "status_reason": record.status_reason,
                       "gate": lineage.get("gate"), "canary_result": lineage.get("canary_result"),
                       "metrics": lineage.get("metrics"), "artifact_sha256": lineage.get("artifact_sha256"),
                       "training": training_engine(lineage.get("training"))}
    return {"run": run_summary(run), "states": states, "version": version}


def print_story(console: Any, story: dict[str, Any]) -> None:
    from rich.table import Table

    run = story["run"]
    console.print(f"[bold]Run[/] {run.get('run_id')}  [bold]family[/] {run.get('family')}  "
                  f"[bold]outcome[/] {_outcome(run)}" + (f"  [bold]version[/] v{run['version']}"
                                                         if run.get("version") else ""))
    console.print(f"Started {_short_time(run.get('started_at'))} UTC, ended {_short_time(run.get('ended_at'))}"
                  f" ({_duration(run.get('seconds'))}); trigger: {(run.get('trigger') or {}).get('source', '-')}")
    dataset = run.get("dataset") or {}
    if dataset:
        console.print(f"Data set s3://{dataset.get('bucket')}/{dataset.get('key')}  version "
                      f"{dataset.get('version_id') or '-'}  sha256 {dataset.get('sha256') or '(not read yet)'}  "
                      f"{dataset.get('size') or '?'} bytes")
    if run.get("step") or run.get("reason"):
        console.print(f"[bold]Decided at[/] {run.get('step') or run_step(run) or '-'}: {run.get('reason') or '-'}")
    elif run_step(run):
        console.print(f"[bold]Step[/] {run_step(run)}")
    duplicate_of = (run.get("detail") or {}).get("duplicate_of")
    if duplicate_of:
        console.print(f"Duplicate of run {duplicate_of.get('run_id')} ({duplicate_of.get('outcome')})")
    identical_to = (run.get("detail") or {}).get("identical_to")
    if identical_to:
        console.print(f"Same model as v{identical_to.get('version')} ({identical_to.get('status') or '-'}): ONNX "
                      f"artifact sha256 {identical_to.get('artifact_sha256') or '-'}")
    if story["states"]:
        table = Table(title="Execution", title_justify="left")
        for name in ("State", "Entered (UTC)", "Seconds", "Error"):
            table.add_column(name, overflow="fold")
        for state in story["states"]:
            error = f"{state['error']}: {_truncate(state.get('cause') or '', 200)}" if state.get("error") else ""
            seconds = "running" if state.get("exited_at") is None else f"{state.get('seconds') or 0:.2f}"
            table.add_row(state["state"], _short_time(state["entered_at"]), seconds, error)
        console.print(table)
    version = story.get("version")
    if version:
        console.print(f"[bold]Model v{version['version']}[/]: {version['status']} ({version['status_reason']})")
        training = version.get("training")
        console.print(f"Trained on {training['text'] if training else 'an engine not recorded'}", markup=False)
        gate = version.get("gate") or {}
        if gate.get("checks"):
            table = Table(title=f"Gate: {'passed' if gate.get('passed') else 'failed'}", title_justify="left")
            for name in ("Check", "Value", "Threshold", "Passed", "Detail"):
                table.add_column(name, overflow="fold")
            for check in gate["checks"]:
                table.add_row(str(check.get("check")), _number(check.get("value")), _number(check.get("threshold")),
                              tables.check_verdict(check), str(check.get("detail", "")))
            console.print(table)
        for note in gate.get("notes") or []:
            console.print(f"[dim]note: {tables.escape(note)}[/]")
    for line in warning_lines(run, (version or {}).get("gate")):
        console.print(line)
        canary = version.get("canary_result") or {}
        if canary and not run.get("canary"):
            console.print(f"Canary: {canary.get('decision')}: {'; '.join(canary.get('reasons') or [])}")
            divergence = divergence_text((canary.get("figures") or {}).get("divergence"))
            if divergence:
                console.print(f"  divergence: {divergence}")
    for line in canary_lines(run):
        console.print(line)


def warning_lines(run: dict[str, Any], gate: dict[str, Any] | None = None) -> list[str]:
    """The run's warnings (signs of target leakage from the gate: never a rejection on their own, easy to miss),
    one yellow line each: from the run record (written when the run ended) and the version's gate decision."""
    found: list[str] = []
    for warning in [*((run.get("detail") or {}).get("warnings") or []), *((gate or {}).get("warnings") or [])]:
        if warning not in found:
            found.append(str(warning))
    return [f"[yellow]warning: {tables.escape(w)}[/]" for w in found]


def canary_lines(run: dict[str, Any]) -> list[str]:
    """The canary of a run as its record holds it (written by every canary step and check): version, weight
    and step, the last check's decision, requests against min_requests, and the divergence test's figures."""
    canary = run.get("canary") or {}
    if not canary:
        return []
    steps = canary.get("steps") or []
    # A run that failed during its canary (stopped, timed out) put the traffic back without a canary step.
    ended = canary.get("ended") or (run.get("outcome") if run.get("outcome") not in (None, "started") else None)
    state = {"promoted": "promoted (all traffic)", "rolled_back": "rolled back (no traffic)"}.get(
        ended or "", f"ended with the run ({ended}; the live version has all traffic)" if ended else
        f"at {canary.get('weight')}% of traffic (step {int(canary.get('step', 0)) + 1} of {len(steps)}: "
        f"{', '.join(f'{s}%' for s in steps)})")
    lines = [f"[bold]Canary[/] v{canary.get('version')} {state}"]
    check = canary.get("last_check") or {}
    if check:
        lines.append(f"  last check at {check.get('weight')}%: {check.get('decision')}: "
                     f"{_truncate('; '.join(check.get('reasons') or []) or '-', 300)}")
        lines.append(f"  {requests_text(check.get('requests'), canary.get('min_requests'))} in "
                     f"the window; {_count(check.get('canary_predictions'))} canary and "
                     f"{_count(check.get('live_predictions'))} live predictions captured")
        divergence = divergence_text(check.get("divergence"))
        if divergence:
            lines.append(f"  divergence: {divergence}")
        hint = nothing_captured_hint(run, check)
        if hint:
            lines.append(f"  [yellow]{hint}[/]")
    return lines


def nothing_captured_hint(run: dict[str, Any], check: dict[str, Any]) -> str | None:
    """A canary check that saw requests but not one captured prediction on either side while it compares
    predictions, for people: it waits for captures (a very low capture_sample_rate, or captures that do not reach
    S3). None otherwise, and for a family with captures off (its decisions say it is judged on errors and latency
    only: `mlops.rollout.control.CAPTURES_OFF`)."""
    requests = check.get("requests")
    if not isinstance(requests, int | float) or requests <= 0 or check.get("canary_predictions") or \
            check.get("live_predictions") or (check.get("divergence") or {}).get("status") == "not_checked":
        return None
    family = run.get("family") or "FAMILY"
    return (f"{requests:.0f} requests but no prediction captured on either side: the canary waits for captured "
            f"predictions to compare (is the capture_sample_rate very low? `mlops families show {family}`; or do "
            "captures reach S3? the scoring function's logs), and is rolled back after max_idle_windows")


def divergence_text(divergence: dict[str, Any] | None) -> str:
    """The divergence test a canary check recorded, in words: test, p-value against its level, effect size
    against its floor ("Fisher's exact p 0.62 (alpha 0.005), Cohen's h 0.05 (min 0.5): not diverged")."""
    if not divergence:
        return ""
    if divergence.get("status") not in (None, "checked"):
        return str(divergence.get("summary") or divergence.get("status"))
    names = {"fisher_exact": "Fisher's exact", "chi_square": "chi-square", "ks": "KS"}
    parts = []
    p_value = next((divergence[k] for k in ("p_value", "ks_p_value", "chi2_p_value") if divergence.get(k) is not None),
                   None)
    if p_value is not None:
        test = names.get(str(divergence.get("test")), str(divergence.get("test") or "test"))
        parts.append(f"{test} p {_number(float(p_value))}" + (
            f" (alpha {_number(divergence['alpha'])})" if divergence.get("alpha") is not None else ""))
    for effect, floor, label in (("cohens_h", "min_cohens_h", "Cohen's h"),
                                 ("cramers_v_equal_weight", "max_cramers_v", "equal-weight Cramér's V"),
                                 ("ks_statistic", "max_ks_statistic", "KS D")):
        if divergence.get(effect) is not None:
            parts.append(f"{label} {_number(divergence[effect])}" + (
                f" (min {_number(divergence[floor])})" if divergence.get(floor) is not None else ""))
    if divergence.get("diverged") is not None:
        parts.append("diverged" if divergence["diverged"] else "not diverged")
    return ", ".join(parts) or str(divergence.get("summary") or "")


def _count(value: Any) -> str:
    return "?" if value is None else f"{float(value):.0f}"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))


# ---- mlops upload ------------------------------------------------------------------------------------------


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--family", required=True, metavar="NAME", help="The model family the data set trains.")
@click.option("--follow", is_flag=True, help="Follow the run until it ends; exit 0 only when the model went live.")
@click.option("--timeout", type=click.FloatRange(min=1), default=3600, show_default=True,
              help="Seconds to follow before giving up (the run goes on; `mlops runs show RUN`).")
@click.option("--poll-seconds", type=click.FloatRange(min=0.01), default=None, hidden=True)
@platform_options
def upload(file: Path, family: str, follow: bool, timeout: float, poll_seconds: float | None,
           target: TargetOptions) -> None:
    """Upload a data set to datasets/<family>/<file name>, which starts a pipeline run, and optionally follow it.

    With --follow the exit code tells the outcome: 0 promoted (the model is live), 1 anything else (gated out,
    rolled back, failed, rejected, duplicate, unchanged, refused, or still running at --timeout); 130 when you stop
    following with Ctrl-C (the run goes on: `mlops runs show RUN --follow` follows it again). While a canary bakes,
    the display shows its requests against the policy's min_requests: a canary is judged on scoring traffic, so
    send requests to the family's predict route or it waits and, after max_idle_windows, rolls back.

    \b
    Examples:
      mlops upload loans.csv --family credit-risk --follow
      mlops upload loans.csv.gz --family credit-risk --stack MlopsPlatform --region eu-west-1 --json
    """
    from mlops.pipeline.trigger import DATASET_PREFIX, execution_name

    from .. import views

    platform = connect(target)
    console = _console(stderr=True)
    with reaching(platform):
        views.family_record(platform, family)  # NotFound: the closest names, not every registered family
        key = f"{DATASET_PREFIX}{family}/{file.name}"
        with file.open("rb") as body:
            put = platform.client("s3").put_object(Bucket=platform.bucket, Key=key, Body=body)
        version_id = put.get("VersionId")
        run_id = execution_name(family, platform.bucket, key, version_id or put.get("ETag", "").strip('"'))
        uploaded = {"bucket": platform.bucket, "key": key, "version_id": version_id, "run_id": run_id}
        if not target.as_json:
            console.print(f"Uploaded s3://{platform.bucket}/{key} (version {version_id or '-'}); run {run_id}")
        if not follow:
            if target.as_json:
                echo_json(uploaded)
            return
        run = follow_or_interrupt(platform, family, run_id, timeout, poll_seconds or platform.poll_seconds,
                                  None if target.as_json else console, target)
    if target.as_json:
        echo_json({**uploaded, "run": run_summary(run) if run else None})
    elif run is not None:
        out = _console()
        step = f" (step {run['step']})" if run.get("step") else ""
        out.print(f"{_outcome(run)}: {run.get('reason') or '-'}{step}")
        for line in warning_lines(run):
            out.print(line)
    if not run or run.get("outcome") != "promoted":
        raise click.exceptions.Exit(1)


def follow_or_interrupt(platform: Platform, family: str, run_id: str, timeout: float, poll: float,
                        console: Any | None, target: TargetOptions | None = None) -> dict[str, Any] | None:
    """`follow_run`; on Ctrl-C, say that the run goes on in the background and how to follow it again, and exit
    130 (128 + SIGINT, the shell's code for an interrupted command) rather than 1, which means a negative
    outcome."""
    try:
        return follow_run(platform, family, run_id, timeout, poll, console)
    except KeyboardInterrupt:
        where = "".join(f" --{name} {value}" for name, value in (
            ("stack", target and target.stack), ("profile", target and target.profile),
            ("region", target and target.region)) if value)
        click.echo(f"Stopped following. Run {run_id} goes on in the background; follow it again with:\n"
                   f"  mlops runs show {run_id} --follow{where}", err=True)
        raise click.exceptions.Exit(130) from None


def follow_run(platform: Platform, family: str, run_id: str, timeout: float, poll: float,
               console: Any | None) -> dict[str, Any] | None:
    """Poll the run record (and its execution's history for progress) until the run has a final outcome.
    Returns the final record; a record with outcome `started` when following gave up (timeout, or an execution
    that ended without its failure being recorded in time); None when the upload never got a record."""
    from mlops.registry.runs import FAILURE_STATUSES
    from mlops.rollout.history import read_history, state_visits

    registry, sfn = platform.registry, platform.client("stepfunctions")
    began = time.monotonic()
    ended_at: float | None = None
    run: dict[str, Any] | None = None
    visits: list[dict[str, Any]] = []
    live = _progress(console, run_id)
    try:
        while True:
            run = registry.get_run(family, run_id)
            if run and run.get("outcome") != "started":
                # A run that ended between two polls: the last display shows every state it went through.
                visits = _final_visits(run, sfn, visits)
                return run
            now = time.monotonic()
            if run and run.get("execution_arn"):
                visits = state_visits(read_history(run["execution_arn"], sfn))
                if ended_at is None and sfn.describe_execution(
                        executionArn=run["execution_arn"])["status"] in FAILURE_STATUSES:
                    ended_at = now
            if run is None and now - began > NO_RECORD_GRACE_SECONDS:
                _note(console, f"no run record for this upload after {NO_RECORD_GRACE_SECONDS:.0f} s: the trigger "
                               "did not process it (see the failed-events queue and the trigger's logs)")
                return None
            if ended_at is not None and now - ended_at > FAILURE_HANDLING_GRACE_SECONDS:
                _note(console, "the execution ended but its failure handling was not recorded; "
                               f"see `mlops runs show {run_id}`")
                return run
            if now - began > timeout:
                _note(console, f"still running after {timeout:.0f} s; follow with `mlops runs show {run_id}`")
                return run
            if live is not None:
                live.update(_progress_table(run_id, visits, run=run))
            time.sleep(poll)
    finally:
        if live is not None:
            live.update(_progress_table(run_id, visits, done=True, run=run))
            live.stop()


def _final_visits(run: dict[str, Any], sfn: Any, visits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The states of an ended run's execution, read once more (the last poll may have seen only the first of them);
    the visits already read when its history cannot be read (a run without an execution)."""
    from mlops.rollout.history import read_history, state_visits

    if not run.get("execution_arn"):
        return visits
    try:
        return state_visits(read_history(run["execution_arn"], sfn))
    except Exception:  # noqa: BLE001 - the outcome is known; the display keeps what it had
        return visits


def _progress(console: Any | None, run_id: str) -> Any:
    if console is None:
        return None
    from rich.live import Live

    live = Live(_progress_table(run_id, []), console=console, refresh_per_second=4, transient=False)
    live.start()
    return live


CANARY_STATES = frozenset({"CanaryStart", "Bake", "CanaryCheck", "CanaryDecision", "CanaryStepUp"})


def _progress_table(run_id: str, visits: list[dict[str, Any]], done: bool = False,
                    run: dict[str, Any] | None = None) -> Any:
    """The follow display: the run id on a line of its own (never wrapped), the states so far, and while the
    canary bakes its weight and the last check's requests against min_requests (`canary_progress`)."""
    from rich.console import Group
    from rich.spinner import Spinner
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False)
    table.add_column("")
    table.add_column("State")
    table.add_column("Seconds", justify="right")
    for visit in visits:
        running = visit.get("exited_at") is None
        mark: Any = "[red]x[/]" if visit.get("error") else ("" if not running or done else Spinner("dots"))
        seconds = visit.get("seconds")
        if running:
            seconds = seconds_between(visit.get("entered_at"), None)
        table.add_row(mark if running or visit.get("error") else "[green]ok[/]", visit["state"],
                      f"{seconds:.1f}" if seconds is not None else "-")
    if not visits:
        table.add_row("" if done else Spinner("dots"), "waiting for the trigger", "")
    parts: list[Any] = [Text(f"Run {run_id}", style="bold", no_wrap=True, overflow="ignore"), table]
    progress = canary_progress(run) if visits and visits[-1]["state"] in CANARY_STATES and not done else None
    if progress:
        parts.append(Text.from_markup(progress))
    return Group(*parts)


def canary_progress(run: dict[str, Any] | None) -> str | None:
    """One or two lines on a baking canary for the follow display, from its run record: version, weight and
    step, and the last check's requests against the policy's min_requests; while it waits for traffic, how to
    send some. None before the canary started or after it ended."""
    canary = (run or {}).get("canary") or {}
    if not canary or canary.get("ended") or (run or {}).get("outcome") not in (None, "started"):
        return None
    steps = canary.get("steps") or []
    line = (f"Canary v{canary.get('version')} at {canary.get('weight')}% (step {int(canary.get('step', 0)) + 1} "
            f"of {len(steps)})")
    check = canary.get("last_check") or {}
    if not check or check.get("weight") != canary.get("weight"):
        return (f"{line}: first check after the {canary.get('bake_seconds')} s bake window, which needs "
                f"{canary.get('min_requests')} scoring requests (min_requests)")
    line += (f": {requests_text(check.get('requests'), canary.get('min_requests'))} at the "
             f"last check; {_count(check.get('canary_predictions'))} canary and "
             f"{_count(check.get('live_predictions'))} live predictions captured")
    if check.get("decision") == "wait":
        family = (run or {}).get("family", "<family>")
        line += (f"\n[yellow]waiting for traffic ({check.get('idle_windows')} of {canary.get('max_idle_windows')} "
                 f"idle windows, then a rollback): send scoring requests to POST /models/{family}/predict[/]")
        hint = nothing_captured_hint(run or {}, check)
        if hint:
            line += f"\n[yellow]{hint}[/]"
    return line


def _note(console: Any | None, message: str) -> None:
    if console is not None:
        console.print(f"[yellow]{message}[/]")
