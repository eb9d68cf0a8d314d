"""Runs inside an isolated virtual environment with Evidently (its pins clash with the platform's pandas):
DataDriftPreset with PSI (threshold 0.2) on the same arrays the platform's check used. Prints JSON."""

import json
import sys
import time

import numpy as np
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

reference = np.load(sys.argv[1])
current = np.load(sys.argv[2])
columns = [f"f{j}" for j in range(reference.shape[1])]
reference_frame = pd.DataFrame(reference, columns=columns)
current_frame = pd.DataFrame(current, columns=columns)
report = Report([DataDriftPreset(method="psi", threshold=0.2)])
started = time.perf_counter()
snapshot = report.run(current_data=current_frame, reference_data=reference_frame)
seconds = time.perf_counter() - started
values = {}
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if config.get("type", "").endswith("ValueDrift"):
        values[config["column"]] = metric["value"]
print(json.dumps({"seconds": seconds, "psi": values, "drifted": sorted(c for c, v in values.items() if v >= 0.2)}))
