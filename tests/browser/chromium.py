"""Headless Chromium (from the OS packages) driven over the DevTools protocol on a pipe: open a local page, record
every network request, console message, log entry and uncaught exception, and take a full-page screenshot.

No test tool downloads a browser here: the binary is the one `apt-get install chromium` puts on the PATH. The
DevTools protocol runs over `--remote-debugging-pipe` (file descriptors 3 and 4, NUL-separated JSON), so no port is
opened. Every host name resolves to nothing and every request goes to a closed local proxy, so even a page that
tried could not reach the network; the recorded requests show whether it tried.
"""

from __future__ import annotations

import base64
import itertools
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--no-default-browser-check", "--disable-sync", "--disable-extensions", "--hide-scrollbars",
    "--mute-audio", "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
    "--remote-debugging-pipe",
)
CANDIDATES = ("chromium", "chromium-browser")


def find_chromium() -> str | None:
    """The OS package's Chromium binary: $MLOPS_CHROMIUM, else `chromium` or `chromium-browser` on the PATH."""
    explicit = os.environ.get("MLOPS_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


@dataclass
class PageVisit:
    """What happened while a page loaded: requests (URLs), console messages and log entries as (level, text),
    uncaught exceptions, the DOM after load, the content size in CSS pixels, and the screenshot (PNG bytes)."""

    url: str
    requests: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    dom: str = ""
    size: tuple[int, int] = (0, 0)
    screenshot: bytes = b""

    @property
    def problems(self) -> list[str]:
        """Everything that makes a self-contained page fail: a request for anything but the page itself or a
        data: URL, any console message or log entry (a CSP violation is one), any exception."""
        out = [f"request: {u}" for u in self.requests if u != self.url and not u.startswith("data:")]
        out += [f"console {level}: {text}" for level, text in self.console]
        return out + [f"exception: {e}" for e in self.exceptions]


class BrowserError(RuntimeError):
    """Chromium did not start or did not answer within the time limit."""


class Chromium:
    """One headless Chromium process; `visit` opens pages one after another in fresh tabs."""

    def __init__(self, binary: str, timeout: float = 30.0, loopback: bool = False) -> None:
        """`loopback`: let pages load from http://127.0.0.1 (a local server, e.g. the console); everything else
        still resolves to nothing and goes to the closed proxy."""
        self.timeout = timeout
        flags = [f for f in FLAGS if not (loopback and f.startswith("--proxy-bypass-list"))]
        if loopback:
            flags = [f"{f}, EXCLUDE 127.0.0.1" if f.startswith("--host-resolver-rules") else f for f in flags]
        self._profile = tempfile.TemporaryDirectory(prefix="mlops-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def attach_pipes() -> None:  # the browser reads commands on fd 3 and writes answers on fd 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self._log = Path(self._profile.name) / "chromium.log"
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [binary, *flags, f"--user-data-dir={self._profile.name}/profile", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(3, 4),
                preexec_fn=attach_pipes)  # single-threaded test process: preexec_fn is safe here
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._ids = itertools.count(1)
        self._buffer = b""
        self._events: list[dict[str, Any]] = []

    def close(self) -> None:
        try:
            self._send("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def visit(self, page: Path | str, width: int = 1280) -> PageVisit:
        """Open `page` (a local file, or a URL) in a new tab at `width` CSS pixels, wait for its load event, and
        record what happened (see PageVisit), with a screenshot of the whole page at its full height."""
        url = page if isinstance(page, str) else page.resolve().as_uri()
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Log", "Runtime", "Page"):
            self._send(f"{domain}.enable", session=session)
        self._send("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        self._events.clear()
        self._send("Page.navigate", {"url": url}, session=session)
        self._wait_for("Page.loadEventFired", session)
        visit = PageVisit(url=url)
        metrics = self._send("Page.getLayoutMetrics", session=session)
        content = metrics.get("cssContentSize") or metrics["contentSize"]
        visit.size = (int(content["width"]), int(content["height"]))
        self._send("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": visit.size[1], "deviceScaleFactor": 1, "mobile": False},
                   session=session)
        shot = self._send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                          session=session)
        visit.screenshot = base64.b64decode(shot["data"])
        visit.dom = self._send("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                                    "returnByValue": True}, session=session)["result"]["value"]
        for event in self._events:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params") or {}
            if method == "Network.requestWillBeSent":
                visit.requests.append(params["request"]["url"])
            elif method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                visit.console.append((params.get("type", "log"), text))
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                visit.console.append((f"{entry.get('source')}/{entry.get('level')}", entry.get("text", "")))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                visit.exceptions.append(str(details.get("exception", {}).get("description") or details.get("text")))
        self._send("Target.closeTarget", {"targetId": target})
        return visit

    def _send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, orjson.dumps(message) + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == ident:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._events.append(reply)

    def _wait_for(self, method: str, session: str) -> None:
        if any(e.get("method") == method and e.get("sessionId") == session for e in self._events):
            return
        while True:
            event = self._read()
            self._events.append(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, remaining))
            if not ready:
                raise BrowserError(f"Chromium did not answer within {self.timeout:.0f} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                error = self._log.read_text(errors="replace")[-2000:] if self._log.exists() else ""
                raise BrowserError(f"Chromium exited (code {self._process.poll()}): {error}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return orjson.loads(message)
