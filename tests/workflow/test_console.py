"""The local console (`mlops local serve`'s /console) on the session's platform: its pages link to each other and
to the reports, unknown names answer a 404 page, and in a real headless browser every page loads with no request
beyond itself, no console message and no exception.

The browser part is skipped when no Chromium binary is installed, unless MLOPS_REQUIRE_BROWSER=1 (CI). The
screenshots in docs/screenshots/console-*.png come from `python -m tests.workflow.console_pages`."""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from mlops_local.serve import bind_front
from tests.browser.chromium import Chromium, find_chromium

from .console_pages import PAGES, page_paths
from .operator_story import shared_story

pytestmark = pytest.mark.xdist_group("operator-story")
REQUIRED = os.environ.get("MLOPS_REQUIRE_BROWSER") == "1"


@pytest.fixture()
def story(platform):
    return shared_story(platform)


@pytest.fixture(scope="module")
def base_url(platform) -> Iterator[str]:
    httpd = bind_front(platform, 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def get(url: str, method: str = "GET") -> tuple[int, str, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def links(html: str) -> set[str]:
    return {href.replace("&amp;", "&") for href in re.findall(r'href="([^"]+)"', html)}


def test_console_pages_link_families_versions_runs_cards_drift_and_timelines(platform, story, base_url):
    name = story["name"]
    family = f"/console/families/{name}"
    status, kind, home = get(f"{base_url}/console")
    assert (status, kind) == (200, "text/html; charset=utf-8") and family in links(home)

    status, _, page = get(f"{base_url}{family}")
    assert status == 200
    drift_runs = [r["at"] for r in platform.registry.drift_records(name)]
    runs = [r["run_id"] for r in platform.registry.list_runs(family=name)]
    expected = {f"{family}/versions/{v}" for v in (1, 2, 3)} | {f"{family}/versions/2/timeline"} | \
        {f"{family}/drift/{quote(at, safe='')}" for at in drift_runs} | \
        {f"/console/runs/{run}?family={name}" for run in runs}
    assert expected <= links(page), expected - links(page)
    assert f"{family}/versions/1/timeline" not in links(page), "v1 went live without a canary"
    assert 'action="' + family + '/compare"' in page

    for path, heading in ((f"{family}/versions/2", "Model card"), (f"{family}/versions/2/timeline", "Rollout timeline"),
                          (f"{family}/drift", "Drift report"), (f"{family}/compare?a=1&b=2", "What differs"),
                          (f"/console/runs/{runs[0]}?family={name}", "Execution"), ("/console/runs", "All runs")):
        status, _, html = get(base_url + path)
        assert status == 200 and heading in html, path
        assert 'class="console-bar"' in html and f'href="{family}"' in html or path == "/console/runs", path
    status, kind, card = get(f"{base_url}{family}/versions/2/card.json")
    assert (status, kind) == (200, "application/json")
    assert json.loads(card)["model_details"]["model_id"] == f"{name}/v2"


def test_console_answers_unknown_names_with_a_404_page_and_refuses_writes(story, base_url):
    name = story["name"]
    for path, message in (("/console/families/no-such-family", "unknown model family &#39;no-such-family&#39;"),
                          (f"/console/families/{name}/versions/42", "has no version 42"),
                          (f"/console/families/{name}/versions/1/timeline", "had no canary rollout"),
                          (f"/console/families/{name}/drift/1999", "no drift run"),
                          (f"/console/families/{name}/compare?a=1", "compare needs two version numbers"),
                          ("/console/runs/no-such-run", "no run"), ("/console/nowhere", "no console page")):
        status, kind, html = get(base_url + path)
        assert (status, kind) == (404, "text/html; charset=utf-8") and message in html, (path, html[-600:])
        assert "Traceback" not in html
    status, _, html = get(f"{base_url}/console/families/{name}", method="POST")
    assert status == 405 and "the console only reads" in html
    status, _, _ = get(f"{base_url}/models/{name}/nothing")
    assert status == 404, "the scoring routes are unchanged"


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    binary = find_chromium()
    if binary is None:
        message = "no chromium binary on the PATH (apt-get install chromium, or set MLOPS_CHROMIUM)"
        if REQUIRED:
            pytest.fail(f"MLOPS_REQUIRE_BROWSER=1 but {message}")
        pytest.skip(message)
    with Chromium(binary, loopback=True) as chromium:
        yield chromium


@pytest.mark.parametrize("page", list(PAGES))
def test_console_page_loads_in_a_real_browser_without_errors_or_outside_requests(platform, story, base_url, browser,
                                                                                 page):
    url = base_url + page_paths(platform, story["name"])[page]

    visit = browser.visit(url)

    assert visit.problems == [], f"{page} logs errors or loads something"
    assert visit.requests == [url]
    for heading in PAGES[page]:
        assert heading in visit.dom, f"{page} lacks {heading!r}"
    assert visit.size[1] >= 900 and len(visit.screenshot) > 30_000


def test_browser_reaches_the_console_on_loopback_and_nothing_else(browser, tmp_path):
    # The control: with loopback allowed, an outside host still resolves to nothing.
    page = tmp_path / "outside.html"
    page.write_text('<!doctype html><html><body><img src="https://example.invalid/x.png"></body></html>')
    visit = browser.visit(page)
    assert "https://example.invalid/x.png" in visit.requests and visit.problems
