"""The local console at `mlops local serve`'s /console: families, versions, runs, model cards, drift reports and
rollout timelines, linked to each other. Server-rendered HTML (Jinja2, autoescaped), no script, nothing loaded from
anywhere else: the same look and Content Security Policy as the report pages, which it serves with a navigation
bar added. Everything shown comes from `views` (what the CLI prints) and `mlops.reports` (what the functions write).

Routes (GET; anything else answers 405):
  /console                                          families
  /console/families/F                               a family: traffic, versions, runs, drift checks, history
  /console/families/F/versions/N                    model card of F vN (.../card.json: its JSON)
  /console/families/F/versions/N/timeline           rollout timeline of F vN's canary
  /console/families/F/compare?a=N&b=M[&all=1]       two versions side by side
  /console/families/F/drift[/RUN]                   drift report (newest, or RUN; a failed check: its error)
  /console/runs[?family=F]                          pipeline runs
  /console/runs/RUN[?family=F]                      one run's story
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .client import NotFound, Platform

TEMPLATES = Path(__file__).with_name("templates")
PREFIX = "/console"
HTML = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
JSON = {"Content-Type": "application/json", "Cache-Control": "no-store"}
RUNS_SHOWN = 100


@lru_cache(maxsize=1)
def environment() -> Any:
    """The console's templates first, then the reports' (their base page and CSS), with the reports' filters."""
    from jinja2 import ChainableUndefined, ChoiceLoader, Environment, FileSystemLoader
    from mlops.reports import html as report_html

    from .views import metric_label

    env = Environment(loader=ChoiceLoader([FileSystemLoader(str(TEMPLATES)),
                                           FileSystemLoader(str(report_html.TEMPLATES))]),
                      autoescape=True, undefined=ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=report_html.number, pct=report_html.percent, when=report_html.when,
                       short=report_html.short_hash, p=report_html.p_value, url=lambda v: quote(str(v), safe=""),
                       metric=metric_label)
    env.globals.update(prefix=PREFIX)
    return env


def render(template: str, **context: Any) -> str:
    from mlops import __version__

    context.setdefault("generator", __version__)
    context.setdefault("generated_at", datetime.now(UTC).isoformat())
    return environment().get_template(template).render(**context)


