"""The shared scoring tier's parts without AWS: the deterministic canary split, the routing cache's TTL and stale
fallback, the memory-bounded LRU model cache and the EMF documents."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
from mlops.core.errors import FamilyRetiredError, NoLiveModelError, TransientError, UnknownFamilyError
from mlops.core.schemas import FAMILY_NAME
from mlops.serving import routing
from mlops.serving.cache import ModelCache, heap_in_use
from mlops.serving.metrics import DIMENSIONS, MAX_VALUES, ServingMetrics
from mlops.serving.routing import FamilyRoute, RoutingTable, canary_share


def item(live: int = 1, canary: int = 0, weight: float = 0, serving: str = "shared", status: str | None = None,
         **config) -> dict:
    found = {"live_version": live, "canary_version": canary, "canary_weight": weight,
             "config": {"serving": serving, "capture_sample_rate": 0.2, "never_capture": ["income"], **config}}
    if status:
        found["status"] = status
    return found


# ---- the canary split ------------------------------------------------------------------------------------------

def test_canary_split_is_the_same_for_the_same_request_id():
    route = FamilyRoute("fam", live_version=1, canary_version=2, canary_weight=50)
    ids = [f"req-{i}" for i in range(200)]
    assert [route.version_for(i) for i in ids] == [route.version_for(i) for i in ids]
    assert {route.version_for(i) for i in ids} == {1, 2}


@pytest.mark.parametrize("weight", [1, 10, 50])
def test_canary_share_of_many_request_ids_is_the_weight_within_binomial_bounds(weight):
    route = FamilyRoute("fam", live_version=1, canary_version=2, canary_weight=weight)
    n = 20_000
    canary = sum(route.version_for(f"8f2c-{i:06d}-request") == 2 for i in range(n))
    p = weight / 100
    assert abs(canary - n * p) <= 4 * math.sqrt(n * p * (1 - p)), canary


def test_canary_share_is_blake2b_of_the_request_id():
    import hashlib

    digest = hashlib.blake2b(b"abc", digest_size=8).digest()
    assert canary_share("abc") == int.from_bytes(digest, "big") * 100 / 2**64


def test_no_weight_means_live_and_full_weight_means_canary():
    assert FamilyRoute("f", 1, 2, 0).version_for("x") == 1
    assert FamilyRoute("f", 1, 2, 100).version_for("x") == 2
    assert FamilyRoute("f", 0).version_for("x") == 0


def test_family_name_pattern_matches_the_schema():
    assert routing.FAMILY_NAME.pattern == FAMILY_NAME.pattern


# ---- the routing table ---------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    def __init__(self, items: dict) -> None:
        self.items, self.reads, self.fail = items, 0, False

    def __call__(self, family: str):
        self.reads += 1
        if self.fail:
            raise TransientError("DynamoDB throttled")
        return self.items.get(family)


def test_route_is_read_once_per_ttl_and_a_rollback_is_served_after_it():
    clock, source = Clock(), Source({"fam": item(live=1, canary=2, weight=50)})
    table = RoutingTable(source, ttl_seconds=5, clock=clock)
    assert table.route("fam").canary_version == 2
    clock.now += 4.9
    source.items["fam"] = item(live=1)  # the rollout rolled the canary back
    assert table.route("fam").canary_version == 2 and source.reads == 1, "held within the TTL"
    clock.now += 0.2
    route = table.route("fam")
    assert (route.canary_version, route.canary_weight, source.reads) == (0, 0.0, 2)
    assert route.capture_sample_rate == 0.2 and route.never_capture == frozenset({"income"})


def test_a_family_without_a_live_model_is_read_again_so_its_first_model_serves_at_once():
    clock, source = Clock(), Source({"fam": item(live=0)})
    table = RoutingTable(source, ttl_seconds=5, clock=clock)
    assert table.route("fam").live_version == 0
    source.items["fam"] = item(live=1)
    assert table.route("fam").live_version == 1 and source.reads == 2
    assert table.route("fam").live_version == 1 and source.reads == 2, "a live route is held for the TTL"


def test_registry_outage_serves_the_held_route_then_answers_503():
    clock, source = Clock(), Source({"fam": item(live=3)})
    stale: list[str] = []
    table = RoutingTable(source, ttl_seconds=5, max_stale_seconds=60, clock=clock,
                         on_stale=lambda family, exc: stale.append(family))
    table.route("fam")
    source.fail = True
    clock.now += 30
    assert table.route("fam").live_version == 3 and stale == ["fam"]
    clock.now += 40  # 70 s after the read: past ttl + max_stale
    with pytest.raises(NoLiveModelError, match="registry is unavailable"):
        table.route("fam")


def test_registry_outage_without_a_held_route_is_503():
    source = Source({})
    source.fail = True
    with pytest.raises(NoLiveModelError):
        RoutingTable(source).route("fam")


def test_unknown_retired_and_dedicated_families_are_404s_and_unknown_ones_are_held_too():
    clock = Clock()
    source = Source({"old": item(status="retired"), "own": item(serving="dedicated")})
    table = RoutingTable(source, ttl_seconds=5, clock=clock)
    for _ in range(3):
        with pytest.raises(UnknownFamilyError, match="not served here"):
            table.route("nobody")
    assert source.reads == 1, "a flood of unknown names reads the registry once per TTL"
    with pytest.raises(FamilyRetiredError, match="is retired"):  # the dedicated tier's answer too
        table.route("old")
    with pytest.raises(UnknownFamilyError, match="its own scoring function"):
        table.route("own")


def test_routes_held_are_bounded(monkeypatch):
    monkeypatch.setattr(routing, "MAX_ROUTES", 10)
    source = Source({})
    table = RoutingTable(source)
    for i in range(25):
        with pytest.raises(UnknownFamilyError):
            table.route(f"f-{i}")
    assert len(table._routes) == 10


# ---- the model cache -------------------------------------------------------------------------------------------

class Model:
    def __init__(self, key, size: int) -> None:
        self.key, self.artifact_bytes, self.closed = key, size, False

    def close(self) -> None:
        self.closed = True


class Heap:
    """A fake heap: each load grows it by the model's `grows` bytes."""

    def __init__(self) -> None:
        self.used = 0

    def __call__(self) -> int:
        return self.used


