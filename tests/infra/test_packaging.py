"""Lambda packaging without Docker: size limits, stable asset hashes, complete layers that import on 3.12."""

from __future__ import annotations

import json
import re
import subprocess
from email.parser import Parser
from pathlib import Path

import pytest

from infra.layers import ROOT, build_layer, directory_size, find_lambda_python

from .conftest import cdk_context, synthesize

LAMBDA_LIMIT = 250 * 1024 * 1024
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}


def _asset_dir(synth, resource) -> Path:
    props = resource["Properties"]
    key = (props.get("Code") or props.get("Content"))["S3Key"]
    return synth.outdir / f"asset.{key.removesuffix('.zip')}"


def function_sizes(synth) -> dict[str, dict[str, int]]:
    resources = synth.template["Resources"]
    sizes = {}
    for logical, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function" or "BucketNotificationsHandler" in logical:
            continue
        code = directory_size(_asset_dir(synth, resource))
        layers = sum(directory_size(_asset_dir(synth, resources[ref["Ref"]]))
                     for ref in resource["Properties"].get("Layers", []))
        service = resource["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
        sizes[service] = {"code": code, "layers": layers, "total": code + layers}
    return sizes


def test_every_function_with_its_layers_fits_lambdas_250_mib_limit(synthesized):
    sizes = function_sizes(synthesized)
    report = {name: round(s["total"] / 2**20, 1) for name, s in sorted(sizes.items())}
    print("unzipped MiB per function:", json.dumps(report))
    assert len(sizes) == 11  # nine platform functions, the shared scoring tier, the seed dedicated family
    for name, size in sizes.items():
        assert size["total"] <= LAMBDA_LIMIT, f"{name}: {size['total'] / 2**20:.1f} MiB"
    assert sizes["mlops-train"]["total"] > sizes["mlops-score-credit-risk"]["total"]
    assert abs(sizes["mlops-score-shared"]["total"] - sizes["mlops-score-credit-risk"]["total"]) < 2**20, \
        "the shared function carries the dedicated ones' layers"


def test_no_function_carries_both_onnxruntime_and_scikit_learn(synthesized):
    resources = synthesized.template["Resources"]
    for logical, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function" or "BucketNotificationsHandler" in logical:
            continue
        packages = set()
        for ref in resource["Properties"].get("Layers", []):
            python = _asset_dir(synthesized, resources[ref["Ref"]]) / "python"
            packages |= {p.name for p in python.iterdir()}
        assert not {"onnxruntime", "sklearn"} <= packages, logical


def test_asset_hashes_are_stable_across_synths(synthesized, tmp_path):
    again = synthesize(tmp_path / "again", cdk_context())
    assert set(again.manifest["files"]) == set(synthesized.manifest["files"])


def test_layer_rebuilt_from_scratch_has_the_same_asset_hash(monkeypatch, tmp_path, synthesized):
    import infra.layers as layers

    requirements = ROOT / "layers" / "base" / "requirements.txt"
    cached = build_layer(requirements, "x86_64")
    monkeypatch.setattr(layers, "CACHE", tmp_path / "fresh-cache")
    fresh = build_layer(requirements, "x86_64")
    assert fresh != cached
    assert _tree_digest(fresh / "python") == _tree_digest(cached / "python")


def _tree_digest(root: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _requires(dist_info: Path) -> list[str]:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    environment = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.0",
                   "sys_platform": "linux", "platform_system": "Linux", "extra": ""}
    metadata = Parser().parsestr((dist_info / "METADATA").read_text(errors="replace"))
    names = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            names.append(requirement.name)
    return names


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("layer", ["scoring", "training", "reports"])
def test_layers_are_complete_closures_of_their_dependencies(layer):
    installed = set()
    dist_infos = []
    for name in ("base", layer):
        site = build_layer(ROOT / "layers" / name / "requirements.txt", "x86_64") / "python"
        for dist_info in site.glob("*.dist-info"):
            installed.add(_normalise(dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0]))
            dist_infos.append(dist_info)
    missing = {f"{d.name} needs {r}" for d in dist_infos for r in _requires(d)
               if _normalise(r) not in installed and _normalise(r) not in RUNTIME_PROVIDED}
    assert missing == set()


@pytest.fixture(scope="module")
def python312():
    python = find_lambda_python()
    if python is None:
        pytest.skip("no CPython 3.12 on this machine to import the layers as the Lambda runtime would")
    return python


def _run_on_312(python, layers, code):
    sdk = build_layer(ROOT / "infra" / "lambda_runtime_sdk.txt", "x86_64") / "python"
    paths = [str(ROOT / "layers" / "common" / "python"),
             *(str(build_layer(ROOT / "layers" / n / "requirements.txt", "x86_64") / "python") for n in layers),
             str(sdk)]
    result = subprocess.run([python, "-S", "-c", code], capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": ":".join(paths), "PATH": "/usr/bin:/bin",
                                 "PYTHONDONTWRITEBYTECODE": "1"}, cwd="/")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_scoring_function_imports_and_scores_with_only_its_layers_on_312(python312):
    out = _run_on_312(python312, ["base", "scoring"], """
import sys, runpy
sys.path.insert(0, '%s')
import handler  # the real scoring handler module
import numpy as np, onnxruntime
from mlops.serving.scoring import ScoringModel
assert 'sklearn' not in sys.modules and 'scipy' not in sys.modules
print('ok', onnxruntime.__version__, np.__version__)
""" % (ROOT / "functions" / "score"))
    assert out.startswith("ok 1.32.0 2.4.6")


def test_training_function_trains_and_converts_with_only_its_layers_on_312(python312):
    out = _run_on_312(python312, ["base", "training"], """
import sys
sys.path.insert(0, '%s')
import handler
from mlops.data import synthetic
from mlops.training import fit
from mlops.data.datasets import parse_csv
for algorithm in ('logistic_regression', 'random_forest', 'hist_gradient_boosting'):
    family = synthetic.credit_risk_family(algorithm=algorithm, hyperparameters={'n_estimators': 10}
                                          if algorithm == 'random_forest' else {})
    data = parse_csv(synthetic.credit_risk_csv(600, 1), family)
    model = fit.train(family, data.X, data.y)
    assert len(model.onnx_bytes) > 500
assert 'onnxruntime' not in sys.modules
print('ok')
""" % (ROOT / "functions" / "train"))
    assert out.strip() == "ok"


def test_layers_ship_bytecode_for_the_lambda_runtime(python312):
    site = build_layer(ROOT / "layers" / "scoring" / "requirements.txt", "x86_64") / "python"
    assert list(site.glob("numpy/__pycache__/__init__.cpython-312.pyc"))
    assert not list(site.glob("**/__pycache__/*.cpython-311.pyc"))


def test_arm64_context_switch_builds_for_graviton(tmp_path):
    context = cdk_context()
    context["mlops"] = {**context["mlops"], "architecture": "arm64"}
    context["aws:cdk:bundling-stacks"] = []  # template only: the arm64 wheels are not downloaded here
    synth = synthesize(tmp_path, context)
    for resource in synth.template["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function" and "Architectures" in resource["Properties"]:
            assert resource["Properties"]["Architectures"] == ["arm64"]
        if resource["Type"] == "AWS::Lambda::LayerVersion":
            assert resource["Properties"]["CompatibleArchitectures"] == ["arm64"]
