"""`mlops reproduce`: train a registered version again from its lineage and prove the artifact is the same.

Inputs come from the version's lineage only: the data set's exact S3 object version (its bytes checked against the
recorded sha256), the family declaration it was trained with (stored with the run as a content-addressed artifact;
for versions registered before that, the registry's declaration, proven unchanged when the run's content
fingerprint still matches), the seed and the hyperparameters. Training runs here, in this process, with the same
code the Train step runs (`mlops.training.fit.train` on `mlops.data.datasets.parse_dataset`'s output). The code revision
and the library versions are compared with the recorded ones.

The verdict is the sha256 of the ONNX artifact. When it differs, the two models are compared field by field
(opset imports, metadata, graph nodes and attributes, initializers) and scored on the holdout rows, so the answer
says exactly what differs and whether any prediction does.
"""

from __future__ import annotations

import hashlib
import platform as host
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from .client import Platform
from .views import artifact_json, family_record, version_record

MAX_DIFFERENCES = 25


class ReproduceError(Exception):
    """The version cannot be trained again (its data set version is gone, its lineage lacks what is needed)."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_sha(value: Any) -> str:
    # The bytes ArtifactStore.put_json writes, so the digest is the recorded content address.
    return _sha(orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY))


def _check(name: str, recorded: Any, now: Any, detail: str = "", same: bool | None = None) -> dict[str, Any]:
    if same is None:
        same = recorded == now
    return {"check": name, "recorded": recorded, "now": now, "same": bool(same), "detail": detail}


def family_for(platform: Platform, record: Any) -> tuple[Any, dict[str, Any]]:
    """The declaration the version was trained with, and a check saying where it came from."""
    from mlops.core.schemas import ModelFamily
    from mlops.registry.runs import content_fingerprint

    lineage = record.lineage or {}
    ref = lineage.get("family_config")
    if isinstance(ref, dict) and ref.get("sha256"):
        config = artifact_json(platform, ref["sha256"])
        return ModelFamily.model_validate(config), _check(
            "family configuration", ref["sha256"], _json_sha(config), "stored with the run (content-addressed)")
    current = family_record(platform, record.family).family
    run = platform.registry.get_run(record.family, str(lineage.get("pipeline_execution") or "")) or {}
    code = lineage.get("code") or {}
    revision = code.get("git_revision") or "unknown"
    candidates = {f"{code.get('package_version')}+{revision}", f"{code.get('package_version')}+{revision}-dirty"}
    sha = (lineage.get("dataset") or {}).get("sha256", "")
    recorded = run.get("fingerprint")
    matches = bool(recorded) and any(content_fingerprint(sha, current, c) == recorded for c in candidates)
    # The lineage's own facts win over today's declaration where they are recorded.
    updates = {k: lineage[k] for k in ("algorithm", "hyperparameters", "seed") if lineage.get(k) is not None}
    family = current.model_copy(update=updates)
    detail = ("not stored with this version; the registry's declaration is the one it was trained with (the run's "
              "content fingerprint matches)" if matches else
              "not stored with this version, and the registry's declaration changed since (or the run's fingerprint "
              "is gone): reproduced with today's declaration and the recorded algorithm, hyperparameters and seed")
    return family, _check("family configuration", recorded or "not recorded",
                          "fingerprint matches" if matches else "unknown", detail, same=matches)


def read_dataset(platform: Platform, dataset: dict[str, Any]) -> bytes:
    """The exact data set object version the version was trained on; ReproduceError when it is gone."""
    from botocore.exceptions import ClientError

    kwargs = {"Bucket": dataset["bucket"], "Key": dataset["key"]}
    if dataset.get("version_id"):
        kwargs["VersionId"] = dataset["version_id"]
    try:
        return platform.client("s3").get_object(**kwargs)["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise ReproduceError(f"the data set s3://{dataset['bucket']}/{dataset['key']} version "
                             f"{dataset.get('version_id') or '(unversioned)'} cannot be read ({code}): it was "
                             "deleted or expired, so this version cannot be trained again") from None


def reproduce(platform: Platform, family: str, version: int,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train `family` v`version` again from its lineage; returns {identical, artifact {recorded, reproduced},
    checks [{check, recorded, now, same, detail}], differences [text], predictions, environment}. Raises
    ReproduceError when the lineage or the data set cannot support a new training run."""
    from mlops.core import codeversion
    from mlops.data.datasets import parse_dataset
    from mlops.training import fit

    step = progress or (lambda _: None)
    record = version_record(platform, family, version)
    lineage = record.lineage or {}
    dataset_ref = lineage.get("dataset") or {}
    if not dataset_ref.get("key") or not lineage.get("artifact_sha256"):
        raise ReproduceError(f"{family} v{version} has no data set or artifact in its lineage; nothing to reproduce")
    step("reading the family configuration")
    declaration, family_check = family_for(platform, record)
    checks = [family_check]
    step(f"reading s3://{dataset_ref['bucket']}/{dataset_ref['key']} version {dataset_ref.get('version_id')}")
    data = read_dataset(platform, dataset_ref)
    checks.append(_check("data set sha256", dataset_ref.get("sha256"), _sha(data),
                         f"s3://{dataset_ref['bucket']}/{dataset_ref['key']} version {dataset_ref.get('version_id')}"))
    code = lineage.get("code") or {}
    revision, dirty = codeversion.revision_and_dirty()
    checks.append(_check("code revision", code.get("git_revision"), revision,
                         "uncommitted changes in this checkout" if dirty else ""))
    checks.append(_check("package version", code.get("package_version"), codeversion.package_version()))
    seed = int(lineage.get("seed", declaration.seed))
    step(f"training {declaration.algorithm} with seed {seed}")
    parsed = parse_dataset(data, declaration, dataset_ref["key"])
    model = fit.train(declaration, parsed.X, parsed.y, seed=seed, classes=parsed.classes)
    for name in sorted(set(code.get("libraries") or {}) | set(model.library_versions)):
        checks.append(_check(f"library {name}", (code.get("libraries") or {}).get(name),
                             model.library_versions.get(name)))
    checks.append(_check("hyperparameters", lineage.get("hyperparameters"), model.hyperparameters))
    holdout = lineage.get("holdout") or {}
    checks.append(_check("holdout rows", holdout.get("row_ids_sha256"),
                         _sha(parsed.row_ids[model.holdout_index].tobytes()), f"{model.holdout_index.size} rows"))
    checks.append(_check("baseline profile", (lineage.get("baseline_profile") or {}).get("sha256"),
                         _json_sha(model.profile)))
    reproduced = _sha(model.onnx_bytes)
    recorded = str(lineage["artifact_sha256"])
    identical = reproduced == recorded
    differences: list[str] = []
    predictions = None
    if not identical:
        step("comparing the two models")
        from mlops.registry.artifacts import ArtifactStore, S3ObjectStore

        stored = ArtifactStore(platform.bucket, S3ObjectStore(platform.client("s3"))).get_model(recorded)
        differences = onnx_differences(stored, model.onnx_bytes)
        predictions = compare_predictions(stored, model.onnx_bytes, parsed.X[model.holdout_index])
    return {"family": family, "version": record.version, "identical": identical,
            "artifact": {"recorded": recorded, "reproduced": reproduced, "bytes": len(model.onnx_bytes)},
            "checks": checks, "differences": differences, "predictions": predictions,
            "environment": environment(platform, lineage.get("training"))}


