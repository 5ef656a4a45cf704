"""Read-side queries on the aggregate tables, shared by the report, the dashboards' tests and the docs.

Percentiles are computed from merged histogram buckets (counts summed over windows, links and partners, then the
quantile of the merged distribution), never by averaging per-window percentiles. A bucket is reported as its
geometric midpoint, within 1% of any value it holds (see schemas.histogram).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.addresses import UNSPECIFIED_SQL, text_sql
from schemas.histogram import bucket_mid_us

QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class PartnerTraffic:
    partner: str
    direction: str
    bytes: int  # sampling-corrected
    packets: int
    flows: int
    avg_bps: float  # over the whole range asked for
    peak_bps: float  # busiest window, all links together


@dataclass(frozen=True)
class PartnerLatency:
    partner: str
    direction: str
    metric: str
    samples: int
    p50_us: float
    p95_us: float
    p99_us: float


def partner_traffic(client: Any, db: str, start_ms: int, end_ms: int, window_s: int) -> list[PartnerTraffic]:
    """Bytes, packets, flows, average and peak bits/s per partner and direction over [start_ms, end_ms)."""
    range_s = max((end_ms - start_ms) / 1000.0, 1e-9)
    sql = f"""
        SELECT partner, direction, sum(b) AS bytes, sum(p) AS packets, sum(f) AS flows, max(b) * 8 / {window_s}
        FROM (
            SELECT partner, direction, window_start_ms, sum(bytes_scaled) AS b, sum(packets_scaled) AS p,
                   sum(flows) AS f
            FROM {db}.bandwidth_window
            WHERE window_s = {{w:UInt32}} AND window_start_ms >= {{s:Int64}} AND window_start_ms < {{e:Int64}}
            GROUP BY partner, direction, window_start_ms
        )
        GROUP BY partner, direction
        ORDER BY partner, direction
    """
    rows = client.query(sql, parameters={"w": window_s, "s": start_ms, "e": end_ms}).result_rows
    return [PartnerTraffic(p, d, int(b), int(n), int(f), b * 8 / range_s, float(peak)) for p, d, b, n, f, peak in rows]


@dataclass(frozen=True)
class ClassTraffic:
    partner: str
    app_class: str
    direction: str
    bytes: int  # sampling-corrected
    packets: int
    flows: int
    avg_bps: float  # over the whole range asked for


def class_traffic(client: Any, db: str, start_ms: int, end_ms: int, window_s: int) -> list[ClassTraffic]:
    """Bytes, packets, flows and average bits/s per partner, application class and direction over the range."""
    range_s = max((end_ms - start_ms) / 1000.0, 1e-9)
    sql = f"""
        SELECT partner, toString(app_class), direction, sum(bytes_scaled), sum(packets_scaled), sum(flows)
        FROM {db}.bandwidth_window
        WHERE window_s = {{w:UInt32}} AND window_start_ms >= {{s:Int64}} AND window_start_ms < {{e:Int64}}
        GROUP BY partner, app_class, direction
        ORDER BY partner, app_class, direction
    """
    rows = client.query(sql, parameters={"w": window_s, "s": start_ms, "e": end_ms}).result_rows
    return [ClassTraffic(p, c, d, int(b), int(n), int(f), b * 8 / range_s) for p, c, d, b, n, f in rows]


def partner_latency(
    client: Any, db: str, start_ms: int, end_ms: int, window_s: int, metric: str = "hs_rtt_ext"
) -> list[PartnerLatency]:
    """p50/p95/p99 of one latency metric per partner and direction, from merged buckets."""
    sql = f"""
        SELECT partner, direction, sum(samples),
               quantilesExactWeighted({", ".join(str(q) for q in QUANTILES)})(bucket, samples)
        FROM {db}.latency_hist_window
        WHERE window_s = {{w:UInt32}} AND metric = {{m:String}}
          AND window_start_ms >= {{s:Int64}} AND window_start_ms < {{e:Int64}}
        GROUP BY partner, direction
        ORDER BY partner, direction
    """
    rows = client.query(sql, parameters={"w": window_s, "m": metric, "s": start_ms, "e": end_ms}).result_rows
    out = []
    for partner, direction, n, qs in rows:
        p50, p95, p99 = (bucket_mid_us(int(b)) for b in qs)
        out.append(PartnerLatency(partner, direction, metric, int(n), p50, p95, p99))
    return out


def time_range(client: Any, db: str, window_s: int) -> tuple[int, int] | None:
    """First window start and last window end present in the bandwidth table."""
    row = client.query(
        f"SELECT min(window_start_ms), max(window_start_ms), count() FROM {db}.bandwidth_window "
        "WHERE window_s = {w:UInt32}",
        parameters={"w": window_s},
    ).result_rows[0]
    if not row[2]:
        return None
    return int(row[0]), int(row[1]) + window_s * 1000


# --- Shared helpers -------------------------------------------------------------------------------------------

DIRECTIONS = ("egress", "ingress")  # the two directions partners are billed and planned on
FIVE_MIN_S = 300
# Rollup tables by bucket length; a query whose range and step are whole buckets of one reads it.
_ROLLUPS = ((86_400, "1d"), (3_600, "1h"), (FIVE_MIN_S, "5m"))
_GROUP_COLUMNS = frozenset({"partner", "direction", "link_id"})
# [s, e) in ms on a rollup's `ts`; and flows that started in [s, e) (`ts` first, for the sort key).
_TS_RANGE = "ts >= toDateTime(intDiv({s:Int64}, 1000), 'UTC') AND ts < toDateTime(intDiv({e:Int64}, 1000), 'UTC')"
_FLOW_RANGE = (
    "ts >= toDateTime(intDiv({s:Int64}, 1000), 'UTC') AND ts <= toDateTime(intDiv({e:Int64}, 1000), 'UTC')"
    " AND first_ns >= {s:Int64} * 1000000 AND first_ns < {e:Int64} * 1000000"
)


def rollup_suffix(start_ms: int, end_ms: int, step_s: int) -> str | None:
    """`5m`, `1h` or `1d` when [start_ms, end_ms) and step_s are whole buckets of that rollup, else None."""
    for size, suffix in _ROLLUPS:
        ms = size * 1000
        if step_s % size == 0 and start_ms % ms == 0 and end_ms % ms == 0:
            return suffix
    return None


def _filters(partners: Sequence[str] | None, directions: Sequence[str] | None, links: Sequence[str] | None) -> str:
    out = ""
    if partners is not None:
        out += " AND partner IN {partners:Array(String)}"
    if directions is not None:
        out += " AND direction IN {directions:Array(String)}"
    if links is not None:
        out += " AND link_id IN {links:Array(String)}"
    return out


def _filter_params(
    partners: Sequence[str] | None, directions: Sequence[str] | None, links: Sequence[str] | None
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if partners is not None:
        params["partners"] = list(partners)
    if directions is not None:
        params["directions"] = list(directions)
    if links is not None:
        params["links"] = list(links)
    return params


def _time_source(
    table: str, db: str, start_ms: int, end_ms: int, step_s: int, window_s: int
) -> tuple[str, str, dict[str, Any]]:
    """(FROM ... WHERE time condition, bucket-start-in-ms expression, parameters) for a family of tables.

    A rollup is read when the range and the step are whole rollup buckets; otherwise the window table at
    `window_s`, whose windows must fit the step (a window straddling two buckets would be split wrongly).
    """
    suffix = rollup_suffix(start_ms, end_ms, step_s)
    params: dict[str, Any] = {"s": start_ms, "e": end_ms, "step": step_s}
    if suffix is not None:
        src = f"{db}.{table}_{suffix} WHERE {_TS_RANGE}"
        return src, "intDiv(toUnixTimestamp(ts), {step:UInt32}) * {step:UInt32} * 1000", params
    if step_s % window_s:
        raise ValueError(f"step {step_s}s is not a multiple of the {window_s}s windows")
    params["w"] = window_s
    src = (
        f"{db}.{table}_window WHERE window_s = {{w:UInt32}}"
        " AND window_start_ms >= {s:Int64} AND window_start_ms < {e:Int64}"
    )
    return src, "intDiv(window_start_ms, {step:UInt32} * 1000) * {step:UInt32} * 1000", params


# --- Bandwidth over time ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BandwidthPoint:
    start_ms: int  # bucket start (UTC, aligned to the step)
    partner: str
    direction: str
    bytes: int  # sampling-corrected, in the part of the bucket inside the range
    avg_bps: float  # bytes * 8 over that part of the bucket


def bandwidth_series(
    client: Any,
    db: str,
    start_ms: int,
    end_ms: int,
    step_s: int,
    window_s: int,
    *,
    partners: Sequence[str] | None = None,
    directions: Sequence[str] | None = DIRECTIONS,
    links: Sequence[str] | None = None,
) -> list[BandwidthPoint]:
    """Average bits/s per partner, direction and step over [start_ms, end_ms), every link together.

    Buckets without a row are zero (no traffic counted), for every partner x direction with traffic in the
    range, so a plot or a percentile sees the idle time too. Ordered by partner, direction, time.
    """
    src, bucket, params = _time_source("bandwidth", db, start_ms, end_ms, step_s, window_s)
    params.update(_filter_params(partners, directions, links))
    sql = f"""
        SELECT {bucket} AS b, partner, direction, sum(bytes_scaled)
        FROM {src}{_filters(partners, directions, links)}
        GROUP BY b, partner, direction
    """
    got: dict[tuple[str, str], dict[int, int]] = {}
    for b, partner, direction, nbytes in client.query(sql, parameters=params).result_rows:
        got.setdefault((partner, direction), {})[int(b)] = int(nbytes)
    step_ms = step_s * 1000
    first = start_ms // step_ms * step_ms
    out: list[BandwidthPoint] = []
    for (partner, direction), by_bucket in sorted(got.items()):
        for b in range(first, end_ms, step_ms):
            nbytes = by_bucket.get(b, 0)
            span_s = (min(b + step_ms, end_ms) - max(b, start_ms)) / 1000.0
            out.append(BandwidthPoint(b, partner, direction, nbytes, nbytes * 8 / span_s))
    return out


# --- Latency percentiles from merged histogram buckets ----------------------------------------------------------


@dataclass(frozen=True)
class LatencyQuantiles:
    key: tuple[str, ...]  # values of the `by` columns, in their order
    start_ms: int | None  # bucket start when a step was asked for
    samples: int
    p50_us: float
    p95_us: float
    p99_us: float


def latency_quantiles(
    client: Any,
    db: str,
    start_ms: int,
    end_ms: int,
    window_s: int,
    *,
    metric: str = "hs_rtt_ext",
    by: Sequence[str] = ("partner", "direction"),
    step_s: int | None = None,
    partners: Sequence[str] | None = None,
    directions: Sequence[str] | None = None,
    links: Sequence[str] | None = None,
) -> list[LatencyQuantiles]:
    """p50/p95/p99 of `metric` per `by` group (and per step), from bucket counts summed over everything else.

    The buckets of every window, link and partner selected are added first and the quantile is read from
    the merged histogram (the first bucket whose cumulative count reaches q x total, reported as its
    geometric midpoint): exact within one 2% bucket, whatever is merged, never an average of percentiles.
    """
    bad = [c for c in by if c not in _GROUP_COLUMNS]
    if bad:
        raise ValueError(f"cannot group latency by {bad}: use {sorted(_GROUP_COLUMNS)}")
    step = step_s if step_s is not None else max((end_ms - start_ms) // 1000, 1)
    if step_s is None and rollup_suffix(start_ms, end_ms, step) is None:
        step = window_s  # a whole-range total: any multiple of the window will do
    src, bucket, params = _time_source("latency_hist", db, start_ms, end_ms, step, window_s)
    params.update(_filter_params(partners, directions, links))
    params["m"] = metric
    keys = [*(["b"] if step_s is not None else []), *by]
    select = ", ".join([*([f"{bucket} AS b"] if step_s is not None else []), *by]) or "1"
    qs = ", ".join(str(q) for q in QUANTILES)
    sql = f"""
        SELECT {select}, sum(samples), quantilesExactWeighted({qs})(bucket, samples)
        FROM {src} AND metric = {{m:String}}{_filters(partners, directions, links)}
        GROUP BY {", ".join(keys) or "tuple()"}
        HAVING sum(samples) > 0
        ORDER BY {", ".join(keys) or "tuple()"}
    """
    out = []
    for row in client.query(sql, parameters=params).result_rows:
        b = int(row[0]) if step_s is not None else None
        first = 1 if step_s is not None else 0
        key = tuple(str(v) for v in row[first : first + len(by)])
        p50, p95, p99 = (bucket_mid_us(int(x)) for x in row[-1])
        out.append(LatencyQuantiles(key, b, int(row[-2]), p50, p95, p99))
    return out


def handshake_rtt(
    client: Any,
    db: str,
    start_ms: int,
    end_ms: int,
    *,
    partners: Sequence[str] | None = None,
    step_s: int | None = None,
    by_class: bool = False,
) -> list[LatencyQuantiles]:
    """p50/p95/p99 of the whole TCP handshake RTT (external + internal leg) per partner (and application class,
    with ``by_class``: key (partner, app_class); and step), from `flows_raw`.

    What a user feels is the sum of both legs, and a percentile of a sum cannot be built from the two legs'
    histograms, so it is computed exactly from each flow's own pair (flows that started in the range, egress
    and ingress, with both legs measured). Limited to the raw retention (`loader.ttl_flows_raw_days`).
    """
    params: dict[str, Any] = {"s": start_ms, "e": end_ms, **_filter_params(partners, None, None)}
    qs = ", ".join(str(q) for q in QUANTILES)
    bucket = "0"
    if step_s is not None:
        params["step"] = step_s * 1000
        bucket = "intDiv(intDiv(first_ns, 1000000), {step:Int64}) * {step:Int64}"
    keys = "partner, toString(app_class)" if by_class else "partner"
    sql = f"""
        SELECT {bucket} AS b, [{keys}] AS k, count(),
               quantilesExactWeighted({qs})(assumeNotNull(hs_rtt_ext_us) + assumeNotNull(hs_rtt_int_us), 1)
        FROM {db}.flows_raw
        WHERE {_FLOW_RANGE}
          AND direction IN ('egress', 'ingress')
          AND hs_rtt_ext_us IS NOT NULL AND hs_rtt_int_us IS NOT NULL{_filters(partners, None, None)}
        GROUP BY b, k
        ORDER BY k, b
    """
    out = []
    for b, key, n, qv in client.query(sql, parameters=params).result_rows:
        p50, p95, p99 = (float(x) for x in qv)
        out.append(LatencyQuantiles(tuple(str(x) for x in key), int(b) if step_s else None, int(n), p50, p95, p99))
    return out


# --- 95th percentile billing ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Percentile95:
    partner: str
    direction: str  # egress, ingress, or `max` (the greater of the two, billed under that variant)
    slots: int  # 5-minute slots in the range (elapsed part of a month), each a sample
    slots_with_data: int
    bps: float  # the 95th percentile of the 5-minute average rates


def rank_95th(samples: Sequence[int], slots: int) -> int:
    """The 95th percentile sample: `slots` samples (the missing ones zero) sorted, top 5% discarded,
    highest remaining taken. 0 for an empty range."""
    if slots <= 0:
        return 0
    if len(samples) > slots:
        raise ValueError(f"{len(samples)} samples for {slots} slots")
    ordered = sorted([0] * (slots - len(samples)) + list(samples))
    return ordered[slots - 1 - (5 * slots) // 100]


def percentile_95(
    client: Any, db: str, start_ms: int, end_ms: int, *, partners: Sequence[str] | None = None
) -> list[Percentile95]:
    """The 95th percentile of 5-minute average rates per partner and direction over [start_ms, end_ms).

    Both ends must be on 5-minute boundaries. Every 5-minute slot of the range is a sample; a slot without
    a row counts as zero. The `max` rows take the greater of each partner's egress and ingress figures.
    """
    slot_ms = FIVE_MIN_S * 1000
    if start_ms % slot_ms or end_ms % slot_ms:
        raise ValueError("the 95th percentile range must start and end on 5-minute boundaries")
    slots = max((end_ms - start_ms) // slot_ms, 0)
    params: dict[str, Any] = {"s": start_ms, "e": end_ms, **_filter_params(partners, DIRECTIONS, None)}
    sql = f"""
        SELECT partner, direction, groupArray(b)
        FROM (
            SELECT ts, partner, direction, sum(bytes_scaled) AS b
            FROM {db}.bandwidth_5m
            WHERE {_TS_RANGE}{_filters(partners, DIRECTIONS, None)}
            GROUP BY ts, partner, direction
        )
        GROUP BY partner, direction
        ORDER BY partner, direction
    """
    by_partner: dict[str, dict[str, Percentile95]] = {}
    for partner, direction, samples in client.query(sql, parameters=params).result_rows:
        nbytes = rank_95th([int(x) for x in samples], slots)
        row = Percentile95(partner, direction, slots, len(samples), nbytes * 8 / FIVE_MIN_S)
        by_partner.setdefault(partner, {})[direction] = row
    out: list[Percentile95] = []
    for partner, rows in sorted(by_partner.items()):
        out.extend(rows[d] for d in DIRECTIONS if d in rows)
        top = max(rows.values(), key=lambda r: r.bps)
        out.append(Percentile95(partner, "max", slots, top.slots_with_data, top.bps))
    return out


def month_bounds_ms(year: int, month: int, now_ms: int) -> tuple[int, int]:
    """[first slot of the month, end of its elapsed part): the month end, or now rounded down to 5 minutes."""
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    slot_ms = FIVE_MIN_S * 1000
    return start_ms, max(start_ms, min(end_ms, now_ms // slot_ms * slot_ms))


def billing_95th(
    client: Any, db: str, year: int, month: int, *, now_ms: int, partners: Sequence[str] | None = None
) -> list[Percentile95]:
    """95th percentile billing of a calendar month (UTC) per partner and direction (docs/clickhouse.md)."""
    start_ms, end_ms = month_bounds_ms(year, month, now_ms)
    return percentile_95(client, db, start_ms, end_ms, partners=partners)


# --- Utilisation against contracted capacity ----------------------------------------------------------------------


@dataclass(frozen=True)
class Utilisation:
    partner: str
    direction: str
    capacity_bps: int  # contracted per direction; 0 = no contract, no ratio
    avg: float | None  # average rate / capacity
    peak: float | None  # busiest window / capacity
    p95: float | None  # 95th percentile of the 5-minute rates / capacity


def utilisation(
    traffic: Sequence[PartnerTraffic], p95: Sequence[Percentile95], capacity_bps: Mapping[str, int]
) -> list[Utilisation]:
    """Rates as fractions of each partner's contracted capacity per direction (None without a contract)."""
    p95_of = {(r.partner, r.direction): r.bps for r in p95}
    out = []
    for t in traffic:
        cap = capacity_bps.get(t.partner, 0)

        def ratio(bps: float | None, cap: int = cap) -> float | None:
            return None if not cap or bps is None else bps / cap

        p = p95_of.get((t.partner, t.direction))
        out.append(Utilisation(t.partner, t.direction, cap, ratio(t.avg_bps), ratio(t.peak_bps), ratio(p)))
    return out


