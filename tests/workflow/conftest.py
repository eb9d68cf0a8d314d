"""The real state machine definition executed on moto, with the real handlers, one platform per session."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mlops.data import synthetic

from mlops_local.runtime import LocalPlatform
from mlops_local.traffic import TrafficGenerator

_names = itertools.count(1)


@pytest.fixture(scope="session")
def platform() -> Iterator[LocalPlatform]:
    local = LocalPlatform([]).start()
    yield local
    local.stop()


def fast_family(name: str, **overrides: Any) -> Any:
    """Time compressed for tests: 1 s bake windows, lock polled every second, every request captured."""
    # Lenient traffic minimums: the suite shares two cores, and a slow window must mean "wait", not "roll back".
    # The p99 budget only catches a hung version: on a loaded machine a first call takes more than AWS's 500 ms
    # (tests of the latency check set their own budget).
    canary = {"steps": [10, 50, 100], "bake_seconds": 1, "min_requests": 5, "max_idle_windows": 10,
              "max_p99_latency_ms": 10_000, "lock_poll_seconds": 1, "lock_max_wait_seconds": 120,
              **overrides.pop("canary", {})}
    drift = {"min_samples": 300, **overrides.pop("drift", {})}
    return synthetic.credit_risk_family(name=name, capture_sample_rate=1.0, canary=canary, drift=drift, **overrides)


@pytest.fixture()
def new_family(platform: LocalPlatform) -> Callable[..., Any]:
    """A fresh family (own scoring function, alias and registry entries) for each test."""
    def create(**overrides: Any) -> Any:
        family = fast_family(f"wf-{next(_names)}", **overrides)
        platform.add_family(family)
        return family

    return create


def run_upload(platform: LocalPlatform, family: str, filename: str, data: bytes,
               timeout: float = 120) -> tuple[dict[str, Any], dict[str, Any]]:
    """Upload a data set, wait for the one execution it starts, return (output, description)."""
    before = {e["executionArn"] for e in platform.executions()}
    platform.upload_dataset(family, filename, data)
    started = [e for e in platform.executions() if e["executionArn"] not in before]
    assert len(started) == 1, f"expected one execution, got {len(started)}"
    described = platform.wait_for(started[0]["executionArn"], timeout)
    return json.loads(described.get("output") or "{}"), described


def live_model(platform: LocalPlatform, family: Any, rows: int = 3000, seed: int = 5) -> None:
    output, described = run_upload(platform, family.name, "first.csv", synthetic.credit_risk_csv(rows, seed))
    assert output.get("outcome") == "promoted", described


@pytest.fixture()
def traffic(platform: LocalPlatform) -> Iterator[Callable[[Any], TrafficGenerator]]:
    generators: list[TrafficGenerator] = []

    def create(family: Any) -> TrafficGenerator:
        generator = TrafficGenerator(platform, family)
        generators.append(generator)
        return generator

    yield create
    for generator in generators:
        generator.stop()


def alias_state(platform: LocalPlatform, family: Any) -> tuple[str, dict[str, float]]:
    """(primary version, additional weights) of a dedicated family's `live` alias."""
    from mlops.core import aws

    alias = aws.client("lambda").get_alias(FunctionName=platform.scoring_functions[family.name], Name="live")
    return alias["FunctionVersion"], (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}


def serving_state(platform: LocalPlatform, family: Any) -> tuple[int, dict[int, float]]:
    """Where the family's traffic goes, whatever its tier: (model version that gets the rest of the traffic,
    {canary model version: its share 0..1}). Dedicated: read from the `live` alias, each function version mapped
    to the model it is bound to; shared: the registry's routing, which the shared function serves."""
    from mlops.core import aws

    if family.serving == "dedicated":
        primary, weights = alias_state(platform, family)
        fn = platform.scoring_functions[family.name]

        def model(version: str) -> int:
            env = aws.client("lambda").get_function_configuration(FunctionName=fn, Qualifier=version)
            return int(((env.get("Environment") or {}).get("Variables") or {}).get("MLOPS_MODEL_VERSION", 0))

        return model(primary), {model(v): float(w) for v, w in weights.items()}
    record = platform.registry.get_family(family.name)
    canary = {record.canary_version: record.canary_weight / 100} if record.canary_version and \
        record.canary_weight else {}
    return record.live_version, canary


TIERS = ("shared", "dedicated")


def entered_states(execution_arn: str) -> list[str]:
    """Names of the states an execution entered, in order, from its history."""
    from mlops.core import aws

    events = aws.client("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


@pytest.fixture()
def stack(platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`--stack mlops-test` resolves to the session's platform: its outputs as CloudFormation would give them
    (the CLI's deployed path, without AWS). Returns the CLI arguments that name it."""
    from mlops_local import client

    outputs = {"ArtifactBucket": platform.bucket, "RegistryTable": platform.table,
               "PipelineStateMachine": platform.state_machine_arn, "ScoringApiUrl": "https://api.example/prod/",
               "DriftFunction": platform.function_names["drift"],
               "DriftFanout": platform.drift_fanout_state_machine_arn}
    monkeypatch.setattr(client, "stack_outputs", lambda session, name: outputs)
    return ["--stack", "mlops-test"]
