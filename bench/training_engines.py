"""Train step figures for the training engines (issue 15; `make bench`, section "training"): time and peak memory
of the Lambda engine's train step (read the data set, parse, fit, ONNX, profile, holdout) on 100k, 1M and 5M rows
(HistGradientBoosting and logistic regression; the random forest at 1M), before and after, in the same run.

- before: the runtime library as of BEFORE_REVISION (the commit this work started from, exported with
  `git archive`), its train step as it read data: the S3 body whole in memory, then parsed.
- after: the working tree's library: the body spooled to a temporary file (what `S3ObjectStore.get(spool=True)`
  does), parsed from the file in blocks into columns that grow in place; the forest fits on every core.
Each measurement runs in a fresh process (peak RSS is per process): peak = the resident high-water mark above
the process's resident size once scikit-learn, skl2onnx and onnx are imported (Linux's /proc/self/clear_refs
resets the mark), in multiples of the CSV's bytes. Data: the synthetic credit-risk set (8 features, about 38
bytes a row), written once per size in 500k-row chunks. The after side also carries what landed on the library
since BEFORE_REVISION (explanation background and feature importance in `training.train`): its fit figures
include that work.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEFORE_REVISION = "787060a"
CASES = (("hist_gradient_boosting", 100_000), ("logistic_regression", 100_000),
         ("hist_gradient_boosting", 1_000_000), ("logistic_regression", 1_000_000), ("random_forest", 1_000_000),
         ("hist_gradient_boosting", 5_000_000), ("logistic_regression", 5_000_000))
QUICK_CASES = (("hist_gradient_boosting", 20_000),)
SHORT = {"logistic_regression": "lr", "hist_gradient_boosting": "hgb", "random_forest": "rf"}
CHUNK = 500_000

CHILD = r'''
import hashlib, json, os, resource, shutil, sys, tempfile, time
library, mode, algorithm, path = sys.argv[1:5]
sys.path.insert(0, library)
import numpy as np
import onnx, skl2onnx, sklearn  # imported before the baseline: the runtime, not the data
try:  # the package layout
    from mlops.data import synthetic
    from mlops.data.datasets import parse_dataset
    from mlops.training import fit as training
except ImportError:  # BEFORE_REVISION's flat modules
    from mlops import synthetic, training
    from mlops.datasets import parse_dataset

def resident(field):
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) * 1024 for l in status if l.startswith(field))

family = synthetic.credit_risk_family(name="bench", algorithm=algorithm, max_dataset_bytes=2**40)
size = os.path.getsize(path)
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
base = resident("VmRSS")
started = time.perf_counter()
if mode == "before":
    data = open(path, "rb").read()
    hashlib.sha256(data).hexdigest()
else:
    data, digest = tempfile.TemporaryFile(), hashlib.sha256()
    with open(path, "rb") as source:
        while block := source.read(1 << 20):
            digest.update(block)
            data.write(block)
    data.seek(0)
dataset = parse_dataset(data, family, path)
del data
parsed = time.perf_counter()
parse_peak = resident("VmHWM") - base
model = training.train(family, dataset.X, dataset.y, classes=dataset.classes)
rows = model.holdout_index
training.holdout_bytes(dataset.X[rows], dataset.y[rows], dataset.sensitive[rows], dataset.row_ids[rows],
                       model.sklearn_holdout_proba, model.sklearn_holdout_labels,
                       line_numbers=dataset.line_numbers[rows])
ended = time.perf_counter()
print(json.dumps({"rows": dataset.rows, "csv_bytes": size, "read_parse_seconds": parsed - started,
                  "step_seconds": ended - started, "parse_peak_bytes": parse_peak,
                  "step_peak_bytes": resident("VmHWM") - base, "cpus": os.cpu_count()}))
'''


def _data_set(rows: int, directory: Path) -> Path:
    """The synthetic credit-risk CSV with `rows` rows, generated in chunks (bounded memory)."""
    path = directory / f"credit-{rows}.csv"
    if path.exists():
        return path
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'layers' / 'common' / 'python')!r})\n"
            "from mlops.data import synthetic\n"
            f"rows, chunk, out = {rows}, {CHUNK}, open({str(path)!r}, 'wb')\n"
            "for i, start in enumerate(range(0, rows, chunk)):\n"
            "    text = synthetic.credit_risk_csv(min(chunk, rows - start), 7 + i)\n"
            "    out.write(text if i == 0 else text[text.index(b'\\n') + 1:])\n"
            "out.close()\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=3600)
    return path


def _before_library(directory: Path) -> Path | None:
    """The runtime library at BEFORE_REVISION (None without the git history)."""
    target = directory / "before"
    if (target / "mlops").exists():
        return target
    archive = directory / "before.tar"
    out = subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), BEFORE_REVISION,
                          "layers/common/python/mlops"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        return None
    with tarfile.open(archive) as tar:
        tar.extractall(directory / "export", filter="data")
    (directory / "export" / "layers" / "common" / "python").rename(target)
    return target


def _measure(library: Path, mode: str, algorithm: str, path: Path) -> dict[str, Any] | None:
    out = subprocess.run([sys.executable, "-c", CHILD, str(library), mode, algorithm, str(path)],
                         capture_output=True, text=True, timeout=7200, cwd=ROOT)
    if out.returncode != 0:  # loud: a section without its rows must not pass as a run (the smoke test runs this)
        raise RuntimeError(f"train step {mode} {algorithm} failed: {out.stderr[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(row: Callable[..., None], quick: bool) -> None:
    """Rows `train step <alg> <rows> before|after` (seconds) and `train step peak ...` (x CSV bytes), plus the
    read-and-parse peak, and the after/before ratios."""
    with tempfile.TemporaryDirectory(prefix="mlops-bench-training-") as tmp:
        directory = Path(tmp)
        before = _before_library(directory)
        after = ROOT / "layers" / "common" / "python"
        for algorithm, rows in QUICK_CASES if quick else CASES:
            path = _data_set(rows, directory)
            label = f"{SHORT[algorithm]} {rows // 1000:,}k" if rows < 1_000_000 else f"{SHORT[algorithm]} " \
                                                                                        f"{rows // 1_000_000}M"
            results = {"after": _measure(after, "after", algorithm, path)}
            if before is not None:
                results["before"] = _measure(before, "before", algorithm, path)
            for side in ("before", "after"):
                found = results.get(side)
                if found is None:
                    continue
                size = found["csv_bytes"]
                detail = {"rows": found["rows"], "csv_mb": round(size / 2**20, 1), "cpus": found["cpus"],
                          "read_parse_s": round(found["read_parse_seconds"], 2)}
                row(f"train step {label} {side}", found["step_seconds"], "s", "-", None, **detail)
                row(f"train step peak {label} {side}", found["step_peak_bytes"] / size, "x CSV", "-", None,
                    peak_mb=round(found["step_peak_bytes"] / 2**20))
                # The bound is for data sets that matter to memory: below 1M rows the reader's fixed ~10 MB
                # (one block of cells as Python strings, buffers) outweighs the data.
                judged = side == "after" and rows >= 1_000_000
                row(f"read+parse peak {label} {side}", found["parse_peak_bytes"] / size, "x CSV",
                    "<= 3x" if judged else "-", found["parse_peak_bytes"] / size <= 3.0 if judged else None,
                    peak_mb=round(found["parse_peak_bytes"] / 2**20))
            if results.get("before") and results.get("after"):
                b, a = results["before"], results["after"]
                row(f"train step {label} after/before time", a["step_seconds"] / b["step_seconds"], "ratio", "-",
                    None)
                row(f"train step {label} after/before peak", a["step_peak_bytes"] / b["step_peak_bytes"], "ratio",
                    "-", None)
