"""The runtime library's packages are layered (docs/architecture.md, "Runtime library"): a package imports only
from itself and from packages below it, at module level and inside functions alike. Imports used only for type
hints (under `if TYPE_CHECKING:`) are allowed upward: they create no dependency at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import mlops

LAYERS = ["core", "stats", "data", "registry", "reports", "serving", "training", "rollout", "pipeline",
          "monitoring"]
ROOT = Path(mlops.__file__).parent


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "mlops" and parts[1] in LAYERS else None


def _imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, imported module) for every runtime import in the file, resolving relative imports."""
    tree = ast.parse(path.read_text())
    package = ".".join(("mlops", *path.relative_to(root).parent.parts))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only |= {id(n) for child in node.body for n in ast.walk(child)}
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
            found += [(node.lineno, base if _package_of(base) else name) for name in names]
    return found


def test_every_module_of_the_runtime_library_belongs_to_a_layer():
    stray = [p.name for p in ROOT.glob("*.py") if p.name != "__init__.py"]
    assert stray == [], f"modules outside the packages: {stray}"
    assert sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()) == sorted(LAYERS)


def test_packages_import_only_from_themselves_and_packages_below():
    violations = []
    for path in sorted(ROOT.rglob("*.py")):
        own = _package_of(".".join(("mlops", *path.relative_to(ROOT).parts)))
        if own is None:
            continue
        for line, module in _imports(path):
            target = _package_of(module)
            if target is not None and LAYERS.index(target) > LAYERS.index(own):
                violations.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {module} ({target})")
    assert violations == [], "\n".join(violations)


def test_the_layering_check_sees_lazy_imports_and_ignores_type_only_ones(tmp_path):
    # The check itself must be able to fail: a lazy upward import inside a function is found.
    module = tmp_path / "stats" / "bad.py"
    module.parent.mkdir()
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mlops.rollout import control\n"
                      "def f():\n    from mlops.monitoring.drift import DriftMonitor\n    return DriftMonitor\n")
    assert [m for _, m in _imports(module, tmp_path)] == ["typing.TYPE_CHECKING", "mlops.monitoring.drift"]
