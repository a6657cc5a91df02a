"""Small inline-SVG charts (no JavaScript, no external assets).

Every function returns one ``<svg>`` element as a string; all text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

FONT = "font-family=\"system-ui,'DejaVu Sans',sans-serif\""
AXIS = "#8a94a6"
GRID = "#e6e9ef"
TEXT = "#1f2933"


@dataclass(frozen=True)
class Bar:
    """One bar: label, value, colour, and an optional note printed after the value."""

    label: str
    value: float
    color: str
    note: str = ""


@dataclass(frozen=True)
class Series:
    """One series of a grouped or stacked chart."""

    name: str
    color: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Marker:
    """A vertical reference line on a horizontal bar chart (e.g. a threshold)."""

    value: float
    label: str
    color: str


def _fmt(value: float, unit: str = "") -> str:
    if unit == "%":
        pct = value * 100
        return f"{pct:.0f}%" if abs(pct - round(pct)) < 0.05 else f"{pct:.1f}%"
    if value == 0:
        return f"0{unit}"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}{unit}"
    if abs(value) >= 1:
        return f"{value:.1f}{unit}"
    return f"{value:.3f}{unit}"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _count_axis_top(value: float) -> float:
    """Top of a count axis with four integer ticks (4, 8, 12, 20, 40, ...)."""
    step = max(1.0, math.ceil(_nice_max(value / 4))) if value > 0 else 1.0
    return 4 * step


def empty(message: str, width: int = 520, height: int = 80) -> str:
    """A placeholder saying why there is no chart."""
    return (
        f'<svg class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {FONT}>'
        f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{AXIS}" '
        f'font-size="13">{escape(message)}</text></svg>'
    )


def hbars(
    bars: Sequence[Bar],
    *,
    title: str,
    unit: str = "",
    max_value: float | None = None,
    markers: Sequence[Marker] = (),
    width: int = 520,
    label_width: int = 190,
) -> str:
    """Horizontal bars with value labels and optional threshold markers."""
    if not bars:
        return empty(f"{title}: no data yet", width)
    row, top = 26, 8
    height = top + row * len(bars) + (22 if markers else 8)
    plot = width - label_width - 70
    hi = max([b.value for b in bars] + [m.value for m in markers] + [max_value or 0])
    hi = max_value if max_value is not None else _nice_max(hi)
    scale = plot / hi if hi > 0 else 0.0
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" {FONT} font-size="12">',
        f"<title>{escape(title)}</title>",
    ]
    max_chars = max(4, int((label_width - 10) / 6.6))
    for i, b in enumerate(bars):
        y = top + i * row
        w = max(0.0, b.value) * scale
        shown = b.label if len(b.label) <= max_chars else b.label[: max_chars - 1] + "\u2026"
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end" fill="{TEXT}">'
            f"<title>{escape(b.label)}</title>{escape(shown)}</text>"
            f'<rect x="{label_width}" y="{y + 3}" width="{w:.1f}" height="17" rx="2" '
            f'fill="{b.color}"><title>{escape(b.label)}: {escape(_fmt(b.value, unit))}</title>'
            f"</rect>"
            f'<text x="{label_width + w + 5:.1f}" y="{y + 15}" fill="{TEXT}">'
            f"{escape(_fmt(b.value, unit))}{escape(b.note)}</text>"
        )
    bottom = top + row * len(bars)
    for m in markers:
        x = label_width + m.value * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="{m.color}" '
            f'stroke-width="2" stroke-dasharray="4 3"/>'
            f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" fill="{m.color}" '
            f'font-size="11">{escape(m.label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def grouped_columns(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "",
    width: int = 520,
    height: int = 230,
    notes: Sequence[str] | None = None,
    min_top: float = 0.0,
) -> str:
    """Vertical grouped columns, one group per category, one column per series.

    ``min_top`` is the smallest top of the value axis (so all-zero data still reads as 0).
    """
    if not categories:
        return empty(f"{title}: no data yet", width)
    left, right, top, bottom = 48, 10, 36, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for v in s.values if v is not None]
    hi = _nice_max(max([*values, min_top]))
    group_w = plot_w / len(categories)
    col_w = min(28.0, (group_w - 12) / max(1, len(series)))
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" {FONT} font-size="11">',
        f"<title>{escape(title)}</title>",
    ]
    for k in range(5):
        v = hi * k / 4
        y = top + plot_h - plot_h * k / 4
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end" fill="{AXIS}">'
            f"{escape(_fmt(v, unit))}</text>"
        )
    lx = left
    for s in series:  # legend
        parts.append(
            f'<rect x="{lx}" y="6" width="10" height="10" fill="{s.color}"/>'
            f'<text x="{lx + 14}" y="15" fill="{TEXT}">{escape(s.name)}</text>'
        )
        lx += 24 + 7 * len(s.name)
    for i, cat in enumerate(categories):
        gx = left + i * group_w + (group_w - col_w * len(series)) / 2
        for j, s in enumerate(series):
            val = s.values[i]
            x = gx + j * col_w
            if val is None:
                parts.append(
                    f'<text x="{x + col_w / 2:.1f}" y="{top + plot_h - 4}" text-anchor="middle" '
                    f'fill="{AXIS}">\u2013</text>'
                )
                continue
            h = max(1.0, plot_h * max(0.0, val) / hi) if hi else 1.0
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{col_w - 2:.1f}" '
                f'height="{h:.1f}" fill="{s.color}"><title>{escape(cat)} / {escape(s.name)}: '
                f"{escape(_fmt(val, unit))}</title></rect>"
                f'<text x="{x + col_w / 2:.1f}" y="{top + plot_h - h - 3:.1f}" '
                f'text-anchor="middle" fill="{TEXT}" font-size="9">'
                f"{escape(_fmt(val, unit))}</text>"
            )
        cx = left + (i + 0.5) * group_w
        parts.append(
            f'<text x="{cx:.1f}" y="{top + plot_h + 15}" text-anchor="middle" fill="{TEXT}">'
            f"{escape(cat)}</text>"
        )
        if notes and notes[i]:
            parts.append(
                f'<text x="{cx:.1f}" y="{top + plot_h + 29}" text-anchor="middle" '
                f'fill="{AXIS}" font-size="10">{escape(notes[i])}</text>'
            )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        f'stroke="{AXIS}"/></svg>'
    )
    return "".join(parts)


def stacked_timeline(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    rate: Sequence[float | None] | None = None,
    rate_name: str = "",
    rate_color: str = "#d64545",
    width: int = 1060,
    height: int = 230,
) -> str:
    """Stacked columns over time, with an optional 0-100 % rate line on a second axis."""
    totals = [sum((s.values[i] or 0) for s in series) for i in range(len(labels))]
    if not labels or not any(totals):
        return empty(f"{title}: no finished jobs in the window", width)
    left, right, top, bottom = 44, 48, 26, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    hi = _count_axis_top(max(totals))
    col = plot_w / len(labels)
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" {FONT} font-size="11">',
        f"<title>{escape(title)}</title>",
    ]
    for k in range(5):
        y = top + plot_h - plot_h * k / 4
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end" fill="{AXIS}">'
            f"{escape(_fmt(hi * k / 4))}</text>"
        )
        if rate is not None:
            parts.append(
                f'<text x="{width - right + 5}" y="{y + 4:.1f}" fill="{rate_color}">'
                f"{25 * k}%</text>"
            )
    lx = left
    legend = [(s.name, s.color) for s in series] + ([(rate_name, rate_color)] if rate else [])
    for name, color in legend:
        parts.append(
            f'<rect x="{lx}" y="6" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 14}" y="15" fill="{TEXT}">{escape(name)}</text>'
        )
        lx += 24 + 7 * len(name)
    for i in range(len(labels)):
        y = top + plot_h
        for s in series:
            v = s.values[i] or 0
            if not v:
                continue
            h = plot_h * v / hi
            y -= h
            parts.append(
                f'<rect x="{left + i * col + 2:.1f}" y="{y:.1f}" width="{col - 4:.1f}" '
                f'height="{h:.1f}" fill="{s.color}"><title>{escape(labels[i])} '
                f"{escape(s.name)}: {v:g}</title></rect>"
            )
    for i in range(0, len(labels), max(1, len(labels) // 6)):
        parts.append(
            f'<text x="{left + (i + 0.5) * col:.1f}" y="{top + plot_h + 16}" '
            f'text-anchor="middle" fill="{AXIS}">{escape(labels[i])}</text>'
        )
    if rate is not None:
        points = [
            f"{left + (i + 0.5) * col:.1f},{top + plot_h - plot_h * r:.1f}"
            for i, r in enumerate(rate)
            if r is not None
        ]
        if points:
            parts.append(
                f'<polyline points="{" ".join(points)}" fill="none" stroke="{rate_color}" '
                f'stroke-width="2"/>'
            )
            for pt in points:
                px, py = pt.split(",")
                parts.append(f'<circle cx="{px}" cy="{py}" r="3" fill="{rate_color}"/>')
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        f'stroke="{AXIS}"/></svg>'
    )
    return "".join(parts)
