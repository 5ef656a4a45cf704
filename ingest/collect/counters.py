"""sFlow interface counter samples -> LinkCounter records for the counters topic (two per sample: in, out)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ingest.collect.decoded import LinkCounters
from ingest.flowkey import ip_text
from schemas.link_counter import LINK_COUNTER_SCHEMA_VERSION, LinkCounter, encode, key

# Kafka (key, value) pairs to the counters topic (the producer's `send_batch`).
CounterSink = Callable[[Sequence[tuple[bytes, bytes]]], None]


def link_counter_records(agent_id: str, samples: Iterable[LinkCounters]) -> list[LinkCounter]:
    out: list[LinkCounter] = []
    for s in samples:
        exporter = ip_text(s.exporter)
        for direction, octets, packets in (("in", s.in_octets, s.in_packets), ("out", s.out_octets, s.out_packets)):
            out.append(
                LinkCounter(
                    LINK_COUNTER_SCHEMA_VERSION,
                    agent_id,
                    exporter,
                    s.if_index,
                    direction,
                    s.recv_ns,
                    octets,
                    packets,
                    s.speed_bps,
                    s.seq,
                )
            )
    return out


def counter_pairs(agent_id: str, samples: Iterable[LinkCounters]) -> list[tuple[bytes, bytes]]:
    return [(key(r), encode(r)) for r in link_counter_records(agent_id, samples)]
