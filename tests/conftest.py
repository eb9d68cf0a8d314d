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
