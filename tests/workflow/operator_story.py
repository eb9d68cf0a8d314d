"""A family with a history worth operating on, built through the real pipeline on the local runtime: v1 live, v2
promoted through a canary under traffic (v1 retired), two drift checks (no drift, then drift), v3 gated out.
Used by the operator CLI tests, the console tests and the console screenshots."""

from __future__ import annotations

import json
from typing import Any

from mlops.data import synthetic

from mlops_local.runtime import LocalPlatform
from mlops_local.traffic import TrafficGenerator

from .conftest import fast_family


def _upload(platform: LocalPlatform, family: str, name: str, data: bytes) -> dict[str, Any]:
    before = {e["executionArn"] for e in platform.executions()}
    platform.upload_dataset(family, name, data)
    started = [e for e in platform.executions() if e["executionArn"] not in before]
    assert len(started) == 1, f"expected one execution for {name}, got {len(started)}"
    described = platform.wait_for(started[0]["executionArn"], 180)
    return json.loads(described.get("output") or "{}")


def build_story(platform: LocalPlatform, name: str) -> dict[str, Any]:
    """Register `name` and run its story; returns {"family", "outcomes", "drift"}."""
    family = fast_family(name, canary={"steps": [10, 50, 100]})
    platform.add_family(family)
    outcomes = [_upload(platform, name, "2026-01-loans.csv", synthetic.credit_risk_csv(800, 11, label_noise=0.35))]
    traffic = TrafficGenerator(platform, family).start()
    try:
        outcomes.append(_upload(platform, name, "2026-02-loans.csv", synthetic.credit_risk_csv(12000, 12)))
    finally:
        traffic.stop()
    drift = []
    for mode in ("normal", "drifted"):
        traffic.send(100, mode)
        platform.flush_captures()
        drift += [r for r in platform.run_drift_check()["reports"] if r["family"] == name]
    outcomes.append(_upload(platform, name, "2026-03-relabelled.csv",
                            synthetic.credit_risk_csv(3000, 13, label_noise=0.9)))
    assert [o.get("outcome") for o in outcomes] == ["promoted", "promoted", "gated_out"], outcomes
    assert [r["verdict"] for r in drift] == ["no_drift", "drift"], drift
    return {"family": family, "outcomes": outcomes, "drift": drift}


def promoted_twice(platform: LocalPlatform, name: str, serving: str = "shared") -> Any:
    """`name` with v1 retired and v2 live (promoted through its canary under traffic), on the `serving` tier."""
    family = fast_family(name, canary={"steps": [50, 100]}, serving=serving)
    platform.add_family(family)
    outcomes = [_upload(platform, name, "v1.csv", synthetic.credit_risk_csv(800, 11, label_noise=0.35))]
    traffic = TrafficGenerator(platform, family).start()
    try:
        outcomes.append(_upload(platform, name, "v2.csv", synthetic.credit_risk_csv(6000, 12)))
    finally:
        traffic.stop()
    assert [o.get("outcome") for o in outcomes] == ["promoted", "promoted"], outcomes
    return family


STORY_FAMILY = "loan-default"


_built: dict[int, dict[str, Any]] = {}


def shared_story(platform: LocalPlatform) -> dict[str, Any]:
    """The story of STORY_FAMILY on `platform`, built once per platform (the test modules that use it share it,
    and only read it)."""
    if id(platform) not in _built:
        _built[id(platform)] = {"name": STORY_FAMILY, **build_story(platform, STORY_FAMILY)}
    return _built[id(platform)]
