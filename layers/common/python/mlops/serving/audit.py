"""Audit of one scored request from its request id: the decision, the model version and what was live at that
moment, lineage (data, code, hyperparameters, metrics, gate, fairness), the rollout history and the explanation,
recomputed from the captured inputs and the artifact when the capture policy kept them (`mlops audit`,
GET /audit/{request_id}; docs/audit.md)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import orjson

from mlops.core.errors import (
    ConfigurationError,
    ExplanationUnavailableError,
    IntegrityError,
    PlatformError,
    ValidationError,
)
from mlops.core.schemas import BINARY
from mlops.registry.artifacts import ArtifactStore, S3ObjectStore
from mlops.registry.store import ModelRegistry
from mlops.serving.decisions import DecisionRecord, DecisionStore, SearchProgress, check_request_id

LINEAGE_FIELDS = ("family", "version", "task", "trained_at", "algorithm", "hyperparameters", "seed", "classes",
                  "positive_label", "threshold", "input_dtype", "artifact_sha256", "artifact_key",
                  "pipeline_execution", "previous_live_version", "metrics", "trivial_model", "parity", "warnings",
                  "feature_importance", "feature_importance_basis")
DATASET_FIELDS = ("bucket", "key", "version_id", "sha256", "rows")
# The prediction recomputed from the captured inputs must equal the recorded one (same artifact, same runtime):
# anything beyond float32 rounding means the record or the artifact is not what served the request.
REPRODUCTION_TOLERANCE = 1e-6


class Auditor:
    """Reads decision records, the registry and artifacts. `s3`: a boto3 S3 client (the CLI's platform session);
    default the process-wide one."""

    def __init__(self, bucket: str, registry: ModelRegistry, s3: Any | None = None) -> None:
        self.registry = registry
        self.decisions = DecisionStore(bucket, s3)
        self.artifacts = ArtifactStore(bucket, S3ObjectStore(s3))

    def audit(self, request_id: str, family: str | None = None, around: datetime | None = None,
              progress: Callable[[SearchProgress], None] | None = None) -> dict[str, Any]:
        """Everything recorded about one request (sections in docs/audit.md). `family` and `around` (a time near
        the decision) narrow the search; `progress` is told after each hour partition searched. Raises
        ValidationError (400) for a malformed id, UnknownFamilyError (404) for a family the registry does not
        know, DecisionNotFoundError (404) for an unknown request id."""
        request_id = check_request_id(request_id)
        if family:
            self.registry.get_family(family)  # UnknownFamilyError: say so, not "no decision record"
        found = self.decisions.find(request_id, [family] if family else None, around, progress)
        line = found.line
        name, version = str(line["family"]), int(line["version"])
        record = self.registry.get_version(name, version)
        lineage = record.lineage
        events = self._events(name)
        live_then = self.registry.live_at(name, found.at)
        status_then = next((e.to_status for e in reversed(events) if e.version == version and e.at <= _iso(found.at)),
                           "unknown")
        run = self.registry.get_run(name, lineage["pipeline_execution"]) if lineage.get("pipeline_execution") \
            else None
        return {
            "request_id": line["request_id"],
            "decision": _decision(found, lineage.get("task") or BINARY),
            "model": {"family": name, "version": version, "status": record.status,
                      "status_reason": record.status_reason, "function_version": record.function_version or None,
                      "artifact_sha256": record.artifact_sha256,
                      "artifact_matches_decision": record.artifact_sha256 == line.get("model_sha256")},
            "at_decision": {"live_version": live_then or None, "served_version": version,
                            "served_version_status": status_then,
                            "served_by": "live" if live_then == version else
                            "canary" if status_then == "canary" else status_then},
            "lineage": _lineage(lineage),
            "gate": lineage.get("gate") or {},
            "fairness": lineage.get("fairness") or {},
            "rollout": [asdict(e) for e in events if e.version in (version, live_then)],
            "run": _run_summary(run),
            "explanation": self._explanation(found, lineage),
            "search": {"keys_listed": self.decisions.listed, "objects_read": self.decisions.read,
                       "partitions_searched": self.decisions.partitions, "object": found.key},
        }

    def _events(self, family: str) -> list[Any]:
        events, token = [], None
        while True:
            page = self.registry.history(family, limit=100, next_token=token)
            events += page.items
            token = page.next_token
            if not token:
                return sorted(events, key=lambda e: e.at)

    def _explanation(self, found: DecisionRecord, lineage: dict[str, Any]) -> dict[str, Any]:
        """Recomputed exactly from the captured inputs and the artifact, else the reason codes stored with the
        decision, else why neither exists. `explained_at_request` says whether the request asked for explanations;
        `returned` holds, per record, the reason codes the client actually received (the stored top-k), whatever
        the source: a recomputation lists every feature and can only confirm them (`returned_match`)."""
        line = found.line
        stored = line.get("explanations")
        asked = stored is not None
        why = None
        if line.get("inputs") is not None:
            try:
                recomputed = self._recompute(line, lineage)
            except (ValidationError, ExplanationUnavailableError, IntegrityError, ConfigurationError) as exc:
                why = f"not recomputed: {exc.message}"
            else:
                if not asked:
                    recomputed["note"] += ("; the request did not ask for explanations, so the client received no "
                                           "reason codes: these are recomputed now")
                return {**recomputed, "explained_at_request": asked, "returned": stored,
                        "returned_match": _returned_match(stored, recomputed["records"]) if asked else None}
        else:
            why = ("not recomputed: the inputs were not captured (the family's capture policy samples "
                   "requests; the decision record keeps inputs only for captured ones)")
        if stored:
            return {"source": "stored", "note": why + "; the reason codes returned with the response follow",
                    "records": stored, "explained_at_request": True, "returned": stored, "returned_match": None}
        return {"source": "unavailable", "note": why + "; the request did not ask for explanations",
                "explained_at_request": False, "returned": None, "returned_match": None}

    def _recompute(self, line: dict[str, Any], lineage: dict[str, Any]) -> dict[str, Any]:
        from mlops.serving.explanations import ServedExplainer
        from mlops.serving.scoring import ScoringModel

        sha256 = line.get("model_sha256") or lineage.get("artifact_sha256")
        artifact = self.artifacts.get_model(sha256)  # IntegrityError when the bytes do not hash to the record's sha256
        model = ScoringModel(artifact)
        inputs = line["inputs"]
        try:
            labels, proba = model.predict_lists(model.matrix(inputs))
        except ValidationError as exc:
            omitted = line.get("never_captured")
            raise ValidationError(f"{exc.message} (never-captured fields {omitted} are not stored)"
                                  if omitted else exc.message) from None
        gap = _reproduction_gap(line, labels, proba)
        explainer = ServedExplainer(artifact, line["family"], int(line["version"])).explainer(
            getattr(model, "task", "binary_classification"), model)
        records = explainer.explain(model.exact_matrix(inputs))
        return {"source": "recomputed", "note": "recomputed exactly from the captured inputs and the artifact",
                "prediction_reproduced": gap <= REPRODUCTION_TOLERANCE,
                "max_probability_difference": None if math.isinf(gap) else gap, "records": records}


def _returned_match(returned: list[dict[str, Any]], recomputed: list[dict[str, Any]]) -> bool:
    """Whether the reason codes the client received are the leading ones of the recomputation: same features in
    the same order, contributions equal to REPRODUCTION_TOLERANCE."""
    if len(returned) != len(recomputed):
        return False
    for sent, now in zip(returned, recomputed, strict=True):
        reasons, again = sent.get("reasons") or [], (now.get("reasons") or [])[:len(sent.get("reasons") or [])]
        if [r["feature"] for r in reasons] != [r["feature"] for r in again]:
            return False
        if any(abs(float(a["contribution"]) - float(b["contribution"])) > REPRODUCTION_TOLERANCE
               for a, b in zip(reasons, again, strict=True)):
            return False
    return True


def _reproduction_gap(line: dict[str, Any], labels: list, proba: list | None) -> float:
    """The largest difference between what the artifact gives the captured inputs now and what the decision
    recorded: the positive class's probability (binary), every class's (multiclass), the value (regression)."""
    if proba is None:
        recorded, now = line.get("predictions") or [], labels
    elif proba and len(proba[0]) == 2:
        recorded, now = line.get("probabilities") or [], [p[-1] for p in proba]
    else:
        recorded = [v for row in line.get("probabilities") or [] for v in row]
        now = [v for row in proba for v in row]
    if len(recorded) != len(now) or not now:
        return math.inf
    return max(abs(float(a) - float(b)) for a, b in zip(now, recorded, strict=True))


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _decision(found: DecisionRecord, task: str = BINARY) -> dict[str, Any]:
    """The decision record as the audit shows it. `threshold` only for a binary model: a regression answers its
    value and a multiclass model its most probable class (records written before that carried a default 0.5)."""
    line = found.line
    predictions = line.get("predictions") or []
    probabilities = line.get("probabilities") or [None] * len(predictions)
    inputs = line.get("inputs") or [None] * len(predictions)
    records = []
    for i, (prediction, probability, values) in enumerate(zip(predictions, probabilities, inputs, strict=False)):
        entry: dict[str, Any] = {"index": i, "prediction": prediction, "probability": probability}
        if values is not None:
            entry["inputs"] = values
        records.append(entry)
    return {"at": _iso(found.at), "family": line["family"], "version": line["version"],
            "function_version": line.get("function_version") or None, "model_sha256": line.get("model_sha256"),
            "task": task, "threshold": line.get("threshold") if task == BINARY else None,
            "inputs_captured": bool(line.get("inputs_captured")),
            "never_captured": line.get("never_captured", []), "explained": "explanations" in line,
            "records": records}


def _lineage(lineage: dict[str, Any]) -> dict[str, Any]:
    out = {k: lineage[k] for k in LINEAGE_FIELDS if k in lineage}
    out["dataset"] = {k: (lineage.get("dataset") or {}).get(k) for k in DATASET_FIELDS}
    out["code"] = lineage.get("code") or {}
    out["holdout"] = lineage.get("holdout") or {}
    if "canary_result" in lineage:
        out["canary_result"] = lineage["canary_result"]
    return out


def _run_summary(run: dict[str, Any] | None) -> dict[str, Any] | None:
    if not run:
        return None
    keep = ("run_id", "outcome", "step", "reason", "started_at", "ended_at", "version")
    return {k: run.get(k) for k in keep if k in run}


# ---- GET /audit/{request_id} -----------------------------------------------------------------------------------

def handle_request(auditor: Auditor, event: dict[str, Any], request_id: str) -> dict[str, Any]:
    """The management API route (API Gateway REST proxy event, IAM-authorized): path parameter `request_id`,
    optional query parameters `family` and `at` (ISO 8601, a time near the decision)."""
    from mlops.serving.api import error_response

    try:
        params = event.get("pathParameters") or {}
        query = event.get("queryStringParameters") or {}
        around = parse_time(query["at"]) if query.get("at") else None
        body = auditor.audit(params.get("request_id", ""), query.get("family") or None, around)
    except PlatformError as exc:
        return error_response(exc, request_id)
    return {"statusCode": 200, "headers": {"Content-Type": "application/json", "X-Request-Id": request_id},
            "body": orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY).decode(), "isBase64Encoded": False}


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time (UTC unless it says otherwise). Raises ValidationError naming the value."""
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"'at' must be an ISO 8601 date or time (2025-03-14 or 2025-03-14T09:30Z), got "
                              f"{text[:40]!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
