"""Generated scoring traffic for the demo and tests: AWS-shaped proxy events through the `live` alias."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import numpy as np
from mlops.data.synthetic import credit_risk_columns, to_instances

from .apigw import proxy_event


class TrafficGenerator:
    """Sends batches of records from a background thread; `mode` switches between normal and drifted inputs."""

    def __init__(self, platform: Any, family: Any, batch: int = 5, pause: float = 0.002, seed: int = 1234) -> None:
        self.platform = platform
        self.family = family
        self.batch = batch
        self.pause = pause
        self.mode = "normal"
        self.sent = 0
        self.records = 0
        # Answers per model version (the response's X-Model-Version; "-" for answers without one, e.g. errors).
        self.by_version: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pools = {
            "normal": to_instances(credit_risk_columns(4000, seed), family),
            "drifted": to_instances(credit_risk_columns(4000, seed + 1, drift=1.0), family),
        }
        self._rng = np.random.default_rng(seed)

    def send_one(self, mode: str | None = None) -> dict[str, Any]:
        pool = self._pools[mode or self.mode]
        start = int(self._rng.integers(0, len(pool) - self.batch))
        body = json.dumps({"instances": pool[start:start + self.batch]})
        response, _ = self.platform.invoke_scoring(
            self.family.name, proxy_event("POST", f"/models/{self.family.name}/predict", body))
        self.sent += 1
        self.records += self.batch
        self.by_version[str((response.get("headers") or {}).get("X-Model-Version", "-"))] += 1
        self.statuses[int(response.get("statusCode", 0))] += 1
        return response

    def send(self, requests: int, mode: str | None = None) -> None:
        for _ in range(requests):
            self.send_one(mode)

    def start(self) -> TrafficGenerator:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.send_one()
            self._stop.wait(self.pause)
