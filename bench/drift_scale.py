"""Drift at scale (issue 12, part C; bench/run.py section `drift_scale`).

1. One family's check end to end: captured rows already in S3 (moto, in process) to the verdict, report and
   record (`DriftMonitor.check`), in the columnar `.cap` format against the same rows in the `.jsonl` format the
   platform wrote before (read through the same reader). Then the same check with the objects already in memory:
   the platform's own work per row (decode, encode, statistics) without moto's per-request cost, which is CPU
   here where S3 GETs are network waits that the reader's 16 threads overlap.
2. One scheduled fan-out over N families on the local runtime (the deployed definition file on moto): wall time,
   and the AWS cost of one family-check from the measured check duration and AWS's public prices.

Figures, not assertions.
"""

from __future__ import annotations

import csv
import io
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

Row = Callable[..., None]

# AWS public prices, us-east-1 (aws.amazon.com/lambda/pricing, /step-functions/pricing, /s3/pricing), USD.
LAMBDA_GB_SECOND = 0.0000166667
LAMBDA_REQUEST = 0.20 / 1e6
SFN_TRANSITION = 0.025 / 1000
S3_GET = 0.0004 / 1000
S3_PUT = 0.005 / 1000
S3_LIST = 0.005 / 1000  # LIST is priced as PUT: a check lists its version prefixes, then each version's window
DRIFT_MEMORY_GB = 3008 / 1024
# Transitions of one item (a batch of families) in the Distributed Map: the child execution's start, CheckFamily
# entered and exited, and its end (Step Functions bills each state transition of a child workflow), shared by the
# batch's families (cdk.json monitoring_batch_size, default 10).
TRANSITIONS_PER_ITEM = 4
BATCH = 10


def _records(family: Any, rows: int, seed: int) -> list[dict[str, Any]]:
    from mlops.data import synthetic

    text = synthetic.credit_risk_csv(min(rows, 20_000), seed).decode()
    records = []
    for r in csv.DictReader(io.StringIO(text)):
        records.append({f.name: (r[f.name] if f.kind == "categorical" else float(r[f.name]))
                        for f in family.features})
    return records


def _write_captures(bucket: str, family: Any, version: int, rows: int, per_object: int, fmt: str,
                    start: float) -> int:
    """`rows` captured records of the family's live version in objects of `per_object` rows, 1 ms apart from
    `start` (after the version went live: a check reads the traffic since then)."""
    from mlops.core import aws
    from mlops.serving.capture import ARRIVAL_MARK, key_for
    from mlops.serving.capture_columns import CapturedColumns, encode

    s3 = aws.client("s3")
    start = min(start, time.time() - rows / per_object / 1000 - 1)  # every key time in the past: in the window
    base = _records(family, 20_000, 5)
    written = objects = 0
    while written < rows:
        at = start + objects / 1000
        batch = [(at, f"req-{objects}-{i}", 0, base[(written + i) % len(base)], 1, [0.3, 0.7])
                 for i in range(min(per_object, rows - written))]
        if fmt == "cap":
            body = encode(CapturedColumns.from_rows(batch))
            # Keyed as the writers key them (by write time, ARRIVAL_MARK): the drift window is the objects written.
            key = key_for(family.name, version, int(at * 1000), f"{ARRIVAL_MARK}{objects:08x}")
        else:
            body = b"\n".join(orjson.dumps({"at": r[0], "request_id": r[1], "index": r[2], "family": family.name,
                                            "version": version, "inputs": r[3], "label": r[4],
                                            "probabilities": r[5]}) for r in batch) + b"\n"
            key = key_for(family.name, version, int(at * 1000), f"{objects:08x}", ".jsonl")
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        written += len(batch)
        objects += 1
    return objects