class Console:
    """The console's pages for one platform; `handle` answers one request (status, body, headers)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def handle(self, method: str, target: str) -> tuple[int, str, dict[str, str]]:
        """Answer `method` `target` (a path with its query). Unknown names are a 404 page, failures a 500 page
        naming the error (the details go to stderr), never a traceback."""
        if method not in ("GET", "HEAD"):
            return 405, self._error(405, "Method not allowed", f"the console only reads: use GET, not {method}"), \
                {**HTML, "Allow": "GET"}
        split = urlsplit(target)
        parts = [unquote(p) for p in split.path.rstrip("/").split("/")[2:] if p]
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        try:
            return self._route(parts, query)
        except NotFound as exc:
            return 404, self._error(404, "Not found", exc.message), HTML
        except Exception as exc:  # noqa: BLE001 - a page, not a traceback; the details go to the server's log
            print(f"console: {target}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return 500, self._error(500, "The console failed", f"{type(exc).__name__}: {exc}"), HTML

    def _route(self, parts: list[str], query: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        if not parts:
            return 200, self.families_page(query), HTML
        if parts[0] == "runs" and len(parts) <= 2:
            return 200, (self.run_page(parts[1], query.get("family")) if len(parts) == 2
                         else self.runs_page(query.get("family"))), HTML
        if parts[0] == "families" and len(parts) >= 2:
            family, rest = parts[1], parts[2:]
            if not rest:
                return 200, self.family_page(family), HTML
            if rest[0] == "versions" and len(rest) >= 2 and rest[1].isdigit():
                version = int(rest[1])
                if len(rest) == 2:
                    return 200, self.model_card_page(family, version), HTML
                if rest[2:] == ["card.json"]:
                    from . import views

                    return 200, json.dumps(views.model_card_page(self.platform, family, version)[1], default=str,
                                           indent=2), JSON
                if rest[2:] == ["timeline"]:
                    return 200, self.timeline_page(family, version), HTML
            if rest == ["compare"]:
                return 200, self.compare_page(family, query), HTML
            if rest[0] == "drift" and len(rest) <= 2:
                return 200, self.drift_page(family, rest[1] if len(rest) == 2 else None), HTML
        raise NotFound(f"no console page at {PREFIX}/{'/'.join(parts)}")

    # ---- pages -----------------------------------------------------------------------------------------------

    PAGE_SIZE = 50

    def families_page(self, query: dict[str, str] | None = None) -> str:
        """One page of PAGE_SIZE families in name order (`?after=NAME` for the next), each with its last run and
        drift check: a page reads the family index once and two items per family shown, whatever the number of
        families."""
        from mlops.core.errors import ValidationError

        from . import views

        after = (query or {}).get("after") or None
        try:
            page = self.platform.registry.list_families(limit=self.PAGE_SIZE, after=after)
        except ValidationError as exc:
            raise NotFound(exc.message) from None
        rows = []
        for record in page.items:
            summary = views.family_summary(record)
            runs = self.platform.registry.list_runs(family=record.name, limit=1)
            drift = self.platform.registry.drift_records(record.name, limit=1)
            rows.append({**summary, "last_run": runs[0] if runs else None,
                         "last_drift": views.drift_summary(drift[0]) if drift else None,
                         # Only for a family never checked (one GetItem: the listing carries no declaration).
                         "captures_off": not drift and views.captures_off(
                             self.platform.registry.get_family(record.name).family)})
        following = rows[-1]["name"] if page.next_token and rows else None
        return render("console_families.html.j2", families=rows, platform=self.platform.description,
                      crumbs=[], after=after, following=following)

    def family_page(self, name: str) -> str:
        from . import views

        detail = views.family_detail(self.platform, name)
        versions = [views.version_summary(v) for v in views.versions(self.platform, name)]
        history = views.events(self.platform, name)
        canaried = {e["version"] for e in history if e["to_status"] == "canary"}
        for version in versions:
            version["had_canary"] = version["version"] in canaried
        runs = self.platform.registry.list_runs(family=name, limit=20)
        drift = views.drift_runs(self.platform, name, limit=20)
        traffic = views.traffic_at(self.platform, name)
        return render("console_family.html.j2", family=detail, versions=versions, runs=runs, drift=drift,
                      traffic=traffic, history=list(reversed(history))[:50], crumbs=[(name, None)])

    def compare_page(self, family: str, query: dict[str, str]) -> str:
        from . import views

        try:
            first, second = int(query.get("a", "")), int(query.get("b", ""))
        except ValueError:
            raise NotFound("compare needs two version numbers: ?a=N&b=M") from None
        result = views.compare(self.platform, family, first, second)
        show_all = query.get("all") == "1"
        rows = [r for r in result["rows"] if r["differs"] or show_all or r.get("basis") == "gate: same holdout"]
        notes = views.holdout_notes(result, first, second)
        return render("console_compare.html.j2", result=result, rows=rows, show_all=show_all, family=family,
                      notes=notes,
                      crumbs=[(family, f"{PREFIX}/families/{quote(family)}"), (f"v{first} vs v{second}", None)])

    def runs_page(self, family: str | None) -> str:
        from .commands.runs import run_summary

        runs = [run_summary(r) for r in self.platform.registry.list_runs(family=family, limit=RUNS_SHOWN)]
        if family and not runs:  # runs of an unregistered name (rejected uploads) are still listed
            from . import views

            views.family_record(self.platform, family)  # NotFound (404) naming the registered families
        crumbs = [(family, f"{PREFIX}/families/{quote(family)}"), ("runs", None)] if family else [("runs", None)]
        return render("console_runs.html.j2", runs=runs, family=family, crumbs=crumbs)

    def run_page(self, run_id: str, family: str | None) -> str:
        from .commands.runs import find_run, run_story

        story = run_story(self.platform, find_run(self.platform, run_id, family))
        name = story["run"]["family"]
        return render("console_run.html.j2", story=story, crumbs=[(name, f"{PREFIX}/families/{quote(name)}"),
                                                                  ("runs", f"{PREFIX}/runs?family={quote(name)}"),
                                                                  (run_id, None)])

    def model_card_page(self, family: str, version: int) -> str:
        from . import views

        html, _ = views.model_card_page(self.platform, family, version)
        return self._framed(html, family, [(f"v{version}", None)],
                            [("JSON", f"{PREFIX}/families/{quote(family)}/versions/{version}/card.json")])

    def timeline_page(self, family: str, version: int) -> str:
        from . import views

        html, _ = views.timeline_page(self.platform, family, version)
        base = f"{PREFIX}/families/{quote(family)}/versions/{version}"
        return self._framed(html, family, [(f"v{version}", base), ("rollout", None)], [("model card", base)])

    def drift_page(self, family: str, run: str | None) -> str:
        """A drift check's report page, framed. A failed check (verdict "error") has no report: its error, time
        and window on a console page (`console_drift_check`); the family's drift page (no `run`) then shows the
        newest completed check's report below it. A completed check whose stored report cannot be drawn is a page
        saying why, not a 500."""
        from . import views

        found = views.drift_run(self.platform, family, run)
        failure = found.get("failure")
        if failure is not None and run is None and failure["newest_completed"]:
            newest = views.drift_run(self.platform, family, failure["newest_completed"]["run"])
            try:
                html = views.draw_drift(self.platform, family, newest)
            except Exception as exc:  # noqa: BLE001 - the failed check alone, with a link to the newest good one
                print(f"console: drift report {newest['summary']['run']} of {family}: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)
            else:
                section = render("console_drift_failure.html.j2", d=found["summary"], failure=failure,
                                 family=family, base=f"{PREFIX}/families/{quote(family)}", newest_shown=True)
                return self._framed(html.replace("<main>", "<main>\n" + section, 1), family, [("drift", None)],
                                    self._drift_links(family, newest["report"]))
        if failure is not None:
            return render("console_drift_check.html.j2", family=family, d=found["summary"], failure=failure,
                          crumbs=[(family, f"{PREFIX}/families/{quote(family)}"), ("drift", None)])
        try:
            html = views.draw_drift(self.platform, family, found)
        except Exception as exc:  # noqa: BLE001 - a stored report the renderer cannot draw: said on the page
            print(f"console: drift report {found['summary']['run']} of {family}: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)
            return render("console_drift_check.html.j2", family=family, d=found["summary"], failure=None,
                          problem=f"{type(exc).__name__}: {exc}",
                          crumbs=[(family, f"{PREFIX}/families/{quote(family)}"), ("drift", None)])
        return self._framed(html, family, [("drift", None)], self._drift_links(family, found["report"]))

    @staticmethod
    def _drift_links(family: str, report: dict[str, Any]) -> list[tuple[str, str]]:
        live = report.get("live_version")
        return [(f"model card v{live}", f"{PREFIX}/families/{quote(family)}/versions/{live}")] if live else []

    # ---- helpers ---------------------------------------------------------------------------------------------

    def _framed(self, page: str, family: str, crumbs: list[tuple[str, str | None]],
                links: list[tuple[str, str]]) -> str:
        """A report page (a whole document) with the console's navigation bar added at the top of its body."""
        bar = render("console_bar.html.j2", crumbs=[(family, f"{PREFIX}/families/{quote(family)}"), *crumbs],
                     links=links)
        return page.replace("<body>", "<body>\n" + bar, 1)

    def _error(self, status: int, title: str, message: str) -> str:
        return render("console_error.html.j2", status=status, title=title, message=message, crumbs=[])


_consoles: dict[int, Console] = {}


def for_local(local: Any) -> Console:
    """The console of a running `LocalPlatform` (one per platform): its registry and bucket through the local
    moto endpoint with the fake credentials (no endpoint: the in-process mock)."""
    console = _consoles.get(id(local))
    current = (local.bucket, local.table, local.state_machine_arn, local.endpoint_url)
    if console is None or current != (console.platform.bucket, console.platform.registry_table,
                                      console.platform.state_machine_arn, console.platform.endpoint_url):
        import boto3

        from .client import LOCAL_REGION

        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                aws_session_token="testing", region_name=LOCAL_REGION)
        platform = Platform(description="this local server", bucket=local.bucket, registry_table=local.table,
                            state_machine_arn=local.state_machine_arn, api_url="", session=session,
                            endpoint_url=local.endpoint_url)
        for service in ("dynamodb", "s3", "stepfunctions"):  # created once here: a boto3 session is not thread-safe
            platform.client(service)
        console = _consoles[id(local)] = Console(platform)
    return console
