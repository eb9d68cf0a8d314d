"""Reports for people: model cards, drift reports and rollout timelines as self-contained HTML, plus JSON.

Pure functions from the plain dicts the platform already stores (a version record with its lineage, a drift
report with the baseline profile, status events and canary checks) to HTML strings, so they run in a Lambda
function and locally alike. docs/reports.md describes each page, its inputs and the bundle size cost.

- `curves.curve_data(y, p, threshold)`: numpy only, called by the Evaluate step (ROC, calibration, confusion).
- `model_card.model_card(version, history, family)` -> (HTML, model-card JSON).
- `drift_report.render_drift_report(report, profile, histograms, family)` -> HTML;
  `drift_report.current_histograms(...)` bins current traffic like the baseline for it.
- `timeline.render_rollout_timeline(rollout)` -> HTML; `timeline.rollout_from_execution(history)`.

Only `curves` is imported here: the rendering modules need Jinja2 and pygal, which a function that only computes
curve data (the Evaluate step) does not carry.
"""

from .curves import curve_data

__all__ = ["curve_data"]