def run(row: Row, quick: bool, rows: int | None = None, families: int | None = None) -> None:
    from mlops.core import aws
    from mlops.core.observability import MetricsPublisher
    from mlops.core.settings import CAPTURE_FLUSH_RECORDS
    from mlops.data import synthetic
    from mlops.monitoring.drift import DriftMonitor, captured_columns, compare_with_baseline
    from mlops.registry.artifacts import ArtifactStore
    from mlops.serving.capture import CaptureReader

    from mlops_local.runtime import LocalPlatform

    rows = rows or (50_000 if quick else 1_000_000)
    per_object = CAPTURE_FLUSH_RECORDS  # a busy family's objects: the writer's default flush
    families = families or (10 if quick else 200)
    platform = LocalPlatform([synthetic.credit_risk_family()])
    platform.start()
    try:
        registry = platform.registry
        source = synthetic.credit_risk_family()
        platform.upload_dataset(source.name, "first.csv", synthetic.credit_risk_csv(3000, 5))
        platform.drain_executions(300)
        record = registry.get_family(source.name)
        live = registry.get_version(source.name, record.live_version)
        never = lambda arn: False  # noqa: E731 - no rollout holds the family

        # 1. one family, end to end, .cap against .jsonl on the same rows. The .cap check is repeated on fresh
        # copies of the rows (a check judges each window once) and its median kept; the .jsonl one, 7x slower,
        # runs once, first, which also warms the process (imports, allocator) for the .cap runs.
        def live_family(name: str) -> tuple[Any, int]:
            family = source.model_copy(update={"name": name})
            registry.register_family(family, actor="bench", reason="drift at scale")
            version = registry.allocate_version(name, dict(live.lineage), actor="bench").version
            registry.transition(name, version, "live", "bench", "bench")
            return family, version

        figures: dict[str, dict[str, float]] = {}
        for fmt, repeats in (("jsonl", 1), ("cap", 1 if quick else 3)):
            runs, work = [], []
            for repeat in range(repeats):
                name = f"drift-e2e-{fmt}-{repeat}"
                family, version = live_family(name)
                objects = _write_captures(platform.bucket, family, version, rows, per_object, fmt, time.time())
                reader = CaptureReader(platform.bucket)
                monitor = DriftMonitor(registry, ArtifactStore(platform.bucket), reader, MetricsPublisher("Bench"),
                                       platform.state_machine_arn, never)
                began = time.perf_counter()
                report = monitor.check(registry.get_family(name))
                runs.append(time.perf_counter() - began)
                # The platform's own work: the same objects already in memory (no moto request per object).
                bodies = {k: aws.client("s3").get_object(Bucket=platform.bucket, Key=k)["Body"].read()
                          for k in reader.keys(name, version, 0)}
                reader._fetch = bodies.__getitem__  # type: ignore[method-assign]
                began = time.perf_counter()
                window = reader.columns(name, version, 0, None, max_rows=2_000_000, request_ids=False)
                profile = monitor.artifacts.get_json(live.lineage["baseline_profile"]["sha256"])
                columns, predictions = captured_columns(family, window)
                compare_with_baseline(family, profile, columns, predictions, family.drift)
                work.append(time.perf_counter() - began)
                del bodies, window, columns, predictions
            figures[fmt] = {"seconds": statistics.median(runs), "rows": report["rows"], "objects": objects,
                            "cpu_seconds": statistics.median(work), "runs": [round(r, 3) for r in runs]}
        cap, jsonl = figures["cap"], figures["jsonl"]
        rate = cap["rows"] / cap["seconds"]
        row(f"drift check end to end, {cap['rows']:,} captured rows in {cap['objects']} objects of {per_object:,} "
            "(moto S3, in process)",
            rate, "rows/s", ">= 1M", rate >= 1e6, seconds=round(cap["seconds"], 2), runs_s=cap["runs"],
            baseline_jsonl_rows_per_s=round(jsonl["rows"] / jsonl["seconds"]),
            ratio=round(rate / (jsonl["rows"] / jsonl["seconds"]), 1),
            note="moto answers each GET on this CPU; in AWS the reader's 16 threads overlap GETs")
        # The same check when objects are small: a quiet sandbox's captures, flushed by the 60 s age bound at a
        # few records a second (200 rows per object), where the per-object cost, not the rows, decides.
        small_rows = 20_000 if quick else 200_000
        name = "drift-e2e-small"
        family, version = live_family(name)
        small_objects = _write_captures(platform.bucket, family, version, small_rows, 200, "cap", time.time())
        monitor = DriftMonitor(registry, ArtifactStore(platform.bucket), CaptureReader(platform.bucket),
                               MetricsPublisher("Bench"), platform.state_machine_arn, never)
        began = time.perf_counter()
        small = monitor.check(registry.get_family(name))
        small_seconds = time.perf_counter() - began
        cpu = cap["rows"] / cap["cpu_seconds"]
        row(f"drift check, platform work per row ({cap['rows']:,} rows, objects in memory: decode, encode, tests)",
            cpu, "rows/s", ">= 1M", cpu >= 1e6, seconds=round(cap["cpu_seconds"], 2),
            baseline_jsonl_rows_per_s=round(jsonl["rows"] / jsonl["cpu_seconds"]),
            ratio=round(cpu / (jsonl["rows"] / jsonl["cpu_seconds"]), 1))

        row(f"drift check end to end, {small['rows']:,} rows in {small_objects:,} objects of 200 (quiet sandboxes: "
            "flushed by age)", small["rows"] / small_seconds, "rows/s", "stated", None,
            seconds=round(small_seconds, 2), ms_per_object=round(small_seconds / small_objects * 1000, 2),
            note="per-object cost dominates; a busy family's objects hold up to MLOPS_CAPTURE_FLUSH_RECORDS rows")

        # 2. one fan-out over many families
        names = []
        for i in range(families):
            name = f"fanout-{i:04d}"
            family, version = live_family(name)
            _write_captures(platform.bucket, family, version, 1_000, 1_000, "cap", time.time())
            names.append(name)
        began = time.perf_counter()
        described = platform.run_drift_fanout(families=names, timeout=3600)
        wall = time.perf_counter() - began
        checked = sum(1 for n in names if registry.drift_records(n, limit=1))
        monitor = DriftMonitor(registry, ArtifactStore(platform.bucket), CaptureReader(platform.bucket),
                               MetricsPublisher("Bench"), platform.state_machine_arn, never)
        durations = []
        for name in names[: min(20, len(names))]:  # one check's duration, as the Lambda bills it
            began = time.perf_counter()
            monitor.check(registry.get_family(name))  # no new traffic: the check ends early, like most hours
            durations.append(time.perf_counter() - began)
        per_check_traffic = wall / max(1, checked)
        cost = (DRIFT_MEMORY_GB * per_check_traffic * LAMBDA_GB_SECOND + LAMBDA_REQUEST
                + TRANSITIONS_PER_ITEM / BATCH * SFN_TRANSITION + 3 * S3_GET + 2 * S3_PUT + 2 * S3_LIST)
        idle = (DRIFT_MEMORY_GB * statistics.median(durations) * LAMBDA_GB_SECOND + LAMBDA_REQUEST
                + TRANSITIONS_PER_ITEM / BATCH * SFN_TRANSITION + 2 * S3_GET + 2 * S3_LIST)
        row(f"drift fan-out: {families} families in one scheduled run (local, Distributed Map on moto)", wall, "s",
            "all checked", checked == families and described["status"] == "SUCCEEDED", checked=checked,
            seconds_per_family=round(wall / families, 3), status=described["status"],
            note="in process on this machine: checks share 2 cores; in AWS they run MaxConcurrency at a time")
        row("drift fan-out: cost of one family-check with 1,000 new rows (AWS prices)", cost * 1e6, "micro-USD",
            "-", None, lambda_gb_s=round(DRIFT_MEMORY_GB * per_check_traffic, 3),
            step_functions_transitions=TRANSITIONS_PER_ITEM / BATCH, usd_per_1000_checks=round(cost * 1000, 4))
        row("drift fan-out: cost of one family-check without new traffic (AWS prices)", idle * 1e6, "micro-USD",
            "-", None, median_check_ms=round(statistics.median(durations) * 1000, 1),
            usd_per_month_2000_families_hourly=round(idle * 2000 * 24 * 30, 2))
    finally:
        platform.stop()
