"""Read-side queries on the aggregate tables, shared by the report, the dashboards' tests and the docs.

Percentiles are computed from merged histogram buckets (counts summed over windows, links and partners, then the
quantile of the merged distribution), never by averaging per-window percentiles. A bucket is reported as its
geometric midpoint, within 1% of any value it holds (see schemas.histogram).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
