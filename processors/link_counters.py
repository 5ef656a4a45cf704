"""Interface counters against the flows: per (exporter, interface, direction), the octets the router's sFlow
counter samples say crossed the interface in a range beside the flow samples' octets scaled by their rate.

Increases between consecutive samples (`counter_increase`):
- the counter went up: the difference;
- it went down and the sample's sequence number went back too: the agent restarted (a reboot or a counter
  clear resets both): the new value is what was counted since the restart (traffic between the last sample
  before it and the restart is not seen: an undercount, shown as a restart);
- it went down with the sequence still rising: a wrap, when the wrapped difference fits the interface's speed
  over the interval (with 10% slack; any wrap when ifSpeed is unknown): modulo 2^32 if the previous value fits
  32 bits (a 32-bit ifInOctets), else modulo 2^64; otherwise a reset as above.

Flows: the records of that exporter whose input (direction `in`) or output (`out`) interface is that one, received
in (first sample, last sample], as sampled octets x sampling rate. Counters count frames, flows their IP packets:
each sampled packet is given back its Ethernet header and FCS (`L2_OVERHEAD` octets, VLAN tags not counted) before
the ratio is taken. With n sampled packets the scaled total's relative error at 95% is about 1.96/sqrt(n) (each
packet is sampled independently with probability 1/rate), so a link whose ratio is further than that from 1 is
flagged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby, pairwise
from typing import Any, Final

from schemas.addresses import text_sql

# Ethernet header (14) + FCS (4): what ifInOctets counts per frame beyond the IP packet
L2_OVERHEAD: Final = 18
_WRAP_SLACK: Final = 1.1


@dataclass(frozen=True, slots=True)
class CounterSample:
    sample_ns: int
    octets: int
    sequence: int
    speed_bps: int


@dataclass(frozen=True, slots=True)
class Increase:
    octets: int
    wraps: int
    resets: int


def counter_increase(prev: CounterSample, cur: CounterSample) -> Increase:
    """The octets counted between two consecutive samples of one interface and direction (module docstring)."""
    if cur.octets >= prev.octets:
        return Increase(cur.octets - prev.octets, 0, 0)
    if cur.sequence > prev.sequence:
        modulus = 2**32 if prev.octets < 2**32 else 2**64
        wrapped = cur.octets + modulus - prev.octets
        limit = cur.speed_bps / 8 * max(cur.sample_ns - prev.sample_ns, 0) / 1e9 * _WRAP_SLACK
        if cur.speed_bps == 0 or wrapped <= limit:
            return Increase(wrapped, 1, 0)
    return Increase(cur.octets, 0, 1)


def total_increase(samples: Sequence[CounterSample]) -> Increase:
    """Sum of the increases of samples in time order."""
    octets = wraps = resets = 0
    for prev, cur in pairwise(samples):
        inc = counter_increase(prev, cur)
        octets, wraps, resets = octets + inc.octets, wraps + inc.wraps, resets + inc.resets
    return Increase(octets, wraps, resets)


def expected_spread(sampled_packets: int) -> float | None:
    """The relative error at 95% of a total scaled from `sampled_packets` independently sampled packets."""
    return 1.96 / math.sqrt(sampled_packets) if sampled_packets > 0 else None


@dataclass(frozen=True, slots=True)
class LinkCheck:
    exporter: str
    if_index: int
    direction: str  # in | out
    samples: int  # counter samples in the range
    counter_octets: int  # increase over (first, last sample]
    wraps: int
    resets: int
    flow_octets: int  # flow samples' IP octets x rate, same interval
    sampled_packets: int
    frame_octets: int  # flow_octets with each sampled packet's L2_OVERHEAD x rate

    @property
    def ratio(self) -> float | None:
        return self.frame_octets / self.counter_octets if self.counter_octets else None

    @property
    def spread(self) -> float | None:
        return expected_spread(self.sampled_packets)

    @property
    def agrees(self) -> bool | None:
        """None when there is nothing to compare (fewer than two samples, no flows or no counted octets)."""
        ratio, spread = self.ratio, self.spread
        if ratio is None or spread is None:
            return None
        return abs(ratio - 1) <= spread


# Exporters as text the same way on both sides (schemas.addresses.text_sql): toIPv6 reads the samples' column
# whether it is text or IPv6; flows_raw stores IPv6 (0013).
_SAMPLE_EXPORTER: Final = text_sql("toIPv6(exporter)")
_SAMPLES_SQL = f"""
    SELECT {_SAMPLE_EXPORTER} AS x, source_id, toString(direction), sample_ns, octets, sequence, speed_bps
    FROM {{db}}.link_counters
    WHERE sample_ns >= {{{{s:Int64}}}} * 1000000 AND sample_ns < {{{{e:Int64}}}} * 1000000
    ORDER BY x, source_id, direction, sample_ns
