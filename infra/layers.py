"""Lambda layers built at synth without Docker: pip with Lambda's platform tags, cached, deterministic.

- pip `--platform manylinux_2_28_<arch> --platform manylinux2014_<arch> --python-version 3.12 --only-binary`:
  both tags are needed (onnxruntime ships only 2_28 wheels for cp312; with 2_28 alone pydantic_core and
  numpy/scipy resolve to other builds). `--no-deps` with a complete pinned closure keeps the content exact.
- Bytecode: compiled by a CPython 3.12 interpreter when one is found (Lambda's /opt is read-only, so modules
  without .pyc are recompiled on every cold start), as unchecked-hash .pyc so bytes do not depend on mtimes.
- Cache: `.build/layers/<sha256 of inputs>`; a warm synth copies, it never runs pip. `__pycache__` of the
  source tree and tests/ directories of packages are excluded.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".build" / "layers"
LAMBDA_PYTHON = "3.12"
BUILDER_VERSION = "4"  # bump to invalidate caches when the build recipe changes
PRUNE_DIRS = ("tests", "test", "__pycache__")
ASSET_EXCLUDE = ["**/__pycache__", "**/*.pyc", "**/.pytest_cache"]


def pip_platforms(architecture: str) -> list[str]:
    machine = "aarch64" if architecture == "arm64" else "x86_64"
    return [f"manylinux_2_28_{machine}", f"manylinux2014_{machine}"]


def find_lambda_python() -> str | None:
    """A CPython 3.12 to compile bytecode for the Lambda runtime, if this machine has one."""
    candidates = [shutil.which(f"python{LAMBDA_PYTHON}")]
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{LAMBDA_PYTHON}.*/bin/python{LAMBDA_PYTHON}"), reverse=True)
    for candidate in candidates:
        if not candidate:
            continue
        try:
            out = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == LAMBDA_PYTHON:
            return candidate
    return None


def layer_key(requirements: Path, architecture: str) -> str:
    compiler = "pyc" if find_lambda_python() else "nopyc"
    digest = hashlib.sha256()
    for part in (BUILDER_VERSION, LAMBDA_PYTHON, architecture, compiler, requirements.read_text()):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:24]


def build_layer(requirements: Path, architecture: str) -> Path:
    """The built layer directory (containing python/), from cache when possible."""
    target = CACHE / f"{requirements.parent.name}-{architecture}-{layer_key(requirements, architecture)}"
    if (target / ".complete").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    # Several processes (test workers, a parallel synth) may want the same layer: one builds, the others wait.
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target
        return _build(requirements, architecture, target)


def _build(requirements: Path, architecture: str, target: Path) -> Path:
    staging = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    site = staging / "python"
    site.mkdir(parents=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--no-compile", "--only-binary=:all:", "--implementation", "cp", "--python-version", LAMBDA_PYTHON,
               "--target", str(site), "-r", str(requirements)]
    for platform in pip_platforms(architecture):
        command += ["--platform", platform]
    env = {**os.environ, "PIP_CONSTRAINT": ""}  # the host's constraints are for the host, not for Lambda
    subprocess.run(command, check=True, env=env)
    for pattern in PRUNE_DIRS:
        for path in sorted(site.glob(f"*/**/{pattern}"), reverse=True):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
    python = find_lambda_python()
    if python:
        # Reproducible bytecode: paths as Lambda mounts layers (/opt/python), fixed hash seed, content hashes.
        subprocess.run([python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                        "-s", str(site), "-p", "/opt/python", str(site)],
                       check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    (staging / ".complete").write_text("ok\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != ".complete")


@jsii.implements(ILocalBundling)
class CachedPipBundling:
    """Local bundling for CDK: copy the cached build into CDK's output directory."""

    def __init__(self, requirements: Path, architecture: str) -> None:
        self.requirements = requirements
        self.architecture = architecture

    def try_bundle(self, output_dir: str, options: object = None, **kwargs: object) -> bool:
        built = build_layer(self.requirements, self.architecture)
        shutil.copytree(built / "python", Path(output_dir) / "python", dirs_exist_ok=True)
        return True


def dependency_layer(scope: Construct, construct_id: str, name: str, architecture: lambda_.Architecture,
                     description: str) -> lambda_.LayerVersion:
    """A third-party layer from layers/<name>/requirements.txt."""
    arch = "arm64" if architecture == lambda_.Architecture.ARM_64 else "x86_64"
    source = ROOT / "layers" / name
    requirements = source / "requirements.txt"
    return lambda_.LayerVersion(
        scope, construct_id,
        code=lambda_.Code.from_asset(
            str(source),
            exclude=ASSET_EXCLUDE,
            bundling=BundlingOptions(
                image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.12"),
                local=CachedPipBundling(requirements, arch),
                command=["false"],  # never used: local bundling always succeeds or raises
            ),
        ),
        compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
        compatible_architectures=[architecture],
        description=description,
    )


def runtime_library_layer(scope: Construct, construct_id: str, architecture: lambda_.Architecture
                          ) -> lambda_.LayerVersion:
    """The platform's own runtime library (layers/common/python/mlops), plain source, no build step."""
    return lambda_.LayerVersion(
        scope, construct_id,
        code=lambda_.Code.from_asset(str(ROOT / "layers" / "common"), exclude=ASSET_EXCLUDE),
        compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
        compatible_architectures=[architecture],
        description="mlops runtime library (registry, artifacts, scoring, rollout, drift)",
    )
