"""`gwtel report --html`: the report as one self-contained page (inline CSS and SVG, nothing fetched).

Charts: bandwidth per partner over time for each direction with each partner's 95th percentile as a dashed
line, and per partner the handshake RTT p50/p95/p99 band over time with its latency objectives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from processors.asymmetry import ASYM_HEAD, ASYM_NOTE, PAIR_HEAD, asymmetry_rows, one_direction_line, pair_rows
from processors.forecast import FORECAST_HEAD, FORECAST_NOTE, forecast_rows
from processors.link_counters import COUNTERS_HEAD, COUNTERS_NOTE, counter_rows
from processors.queries import (
    DIRECTIONS,
    FIVE_MIN_S,
    BandwidthPoint,
    LatencyQuantiles,
    bandwidth_series,
    handshake_rtt,
)
from processors.report import (
    BUDGET_HEAD,
    CLASS_HEAD,
    LINK_HEAD,
    LINKS_NOTE,
    NOTES,
    RTT_HEAD,
    TRAFFIC_HEAD,
    ReportData,
    budget_note,
    budget_rows,
    class_rows,
    link_rows,
    rtt_rows,
    traffic_rows,
)
from processors.svgplot import PALETTE, Band, Chart, HLine, Line, render

MAX_POINTS = 240  # per line: enough to see a day at 5-minute resolution, small enough to keep the page light


@dataclass(frozen=True)
class Series:
    step_s: int
    bandwidth: Sequence[BandwidthPoint]
    rtt: Sequence[LatencyQuantiles]  # whole handshake per partner and step


def plot_step(start_ms: int, end_ms: int, window_s: int) -> int:
    """A step of whole windows giving at most MAX_POINTS points; whole 5 minutes once above 5 minutes."""
    span_s = max((end_ms - start_ms) / 1000, window_s)
    step = window_s * math.ceil(span_s / MAX_POINTS / window_s)
    return step if step < FIVE_MIN_S else FIVE_MIN_S * math.ceil(step / FIVE_MIN_S)


def collect_series(client: Any, db: str, data: ReportData) -> Series:
    step = plot_step(data.start_ms, data.end_ms, data.window_s)
    bw = bandwidth_series(client, db, data.start_ms, data.end_ms, step, data.window_s)
    rtt = handshake_rtt(client, db, data.start_ms, data.end_ms, step_s=step)
    return Series(step, bw, rtt)


def _colors(names: Sequence[str]) -> dict[str, str]:
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(sorted(names))}


def bandwidth_charts(data: ReportData, series: Series) -> list[Chart]:
    partners = sorted({p.partner for p in series.bandwidth} | {t.partner for t in data.traffic})
    color = _colors(partners)
    p95 = {(r.partner, r.direction): r.bps for r in data.p95}
    charts = []
    for direction in DIRECTIONS:
        lines = []
        for p in partners:
            pts = [
                (b.start_ms, b.avg_bps / 1e9) for b in series.bandwidth if b.partner == p and b.direction == direction
            ]
            if pts:
                lines.append(Line(p, color[p], pts))
        refs = [HLine(f"{p} 95th", color[p], p95[(p, direction)] / 1e9) for p in partners if (p, direction) in p95]
        charts.append(
            Chart(
                f"{direction.capitalize()} bandwidth per partner ({series.step_s} s averages; dashed: 95th percentile)",
                "Gb/s",
                lines=lines,
                hlines=refs,
                x_range=(data.start_ms, data.end_ms),
            )
        )
    return charts


def latency_charts(data: ReportData, series: Series, objectives: Mapping[str, Mapping[str, float]]) -> list[Chart]:
    charts = []
    for p in sorted({r.key[0] for r in series.rtt}):
        rows = [r for r in series.rtt if r.key[0] == p]
        pts = [(r.start_ms or 0) + series.step_s * 500 for r in rows]  # at the middle of each step
        band = Band("p50 to p99", PALETTE[0], [(x, r.p50_us / 1000) for x, r in zip(pts, rows, strict=True)],
                    [(x, r.p99_us / 1000) for x, r in zip(pts, rows, strict=True)])  # fmt: skip
        lines = [
            Line("p50", PALETTE[0], [(x, r.p50_us / 1000) for x, r in zip(pts, rows, strict=True)]),
            Line("p95", PALETTE[1], [(x, r.p95_us / 1000) for x, r in zip(pts, rows, strict=True)]),
            Line("p99", PALETTE[3], [(x, r.p99_us / 1000) for x, r in zip(pts, rows, strict=True)], dashed=True),
        ]
        refs = [
            HLine(f"{cls} p95 objective", PALETTE[(i + 4) % len(PALETTE)], ms)
            for i, (cls, ms) in enumerate(sorted(objectives.get(p, {}).items()))
        ]
        title = f"{p}: TCP handshake RTT, both legs ({series.step_s} s steps)"
        charts.append(Chart(title, "ms", lines=lines, bands=[band], hlines=refs, x_range=(data.start_ms, data.end_ms)))
    return charts


_CSS = """
body { font-family: sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 20px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
th:last-child, td:last-child { text-align: left; }
td.missed { color: #b00; font-weight: bold; }
svg { display: block; margin: 10px 0 24px; font-size: 11px; }
svg .title { font-size: 13px; font-weight: bold; }
svg .grid { stroke: #e4e4e4; }
svg .frame { fill: none; stroke: #999; }
p.note { font-size: 12px; color: #555; max-width: 900px; }
"""


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        cells = "".join(
            f'<td class="missed">{escape(c)}</td>' if "MISSED" in c or "REACHED" in c else f"<td>{escape(c)}</td>"
            for c in r
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def forecast_asymmetry_html(data: ReportData) -> list[str]:
    """The capacity forecast and asymmetric routing sections, the same rows as the text report."""
    return [
        "<h2>Capacity forecast</h2>",
        f'<p class="note">{escape(FORECAST_NOTE)}</p>',
        _html_table(FORECAST_HEAD, forecast_rows(data.forecast)),
        "<h2>Asymmetric routing</h2>",
        f'<p class="note">{escape(ASYM_NOTE)}</p>',
        _html_table(ASYM_HEAD, asymmetry_rows(data.asymmetry)),
        _html_table(PAIR_HEAD, pair_rows(data.link_pairs)),
        f'<p class="note">{escape(one_direction_line(data.link_pairs) or "No link carries one direction only.")}</p>',
    ]


def counters_html(data: ReportData) -> list[str]:
    """The interface counters against the flows, when the range holds sFlow counter samples."""
    if not data.counters:
        return []
    return [
        "<h2>Interface counters against the flows</h2>",
        f'<p class="note">{escape(COUNTERS_NOTE)}</p>',
        _html_table(COUNTERS_HEAD, counter_rows(data.counters)),
    ]


def render_html(data: ReportData, series: Series, objectives: Mapping[str, Mapping[str, float]]) -> str:
    charts = [*bandwidth_charts(data, series), *latency_charts(data, series, objectives)]
    title = f"Gateway telemetry: partners, {_utc(data.start_ms)} to {_utc(data.end_ms)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        "<h2>Bandwidth</h2>",
        _html_table(TRAFFIC_HEAD, traffic_rows(data)),
        "<h2>Handshake RTT and latency objectives</h2>",
        _html_table(RTT_HEAD, rtt_rows(data)),
        "<h2>Application classes</h2>",
        _html_table(CLASS_HEAD, class_rows(data)),
        "<h2>Error budget</h2>",
        f'<p class="note">{escape(budget_note(data.budget_days))}</p>',
        _html_table(BUDGET_HEAD, budget_rows(data)),
        "<h2>Links: capture agents and router exports</h2>",
        f'<p class="note">{escape(LINKS_NOTE)}</p>',
        _html_table(LINK_HEAD, link_rows(data)),
        *counters_html(data),
        *forecast_asymmetry_html(data),
        "<h2>Top remote countries</h2>",
        _html_table(
            ("partner", "country", "GB", "flows"),
            [
                (p, c.name or "?", f"{c.bytes / 1e9:.3f}", str(c.flows))
                for p, top in data.countries.items()
                for c in top
            ],
        ),
        *(f'<p class="note">{escape(n.format(window_s=data.window_s))}</p>' for n in NOTES),
        "<h2>Charts</h2>",
        *(render(c) for c in charts),
        "</body></html>",
    ]
    return "\n".join(parts)
