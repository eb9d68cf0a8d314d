"""The HTML reports in a real headless browser: each page loads with no console message, no exception and no
request beyond its own file, shows its sections, and renders to a full-page screenshot.

Skipped when no Chromium binary is installed, unless MLOPS_REQUIRE_BROWSER=1 (CI sets it): then a missing
browser fails. With MLOPS_UPDATE_SCREENSHOTS=1 the screenshots are also written to docs/screenshots/.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.chromium import Chromium, find_chromium
from tests.browser.report_pages import PAGES, SCREENSHOTS, render_pages

REQUIRED = os.environ.get("MLOPS_REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    binary = find_chromium()
    if binary is None:
        message = "no chromium binary on the PATH (apt-get install chromium, or set MLOPS_CHROMIUM)"
        if REQUIRED:
            pytest.fail(f"MLOPS_REQUIRE_BROWSER=1 but {message}")
        pytest.skip(message)
    with Chromium(binary) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return render_pages(tmp_path_factory.mktemp("reports"))


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("name", list(PAGES))
def test_report_page_loads_offline_without_errors_and_shows_its_sections(browser: Chromium, pages: dict[str, Path],
                                                                          name: str) -> None:
    visit = browser.visit(pages[name])

    assert visit.problems == [], f"{name} is not self-contained or logs errors"
    assert visit.requests == [visit.url]
    for heading in PAGES[name]:
        assert heading in visit.dom, f"{name} lacks {heading!r} after load"
    assert visit.dom.count("<svg") >= 2, f"{name}: the charts did not render"
    width, height = png_size(visit.screenshot)
    assert (width, height) == visit.size and height > 900, "the screenshot is not the whole page"
    # A blank or unstyled page compresses to a few KB; these pages carry charts and tables.
    assert len(visit.screenshot) > 60_000
    if os.environ.get("MLOPS_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / f"{name}.png").write_bytes(visit.screenshot)


def test_browser_check_reports_a_page_that_reaches_out(browser: Chromium, tmp_path: Path) -> None:
    # The check must be able to fail: a page with an external image and an inline script is caught, even with
    # the reports' Content Security Policy blocking both.
    page = tmp_path / "leaky.html"
    page.write_text(
        "<!doctype html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\"></head><body><img src=\"https://reports.invalid/x.png\">"
        "<script>console.error('boom')</script></body></html>", encoding="utf-8")

    visit = browser.visit(page)

    assert "https://reports.invalid/x.png" in visit.requests
    assert any("Content Security Policy" in text for _, text in visit.console)
    assert len(visit.problems) >= 2


def test_browser_check_reports_console_errors_and_exceptions(browser: Chromium, tmp_path: Path) -> None:
    page = tmp_path / "noisy.html"
    page.write_text("<!doctype html><html><body><script>console.error('boom'); undefinedFunction();</script>"
                    "</body></html>", encoding="utf-8")

    visit = browser.visit(page)

    assert ("error", "boom") in visit.console
    assert any("undefinedFunction" in e for e in visit.exceptions)