def environment(platform: Platform, training: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where this reproduction ran (the Train step's code, in this process, whatever engine trained the version)
    and where the version was trained: its lineage's engine (`training`, mlops.training.engines), else the
    platform's Train step."""
    here = (f"Python {host.python_version()} on {host.system()} {host.machine()}, re-running the Train step's code "
            "(parse, fit, convert) in this process")
    training = training if isinstance(training, dict) else {}
    if training.get("engine") == "sagemaker":
        job = f"job {training.get('job_name') or 'unnamed'}" + (
            f" on {training['instance_type']}" if training.get("instance_type") else "")
        where = ("the local runtime's emulation of a SageMaker training job" if platform.endpoint_url
                 else "a SageMaker training job in AWS's scikit-learn image")
        trained = f"{where} ({job}), running the Train step's entry point (mlops.training.job)"
        note = ("This reproduction did not start a SageMaker job: it ran the same Train step here. The job ran in "
                "AWS's scikit-learn image, whose Python and library versions are in the checks above; with the same "
                "versions the artifact should be identical, and a difference only in floating-point values can come "
                "from the CPU or the BLAS build.")
        return {"reproduced_on": here, "trained_on": trained, "note": note, "engine": "sagemaker"}
    if platform.endpoint_url:
        trained = "the local runtime's Train step (this machine's Python and libraries)"
        note = None
    else:
        trained = "the stack's Train function (AWS Lambda, Python 3.12, the deployed layers)"
        note = ("This run trained here, not in the stack. With the same library versions the artifact should be "
                "identical; a difference that is only in floating-point values can come from the CPU (x86_64 vs "
                "arm64) or the BLAS build. Re-running inside the stack would need the Train function's name (not a "
                "stack output yet) invoked with {family, dataset: the lineage's bucket/key/version_id, seed, "
                "trigger: {source: \"reproduce\"}}; its artifacts are content-addressed, so it would store nothing "
                "new for an identical model.")
    return {"reproduced_on": here, "trained_on": trained, "note": note, "engine": training.get("engine") or "lambda"}


def onnx_differences(recorded: bytes, reproduced: bytes, limit: int = MAX_DIFFERENCES) -> list[str]:
    """What differs between two ONNX models, field by field, as sentences (at most `limit`)."""
    import onnx
    from onnx import numpy_helper

    a, b = onnx.load_from_string(recorded), onnx.load_from_string(reproduced)
    out: list[str] = []
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        if getattr(a, field) != getattr(b, field):
            out.append(f"model {field}: {getattr(a, field)!r} recorded, {getattr(b, field)!r} now")
    opsets_a = [(o.domain or "ai.onnx", o.version) for o in a.opset_import]
    opsets_b = [(o.domain or "ai.onnx", o.version) for o in b.opset_import]
    if opsets_a != opsets_b:
        if sorted(opsets_a) == sorted(opsets_b):
            out.append(f"opset imports in another order ({opsets_a} recorded, {opsets_b} now): the same model, "
                       "serialized differently (skl2onnx orders them by Python's string hash; training now sorts "
                       "them)")
        else:
            out.append(f"opset imports: {opsets_a} recorded, {opsets_b} now")
    meta_a = {p.key: p.value for p in a.metadata_props}
    meta_b = {p.key: p.value for p in b.metadata_props}
    for key in sorted(set(meta_a) | set(meta_b)):
        if meta_a.get(key) != meta_b.get(key):
            out.append(f"metadata {key}: {_short(meta_a.get(key))} recorded, {_short(meta_b.get(key))} now")
    if list(meta_a) != list(meta_b) and meta_a == meta_b:
        out.append("metadata entries in another order")
    for kind in ("input", "output"):
        shown_a = [str(v).replace("\n", " ") for v in getattr(a.graph, kind)]
        shown_b = [str(v).replace("\n", " ") for v in getattr(b.graph, kind)]
        if shown_a != shown_b:
            out.append(f"graph {kind}s differ: {_short(shown_a)} recorded, {_short(shown_b)} now")
    nodes_a, nodes_b = list(a.graph.node), list(b.graph.node)
    if [n.op_type for n in nodes_a] != [n.op_type for n in nodes_b]:
        out.append(f"graph operators: {[n.op_type for n in nodes_a]} recorded, {[n.op_type for n in nodes_b]} now")
    else:
        for index, (x, y) in enumerate(zip(nodes_a, nodes_b, strict=True)):
            where = f"node {index} ({x.op_type} {x.name or ''})".replace(" )", ")")
            if list(x.input) != list(y.input) or list(x.output) != list(y.output):
                out.append(f"{where}: wired to {list(x.input)}->{list(x.output)} recorded, "
                           f"{list(y.input)}->{list(y.output)} now")
            attrs_a = {t.name: t for t in x.attribute}
            attrs_b = {t.name: t for t in y.attribute}
            for name in sorted(set(attrs_a) | set(attrs_b)):
                if name not in attrs_a or name not in attrs_b:
                    out.append(f"{where}: attribute {name} only {'recorded' if name in attrs_a else 'now'}")
                elif attrs_a[name] != attrs_b[name]:
                    out.append(f"{where}: attribute {name} {_attribute_gap(attrs_a[name], attrs_b[name])}")
    inits_a = {t.name: numpy_helper.to_array(t) for t in a.graph.initializer}
    inits_b = {t.name: numpy_helper.to_array(t) for t in b.graph.initializer}
    for name in sorted(set(inits_a) | set(inits_b)):
        if name not in inits_a or name not in inits_b:
            out.append(f"initializer {name} only {'recorded' if name in inits_a else 'now'}")
            continue
        x, y = inits_a[name], inits_b[name]
        if x.dtype != y.dtype or x.shape != y.shape:
            out.append(f"initializer {name}: {x.dtype}{list(x.shape)} recorded, {y.dtype}{list(y.shape)} now")
        elif not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
            out.append(f"initializer {name}: {_array_gap(x, y)}")
    if not out and recorded != reproduced:
        out.append("every field compared is equal; the serialized bytes differ in field order only")
    return out[:limit] + ([f"... and {len(out) - limit} more"] if len(out) > limit else [])


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _attribute_gap(x: Any, y: Any) -> str:
    from onnx import helper

    left, right = helper.get_attribute_value(x), helper.get_attribute_value(y)
    if hasattr(left, "dims"):
        from onnx import numpy_helper

        left, right = numpy_helper.to_array(left), numpy_helper.to_array(right)
    try:
        first, second = np.asarray(left, dtype=np.float64), np.asarray(right, dtype=np.float64)
    except (TypeError, ValueError):
        return f"{_short(left)} recorded, {_short(right)} now"
    if first.shape != second.shape:
        return f"{first.size} values recorded, {second.size} now"
    return _array_gap(first, second)


def _array_gap(x: np.ndarray, y: np.ndarray) -> str:
    if x.dtype.kind not in "fiub" or y.dtype.kind not in "fiub":
        return f"{_short(x.tolist())} recorded, {_short(y.tolist())} now"
    gap = np.abs(x.astype(np.float64) - y.astype(np.float64))
    changed = int(np.count_nonzero(gap > 0))
    return f"{changed} of {x.size} values differ, largest by {float(np.nanmax(gap)):.3g}"


def compare_predictions(recorded: bytes, reproduced: bytes, X: np.ndarray) -> dict[str, Any] | None:
    """Both models on the same rows: the largest probability gap and the decisions that differ at the
    threshold. None when either model cannot be loaded for scoring."""
    from mlops.serving.scoring import ScoringModel

    try:
        old, new = ScoringModel(recorded), ScoringModel(reproduced)
    except Exception:  # noqa: BLE001 - the field comparison above already says what differs
        return None
    _, p_old = old.predict_matrix(X)
    _, p_new = new.predict_matrix(X)
    return {"rows": int(X.shape[0]),
            "max_abs_probability_difference": float(np.max(np.abs(p_old - p_new), initial=0.0)),
            "decisions_differing": int(np.count_nonzero(old.decide(p_old) != new.decide(p_new)))}
