"""The report pages the browser test opens, rendered from the sample inputs, and the screenshots kept in docs/.

`python -m tests.browser.report_pages [DIR]` renders the pages, opens each in headless Chromium, fails on any
console message or network request, and writes the full-page screenshots to DIR (default docs/screenshots/).
"""

from __future__ import annotations

import sys
from pathlib import Path

from mlops.reports.drift_report import render_drift_report
from mlops.reports.model_card import model_card
from mlops.reports.timeline import render_rollout_timeline

from tests.browser import samples

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
GENERATED_AT = "2026-11-29T12:00:00Z"
# Page name -> the headings each must show once loaded (the DOM after load is checked for them).
PAGES = {
    "model-card": ("Model card", "Performance on the holdout", "Fairness by group", "Gate decision", "Lineage",
                   "Status history"),
    "drift-report": ("Drift report", "Drift statistics", "Distributions: training vs current", "Predicted probability"),
    "rollout-timeline": ("Rollout timeline", "Traffic weight and canary checks", "Canary checks", "Status events"),
    "rollout-timeline-rolled-back": ("Rollout timeline", "rolled back", "roll back"),
}


def render_pages(directory: Path) -> dict[str, Path]:
    """Write every sample page into `directory`; returns page name -> file."""
    directory.mkdir(parents=True, exist_ok=True)
    report, profile, histograms = samples.drift_inputs()
    html = {
        "model-card": model_card(samples.version_record(), samples.status_history(), samples.family(),
                                 generated_at=GENERATED_AT)[0],
        "drift-report": render_drift_report(report, profile, histograms, samples.family(), generated_at=GENERATED_AT),
        "rollout-timeline": render_rollout_timeline(samples.rollout(), generated_at=GENERATED_AT),
        "rollout-timeline-rolled-back": render_rollout_timeline(samples.rollout(rolled_back=True),
                                                                generated_at=GENERATED_AT),
    }
    paths = {}
    for name, text in html.items():
        paths[name] = directory / f"{name}.html"
        paths[name].write_text(text, encoding="utf-8")
    return paths


def main(argv: list[str]) -> int:
    from tests.browser.chromium import Chromium, find_chromium

    out = Path(argv[0]) if argv else SCREENSHOTS
    binary = find_chromium()
    if binary is None:
        print("no chromium binary: apt-get install chromium", file=sys.stderr)
        return 2
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, Chromium(binary) as browser:
        for name, page in render_pages(Path(tmp)).items():
            visit = browser.visit(page)
            if visit.problems:
                print(f"{name}: {visit.problems}", file=sys.stderr)
                return 1
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{name}.png").write_bytes(visit.screenshot)
            print(f"{out / f'{name}.png'}: {visit.size[0]}x{visit.size[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
