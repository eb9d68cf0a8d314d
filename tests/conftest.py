"""Test-wide safety: fake credentials, no real AWS endpoint reachable, the runtime library on the path."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "layers" / "common" / "python", ROOT / "src", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from mlops_local.guard import secure_local_environment  # noqa: E402

secure_local_environment()

from mlops_local.moto_shims import install_all  # noqa: E402

install_all()


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    """Two groups for the two workers (`-n 2 --dist loadgroup`): the local platform's workflow tests share one
    embedded AWS per process, so they must not interleave with tests that reset moto."""
    import pytest

    for item in items:
        workflow = "/tests/workflow/" in str(item.fspath)
        group = "workflow" if workflow else "main"
        item.add_marker(pytest.mark.xdist_group(group))
        # Workflow stories run for both serving tiers: the shared tier (every family's default) in `make test`, the
        # dedicated tier's run of the same story in `make test-slow` (CI runs both), to keep `make test` short.
        callspec = getattr(item, "callspec", None)
        if workflow and callspec is not None and callspec.params.get("tier") == "dedicated":
            item.add_marker(pytest.mark.slow)
