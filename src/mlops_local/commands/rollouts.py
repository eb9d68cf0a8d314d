"""`mlops promote` and `mlops rollback`: traffic and registry moved together, recorded with who and why."""

from __future__ import annotations

from typing import Any

import click

from ..client import TargetOptions, connect, echo_json, platform_options, reaching
from . import tables

REASON_HELP = "Why (recorded in the family's status history with your identity)."


def register(cli: click.Group) -> None:
    """Add `promote` and `rollback` to the CLI."""
    cli.add_command(promote)
    cli.add_command(rollback)


def _reason(value: str) -> str:
    text = value.strip()
    if not text:
        raise click.BadParameter("say why: the reason is recorded with the change", param_hint="'--reason'")
    if len(text) > 500:
        raise click.BadParameter(f"at most 500 characters (got {len(text)})", param_hint="'--reason'")
    return text


@click.command()
@click.argument("family")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--reason", required=True, metavar="TEXT", help=REASON_HELP)
@platform_options
def promote(family: str, version: int, reason: str, target: TargetOptions) -> None:
    """Make VERSION the family's live model with all traffic: the registry's status and the scoring function's
    `live` alias together, recorded with who (your local user, or your AWS identity's ARN on a stack) and why.

    Allowed: a retired version back to live (the current live one is retired), a canary left behind by a run
    that no longer runs, a family's first candidate, and a canary rolled back only because too little traffic
    reached it to judge it (recorded as such, with who and why). Refused (exit 4): while a rollout runs (the
    family's rollout lock), for rejected versions and versions rolled back for errors, latency or diverging
    predictions (final), and for a candidate while another version is live (it must pass a canary: upload its
    data set again).

    \b
    Examples:
      mlops promote credit-risk 3 --reason "v4 mislabels region=west; back to v3"
      mlops promote credit-risk 3 --reason "incident 1234" --stack MlopsPlatform --json
    """
    from ..operator import promote as run_promote

    reason = _reason(reason)
    platform = connect(target)
    with reaching(platform):
        result = run_promote(platform, family, version, reason)
    if target.as_json:
        echo_json(result)
        return
    out = tables.console()
    if result["already_live"]:
        out.print(f"{family} v{version} was already live; the alias serves it ({_alias(result['alias'])}).")
        return
    previous = f" (v{result['previous_live_version']} retired)" if result["previous_live_version"] else ""
    out.print(f"[green]{family} v{version} is live[/]{previous}; {_alias(result['alias'])}.")
    out.print(f"Recorded: by {tables.escape(result['actor'])}: {tables.escape(reason)}")


@click.command()
@click.argument("family")
@click.option("--reason", required=True, metavar="TEXT", help=REASON_HELP)
@platform_options
def rollback(family: str, reason: str, target: TargetOptions) -> None:
    """Go back to the previous model: the live version becomes rolled_back and the most recently retired version
    is live again with all traffic (registry and alias together, recorded with who and why). A canary left behind
    by a run that no longer runs is rolled back instead (the live model keeps all traffic).

    Refused (exit 4) while a rollout runs (the family's rollout lock: the canary decides), and when there is no
    live or retired version to go back to.

    \b
    Examples:
      mlops rollback credit-risk --reason "complaints about v5 since 10:00"
      mlops rollback credit-risk --reason "drift on income" --stack MlopsPlatform --profile prod
    """
    from ..operator import rollback as run_rollback

    reason = _reason(reason)
    platform = connect(target)
    with reaching(platform):
        result = run_rollback(platform, family, reason)
    if target.as_json:
        echo_json(result)
        return
    out = tables.console()
    what = "canary " if result["was_canary"] else ""
    live = f"v{result['live_version']} is live" if result["live_version"] else "nothing is live"
    out.print(f"[yellow]{family} {what}v{result['rolled_back_version']} rolled back[/]; {live}; "
              f"{_alias(result['alias'])}.")
    out.print(f"Recorded: by {tables.escape(result['actor'])}: {tables.escape(reason)}")


def _alias(alias: dict[str, Any]) -> str:
    if alias.get("tier") == "shared":
        split = f", {alias['weight']:.0%} to v{alias['canary']}" if alias.get("canary") else ""
        return f"the shared scoring tier serves v{alias['primary']}{split}"
    split = f", {alias['weight']:.0%} to version {alias['canary']}" if alias.get("canary") else ""
    return f"alias `live` of {alias['function']} -> function version {alias['primary']}{split}"