def cache_with(capacity: int, grows: dict):
    heap, loads = Heap(), []

    def load(family, version):
        loads.append((family, version))
        heap.used += grows[(family, version)]
        return Model((family, version), 10)

    return ModelCache(capacity, load, heap), loads


def test_cache_loads_once_and_evicts_least_recently_used_by_measured_bytes():
    grows = {("a", 1): 400, ("b", 1): 400, ("c", 1): 400}
    cache, loads = cache_with(1000, grows)
    a = cache.get("a", 1)
    cache.get("b", 1)
    assert cache.get("a", 1) is a and loads == [("a", 1), ("b", 1)]
    assert cache.footprint("a", 1) == 400 and cache.bytes == 800
    cache.get("c", 1)  # 1200 > 1000: b is the least recently used
    assert cache.keys() == [("a", 1), ("c", 1)] and cache.stats.evictions == 1 and cache.bytes == 800
    assert not a.closed
    cache.get("b", 1)
    assert loads[-1] == ("b", 1) and cache.stats.misses == 4 and cache.stats.hits == 1


def test_evicted_model_is_closed_so_its_buffered_records_are_written():
    cache, _ = cache_with(500, {("a", 1): 400, ("a", 2): 400})
    first = cache.get("a", 1)
    cache.get("a", 2)
    assert first.closed and cache.keys() == [("a", 2)]


def test_a_model_larger_than_the_budget_is_served_alone():
    cache, _ = cache_with(100, {("a", 1): 50, ("big", 1): 5000})
    cache.get("a", 1)
    big = cache.get("big", 1)
    assert cache.keys() == [("big", 1)] and not big.closed and cache.bytes == 5000


def test_footprint_is_at_least_the_artifact_size():
    cache, _ = cache_with(1000, {("a", 1): 0})
    cache.get("a", 1)
    assert cache.footprint("a", 1) == 10


def test_a_failed_load_caches_nothing():
    def load(family, version):
        raise NoLiveModelError("gone")

    cache = ModelCache(1000, load, Heap())
    with pytest.raises(NoLiveModelError):
        cache.get("a", 1)
    assert len(cache) == 0 and cache.bytes == 0


def test_heap_measure_sees_an_allocation():
    import numpy as np

    before = heap_in_use()
    block = np.ones(2_000_000)
    after = heap_in_use()
    assert before is not None and after - before >= block.nbytes * 0.9


# ---- EMF documents ---------------------------------------------------------------------------------------------

def test_metrics_are_one_emf_document_per_family_and_version_with_values_and_errors():
    sent: list = []
    clock = SimpleNamespace(now=1_700_000_000.0)
    metrics = ServingMetrics("MLOpsPlatform", "7", "shared", sent.extend, flush_seconds=10, clock=lambda: clock.now)
    metrics.observe("fam", 1, 2.5)
    metrics.observe("fam", 2, 3.0, error=True)
    metrics.observe("fam", 1, 4.0)
    assert sent == []
    clock.now += 10
    metrics.observe("other", 1, 1.0)
    docs = {(d["Family"], d["ModelVersion"]): d for d in sent}
    assert set(docs) == {("fam", "1"), ("fam", "2"), ("other", "1")}
    one = docs[("fam", "1")]
    assert one["Latency"] == [2.5, 4.0] and one["Errors"] == 0 and docs[("fam", "2")]["Errors"] == 1
    declaration = one["_aws"]["CloudWatchMetrics"][0]
    assert declaration["Namespace"] == "MLOpsPlatform" and declaration["Dimensions"] == [list(DIMENSIONS)]
    assert {m["Name"]: m["Unit"] for m in declaration["Metrics"]} == {"Latency": "Milliseconds", "Errors": "Count"}
    assert one["_aws"]["Timestamp"] == 1_700_000_000_000 and one["FunctionVersion"] == "7"
    json.dumps(one)  # plain JSON


def test_metrics_flush_at_100_values_per_key():
    sent: list = []
    metrics = ServingMetrics("N", "1", "shared", sent.extend, flush_seconds=3600)
    for i in range(MAX_VALUES):
        metrics.observe("fam", 1, float(i))
    assert len(sent) == 1 and len(sent[0]["Latency"]) == MAX_VALUES
