"""How the rollout moves a family's traffic: one router protocol, one router per serving tier.

- Shared tier (`RegistryWeightRouter`): the registry's family item is the routing table the shared scoring
  function reads (mlops.serving.routing): the live version, the canary version and its weight in percent. A model
  version is its own target; routing a canary is setting its weight; the transitions that make a version live or
  roll a canary back clear the canary in the same registry transaction, so traffic follows them within the
  tier's routing TTL. The canary's figures are its own EMF metrics (Family, ModelVersion; mlops.serving.metrics).
- Dedicated tier (`LambdaAliasRouter`): the family's own function; each model version is served by a published
  function version bound to it, and the `live` alias carries the weights. The canary's figures are Lambda's own
  per-version metrics (ExecutedVersion).

The control steps (mlops.rollout.control) are the same for both: bind the candidate to a target, route a weight
to it, read its figures, step up, promote or roll back, reconcile traffic with the registry after a failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from mlops.core import aws
from mlops.core.errors import IllegalTransitionError
from mlops.core.schemas import DEDICATED

ALIAS = "live"


@dataclass(frozen=True)
class AliasState:
    """Where traffic goes: the primary target, the canary target (None: none) and its share of traffic (0..1)."""

    primary: str
    canary: str | None
    weight: float


RouteState = AliasState


@dataclass(frozen=True)
class TrafficFigures:
    invocations: float
    errors: float
    p99_ms: float | None


class AliasRouter(Protocol):
    """The Lambda side of the dedicated tier (mlops.rollout.control.LambdaAliasRouter)."""

    def current(self, function: str) -> AliasState | None: ...
    def publish_bound(self, function: str, family: str, model_version: int, sha256: str) -> str: ...
    def route(self, function: str, primary: str, canary: str | None = None, weight: float = 0.0) -> None: ...


class CanaryMetrics(Protocol):
    """A target's traffic between `start` and `end`: `scope` is the function (dedicated) or the family (shared),
    `version` the function version or the model version."""

    def traffic(self, scope: str, version: str, start: datetime, end: datetime) -> TrafficFigures: ...


class TrafficRouter(Protocol):
    """One family's traffic, whatever its tier. Targets are strings: a published function version (dedicated) or
    a model version (shared)."""

    tier: str

    def describe(self) -> str: ...
    def state(self) -> RouteState | None: ...
    def bind(self, version: int, sha256: str) -> str: ...
    def target(self, version: Any) -> str: ...
    def route(self, primary: str, canary: str | None = None, weight: float = 0.0) -> None: ...
    def traffic(self, target: str, start: datetime, end: datetime) -> TrafficFigures: ...


class LambdaAliasTierRouter:
    """Dedicated tier: the family's function and its `live` alias."""

    tier = DEDICATED

    def __init__(self, record: Any, registry: Any, aliases: AliasRouter, metrics: CanaryMetrics | None) -> None:
        self.record, self.registry, self.aliases, self.metrics = record, registry, aliases, metrics
        self.function = record.scoring_function

    def describe(self) -> str:
        return f"alias {ALIAS} of {self.function}"

    def state(self) -> RouteState | None:
        return self.aliases.current(self.function)

    def bind(self, version: int, sha256: str) -> str:
        """Publish (or reuse) the function version bound to the model and record the binding."""
        family = self.record.family.name
        target = self.aliases.publish_bound(self.function, family, version, sha256)
        self.registry.bind_function_version(family, version, target)
        return target

    def target(self, version: Any) -> str:
        return str(version.function_version or "")

    def route(self, primary: str, canary: str | None = None, weight: float = 0.0) -> None:
        self.aliases.route(self.function, primary, canary, weight)

    def traffic(self, target: str, start: datetime, end: datetime) -> TrafficFigures:
        if self.metrics is None:
            raise IllegalTransitionError("no metrics adapter for the dedicated tier")
        return self.metrics.traffic(self.function, target, start, end)


class RegistryWeightRouter:
    """Shared tier: the registry's live version, canary version and canary weight are the routing."""

    tier = "shared"

    def __init__(self, record: Any, registry: Any, metrics: CanaryMetrics | None) -> None:
        self.record, self.registry, self.metrics = record, registry, metrics
        self.family = record.family.name

    def describe(self) -> str:
        return f"registry routing of {self.family}"

    def state(self) -> RouteState | None:
        record = self.registry.get_family(self.family)
        if not record.live_version:
            return None
        canary = str(record.canary_version) if record.canary_version and record.canary_weight else None
        return RouteState(primary=str(record.live_version), canary=canary,
                          weight=float(record.canary_weight) / 100 if canary else 0.0)

    def bind(self, version: int, sha256: str) -> str:
        """A model version is its own target: the shared function loads it by the registry's lineage."""
        if not sha256:
            raise IllegalTransitionError(f"{self.family} v{version} has no artifact; it cannot be served")
        return str(version)

    def target(self, version: Any) -> str:
        return str(version.version)

    def route(self, primary: str, canary: str | None = None, weight: float = 0.0) -> None:
        """Give `canary` its weight (the registry's canary must be that version), or take every request off the
        canary. The live version is the registry's: a different `primary` is refused (the registry decides)."""
        record = self.registry.get_family(self.family)
        if str(record.live_version) != str(primary):
            raise IllegalTransitionError(f"{self.family}: the registry's live version is v{record.live_version}, "
                                         f"not v{primary}; the transition decides the live version")
        if canary and weight > 0:
            self.registry.set_canary_weight(self.family, int(canary), _percent(weight))
        elif record.canary_version and record.canary_weight:
            self.registry.set_canary_weight(self.family, record.canary_version, 0)

    def traffic(self, target: str, start: datetime, end: datetime) -> TrafficFigures:
        if self.metrics is None:
            raise IllegalTransitionError("no metrics adapter for the shared tier")
        return self.metrics.traffic(self.family, target, start, end)


