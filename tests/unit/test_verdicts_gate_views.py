"""What operators see of a gate's comparison with the live model and of its warnings: a comparison "not judged"
(too few holdout rows the live model had not trained on) is said so in the model card, `mlops versions show` and
`mlops runs show`, never shown as a pass; leakage warnings are printed by `mlops runs show` and `mlops upload
--follow`, one yellow line each (fresh-user pass on issues 10 and 11)."""

from __future__ import annotations

import io

from mlops.reports.model_card import model_card
from rich.console import Console
from rich.text import Text

from mlops_local.commands import tables
from mlops_local.commands.runs import print_story, warning_lines
from tests.browser import samples

LEAK = "possible target leakage: feature 'late_fee' alone separates the classes with AUC 0.9990 >= 0.98"
NOT_JUDGED = {"check": "auc_vs_live", "value": None, "threshold": 0.0, "passed": True, "status": "not_judged",
              "detail": "vs live v6: not judged: only 120 of the 900 holdout rows were not in the live model's "
                        "training data (780 excluded as seen by it); at least 200 (gate.min_comparison_rows) are "
                        "needed to compare fairly"}
COMPARISON = {"holdout_rows": 900, "compared_rows": 120, "excluded_seen_by_live": 780, "overlap": "checked",
              "min_rows": 200, "judged": False, "reason": "only 120 of the 900 holdout rows were not in the live "
                                                          "model's training data"}


def _gate() -> dict:
    gate = samples.version_record()["lineage"]["gate"]
    gate["checks"][-1] = NOT_JUDGED
    gate.update(live_comparison=COMPARISON, warnings=[LEAK], live_basis="candidate holdout",
                notes=["the comparison with live v6 was not judged: only 120 of the 900 holdout rows ..."])
    return gate


def _printed(story: dict) -> str:
    console = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    print_story(console, story)
    return console.file.getvalue()


def test_model_card_says_the_live_comparison_was_not_judged_and_why():
    record = samples.version_record()
    record["lineage"]["gate"] = _gate()
    html, _ = model_card(record)
    assert '<span class="badge warn">not judged</span>' in html
    assert "compared with live v6 : not judged (only 120 of the 900 holdout rows" in " ".join(html.split())
    assert "alone separates the classes with AUC 0.9990" in html


def test_versions_and_runs_show_give_not_judged_instead_of_pass():
    assert Text.from_markup(tables.check_verdict(NOT_JUDGED)).plain == "not judged"
    assert Text.from_markup(tables.check_verdict({"passed": False})).plain == "FAIL"
    story = {"run": {"run_id": "r-1", "family": "credit-risk", "outcome": "promoted", "version": 7,
                     "detail": {"warnings": [LEAK]}},
             "states": [], "version": {"version": 7, "status": "live", "status_reason": "promoted",
                                       "training": None, "gate": _gate()}}
    text = _printed(story)
    assert "not judged" in text and "note: the comparison with live v6 was not judged" in text
    assert text.count(f"warning: {LEAK}") == 1  # in the run record and the gate: printed once


def test_leakage_warnings_are_yellow_lines_from_the_run_record_or_the_gate():
    run = {"detail": {"warnings": [LEAK]}}
    assert warning_lines(run) == [f"[yellow]warning: {tables.escape(LEAK)}[/]"]
    assert warning_lines({}, {"warnings": ["[x] leak"]}) == ["[yellow]warning: \\[x] leak[/]"]
    assert warning_lines({}) == []
