"""Manual promotion and rollback: the registry and traffic moved together (a dedicated family's `live` alias; a
shared-tier family's routing is the registry itself), recorded with who and why.

Both take the family's rollout lock first (the registry's, the one every pipeline run takes), so they are refused
while a rollout is running and a run that starts meanwhile waits for them. The registry changes first, in one
conditional transaction (`ModelRegistry.transition` / `restore_previous`), then traffic follows it
(`rollout.reconcile_alias`, through the family's tier router): the same order as the pipeline, so a routing
failure leaves the registry's decision in place and running the same command again finishes it. The model
card in S3 is written again with the new status.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click

from .client import Platform
from .views import family_record, version_record

# A manual change takes seconds; the lock expires on its own if the CLI dies while holding it.
LOCK_TTL_SECONDS = 300
HOLDER_PREFIX = "cli:"


class Refused(click.ClickException):
    """Exit code 4: the registry's rules forbid the change now (a rollout is running, or the status change is not
    allowed)."""

    exit_code = 4


@dataclass
class _Control:
    """What `rollout.reconcile_alias` reads: the registry and the family's router (its tier's), bound to the
    operator's clients."""

    registry: Any
    router: Any

    def router_for(self, record: Any) -> Any:
        from mlops.rollout.routers import router_for

        return router_for(record, self.registry, self.router, None, None)


def identity(platform: Platform) -> str:
    """Who acts: `local:<user>` on a local server, the STS caller ARN on a stack (recorded with each change)."""
    if platform.endpoint_url:
        return f"local:{getpass.getuser()}"
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(platform.client("sts").get_caller_identity()["Arn"])
    except (BotoCoreError, ClientError) as exc:
        raise click.ClickException(f"cannot tell who you are on {platform.description} (sts:GetCallerIdentity): "
                                   f"{exc}") from None


def _holder_alive(platform: Platform) -> Any:
    """The lock's takeover rule: a pipeline run holds it while its execution runs; another operator's hold is
    respected until it expires."""
    from botocore.exceptions import ClientError
    from mlops.rollout.history import execution_arn

    def alive(holder: str) -> bool:
        if holder.startswith(HOLDER_PREFIX):
            return True
        try:
            status = platform.client("stepfunctions").describe_execution(
                executionArn=execution_arn(platform.state_machine_arn, holder))["status"]
        except ClientError as exc:
            return exc.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist"
        return status == "RUNNING"

    return alive


@contextmanager
def rollout_lock(platform: Platform, family: str, actor: str) -> Iterator[str]:
    """Hold the family's rollout lock for one manual change; Refused (naming the holder) when a rollout runs."""
    registry = platform.registry
    holder = f"{HOLDER_PREFIX}{actor}:{uuid.uuid4().hex[:8]}"
    if not registry.acquire_rollout(family, holder, LOCK_TTL_SECONDS, _holder_alive(platform)):
        record = registry.get_family(family)
        other = record.rollout_holder or "another operation"
        canary = (f"; v{record.canary_version} is in canary at {record.canary_weight}%" if record.canary_version
                  else "")
        follow = "" if other.startswith(HOLDER_PREFIX) else f" (`mlops runs show {other}`)"
        raise Refused(f"refused: a rollout of {family} is running: {other} holds the family's rollout lock"
                      f"{canary}. Wait until it ends{follow}, then try again.")
    try:
        yield holder
    finally:
        registry.release_rollout(family, holder)


def _router(platform: Platform) -> Any:
    from mlops.rollout.control import LambdaAliasRouter

    return LambdaAliasRouter(platform.client("lambda"))


def _illegal(exc: Exception) -> Refused:
    return Refused(f"refused: {getattr(exc, 'message', str(exc))}")


def _alias(platform: Platform, control: _Control, family: str) -> dict[str, Any]:
    """Move the alias to the registry's live version and report where it points afterwards."""
    from mlops.rollout.control import reconcile_alias

    record = platform.registry.get_family(family)
    try:
        actions = reconcile_alias(control, family)
    except Exception as exc:  # noqa: BLE001 - the registry already decided; say how to finish
        raise click.ClickException(
            f"the registry now has v{record.live_version} live, but moving the `live` alias of "
            f"{record.scoring_function} failed ({type(exc).__name__}: {exc}); run the same command again to "
            "finish routing") from None
    router = control.router_for(record)
    state = router.state()
    return {"actions": actions, "function": record.scoring_function, "tier": router.tier,
            "primary": state.primary if state else None, "canary": state.canary if state else None,
            "weight": state.weight if state else None}