def router_for(record: Any, registry: Any, aliases: AliasRouter | None, alias_metrics: CanaryMetrics | None,
               family_metrics: CanaryMetrics | None) -> TrafficRouter:
    """The router of the family's tier (its declaration's `serving`)."""
    if getattr(record.family, "serving", "shared") == DEDICATED:
        if aliases is None:
            raise IllegalTransitionError(f"{record.family.name} is served by its own function: an alias router "
                                         "is needed")
        return LambdaAliasTierRouter(record, registry, aliases, alias_metrics)
    return RegistryWeightRouter(record, registry, family_metrics)


def _percent(weight: float) -> int | float:
    value = round(weight * 100, 4)
    return int(value) if value == int(value) else value


def _period(start: datetime, end: datetime) -> int:
    return max(60, int((end - start).total_seconds() // 60 + 1) * 60)


def _window(start: datetime, end: datetime) -> dict[str, Any]:
    return {"StartTime": start - timedelta(seconds=1), "EndTime": end + timedelta(seconds=1),
            "Period": _period(start, end)}


class EmfCanaryMetrics:
    """The shared tier's own figures (mlops.serving.metrics) of one family's model version, over every function
    version that served it: requests (Latency's SampleCount), errors (Errors' Sum), p99 latency (the highest of
    the function versions' p99s: conservative while two code versions serve it)."""

    def __init__(self, namespace: str, client: Any | None = None) -> None:
        self.namespace = namespace
        self._client = client

    @property
    def _cw(self) -> Any:
        return self._client or aws.client("cloudwatch")

    def traffic(self, scope: str, version: str, start: datetime, end: datetime) -> TrafficFigures:
        series = self.series({"Family": scope, "ModelVersion": str(version)})
        return self.figures(series, start, end)

    def by_family(self, function_version: str, start: datetime, end: datetime) -> dict[str, TrafficFigures]:
        """Per family, the figures of one function version of the shared function (its code rollout's check)."""
        grouped: dict[str, list[list[dict[str, str]]]] = {}
        for dimensions in self.series({"FunctionVersion": function_version}):
            family = next((d["Value"] for d in dimensions if d["Name"] == "Family"), "")
            grouped.setdefault(family, []).append(dimensions)
        return {family: self.figures(series, start, end) for family, series in grouped.items()}

    def series(self, match: dict[str, str]) -> list[list[dict[str, str]]]:
        """The dimension sets of the Latency metrics that carry `match` (ListMetrics: metrics with data in the
        last two weeks)."""
        found: list[list[dict[str, str]]] = []
        kwargs: dict[str, Any] = {"Namespace": self.namespace, "MetricName": "Latency",
                                  "Dimensions": [{"Name": k, "Value": v} for k, v in match.items()]}
        while True:
            page = self._cw.list_metrics(**kwargs)
            for metric in page.get("Metrics", []):
                dimensions = sorted(metric.get("Dimensions", []), key=lambda d: d["Name"])
                if all(any(d["Name"] == k and d["Value"] == v for d in dimensions) for k, v in match.items()) \
                        and dimensions not in found:
                    found.append(dimensions)
            if not page.get("NextToken"):
                return found
            kwargs["NextToken"] = page["NextToken"]

    def figures(self, series: list[list[dict[str, str]]], start: datetime, end: datetime) -> TrafficFigures:
        requests = errors = 0.0
        p99s: list[float] = []
        window = _window(start, end)
        for dimensions in series:
            latency = self._cw.get_metric_statistics(Namespace=self.namespace, MetricName="Latency",
                                                     Dimensions=dimensions, Statistics=["SampleCount"],
                                                     ExtendedStatistics=["p99"], **window)["Datapoints"]
            requests += sum(float(p.get("SampleCount", 0.0)) for p in latency)
            p99s += [p["ExtendedStatistics"]["p99"] for p in latency if "ExtendedStatistics" in p]
            failed = self._cw.get_metric_statistics(Namespace=self.namespace, MetricName="Errors",
                                                    Dimensions=dimensions, Statistics=["Sum"], **window)
            errors += sum(float(p.get("Sum", 0.0)) for p in failed["Datapoints"])
        return TrafficFigures(invocations=requests, errors=errors, p99_ms=max(p99s) if p99s else None)
