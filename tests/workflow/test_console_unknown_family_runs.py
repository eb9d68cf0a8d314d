"""/console/runs?family=NAME answers 404 naming the registered families when NAME is unknown and has no runs."""

from __future__ import annotations

from mlops_local.console import for_local


def test_runs_page_of_an_unknown_family_is_a_404_with_a_message(platform, new_family):
    family = new_family()
    status, page, _ = for_local(platform).handle("GET", "/console/runs?family=nope")
    assert status == 404
    assert "unknown model family &#39;nope&#39;" in page or "unknown model family 'nope'" in page
    assert family.name in page


def test_runs_page_of_a_registered_family_without_runs_is_an_empty_list(platform, new_family):
    family = new_family()
    status, page, _ = for_local(platform).handle("GET", f"/console/runs?family={family.name}")
    assert status == 200 and "No runs yet." in page
