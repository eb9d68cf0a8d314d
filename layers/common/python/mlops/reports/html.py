"""The Jinja2 environment of the reports (autoescape on, strict undefined) and the formatting filters they share."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, FileSystemLoader, Undefined

from mlops import __version__
from mlops.core.errors import ValidationError

TEMPLATES = Path(__file__).with_name("templates")


def number(value: Any, digits: int = 4) -> str:
    """A figure for people: integers with thousands separators, floats with `digits` significant digits (fixed
    notation down to 1e-4, scientific below), '-' for None or NaN."""
    if isinstance(value, Undefined):
        value = None
    if value is None or isinstance(value, str):
        return "\u2013" if value is None else value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):  # a per-class figure (a multiclass prior): each value in turn
        return ", ".join(number(v, digits) for v in value)
    if isinstance(value, int):
        return f"{value:,}"
    value = float(value)
    if not math.isfinite(value):
        return "\u2013"
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) < 1e-4:
        mantissa, exponent = f"{value:.{max(1, digits - 1)}e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value)))))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def percent(value: Any, decimals: int = 1) -> str:
    """A share in [0, 1] as a percentage, '-' for None or NaN."""
    if isinstance(value, Undefined):
        value = None
    if value is None or isinstance(value, str):
        return "\u2013" if value is None else value
    value = float(value)
    return "\u2013" if not math.isfinite(value) else f"{100 * value:.{decimals}f}%"


def p_value(value: Any) -> str:
    """A p-value for people: '< 1e-16' below what a double resolves near 1 - p, else 2 significant digits."""
    if isinstance(value, Undefined) or value is None:
        return "\u2013"
    value = float(value)
    if not math.isfinite(value):
        return "\u2013"
    return "< 1e-16" if value < 1e-16 else number(value, 2)


def parse_time(value: Any) -> datetime | None:
    """A timestamp from ISO-8601 text (with Z or an offset; naive is UTC), epoch seconds, or a datetime; None when
    it is missing or unreadable."""
    if isinstance(value, Undefined) or value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC) if math.isfinite(value) else None
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when(value: Any) -> str:
    """A timestamp as 'YYYY-MM-DD HH:MM:SS UTC'; the text itself when it cannot be read, '-' when missing."""
    parsed = parse_time(value)
    if parsed is None:
        return "\u2013" if isinstance(value, Undefined) or value in (None, "") else str(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short_hash(value: Any, length: int = 12) -> str:
    text = "" if value is None or isinstance(value, Undefined) else str(value)
    return text[:length] + "\u2026" if len(text) > length else text or "\u2013"


@lru_cache(maxsize=1)
def environment() -> Environment:
    """Templates from the package directory; every value is HTML-escaped unless marked safe (the charts). A field
    absent from a record (an older version's lineage) renders as missing, never as an error."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=ChainableUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(num=number, pct=percent, when=when, short=short_hash, p=p_value)
    return env


def render(template: str, **context: Any) -> str:
    """Render one template of the package with the shared context (generator version, generation time)."""
    context.setdefault("generator", __version__)
    context.setdefault("generated_at", datetime.now(UTC).isoformat())
    return environment().get_template(template).render(**context)


def require_mapping(value: Any, what: str) -> dict[str, Any]:
    """`value` as a dict (a dataclass or pydantic model is converted); raises ValidationError naming `what`
    otherwise."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    elif hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        value = asdict(value)
    if not isinstance(value, dict):
        raise ValidationError(f"{what} must be a JSON object (dict), got {type(value).__name__}")
    return value


def records(value: Any, what: str) -> list[dict[str, Any]]:
    """A list of dicts (dataclasses converted); None is an empty list. Raises ValidationError otherwise."""
    if value is None:
        return []
    if isinstance(value, dict | str | bytes) or not hasattr(value, "__iter__"):
        raise ValidationError(f"{what} must be a list of JSON objects, got {type(value).__name__}")
    return [require_mapping(item, f"each item of {what}") for item in value]
