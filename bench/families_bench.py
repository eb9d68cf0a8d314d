"""Families registered at run time on the local runtime (issue 12, part A; bench/run.py section `families`).

`mlops local serve`'s platform (moto in server mode, the front on 127.0.0.1) without the built-in family; N families
registered through the management route exactly as `mlops families apply` sends them (a SigV4-signed PUT
/families/<name> through the front, the management function, one registry transaction), then listed: the sharded
family index read to its end (what `mlops families list` does) and GET /families pages. Registration here stops at
the registry (`provision_families=False`): the shared scoring tier serves a registered family without per-family
resources. Figures, not assertions; moto answers every Query by reading the whole table, so listing times grow
with the table locally where DynamoDB reads only the queried shard."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

Row = Callable[..., None]
FAMILIES = 2_000
QUICK_FAMILIES = 40
PAGE = 100


class _Requests:
    """Counts DynamoDB requests made through a client (botocore's before-call event)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, **_: Any) -> None:
        self.count += 1


def _score_each_once(platform: Any, httpd: Any, registry: Any, count: int) -> dict[str, list[int]]:
    """Give every bench family a live model (one trained LR, one registry version per family, as a retrain
    would), then score each family twice through the front: {"first": ns per family, "second": ns}."""
    import json
    import urllib.request

    from mlops.data import synthetic

    trained = "bench-0000"
    platform.upload_dataset(trained, "first.csv", synthetic.credit_risk_csv(2000, 5))
    platform.drain_executions(300)
    record = registry.get_family(trained)
    lineage = dict(registry.get_version(trained, record.live_version).lineage)
    names = [f"bench-{i:04d}" for i in range(1, count)]
    for name in names:
        version = registry.allocate_version(name, {**lineage, "family": name}, actor="bench").version
        registry.transition(name, version, "live", "bench", "bench: live for the scoring figure")
    body = json.dumps({"instances": synthetic.to_instances(synthetic.credit_risk_columns(1, 3),
                                                            synthetic.credit_risk_family())}).encode()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/models/{{}}/predict"
    times: dict[str, list[int]] = {"first": [], "second": []}
    for round_name in ("first", "second"):
        for name in names:
            request = urllib.request.Request(url.format(name), data=body,
                                             headers={"Content-Type": "application/json"})
            start = time.perf_counter_ns()
            with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - the local front
                assert answer.status == 200
                answer.read()
            times[round_name].append(time.perf_counter_ns() - start)
    return times


def run(row: Row, quick: bool) -> None:
    import boto3
    from mlops.core import aws
    from mlops.data import synthetic
    from mlops.registry.store import FAMILY_INDEX_SHARDS, ModelRegistry

    from mlops_local.client import ManagementApi
    from mlops_local.runtime import LocalPlatform
    from mlops_local.serve import bind_front

    count = QUICK_FAMILIES if quick else FAMILIES
    endpoint_before = os.environ.get("AWS_ENDPOINT_URL")
    platform = LocalPlatform([], server=True, provision_families=False)
    httpd = bind_front(platform, 0)
    platform.start()
    threading.Thread(target=httpd.serve_forever, name="bench-front", daemon=True).start()
    try:
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                aws_session_token="testing", region_name="us-east-1")
        api = ManagementApi(f"http://127.0.0.1:{httpd.server_address[1]}", session, description="bench")
        base = synthetic.credit_risk_family()
        registrations: list[int] = []
        for i in range(count):
            name = f"bench-{i:04d}"
            body = {"family": base.model_copy(update={"name": name}).model_dump(mode="json"),
                    "reason": "bench: run-time registration"}
            start = time.perf_counter_ns()
            answer = api.request("PUT", f"/families/{name}", body)
            registrations.append(time.perf_counter_ns() - start)
            assert answer["change"] == "created", answer

        registry = ModelRegistry(platform.table)
        direct = []
        for i in range(min(200, count)):  # the registry transaction alone, same moto server, same table size
            family = base.model_copy(update={"name": f"direct-{i:04d}"})
            start = time.perf_counter_ns()
            registry.register_family(family, "bench", "bench: registry only")
            direct.append(time.perf_counter_ns() - start)

        requests = _Requests()
        events = aws.client("dynamodb").meta.events
        events.register("before-call.dynamodb", requests)
        full = []
        for _ in range(1 if quick else 3):
            start = time.perf_counter_ns()
            listed = registry.iter_families()
            full.append(time.perf_counter_ns() - start)
        full_requests = requests.count // len(full)
        requests.count = 0
        first_page = registry.list_families(limit=PAGE)
        page_requests = requests.count
        events.unregister("before-call.dynamodb", requests)

        pages, token, start = 0, None, time.perf_counter_ns()
        while True:
            answer = api.request("GET", "/families", query={"limit": str(PAGE), **({"next_token": token}
                                                                                      if token else {})})
            pages += 1
            token = answer["next_token"]
            if not token:
                break
        route_total = time.perf_counter_ns() - start
        table_items = boto3.client("dynamodb").describe_table(TableName=platform.table)["Table"]["ItemCount"]
        scoring = _score_each_once(platform, httpd, registry, count)
    finally:
        httpd.shutdown()
        httpd.server_close()
        platform.stop()
        if endpoint_before is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = endpoint_before
        aws.reset_clients()

    ms = np.asarray(registrations, dtype=np.float64) / 1e6
    row(f"family registration through PUT /families/{{name}}, {count:,} families (local runtime)",
        float(np.percentile(ms, 50)), "ms", "figures only", None, p99_ms=round(float(np.percentile(ms, 99)), 2),
        mean_ms=round(float(ms.mean()), 2), total_s=round(float(ms.sum()) / 1e3, 1),
        registry_only_p50_ms=round(statistics.median(direct) / 1e6, 2),
        note="SigV4-signed request -> local front -> management function (Lambda on moto) -> one TransactWriteItems "
             "(META + CONFIG#1) on moto server; registry_only: register_family alone")
    first, later = (np.asarray(scoring[k], dtype=np.float64) / 1e6 for k in ("first", "second"))
    row(f"shared tier: first request of each of {len(first):,} run-time families (local front, moto)",
        float(np.percentile(first, 50)), "ms", "figures only", None, p99_ms=round(float(np.percentile(first, 99)), 2),
        second_request_p50_ms=round(float(np.percentile(later, 50)), 2),
        second_request_p99_ms=round(float(np.percentile(later, 99)), 2),
        note="each family live on its own version of one trained LR (allocated in the registry): the first request "
             "reads its routing and loads its session into the shared cache; HTTP through the local front")
    row(f"family listing, {len(listed):,} families merged from {FAMILY_INDEX_SHARDS} shards (local runtime)",
        statistics.median(full) / 1e6, "ms", "figures only", None, dynamodb_requests=full_requests,
        table_items=table_items, note="ModelRegistry.iter_families (`mlops families list`): one Query per shard "
                                      "(1 MB pages); moto reads the whole table for each Query")
    row(f"family listing page of {PAGE} through GET /families, {len(listed):,} families", route_total / pages / 1e6,
        "ms", "figures only", None, pages=pages, dynamodb_requests_first_page=page_requests,
        first_page_families=len(first_page.items),
        note="k-way merge of the shards by name: one Query per shard plus a refill per shard that runs dry")