# --- Remote countries and hosts of a partner (flows_raw) ----------------------------------------------------------


@dataclass(frozen=True)
class RemoteTotal:
    name: str  # country code or remote address
    bytes: int  # both directions, sampling-corrected
    flows: int  # sampling-corrected


def _top_remote(
    client: Any, db: str, column: str, partner: str, start_ms: int, end_ms: int, limit: int, shown: str = "key"
) -> list[RemoteTotal]:
    """Grouped by `column`; `shown` is how a group's `key` is printed."""
    sql = f"""
        SELECT {shown} AS name, sum((bytes_fwd + bytes_rev) * sampling_rate) AS b, sum(sampling_rate) AS f
        FROM {db}.flows_raw
        WHERE {_FLOW_RANGE} AND partner = {{p:String}}
        GROUP BY {column} AS key
        ORDER BY b DESC, key
        LIMIT {{n:UInt32}}
    """
    rows = client.query(sql, parameters={"s": start_ms, "e": end_ms, "p": partner, "n": limit}).result_rows
    return [RemoteTotal(str(n), int(b), int(f)) for n, b, f in rows]


def top_countries(client: Any, db: str, partner: str, start_ms: int, end_ms: int, limit: int = 10) -> list[RemoteTotal]:
    """The partner's remote countries by bytes (both directions) of the flows that started in the range."""
    return _top_remote(client, db, "remote_country", partner, start_ms, end_ms, limit)


