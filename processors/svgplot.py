"""Time-series charts as inline SVG text: no script, stylesheet, font or URL, so a saved page is complete.

Only what the report needs: lines over UTC time, a shaded band between two lines, dashed horizontal
reference lines, axes with round ticks and a legend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")

Point = tuple[int, float]  # (ms since the epoch, value)


@dataclass(frozen=True)
class Line:
    label: str
    color: str
    points: Sequence[Point]
    dashed: bool = False


@dataclass(frozen=True)
class Band:
    label: str
    color: str
    lower: Sequence[Point]
    upper: Sequence[Point]  # same x values as `lower`


@dataclass(frozen=True)
class HLine:
    label: str
    color: str
    y: float


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    lines: Sequence[Line] = ()
    bands: Sequence[Band] = ()
    hlines: Sequence[HLine] = ()
    x_range: tuple[int, int] | None = None
    width: int = 880
    height: int = 300
    css_class: str = field(default="chart")


_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 20, 30, 60


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def _time_ticks(lo: int, hi: int, count: int = 6) -> list[int]:
    span_s = max((hi - lo) / 1000, 1)
    steps = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)
    step = next((s for s in steps if span_s / s <= count), steps[-1]) * 1000
    first = -(-lo // step) * step
    return list(range(first, hi + 1, step))


def _time_label(ms: int, span_ms: int) -> str:
    t = datetime.fromtimestamp(ms / 1000, UTC)
    return t.strftime("%m-%d %H:%M") if span_ms > 86_400_000 else t.strftime("%H:%M")


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"


def render(chart: Chart) -> str:
    """The chart as one `<svg>` element."""
    xs = [p[0] for ln in chart.lines for p in ln.points] + [p[0] for b in chart.bands for p in b.lower]
    ys = [p[1] for ln in chart.lines for p in ln.points]
    ys += [p[1] for b in chart.bands for p in (*b.lower, *b.upper)] + [h.y for h in chart.hlines]
    x0, x1 = chart.x_range or ((min(xs), max(xs)) if xs else (0, 1))
    if x1 <= x0:
        x1 = x0 + 1
    y_ticks = nice_ticks(0.0, max(ys, default=1.0) or 1.0)
    y1 = y_ticks[-1]
    w, h = chart.width, chart.height
    pw, ph = w - _LEFT - _RIGHT, h - _TOP - _BOTTOM

    def sx(x: float) -> float:
        return _LEFT + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return _TOP + ph - (y / y1) * ph

    def path(points: Sequence[Point]) -> str:
        return " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(points))

    out = [
        f'<svg class="{escape(chart.css_class)}" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="{escape(chart.title)}">',
        f'<text x="{_LEFT}" y="18" class="title">{escape(chart.title)}</text>',
    ]
    for t in y_ticks:
        out.append(f'<line x1="{_LEFT}" x2="{w - _RIGHT}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" class="grid"/>')
        out.append(f'<text x="{_LEFT - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t in _time_ticks(x0, x1):
        out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{_TOP}" y2="{_TOP + ph}" class="grid"/>')
        label = _time_label(t, x1 - x0)
        out.append(f'<text x="{sx(t):.1f}" y="{_TOP + ph + 16}" text-anchor="middle">{label}</text>')
    out.append(f'<text x="14" y="{_TOP + ph / 2:.0f}" transform="rotate(-90 14 {_TOP + ph / 2:.0f})" '
               f'text-anchor="middle">{escape(chart.unit)}</text>')  # fmt: skip
    for b in chart.bands:
        if b.lower:
            ring = [*b.upper, *reversed(b.lower)]
            out.append(f'<path d="{path(ring)} Z" fill="{b.color}" fill-opacity="0.18" stroke="none"/>')
    for hl in chart.hlines:
        out.append(
            f'<line x1="{_LEFT}" x2="{w - _RIGHT}" y1="{sy(hl.y):.1f}" y2="{sy(hl.y):.1f}" stroke="{hl.color}" '
            'stroke-dasharray="6 4" stroke-width="1.5"/>'
        )
    for ln in chart.lines:
        if ln.points:
            dash = ' stroke-dasharray="2 3"' if ln.dashed else ""
            out.append(f'<path d="{path(ln.points)}" fill="none" stroke="{ln.color}" stroke-width="1.6"{dash}/>')
    out.append(f'<rect x="{_LEFT}" y="{_TOP}" width="{pw}" height="{ph}" class="frame"/>')
    entries = [(ln.label, ln.color, "line") for ln in chart.lines]
    entries += [(b.label, b.color, "band") for b in chart.bands] + [(hl.label, hl.color, "ref") for hl in chart.hlines]
    x, y = _LEFT, h - 18
    for label, color, kind in entries:
        if kind == "band":
            mark = f'<rect x="{x}" y="{y - 8}" width="18" height="10" fill="{color}" fill-opacity="0.3"/>'
        else:
            dash = ' stroke-dasharray="6 4"' if kind == "ref" else ""
            mark = f'<line x1="{x}" x2="{x + 18}" y1="{y - 3}" y2="{y - 3}" stroke="{color}" stroke-width="2"{dash}/>'
        out.append(f'{mark}<text x="{x + 22}" y="{y + 1}">{escape(label)}</text>')
        x += 30 + 7 * len(label)
        if x > w - 120:
            x, y = _LEFT, y + 14
    out.append("</svg>")
    return "\n".join(out)
