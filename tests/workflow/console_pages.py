"""The console pages the browser test opens, and the screenshots kept in docs/screenshots/console-*.png.

`python -m tests.workflow.console_pages [DIR]` starts a local platform of its own (the served credit-risk family
with its seed model, and the operator story's loan-default family), serves the console, opens the main pages in
headless Chromium, fails on any console message or request, and writes the screenshots to DIR (default
docs/screenshots/).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
# Page -> the headings it must show once loaded.
PAGES = {
    "console-families": ("MLOps console", "Model families", "Last drift check"),
    "console-family": ("Traffic now", "Versions", "Pipeline runs", "Drift checks", "Status history", "Declaration"),
    "console-model-card": ("MLOps console", "Model card", "Performance on the holdout", "Gate decision"),
    "console-compare": ("Comparison", "What differs", "balanced_accuracy"),
    "console-run": ("Pipeline run", "Execution", "CanaryStepUp", "Gate check"),
    "console-rollout": ("MLOps console", "Rollout timeline", "Canary checks"),
    "console-drift": ("MLOps console", "Drift report", "Drift statistics"),
    "console-runs": ("All runs", "promoted", "gated out"),
}
SCREENSHOT_PAGES = ("console-families", "console-family", "console-model-card", "console-compare", "console-run")


def page_paths(platform: Any, family: str) -> dict[str, str]:
    """Page name -> path on the front, for the story's family on `platform`."""
    base = f"/console/families/{family}"
    canaried = next(r for r in platform.registry.list_runs(family=family) if r.get("version") == 2)
    return {"console-families": "/console", "console-family": base, "console-model-card": f"{base}/versions/2",
            "console-compare": f"{base}/compare?a=1&b=2",
            "console-run": f"/console/runs/{canaried['run_id']}?family={family}",
            "console-rollout": f"{base}/versions/2/timeline", "console-drift": f"{base}/drift",
            "console-runs": "/console/runs"}


def main(argv: list[str]) -> int:
    from mlops.data import synthetic

    from mlops_local.runtime import LocalPlatform
    from mlops_local.serve import BUILTIN_FAMILY, bind_front, serve_family
    from tests.browser.chromium import Chromium, find_chromium
    from tests.workflow.operator_story import STORY_FAMILY, build_story

    out = Path(argv[0]) if argv else SCREENSHOTS
    binary = find_chromium()
    if binary is None:
        print("no chromium binary: apt-get install chromium", file=sys.stderr)
        return 2
    platform = LocalPlatform([serve_family()]).start()
    try:
        platform.upload_dataset(BUILTIN_FAMILY, "seed.csv", synthetic.credit_risk_csv(5000, 21))
        platform.drain_executions(timeout=120)
        build_story(platform, STORY_FAMILY)
        httpd = bind_front(platform, 0)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        with Chromium(binary, loopback=True) as browser:
            for name, path in page_paths(platform, STORY_FAMILY).items():
                visit = browser.visit(base + path)
                missing = [h for h in PAGES[name] if h not in visit.dom]
                if visit.problems or missing:
                    print(f"{name}: {visit.problems} missing {missing}", file=sys.stderr)
                    return 1
                if name in SCREENSHOT_PAGES:
                    out.mkdir(parents=True, exist_ok=True)
                    (out / f"{name}.png").write_bytes(visit.screenshot)
                    print(f"{out / f'{name}.png'}: {visit.size[0]}x{visit.size[1]}")
        httpd.shutdown()
    finally:
        platform.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
