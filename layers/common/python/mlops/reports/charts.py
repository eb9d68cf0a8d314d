"""Charts for the reports: pygal rendered to inline SVG with no script, no comment and no external reference.

pygal writes an SVG document with its stylesheet inline; by default it also adds a `<script>` (its config for the
tooltip script) and a reference to that script on a CDN. Every chart here is rendered with `js=[]` and a filter
that removes the remaining inline script and pygal's dated comments, so a page is self-contained, passes a
`default-src 'none'` Content Security Policy and is byte-for-byte reproducible. Values are shown by `<title>`
elements (the browser's own tooltip, no script) and printed next to bars where they fit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pygal
from markupsafe import Markup
from pygal.style import Style

FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Liberation Sans", sans-serif'
INK = "#0f172a"
MUTED = "#64748b"
GRID = "#e2e8f0"
BASELINE = "#94a3b8"  # training / baseline / reference
CURRENT = "#2563eb"  # the model, the current traffic
ALERT = "#dc2626"  # drifted, failed
ACCENT = "#f59e0b"  # the operating point, the threshold
PASS = "#16a34a"

_ID = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Series:
    """One plotted series: a name for the legend, its values, and how to draw it.

    values: for bar charts one number (or None) per label; for XY charts (x, y) pairs, None to break the line."""

    name: str
    values: Sequence[Any]
    color: str = CURRENT
    dashed: bool = False
    width: float = 2.0
    dots: bool = False
    dot_size: float = 3.0
    fill: bool = False
    line: bool = True  # False: points only (markers)


def chart_id(*parts: Any) -> str:
    """A deterministic id for a chart (its CSS scope): lower-case letters, digits and dashes from `parts`."""
    text = "-".join(str(p) for p in parts).lower()
    return "chart-" + (_ID.sub("-", text).strip("-") or "x")


def _style(colors: Sequence[str]) -> Style:
    return Style(
        background="transparent", plot_background="#ffffff", foreground=INK, foreground_strong=INK,
        foreground_subtle=MUTED, font_family=FONT, label_font_size=11, major_label_font_size=11,
        value_font_size=10, value_label_font_size=10, legend_font_size=12, title_font_size=13,
        tooltip_font_size=12, no_data_font_size=16, guide_stroke_color=GRID, major_guide_stroke_color="#cbd5e1",
        guide_stroke_dasharray="0", major_guide_stroke_dasharray="0", opacity="0.85", opacity_hover="0.95",
        stroke_opacity="1", stroke_opacity_hover="1", stroke_width="2", stroke_width_hover="2",
        transition="0ms", colors=tuple(colors),
    )


def _sanitize(label: str):  # type: ignore[no-untyped-def]
    """An xml filter: drop <script> elements and comments, name the chart for assistive technology."""

    def apply(root):  # type: ignore[no-untyped-def]
        for parent in list(root.iter()):
            for child in list(parent):
                tag = child.tag if isinstance(child.tag, str) else ""
                if not tag or tag.rsplit("}", 1)[-1] == "script":
                    parent.remove(child)
        for child in root:
            if isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] == "title":
                child.text = label
                break
        root.set("role", "img")
        root.set("aria-label", label)
        return root

    return apply


def _base(kind: type, cid: str, label: str, series: Sequence[Series], *, width: int, height: int,
          **config: Any) -> Any:
    settings: dict[str, Any] = {
        "js": [], "disable_xml_declaration": True, "explicit_size": False, "width": width, "height": height,
        "style": _style([s.color for s in series]), "legend_at_bottom": True, "legend_box_size": 10,
        "margin": 8, "spacing": 8, "show_x_guides": False, "show_y_guides": True, "truncate_legend": -1,
        "truncate_label": -1, "no_data_text": "no data", "print_zeroes": False,
    }
    settings.update(config)
    chart = kind(**settings)
    chart.uuid = cid.removeprefix("chart-")
    chart.add_xml_filter(_sanitize(label))
    for s in series:
        stroke: dict[str, Any] = {"width": s.width}
        if s.dashed:
            stroke["dasharray"] = "6,4"
        chart.add(s.name, list(s.values), stroke_style=stroke, show_dots=s.dots or not s.line, dots_size=s.dot_size,
                  fill=s.fill, stroke=s.line)
    return chart


def _svg(chart: Any) -> Markup:
    return Markup(chart.render(is_unicode=True))  # noqa: S704  pygal escapes every text node it writes


def xy_chart(cid: str, label: str, series: Sequence[Series], *, x_title: str, y_title: str,
             x_range: tuple[float, float] = (0.0, 1.0), y_range: tuple[float, float] = (0.0, 1.0),
             ticks: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0), width: int = 460, height: int = 380,
             show_legend: bool = True) -> Markup:
    """Lines and points on numeric axes (ROC, calibration): (x, y) pairs per series; returns an <svg> element."""
    chart = _base(pygal.XY, cid, label, series, width=width, height=height, x_title=x_title, y_title=y_title,
                  xrange=x_range, range=y_range, x_labels=list(ticks), y_labels=list(ticks),
                  show_x_guides=True, show_legend=show_legend, value_formatter=_number,
                  x_value_formatter=_number, allow_interruptions=True)
    return _svg(chart)


def bar_chart(cid: str, label: str, labels: Sequence[str], series: Sequence[Series], *, y_title: str = "",
              percent: bool = False, width: int = 460, height: int = 300, rotate_labels: bool | None = None,
              print_values: bool = False, y_max: float | None = None) -> Markup:
    """Grouped vertical bars: one value per label per series (None leaves a gap); with `percent` the values are
    shares in [0, 1] shown as percentages. Returns an <svg> element."""
    rotate = rotate_labels if rotate_labels is not None else (len(labels) > 6 or max(map(len, labels), default=0) > 10)
    top = y_max if y_max is not None else nice_top([v for s in series for v in s.values if v is not None], percent)
    chart = _base(pygal.Bar, cid, label, series, width=width, height=height, y_title=y_title,
                  x_labels=list(labels), x_label_rotation=35 if rotate else 0, range=(0, top),
                  y_labels=ticks(top),
                  value_formatter=_percent if percent else _number, print_values=print_values,
                  print_values_position="top", show_legend=len(series) > 1)
    return _svg(chart)


def horizontal_bar_chart(cid: str, label: str, labels: Sequence[str], values: Sequence[float], *,
                         color: str = CURRENT, x_title: str = "", width: int = 460) -> Markup:
    """One horizontal bar per label, top to bottom in the order given. Returns an <svg> element."""
    height = 40 + 26 * max(1, len(labels))
    series = [Series("value", list(reversed(values)), color=color)]
    top = nice_top(list(values), False)
    chart = _base(pygal.HorizontalBar, cid, label, series, width=width, height=height, y_title=x_title,
                  x_labels=list(reversed(labels)), show_legend=False, value_formatter=_number,
                  range=(0, top), y_labels=ticks(top, 4))
    return _svg(chart)


def time_chart(cid: str, label: str, series: Sequence[Series], *, y_title: str, y_range: tuple[float, float],
               y_ticks: Sequence[float], width: int = 920, height: int = 300, value_suffix: str = "",
               x_ticks: int = 6) -> Markup:
    """Values over time: (datetime, y) pairs per series, None to break a line; about `x_ticks` time labels,
    as HH:MM (with the day when the series span a day or more). Returns an <svg> element."""
    times = [p[0] for s in series for p in s.values if p is not None]
    start, end = (min(times), max(times)) if times else (None, None)
    fmt = "%H:%M" if start is None or end - start < timedelta(hours=20) else "%d %b %H:%M"
    labels = [start + (end - start) * i / max(1, x_ticks - 1) for i in range(x_ticks)] if start else []
    chart = _base(pygal.DateTimeLine, cid, label, series, width=width, height=height, y_title=y_title,
                  range=y_range, y_labels=list(y_ticks), x_label_rotation=0, show_x_guides=True,
                  x_labels=labels, x_value_formatter=lambda d: d.strftime(fmt), allow_interruptions=True,
                  value_formatter=lambda v: f"{_number(v)}{value_suffix}")
    return _svg(chart)


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _percent(value: Any) -> str:
    if value is None:
        return ""
    scaled = round(100 * value, 1)
    return f"{scaled:.0f}%" if scaled.is_integer() or scaled >= 10 else f"{scaled:.1f}%"


def ticks(top: float, count: int = 5) -> list[float]:
    """About `count` round axis ticks from 0 to `top` (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if top <= 0:
        return [0.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [round(i * step, 12) for i in range(int(top / step + 1e-9) + 1)]


def nice_top(values: Sequence[float], percent: bool) -> float:
    """A round axis maximum a little above the largest value (never 0)."""
    top = max((float(v) for v in values if v is not None and math.isfinite(float(v))), default=0.0)
    if top <= 0:
        return 1.0
    if percent:
        return min(1.0, math.ceil(top * 1.08 * 50) / 50)
    magnitude = 10 ** math.floor(math.log10(top))
    for step in (1, 2, 2.5, 5, 10):
        if top * 1.05 <= step * magnitude:
            return step * magnitude
    return 10 * magnitude
