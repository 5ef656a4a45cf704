"""The per-partner report operators read: bandwidth each way, its 95th percentile, utilisation of the contract,
the handshake RTT users feel and each latency objective's status, for one time range.

`collect` runs the queries (processors.queries) once; `render_table` and `report_html.render_html` only
format what it returned, so the text table and the page always show the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from processors.asymmetry import (
    ASYM_HEAD,
    ASYM_NOTE,
    PAIR_HEAD,
    LinkPair,
    PartnerAsymmetry,
    asymmetry_rows,
    link_pairs,
    one_direction_line,
    pair_rows,
    per_partner,
)
from processors.forecast import FORECAST_HEAD, FORECAST_NOTE, Forecast, collect_forecasts, forecast_rows
from processors.link_counters import COUNTERS_HEAD, COUNTERS_NOTE, LinkCheck, counter_rows, link_checks
from processors.queries import (
    DIRECTIONS,
    ERROR_BUDGET_DAYS,
    FIVE_MIN_S,
    ClassTraffic,
    ErrorBudget,
    LatencyQuantiles,
    LateTraffic,
    LinkSource,
    PartnerLatency,
    PartnerTraffic,
    Percentile95,
    RemoteTotal,
    SloStatus,
    Utilisation,
    class_traffic,
    error_budget,
    handshake_rtt,
    late_traffic,
    link_sources,
    partner_latency,
    partner_traffic,
    percentile_95,
    slo_status,
    top_countries,
    utilisation,
)

TOP_COUNTRIES = 5


@dataclass(frozen=True)
class ReportData:
    start_ms: int
    end_ms: int
    window_s: int
    p95_range: tuple[int, int] | None  # the whole 5-minute slots inside the range (None: not one)
    traffic: Sequence[PartnerTraffic]
    p95: Sequence[Percentile95]
    utilisation: Sequence[Utilisation]
    rtt: Sequence[LatencyQuantiles]  # whole handshake (external + internal leg) per partner
    rtt_ext: Sequence[PartnerLatency]  # external leg per partner and direction, from merged buckets
    slo: Sequence[SloStatus]
    late: Sequence[LateTraffic]
    countries: Mapping[str, Sequence[RemoteTotal]]  # per partner, its top remote countries by bytes
    links: Sequence[LinkSource] = ()  # per link: capture agents (RTT) or router exports only
    classes: Sequence[ClassTraffic] = ()  # per partner, application class and direction
    rtt_class: Sequence[LatencyQuantiles] = ()  # whole handshake per (partner, application class)
    budget: Sequence[ErrorBudget] = ()  # per objective: 5-minute slots meeting it over the 30 days before the end
    budget_days: int = ERROR_BUDGET_DAYS  # the period the error budget covers
    forecast: Sequence[Forecast] = ()  # per partner and direction, from the complete months before now
    asymmetry: Sequence[PartnerAsymmetry] = ()  # per partner, conversations that started in the range
    link_pairs: Sequence[LinkPair] = ()
    counters: Sequence[LinkCheck] = ()  # per sFlow interface and direction: its counters beside the flows


def five_minute_slots(start_ms: int, end_ms: int) -> tuple[int, int] | None:
    """The largest range of whole 5-minute slots inside [start_ms, end_ms), or None when there is none."""
    slot = FIVE_MIN_S * 1000
    lo, hi = -(-start_ms // slot) * slot, end_ms // slot * slot
    return (lo, hi) if hi > lo else None


def collect(
    client: Any,
    db: str,
    start_ms: int,
    end_ms: int,
    window_s: int,
    *,
    capacity_bps: Mapping[str, int] | None = None,
    objectives: Mapping[str, Mapping[str, float]] | None = None,
    now_ms: int | None = None,
    budget_days: int = ERROR_BUDGET_DAYS,
) -> ReportData:
    traffic = [t for t in partner_traffic(client, db, start_ms, end_ms, window_s) if t.direction in DIRECTIONS]
    slots = five_minute_slots(start_ms, end_ms)
    p95 = percentile_95(client, db, *slots) if slots else []
    rtt = handshake_rtt(client, db, start_ms, end_ms)
    rtt_class = handshake_rtt(client, db, start_ms, end_ms, by_class=True)
    pairs = link_pairs(client, db, start_ms, end_ms)
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    return ReportData(
        start_ms=start_ms,
        end_ms=end_ms,
        window_s=window_s,
        p95_range=slots,
        traffic=traffic,
        p95=p95,
        utilisation=utilisation(traffic, p95, capacity_bps or {}),
        rtt=rtt,
        rtt_ext=partner_latency(client, db, start_ms, end_ms, window_s),
        slo=slo_status(rtt_class, objectives or {}),
        late=late_traffic(client, db, start_ms, end_ms),
        countries={
            p: top_countries(client, db, p, start_ms, end_ms, TOP_COUNTRIES)
            for p in sorted({t.partner for t in traffic})
        },
        links=link_sources(client, db, start_ms, end_ms),
        classes=[c for c in class_traffic(client, db, start_ms, end_ms, window_s) if c.direction in DIRECTIONS],
        rtt_class=rtt_class,
        budget=error_budget(client, db, end_ms, objectives or {}, days=budget_days),
        budget_days=budget_days,
        forecast=collect_forecasts(client, db, now_ms, capacity_bps or {}),
        asymmetry=per_partner(pairs),
        link_pairs=pairs,
        counters=link_checks(client, db, start_ms, end_ms),
    )


def gbps(bps: float | None) -> str:
    return "-" if bps is None else f"{bps / 1e9:.4f}"


def pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.1f}%"


def ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def slo_text(s: SloStatus) -> str:
    verdict = "no data" if s.met is None else ("met" if s.met else "MISSED")
    return f"{s.app_class}<={s.objective_ms:g}ms {verdict}"


TRAFFIC_HEAD = (
    "partner", "dir", "avg Gb/s", "peak Gb/s", "95th Gb/s", "util avg", "util peak", "util 95th", "late MB",
)  # fmt: skip
RTT_HEAD = ("partner", "flows", "RTT p50 ms", "p95", "p99", "ext p95 egr", "ext p95 ingr", "SLO (p95 objective)")


def traffic_rows(data: ReportData) -> list[tuple[str, ...]]:
    p95 = {(r.partner, r.direction): r.bps for r in data.p95}
    util = {(u.partner, u.direction): u for u in data.utilisation}
    late = {(r.partner, r.direction): r.bytes for r in data.late}
    rows: list[tuple[str, ...]] = []
    for t in data.traffic:
        u = util[(t.partner, t.direction)]
        late_mb = f"{late.get((t.partner, t.direction), 0) / 1e6:.3f}"
        rows.append(
            (t.partner, t.direction, gbps(t.avg_bps), gbps(t.peak_bps), gbps(p95.get((t.partner, t.direction))),
             pct(u.avg), pct(u.peak), pct(u.p95), late_mb)
        )  # fmt: skip
    return rows


def rtt_rows(data: ReportData) -> list[tuple[str, ...]]:
    ext = {(r.partner, r.direction): r.p95_us for r in data.rtt_ext}
    rtt = {r.key[0]: r for r in data.rtt}
    partners = sorted({t.partner for t in data.traffic} | set(rtt) | {s.partner for s in data.slo})
    rows: list[tuple[str, ...]] = []
    for p in partners:
        r = rtt.get(p)
        slos = "; ".join(slo_text(s) for s in data.slo if s.partner == p) or "-"
        rows.append(
            (p, str(r.samples if r else 0), ms(r.p50_us if r else None), ms(r.p95_us if r else None),
             ms(r.p99_us if r else None), ms(ext.get((p, "egress"))), ms(ext.get((p, "ingress"))), slos)
        )  # fmt: skip
    return rows


CLASS_HEAD = ("partner", "class", "dir", "GB", "avg Gb/s", "flows", "RTT flows", "RTT p95 ms", "SLO (p95 objective)")


def class_rows(data: ReportData) -> list[tuple[str, ...]]:
    """Per partner and application class (with traffic, measured flows or an objective), each direction's
    traffic, and the class's own handshake p95 and the verdict of its objective."""
    rtt = {(r.key[0], r.key[1]): r for r in data.rtt_class}
    slo = {(s.partner, s.app_class): s for s in data.slo}
    traffic: dict[tuple[str, str], list[ClassTraffic]] = {}
    for c in data.classes:
        traffic.setdefault((c.partner, c.app_class), []).append(c)
    rows: list[tuple[str, ...]] = []
    for key in sorted(set(traffic) | set(rtt) | set(slo)):
        r, s = rtt.get(key), slo.get(key)
        judged = (str(r.samples if r else 0), ms(r.p95_us if r else None), slo_text(s) if s else "-")
        moved = [(c.direction, f"{c.bytes / 1e9:.3f}", gbps(c.avg_bps), str(c.flows)) for c in traffic.get(key, [])]
        for m in moved or [("-", "-", "-", "-")]:
            rows.append((key[0], key[1], *m, *judged))
    return rows