def top_hosts(client: Any, db: str, partner: str, start_ms: int, end_ms: int, limit: int = 10) -> list[RemoteTotal]:
    """The partner's remote addresses (the responder of egress flows, the initiator of the others) by bytes,
    grouped as addresses and printed as `schemas.addresses.text_sql` does (IPv4 dotted, IPv6 short)."""
    remote = "if(direction = 'ingress', src_ip, dst_ip)"
    return _top_remote(client, db, remote, partner, start_ms, end_ms, limit, shown=text_sql("key"))


# --- Late flows ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LateTraffic:
    partner: str
    direction: str
    flows: int  # sampling-corrected, counted in the initiator's direction
    bytes: int  # sampling-corrected


def late_traffic(client: Any, db: str, start_ms: int, end_ms: int) -> list[LateTraffic]:
    """Traffic of flows that started in the range but reached the job too late for their window.

    The bandwidth figures above include it too (the late view, migration late_into_windows, adds it to its
    windows); this says how much of them came late. Split as the job splits flows: the initiator's bytes go to
    the flow's direction, the responder's to the opposite one.
    """
    cond = _FLOW_RANGE
    opposite = "multiIf(direction = 'egress', 'ingress', direction = 'ingress', 'egress', direction)"
    sql = f"""
        SELECT partner, dir, sum(f), sum(b)
        FROM (
            SELECT partner, toString(direction) AS dir, toUInt64(sampling_rate) AS f,
                   bytes_fwd * sampling_rate AS b
            FROM {db}.flows_late WHERE {cond}
            UNION ALL
            SELECT partner, {opposite} AS dir, toUInt64(0) AS f, bytes_rev * sampling_rate AS b
            FROM {db}.flows_late WHERE {cond} AND packets_rev > 0
        )
        GROUP BY partner, dir
        ORDER BY partner, dir
    """
    rows = client.query(sql, parameters={"s": start_ms, "e": end_ms}).result_rows
    return [LateTraffic(p, d, int(f), int(b)) for p, d, f, b in rows]


