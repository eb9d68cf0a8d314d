"""What the operator commands share to print for people: a rich console, tables, figures, times, statuses, and a
progress spinner for long operations (on stderr, so `--json` output stays clean)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

STATUS_STYLE = {"live": "bold green", "canary": "cyan", "candidate": "blue", "retired": "dim",
                "rejected": "red", "rolled_back": "yellow"}
VERDICT_STYLE = {"drift": "bold red", "no_drift": "green", "insufficient_data": "yellow", "not_checked": "dim",
                 "error": "bold red"}


def console(stderr: bool = False) -> Any:
    """Rich output for people; piped into a file or another program, lines are not cut at 80 columns."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=None if stream.isatty() else 200)


def table(title: str | None, columns: Sequence[str | tuple[str, dict[str, Any]]]) -> Any:
    """A rich table with these columns (a name, or (name, column options))."""
    from rich.table import Table

    out = Table(title=title, title_justify="left", expand=False)
    for column in columns:
        name, options = (column, {}) if isinstance(column, str) else column
        out.add_column(name, **{"overflow": "fold", **options})
    return out


def when(value: Any) -> str:
    """A registry time ('2026-03-01T12:00:00.000000Z') as 'YYYY-MM-DD HH:MM:SS'; '-' when missing."""
    if not value:
        return "-"
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return parsed.strftime("%Y-%m-%d %H:%M:%S")


def figure(value: Any, digits: int = 4) -> str:
    """A number for a table: floats with `digits` significant digits, '-' for None."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def status(value: Any) -> str:
    style = STATUS_STYLE.get(str(value), "")
    return f"[{style}]{value}[/]" if style else str(value)


def verdict(value: Any) -> str:
    style = VERDICT_STYLE.get(str(value), "")
    return f"[{style}]{value}[/]" if style else str(value)


def passed(value: Any) -> str:
    return "-" if value is None else ("[green]pass[/]" if value else "[red]FAIL[/]")


def check_verdict(check: dict[str, Any]) -> str:
    """A gate check's verdict: pass/FAIL, or why it was not decided (insufficient data, not judged)."""
    status = check.get("status")
    if status == "not_judged":
        return "[yellow]not judged[/]"
    if status == "insufficient_data":
        return "[yellow]insufficient data[/]"
    return passed(check.get("passed"))


def truncate(text: Any, limit: int = 120) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def escape(text: Any) -> str:
    """Text from a record printed literally (a '[' in a reason is not rich markup)."""
    from rich.markup import escape as rich_escape

    return rich_escape("" if text is None else str(text))


@contextmanager
def progress(enabled: bool, message: str) -> Iterator[Any]:
    """A spinner on stderr while a long operation runs; yields `update(text)`. Silent when not enabled (JSON)."""
    if not enabled:
        yield lambda _text: None
        return
    with console(stderr=True).status(message) as spinner:
        yield lambda text: spinner.update(f"{message}: {text}")