BUDGET_HEAD = ("partner", "class", "objective ms", "slots measured", "slots met", "share met")


def budget_note(days: int) -> str:
    """The error budget's heading: the period it covers, shorter than 30 days when flows_raw keeps less."""
    kept = "" if days >= ERROR_BUDGET_DAYS else f" (flows_raw keeps {days}: loader.ttl_flows_raw_days)"
    return (
        f"Error budget: 5-minute slots of the {days} days{kept} before the range's end whose p95 handshake RTT (the"
        " class's own flows) met the objective, among the slots with a measured flow of the class."
    )


def budget_rows(data: ReportData) -> list[tuple[str, ...]]:
    return [
        (b.partner, b.app_class, f"{b.objective_ms:g}", str(b.slots), str(b.slots_met), pct(b.share_met))
        for b in data.budget
    ]


def country_lines(data: ReportData) -> list[str]:
    """`partner: JP 12.345 GB, ...`: each partner's top remote countries by bytes (both ways, flows_raw)."""
    out = []
    for partner, top in data.countries.items():
        if top:
            out.append(f"{partner}: " + ", ".join(f"{c.name or '?'} {c.bytes / 1e9:.3f} GB" for c in top))
    return out


LINK_HEAD = ("link", "source", "records", "from exports", "with RTT")
LINKS_NOTE = "Links (flows started in the range): RTT comes from capture agents only; router exports carry none."