@dataclass(frozen=True)
class LinkSource:
    """Where one link's records came from in a range: capture agents (which measure RTT) or router exports (which
    cannot), and how many records carry an RTT."""

    link_id: str
    records: int
    exported: int  # records from router flow export (exporter set)
    with_rtt: int  # records with a handshake, TCP-timestamp, ICMP or DNS RTT

    @property
    def kind(self) -> str:
        if self.exported == 0:
            return "capture"
        return "export only" if self.exported == self.records else "capture and export"


def link_sources(client: Any, db: str, start_ms: int, end_ms: int) -> list[LinkSource]:
    """Per link, records of flows that started in the range: from exports, and with an RTT."""
    rtt = (
        "isNotNull(hs_rtt_ext_us) OR isNotNull(hs_rtt_int_us) OR ts_rtt_count > 0 OR icmp_rtt_count > 0"
        " OR dns_rtt_count > 0"
    )
    sql = f"""
        SELECT toString(link_id), count(), countIf(exporter != {UNSPECIFIED_SQL}), countIf({rtt})
        FROM {db}.flows_raw WHERE {_FLOW_RANGE}
        GROUP BY link_id ORDER BY link_id
    """
    rows = client.query(sql, parameters={"s": start_ms, "e": end_ms}).result_rows
    return [LinkSource(str(k), int(n), int(x), int(r)) for k, n, x, r in rows]


