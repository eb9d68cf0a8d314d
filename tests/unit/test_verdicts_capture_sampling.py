"""Captures sample each record of a batch request independently (deterministic from the request id and the
record's index), so batch traffic from an unchanged population does not raise false drift: sampling whole
requests captured a few homogeneous batches and flagged `region` in 9 of 20 windows (fresh-user pass, MED 4)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from mlops.data import synthetic
from mlops.data.datasets import parse_csv
from mlops.monitoring.drift import captured_columns, compare_with_baseline
from mlops.serving.capture import CapturedRecord, CaptureWriter, sampled_indices
from mlops.stats.profile import baseline_profile

FAMILY = synthetic.credit_risk_family()


@pytest.fixture(scope="module")
def profile() -> dict:
    train = parse_csv(synthetic.credit_risk_csv(5000, 1), FAMILY)
    return baseline_profile(FAMILY, train.X, np.full(train.rows, 0.3))


def _batches(seed: int, batches: int = 400, size: int = 25) -> list[list[dict]]:
    """Unchanged population, but each batch request is one segment (records sorted by region, then cut)."""
    records = synthetic.to_instances(synthetic.credit_risk_columns(batches * size, seed), FAMILY)
    records.sort(key=lambda r: r["region"])
    return [records[i * size:(i + 1) * size] for i in range(batches)]


def _verdict(profile: dict, captured: list[CapturedRecord]) -> str:
    columns, _ = captured_columns(FAMILY, captured)
    return compare_with_baseline(FAMILY, profile, columns, np.full(len(captured), 0.3), FAMILY.drift)["verdict"]


def test_batch_traffic_from_an_unchanged_population_raises_no_false_drift(profile):
    writer = CaptureWriter("bucket", FAMILY.name, 1, 0.2, frozenset(), flush_records=10**9, max_age_seconds=1e9)
    per_record, per_request = [], []
    for seed in range(10):
        captured, clustered = [], []
        chooser = random.Random(seed)
        for b, batch in enumerate(_batches(100 + seed)):
            request_id = f"req-{seed}-{b}"
            chosen = writer.record(request_id, batch, [0] * len(batch), [[0.7, 0.3]] * len(batch))
            captured += [CapturedRecord(0.0, request_id, batch[i], 0, [0.7, 0.3]) for i in chosen]
            if chooser.random() < 0.2:  # what sampling whole requests captured
                clustered += [CapturedRecord(0.0, request_id, r, 0, [0.7, 0.3]) for r in batch]
        assert 0 < len({r.request_id for r in captured}) and len(captured) == pytest.approx(2000, rel=0.15)
        per_record.append(_verdict(profile, captured))
        per_request.append(_verdict(profile, clustered))
    assert per_record.count("drift") == 0, per_record
    assert per_request.count("drift") >= 2, "the clustered sample this fix removes did raise false drift"


def test_records_are_sampled_independently_and_deterministically():
    counts = [len(sampled_indices(f"r-{i}", 1000, 0.1)) for i in range(50)]
    assert all(60 <= c <= 140 for c in counts)  # ~Binomial(1000, 0.1), never all-or-nothing
    assert sampled_indices("abc", 500, 0.3) == sampled_indices("abc", 500, 0.3)
    assert sampled_indices("abc", 500, 0.3) != sampled_indices("abd", 500, 0.3)
    total = sum(len(sampled_indices(f"one-{i}", 1, 0.05)) for i in range(20000))
    assert total == pytest.approx(1000, abs=4 * (20000 * 0.05 * 0.95) ** 0.5)
    assert sampled_indices("x", 7, 1.0) == list(range(7)) and sampled_indices("x", 7, 0.0) == []
