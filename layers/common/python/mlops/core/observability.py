"""One logger and one metrics publisher for the library; service name and namespace come from POWERTOOLS_*."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from mlops.core import aws


def logger() -> Any:
    """The powertools JSON logger for this function's service (POWERTOOLS_SERVICE_NAME)."""
    from mlops.core.settings import Env, environ

    env = environ()
    return _logger(env.get(Env.SERVICE_NAME, "mlops"), env.get("POWERTOOLS_LOG_LEVEL", "INFO"))


@lru_cache(maxsize=16)
def _logger(service: str, level: str) -> Any:
    try:
        from aws_lambda_powertools import Logger

        return Logger(service=service, level=level, utc=True)
    except ImportError:  # pragma: no cover - powertools ships in every layer
        return logging.getLogger(service)


class MetricsPublisher:
    """Direct PutMetricData for low-rate, must-not-be-lost figures (pipeline outcomes, drift, integrity).

    The scoring hot path publishes nothing per request: Lambda's own Invocations/Errors/Duration metrics and
    API Gateway's metrics cover traffic, so no per-request cost is added."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def put(self, name: str, value: float, dimensions: dict[str, str], unit: str = "Count") -> None:
        try:
            aws.client("cloudwatch").put_metric_data(Namespace=self.namespace, MetricData=[{
                "MetricName": name, "Value": float(value), "Unit": unit, "Timestamp": datetime.now(UTC),
                "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
            }])
        except Exception as exc:  # a lost metric must never fail the work it describes
            logger().warning("metric not published", extra={"metric": name, "error": str(exc)})

    def integrity_failure(self, family: str, version: int) -> None:
        self.put("ArtifactIntegrityFailures", 1, {"Family": family})
        logger().error("artifact failed its integrity check", extra={"family": family, "version": version})