# --- Latency objectives ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SloStatus:
    partner: str
    app_class: str
    objective_ms: float  # p95 objective of the class
    p95_ms: float | None  # measured p95 handshake RTT (both legs) of the class's flows; None without samples
    samples: int
    met: bool | None  # None: nothing measured, no verdict


def slo_status(rtt: Sequence[LatencyQuantiles], objectives: Mapping[str, Mapping[str, float]]) -> list[SloStatus]:
    """Each partner's application-class p95 objectives, each against the p95 handshake RTT of that class's own
    flows with that partner (`handshake_rtt(..., by_class=True)`): met when it is at or below the objective, no
    verdict when the class has no measured flow (docs/classes.md)."""
    measured = {(r.key[0], r.key[1]): r for r in rtt}
    out = []
    for partner in sorted(objectives):
        for cls, objective in sorted(objectives[partner].items()):
            r = measured.get((partner, cls))
            p95_ms = r.p95_us / 1000 if r and r.samples else None
            met = None if p95_ms is None else p95_ms <= objective
            out.append(SloStatus(partner, cls, objective, p95_ms, r.samples if r else 0, met))
    return out


ERROR_BUDGET_DAYS = 30


@dataclass(frozen=True)
class ErrorBudget:
    """How often a class met its objective with a partner: the share of 5-minute slots (with measured flows of
    the class) whose p95 handshake RTT was at or below the objective, over `ERROR_BUDGET_DAYS` days."""

    partner: str
    app_class: str
    objective_ms: float
    slots: int  # 5-minute slots of the period with at least one measured flow of the class
    slots_met: int

    @property
    def share_met(self) -> float | None:
        return self.slots_met / self.slots if self.slots else None