"""

# One pass over the exporters' flow records: each record counts for its input interface (`in`) and its output
# interface (`out`), within that interface's own interval (first sample, last sample], given as parallel arrays.
_FLOW_EXPORTER: Final = text_sql("exporter")
_FLOWS_SQL = f"""
    SELECT {_FLOW_EXPORTER}, d.1 AS dir, d.2 AS if_index,
           sum(bytes_fwd * sampling_rate), sum(packets_fwd), sum(packets_fwd * sampling_rate)
    FROM {{db}}.flows_raw
    ARRAY JOIN [('in', in_if), ('out', out_if)] AS d
    WHERE ts >= toDateTime(intDiv({{{{lo:Int64}}}}, 1000000000), 'UTC')
      AND ts <= toDateTime(intDiv({{{{hi:Int64}}}}, 1000000000), 'UTC')
      AND first_ns > {{{{lo:Int64}}}} AND first_ns <= {{{{hi:Int64}}}}
      AND has(arrayMap(x -> toIPv6(x), {{{{exporters:Array(String)}}}}), exporter)
      AND (indexOf({{{{keys:Array(String)}}}}, concat({_FLOW_EXPORTER}, '|', toString(d.2), '|', d.1)) AS k) > 0
      AND first_ns > arrayElement({{{{los:Array(Int64)}}}}, k) AND first_ns <= arrayElement({{{{his:Array(Int64)}}}}, k)
    GROUP BY exporter, dir, if_index
"""


def _flow_totals(
    client: Any, db: str, windows: dict[tuple[str, int, str], tuple[int, int]]
) -> dict[tuple[str, int, str], tuple[int, int, int]]:
    """Per (exporter, ifIndex, direction): flow samples' octets x rate, sampled packets, packets x rate."""
    if not windows:
        return {}
    keys = list(windows)
    params = {
        "lo": min(lo for lo, _ in windows.values()),
        "hi": max(hi for _, hi in windows.values()),
        "exporters": sorted({x for x, _, _ in keys}),
        "keys": [f"{x}|{i}|{d}" for x, i, d in keys],
        "los": [windows[k][0] for k in keys],
        "his": [windows[k][1] for k in keys],
    }
    rows = client.query(_FLOWS_SQL.format(db=db), parameters=params).result_rows
    return {(str(x), int(i), str(d)): (int(o or 0), int(n or 0), int(p or 0)) for x, d, i, o, n, p in rows}


def link_checks(client: Any, db: str, start_ms: int, end_ms: int) -> list[LinkCheck]:
    """Per (exporter, interface, direction) with counter samples in [start_ms, end_ms): counters beside flows."""
    rows = client.query(_SAMPLES_SQL.format(db=db), parameters={"s": start_ms, "e": end_ms}).result_rows
    series: dict[tuple[str, int, str], list[CounterSample]] = {}
    for (exporter, if_index, direction), group in groupby(rows, key=lambda r: (r[0], r[1], r[2])):
        series[(str(exporter), int(if_index), str(direction))] = [
            CounterSample(int(r[3]), int(r[4]), int(r[5]), int(r[6])) for r in group
        ]
    windows = {k: (s[0].sample_ns, s[-1].sample_ns) for k, s in series.items() if len(s) > 1}
    flows = _flow_totals(client, db, windows)
    out: list[LinkCheck] = []
    for (exporter, if_index, direction), samples in series.items():
        inc = total_increase(samples)
        octets, sampled, scaled_packets = flows.get((exporter, if_index, direction), (0, 0, 0))
        out.append(
            LinkCheck(
                exporter,
                if_index,
                direction,
                len(samples),
                inc.octets,
                inc.wraps,
                inc.resets,
                octets,
                sampled,
                octets + L2_OVERHEAD * scaled_packets,
            )
        )
    return out


COUNTERS_NOTE = (
    "Interface counters (sFlow counter samples) against the flows: counted = octets increase between the first and"
    " last sample in the range (wraps and restarts handled); flows = flow samples' octets x rate over the same"
    " interval plus 18 octets of Ethernet header and FCS per packet; expect |ratio - 1| <= 1.96/sqrt(sampled"
    " packets) (95%); CHECK = outside it."
)
COUNTERS_HEAD = ("exporter", "if", "dir", "samples", "counted", "flows", "sampled", "ratio", "expect", "agree")


def counter_rows(checks: Sequence[LinkCheck]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for c in checks:
        ratio, spread, agrees = c.ratio, c.spread, c.agrees
        notes = [n for n, k in ((f"{c.wraps} wrap", c.wraps), (f"{c.resets} restart", c.resets)) if k]
        verdict = "-" if agrees is None else ("ok" if agrees else "CHECK")
        rows.append(
            (
                c.exporter,
                str(c.if_index),
                c.direction,
                str(c.samples),
                f"{c.counter_octets:,}",
                f"{c.frame_octets:,}",
                str(c.sampled_packets),
                "-" if ratio is None else f"{ratio:.3f}",
                "-" if spread is None else f"±{spread:.3f}",
                " ".join([verdict, *notes]),
            )
        )
    return rows
