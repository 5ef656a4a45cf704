"""Hand-built FlowRecords for the Flink job tests on Kafka, and their aggregates computed here in Python.

The reference follows docs/processors.md, not the job's SQL: a record counts whole in the window of its last
packet (ms), its initiator counters go to its own direction and its responder counters (when it has reverse
packets) to the opposite one, latency values and histogram bins go to the flow's own direction.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Any

from kafka import KafkaProducer

from schemas import codec
from schemas.aggregate import AGGREGATE_FIELDS, HISTOGRAM_METRICS, SINGLE_VALUE_METRICS
from schemas.flow_record import FlowRecord, HistBin
from schemas.histogram import bucket_of_us
from tests.records import sample_flow

S = 10**9
T0_S = 1_767_225_600  # 2026-01-01T00:00:00Z: a boundary of every window size
LINKS = ("jp-1", "kr-1")  # link i goes to partition i of the source topic
PARTNERS = ("japan", "korea", "belt_and_road")
FLUSH_PARTNER = "zz_flush"

AggRow = tuple[tuple[str, Any], ...]


def flow_records(seed: int, start_s: int, seconds: int, per_link: int) -> list[FlowRecord]:
    """`per_link` records per link, ending in [start_s, start_s + seconds), in time order per link."""
    rng = random.Random(seed)
    out: list[FlowRecord] = []
    for li, link in enumerate(LINKS):
        ends = sorted(rng.randrange(start_s * 1000, (start_s + seconds) * 1000) for _ in range(per_link))
        for i, end_ms in enumerate(ends):
            last_ns = end_ms * 1_000_000 + rng.randrange(1_000_000)
            ts_bins = sorted({rng.randrange(400, 600) for _ in range(rng.randrange(0, 3))})
            ts_hist = tuple(HistBin(b, rng.randrange(1, 4)) for b in ts_bins)
            n_ts = sum(h.c for h in ts_hist)
            packets_rev = rng.choice((0, 3, 8))
            out.append(
                sample_flow(
                    agent_id=f"a{li}",
                    seq=seed * 100_000 + li * 10_000 + i,
                    link_id=link,
                    sampling_rate=rng.choice((1, 1, 10)),
                    src_ip=f"10.0.{li}.{rng.randrange(1, 20)}",
                    dst_ip=f"203.0.113.{rng.randrange(1, 30)}",
                    first_ns=last_ns - rng.randrange(0, 5 * S),
                    last_ns=last_ns,
                    export_ns=last_ns + S,
                    end_reason=rng.choice(("fin", "active", "idle")),
                    bytes_fwd=rng.randrange(40, 100_000),
                    packets_fwd=rng.randrange(1, 80),
                    bytes_rev=packets_rev * rng.randrange(40, 1500),
                    packets_rev=packets_rev,
                    retrans_fwd=rng.randrange(0, 3),
                    retrans_rev=rng.randrange(0, 2) if packets_rev else 0,
                    hs_rtt_ext_us=rng.choice((None, rng.randrange(500, 90_000))),
                    hs_rtt_int_us=rng.choice((None, rng.randrange(50, 900))),
                    ts_rtt_count=n_ts,
                    ts_rtt_min_us=rng.randrange(1000, 2000) if n_ts else None,
                    ts_rtt_max_us=rng.randrange(30_000, 40_000) if n_ts else None,
                    ts_rtt_sum_us=n_ts * rng.randrange(2000, 30_000),
                    ts_rtt_hist=ts_hist,
                    direction=rng.choice(("egress", "ingress")),
                    partner=PARTNERS[(i + li) % len(PARTNERS)],
                )
            )
    return out


def flush_records(at_s: int) -> list[FlowRecord]:
    """One record per link far ahead of the data: it moves every partition's watermark past every window
    of the data (an unbounded job fires a window only when the watermark passes its end)."""
    return [
        replace(sample_flow(), link_id=link, partner=FLUSH_PARTNER, seq=900_000 + i, agent_id="flush",
                first_ns=at_s * S, last_ns=at_s * S, export_ns=at_s * S + S)
        for i, link in enumerate(LINKS)
    ]  # fmt: skip


def produce(bootstrap: str, topic: str, records: list[FlowRecord]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    try:
        for rec in records:
            # One partition per link, chosen here: two keys may hash to the same partition.
            producer.send(topic, key=rec.link_id.encode(), value=codec.encode(rec), partition=LINKS.index(rec.link_id))
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def _opposite(direction: str) -> str:
    return {"egress": "ingress", "ingress": "egress"}.get(direction, direction)


def _row(**values: Any) -> AggRow:
    full: dict[str, Any] = {f.name: None for f in AGGREGATE_FIELDS}
    full.update(values, schema_version=1)
    unknown = set(full) - {f.name for f in AGGREGATE_FIELDS}
    assert not unknown, unknown
    return tuple(sorted(full.items()))


def expected_aggregates(records: list[FlowRecord], window_sizes_s: tuple[int, ...]) -> Counter[AggRow]:
    """Every aggregate record the job must write for `records`, as a multiset of rows."""
    out: Counter[AggRow] = Counter()
    for w in window_sizes_s:
        bw: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 8)
        hosts: dict[tuple[Any, ...], set[str]] = defaultdict(set)
        lat: dict[tuple[Any, ...], list[int]] = {}
        buckets: Counter[tuple[Any, ...]] = Counter()
        for r in records:
            start_ms = (r.last_ns // 1_000_000) // (w * 1000) * (w * 1000)
            base = (start_ms, r.partner, r.link_id, r.app_class)  # windows are keyed by class too
            remote = r.src_ip if r.direction == "ingress" else r.dst_ip
            sides = [(r.direction, r.bytes_fwd, r.packets_fwd, r.retrans_fwd, 1, int(r.end_reason != "active"))]
            if r.packets_rev > 0:
                sides.append((_opposite(r.direction), r.bytes_rev, r.packets_rev, r.retrans_rev, 0, 0))
            for direction, b, p, rt, flows, ended in sides:
                key = (*base, direction, r.sampling_rate)
                acc = bw[key]
                for i, v in enumerate((b, p, rt, flows, ended, b * r.sampling_rate, p * r.sampling_rate)):
                    acc[i] += v
                acc[7] += rt * r.sampling_rate
                if p > 0:
                    hosts[key].add(remote)
            samples: list[tuple[str, int, int, int, int, list[tuple[int, int]]]] = []
            for m in SINGLE_VALUE_METRICS:
                v = getattr(r, f"{m}_us")
                if v is not None:
                    samples.append((m, 1, v, v, v, [(bucket_of_us(v), 1)]))
            for m in HISTOGRAM_METRICS:
                n = getattr(r, f"{m}_count")
                if n > 0:
                    bins = [(h.b, h.c) for h in getattr(r, f"{m}_hist")]
                    samples.append(
                        (m, n, getattr(r, f"{m}_min_us"), getattr(r, f"{m}_max_us"), getattr(r, f"{m}_sum_us"), bins)
                    )
            for m, n, lo, hi, total, bins in samples:
                lkey = (*base, r.direction, m)
                if lkey in lat:
                    summary = lat[lkey]
                    summary[0] += n
                    summary[1] = min(summary[1], lo)
                    summary[2] = max(summary[2], hi)
                    summary[3] += total
                else:
                    lat[lkey] = [n, lo, hi, total]
                for b, c in bins:
                    buckets[(*lkey, b)] += c
        for key, a in bw.items():
            start_ms, partner, link, cls, direction, rate = key
            out[
                _row(kind="bandwidth", window_s=w, window_start_ms=start_ms, partner=partner, direction=direction,
                     link_id=link, app_class=cls, sampling_rate=rate, bytes=a[0], packets=a[1], retrans=a[2],
                     flows=a[3], flows_ended=a[4], remote_hosts=len(hosts[key]),
                     bytes_scaled=a[5], packets_scaled=a[6], retrans_scaled=a[7], bits_per_s=a[5] * 8 / w,
                     packets_per_s=a[6] / w)
            ] += 1  # fmt: skip
        for (start_ms, partner, link, cls, direction, m), (n, lo, hi, total) in lat.items():
            out[
                _row(kind="latency", window_s=w, window_start_ms=start_ms, partner=partner, direction=direction,
                     link_id=link, app_class=cls, metric=m, samples=n, min_us=lo, max_us=hi, sum_us=total)
            ] += 1  # fmt: skip
        for (start_ms, partner, link, cls, direction, m, b), c in buckets.items():
            out[
                _row(kind="latency_bucket", window_s=w, window_start_ms=start_ms, partner=partner,
                     direction=direction, link_id=link, app_class=cls, metric=m, bucket=b, samples=c)
            ] += 1  # fmt: skip
    return out


def as_rows(values: list[bytes]) -> Counter[AggRow]:
    """Aggregate records read from Kafka, in the reference's shape (floats compared as written)."""
    out: Counter[AggRow] = Counter()
    for v in values:
        d = json.loads(v)
        out[_row(**{k: d.get(k) for k in (f.name for f in AGGREGATE_FIELDS) if k != "schema_version"})] += 1
        assert d["schema_version"] == 1
    return out
