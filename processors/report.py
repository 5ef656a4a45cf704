"""The per-partner table operators read: bandwidth each way and the latency the path adds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from processors.queries import PartnerLatency, PartnerTraffic, partner_latency, partner_traffic


def _mbps(bps: float) -> str:
    return f"{bps / 1e6:,.3f}"


def _ms(us: float) -> str:
    return f"{us / 1000:,.1f}"


def render_table(traffic: Sequence[PartnerTraffic], latency: Sequence[PartnerLatency]) -> str:
    lat = {(r.partner, r.direction): r for r in latency}
    head = (
        f"{'partner':<14} {'dir':<8} {'bytes':>14} {'packets':>10} {'flows':>7} {'avg Mb/s':>10} {'peak Mb/s':>10}"
        f" {'RTT p50 ms':>10} {'p95':>7} {'p99':>7} {'samples':>8}"
    )
    lines = [head, "-" * len(head)]
    for t in traffic:
        r = lat.get((t.partner, t.direction))
        rtt = f"{_ms(r.p50_us):>10} {_ms(r.p95_us):>7} {_ms(r.p99_us):>7} {r.samples:>8}" if r else f"{'-':>10}"
        lines.append(
            f"{t.partner:<14} {t.direction:<8} {t.bytes:>14,} {t.packets:>10,} {t.flows:>7,} {_mbps(t.avg_bps):>10}"
            f" {_mbps(t.peak_bps):>10} {rtt}"
        )
    lines.append("RTT: TCP handshake round trip beyond the gateway (external leg), from merged histogram buckets.")
    return "\n".join(lines)


def report(client: Any, db: str, start_ms: int, end_ms: int, window_s: int) -> str:
    traffic = partner_traffic(client, db, start_ms, end_ms, window_s)
    latency = partner_latency(client, db, start_ms, end_ms, window_s)
    return render_table(traffic, latency)