def error_budget(
    client: Any, db: str, end_ms: int, objectives: Mapping[str, Mapping[str, float]], days: int = ERROR_BUDGET_DAYS
) -> list[ErrorBudget]:
    """Per partner and class with an objective: 5-minute slots of the `days` before `end_ms` meeting it.

    Each slot's p95 is exact over the handshake RTTs (both legs) of the class's flows that started in it, from
    `flows_raw` (so the period is also bounded by `loader.ttl_flows_raw_days`). A slot without a measured flow of
    the class gives no verdict and is not counted.
    """
    slot_ms = FIVE_MIN_S * 1000
    end = end_ms // slot_ms * slot_ms
    params = {"s": end - days * 86_400_000, "e": end}
    sql = f"""
        SELECT partner, cls, groupArray(p95)
        FROM (
            SELECT partner, toString(app_class) AS cls, intDiv(intDiv(first_ns, 1000000), {slot_ms}) AS slot,
                   quantileExactWeighted(0.95)(assumeNotNull(hs_rtt_ext_us) + assumeNotNull(hs_rtt_int_us), 1) AS p95
            FROM {db}.flows_raw
            WHERE {_FLOW_RANGE}
              AND direction IN ('egress', 'ingress')
              AND hs_rtt_ext_us IS NOT NULL AND hs_rtt_int_us IS NOT NULL
            GROUP BY partner, cls, slot
        )
        GROUP BY partner, cls
    """
    measured = {(str(p), str(c)): [int(x) for x in v] for p, c, v in client.query(sql, parameters=params).result_rows}
    out = []
    for partner in sorted(objectives):
        for cls, objective in sorted(objectives[partner].items()):
            p95s = measured.get((partner, cls), [])
            met = sum(1 for us in p95s if us / 1000 <= objective)
            out.append(ErrorBudget(partner, cls, objective, len(p95s), met))
    return out