def _refresh_cards(platform: Platform, family: str, versions: list[int]) -> dict[int, Any]:
    from mlops.reports.publish import publish_model_card

    client = platform.client("s3")
    return {v: publish_model_card(platform.registry, platform.bucket, family, v, s3=client) for v in versions if v}


def promote(platform: Platform, family: str, version: int, reason: str, actor: str | None = None
            ) -> dict[str, Any]:
    """Make `version` the live model with all traffic: a retired version back to live, a stuck canary to live, a
    family's first candidate, or a canary the pipeline rolled back only because too little traffic reached it to
    judge it (`registry.store.rolled_back_for_insufficient_traffic`; the status event records that, who and why).
    Refused for rejected versions and versions rolled back for what their canary did (errors, latency,
    diverging predictions: final), for a candidate while another version is live (it must pass a canary), and
    while a rollout runs. Returns what changed."""
    from mlops.core.errors import IllegalTransitionError, PlatformError
    from mlops.registry.store import CANDIDATE, LIVE, rolled_back_for_insufficient_traffic

    actor = actor or identity(platform)
    family_record(platform, family)
    version_record(platform, family, version)
    control = _Control(platform.registry, _router(platform))
    with rollout_lock(platform, family, actor):
        before = platform.registry.get_family(family)
        target = platform.registry.get_version(family, version)
        if before.canary_version and before.canary_version != target.version:
            raise Refused(f"refused: v{before.canary_version} of {family} is still in canary although no rollout "
                          f"runs; `mlops rollback {family}` rolls it back first")
        if target.status == CANDIDATE and before.live_version:
            raise Refused(f"refused: {family} v{version} is a candidate and v{before.live_version} is live; a "
                          "candidate reaches traffic through a canary (upload its data set again to run one)")
        # The registry refuses any other rolled-back version, saying why (ModelRegistry.transition).
        revived = rolled_back_for_insufficient_traffic(target)
        if revived:
            reason = f"promoted by an operator after its canary was rolled back for too little traffic: {reason}"
        try:
            router = control.router_for(before)
            if not router.target(target):  # a dedicated family's version not yet bound to a function version
                router.bind(target.version, target.artifact_sha256)
            changed = platform.registry.transition(family, target.version, LIVE, f"cli:{actor}", reason)
        except IllegalTransitionError as exc:
            raise _illegal(exc) from None
        except PlatformError as exc:
            raise click.ClickException(f"{family} v{version} was not promoted: {exc.message}") from None
        alias = _alias(platform, control, family)
    cards = _refresh_cards(platform, family, [target.version, before.live_version])
    return {"family": family, "action": "promote", "version": target.version, "status": changed.status,
            "previous_live_version": before.live_version or None, "already_live": target.status == LIVE,
            "after_insufficient_traffic": revived,
            "actor": f"cli:{actor}", "reason": reason, "at": datetime.now(UTC).isoformat(), "alias": alias,
            "model_cards": cards}


def rollback(platform: Platform, family: str, reason: str, actor: str | None = None) -> dict[str, Any]:
    """Take the newest change back: a canary left behind by a run that is no longer running is rolled back (the
    live model keeps all traffic); otherwise the live version becomes rolled_back and the most recently retired
    version is live again. Refused while a rollout runs, and when there is nothing to go back to."""
    from mlops.core.errors import IllegalTransitionError
    from mlops.registry.store import ROLLED_BACK

    actor = actor or identity(platform)
    family_record(platform, family)
    control = _Control(platform.registry, _router(platform))
    with rollout_lock(platform, family, actor):
        before = platform.registry.get_family(family)
        try:
            if before.canary_version:
                platform.registry.transition(family, before.canary_version, ROLLED_BACK, f"cli:{actor}", reason)
                rolled_back, restored = before.canary_version, before.live_version
            else:
                if not before.live_version:
                    raise Refused(f"refused: {family} has no live version to roll back")
                rolled_back, restored = platform.registry.restore_previous(family, f"cli:{actor}", reason)
        except IllegalTransitionError as exc:
            raise _illegal(exc) from None
        alias = _alias(platform, control, family)
    cards = _refresh_cards(platform, family, [rolled_back, restored])
    return {"family": family, "action": "rollback", "rolled_back_version": rolled_back,
            "live_version": restored or None, "was_canary": bool(before.canary_version), "actor": f"cli:{actor}",
            "reason": reason, "at": datetime.now(UTC).isoformat(), "alias": alias, "model_cards": cards}
