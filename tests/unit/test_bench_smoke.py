"""The benchmark harness runs end to end (quick mode) and writes well-formed results; figures are not judged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_harness_quick_mode_writes_one_entry_per_row(tmp_path):
    results = tmp_path / "results.json"
    committed = (ROOT / "bench" / "results.json").read_bytes()
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--results", str(results)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(results.read_text())
    assert data["quick"] is True and data["environment"]["cores"] >= 1
    names = [r["name"] for r in data["rows"]]
    assert any("handler overhead" in n for n in names) and any("cold init" in n for n in names)
    assert any(n.startswith("drift PSI + KS") for n in names) and any("registry" in n for n in names)
    assert any(n.startswith("single-row model call hgb") for n in names)
    assert any(n.startswith("single-row regression call ridge") for n in names)
    assert any(n.startswith("CBPE auc error, trained LR") for n in names)
    # Every section gives its rows (the training section once printed its failures and gave none).
    assert any(n.startswith("train step hgb") for n in names), names
    assert any(n.startswith("drift check end to end") for n in names) and any("fan-out" in n for n in names)
    assert any(n.startswith("shared tier") for n in names) and any(n.startswith("family registration") for n in names)
    for entry in data["rows"]:
        assert {"name", "value", "unit", "target", "met"} <= set(entry)
    assert (ROOT / "bench" / "results.json").read_bytes() == committed  # the committed full run is left alone