def link_rows(data: ReportData) -> list[tuple[str, ...]]:
    return [(x.link_id, x.kind, str(x.records), str(x.exported), str(x.with_rtt)) for x in data.links]


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max([len(head[i]), *(len(r[i]) for r in rows)]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i in (0, 1, len(head) - 1) else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*head).rstrip(), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    lines += [fmt.format(*r).rstrip() for r in rows]
    return lines


NO_FORECAST = "Capacity forecast: no complete month with 5-minute data yet."


def forecast_asymmetry_lines(data: ReportData) -> list[str]:
    """The capacity forecast and asymmetric routing sections (processors.forecast, processors.asymmetry)."""
    lines = []
    if data.forecast:
        lines += [FORECAST_NOTE, *_table(FORECAST_HEAD, forecast_rows(data.forecast)), ""]
    else:
        lines += [NO_FORECAST, ""]
    if data.asymmetry:
        lines += [ASYM_NOTE, *_table(ASYM_HEAD, asymmetry_rows(data.asymmetry))]
        pairs = pair_rows(data.link_pairs)
        lines += ["", *_table(PAIR_HEAD, pairs)] if pairs else []
        one_way_links = one_direction_line(data.link_pairs)
        lines += [one_way_links] if one_way_links else []
        lines.append("")
    return lines


NOTES = (
    "Rates are sampling-corrected, all links together; peak = busiest {window_s} s window; 95th = 95th percentile"
    " of the 5-minute average rates (missing slots count as zero); util = rate / contracted capacity per direction.",
    "RTT = whole TCP handshake (external + internal leg) of the flows that started in the range, exact from"
    " flows_raw; ext = external leg, from merged histogram buckets. SLO: each application class's p95 objective"
    " against the p95 RTT of that class's own flows with the partner (docs/classes.md). late = bytes of flows"
    " that reached the job after their window closed (also in the rates above).",
)


def render_table(data: ReportData) -> str:
    lines = _table(TRAFFIC_HEAD, traffic_rows(data))
    lines.append("")
    lines += _table(RTT_HEAD, rtt_rows(data))
    lines.append("")
    if data.classes:
        lines += ["Per application class:", *_table(CLASS_HEAD, class_rows(data)), ""]
    if data.budget:
        lines += [budget_note(data.budget_days), *_table(BUDGET_HEAD, budget_rows(data)), ""]
    if data.links:
        lines.append(LINKS_NOTE)
        lines += [*_table(LINK_HEAD, link_rows(data)), ""]
    if data.counters:
        lines += [COUNTERS_NOTE, *_table(COUNTERS_HEAD, counter_rows(data.counters)), ""]
    lines += forecast_asymmetry_lines(data)
    countries = country_lines(data)
    if countries:
        lines += ["Top remote countries (bytes both ways, flows started in the range):", *countries, ""]
    lines += [n.format(window_s=data.window_s) for n in NOTES]
    if data.p95_range is None:
        lines.append("95th: the range holds no whole 5-minute slot.")
    return "\n".join(lines)


def report(
    client: Any,
    db: str,
    start_ms: int,
    end_ms: int,
    window_s: int,
    *,
    capacity_bps: Mapping[str, int] | None = None,
    objectives: Mapping[str, Mapping[str, float]] | None = None,
) -> str:
    data = collect(client, db, start_ms, end_ms, window_s, capacity_bps=capacity_bps, objectives=objectives)
    return render_table(data)


def render_billing(rows: Sequence[Percentile95], month: str) -> str:
    """One month's 95th percentile billing per partner: egress, ingress and the greater of the two."""
    head = ("partner", "direction", "95th Gb/s", "slots", "slots with data")
    body = [(r.partner, r.direction, gbps(r.bps), str(r.slots), str(r.slots_with_data)) for r in rows]
    lines = [f"95th percentile billing, {month} (UTC): 5-minute average rates, missing slots zero, top 5% dropped"]
    return "\n".join([*lines, *_table(head, body)]) if body else lines[0] + "\nno 5-minute data in that month"


def render_forecast(forecasts: Sequence[Forecast]) -> str:
    """The capacity forecast alone (`gwtel forecast`)."""
    if not forecasts:
        return NO_FORECAST
    return "\n".join([FORECAST_NOTE, *_table(FORECAST_HEAD, forecast_rows(forecasts))])
