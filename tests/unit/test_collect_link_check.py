"""sFlow counter samples kept as link counters and cross-checked against the flow samples' totals.

Hand-built sFlow v5 datagrams (sflow.org's sFlow version 5 layout): flow samples of known IP lengths at 1:1000
entering ifIndex 1 and leaving ifIndex 2, and a generic interface counter sample per interface. The scrape must
show, per (exporter, interface, direction), the counter as sent and the flows' octets scaled by the rate.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gwtel_native
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ingest.collect.decoded import LinkCounters
from ingest.collect.frames import batch
from ingest.collect.metrics import CollectorMetrics
from ingest.collect.service import CollectorState
from tests.exports import sflow_counters, sflow_samples

AGENT = "192.0.2.1"


def scrape(state: CollectorState, engine: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    svc = SimpleNamespace(
        engine=engine, state=state, builder=SimpleNamespace(unmapped=0), listeners=SimpleNamespace(stats=[])
    )
    reg = CollectorRegistry()
    reg.register(CollectorMetrics(svc, None))  # type: ignore[arg-type]
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(generate_latest(reg).decode())
        for s in fam.samples
    }


def test_counter_samples_and_the_flows_totals_side_by_side() -> None:
    ip_lens = [1500, 40, 576]
    flows = sflow_samples([("10.0.0.1", "203.0.113.9", 40000 + i, 443, n) for i, n in enumerate(ip_lens)], rate=1000)
    counters = sflow_counters([(1, 2_200_000, 7), (2, 11, 2_150_000)], agent=AGENT)
    engine = gwtel_native.Collector()
    engine.feed(batch([(AGENT, 1_700_000_000_000_000_000, d) for d in (flows, counters)]))
    state = CollectorState()
    state.add_flow_octets(engine.take_flow_octets())
    for t in engine.take_links():
        lc = LinkCounters._make(t)
        state.links[(lc.exporter, lc.if_index)] = lc
    got = scrape(state, engine)

    def value(name: str, if_index: int, direction: str) -> float:
        labels = (("direction", direction), ("exporter", AGENT), ("if_index", str(if_index)))
        return got[(name, labels)]

    counted = "gwtel_collector_link_octets_total"
    from_flows = "gwtel_collector_link_flow_octets_total"
    assert [value(counted, i, d) for i, d in ((1, "in"), (1, "out"), (2, "in"), (2, "out"))] == [
        2_200_000,
        7,
        11,
        2_150_000,
    ]
    assert value(from_flows, 1, "in") == value(from_flows, 2, "out") == sum(ip_lens) * 1000
    assert value(from_flows, 1, "out") == value(from_flows, 2, "in") == 0
