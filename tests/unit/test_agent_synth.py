"""The whole agent (reader, decoder, fragment tracker, flow meter, enrichment) against the generator's truth.

The generator knows what it put on the wire; the agent only sees the pcap. Bytes, packets, flows and every
handshake RTT must match exactly; histogram-only metrics (TCP timestamps, ICMP, DNS) bucket for bucket.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from ingest.agent import Agent
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.partners import PartnersConfig
from ingest.replay import replay_files
from ingest.synth import SynthConfig, generate
from schemas.flow_record import FlowRecord
from schemas.histogram import bucket_of_us

WINDOW_NS = 10 * 1_000_000_000
OPPOSITE = {"egress": "ingress", "ingress": "egress"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[FlowRecord], dict[str, Any], Agent]:
    d = tmp_path_factory.mktemp("agent")
    truth = generate(SynthConfig(seed=11, flows=1500, duration_s=40), d / "s.pcap", d / "t.json")
    records: list[FlowRecord] = []
    agent = Agent(AgentConfig(), PartnerClassifier(PartnersConfig.default()), records.append)
    result = replay_files(agent, [d / "s.pcap"])
    assert result.errors == []
    return records, truth, agent


def _key(r: FlowRecord) -> tuple[int, str, str]:
    return (r.last_ns - r.last_ns % WINDOW_NS, r.partner, r.direction)


def test_every_packet_metered(run: tuple[list[FlowRecord], dict[str, Any], Agent]) -> None:
    records, truth, agent = run
    assert agent.counters.packets_seen == truth["packets"]
    assert agent.counters.packets_decoded == truth["packets"]
    assert sum(r.packets_fwd + r.packets_rev for r in records) == truth["packets"]
    assert len({(r.agent_id, r.seq) for r in records}) == len(records)


def test_bandwidth_per_window_partner_direction(run: tuple[list[FlowRecord], dict[str, Any], Agent]) -> None:
    records, truth, _ = run
    got: dict[tuple[int, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in records:
        w, p, d = _key(r)
        got[(w, p, d)][0] += r.bytes_fwd
        got[(w, p, d)][1] += r.packets_fwd
        got[(w, p, d)][2] += 1
        got[(w, p, OPPOSITE[d])][0] += r.bytes_rev
        got[(w, p, OPPOSITE[d])][1] += r.packets_rev
    expected = {
        (b["window_start_ns"], b["partner"], b["direction"]): [b["bytes"], b["packets"], b["flows"]]
        for b in truth["bandwidth"]
    }
    assert dict(got) == expected


def test_handshake_rtt_exact(run: tuple[list[FlowRecord], dict[str, Any], Agent]) -> None:
    records, truth, _ = run
    for metric in ("hs_rtt_ext", "hs_rtt_int"):
        got: dict[tuple[int, str, str], list[int]] = defaultdict(list)
        for r in records:
            v = getattr(r, f"{metric}_us")
            if v is not None:
                got[_key(r)].append(v)
        expected = {
            (row["window_start_ns"], row["partner"], row["direction"]): row["samples_us"]
            for row in truth["latency"]
            if row["metric"] == metric
        }
        assert {k: sorted(v) for k, v in got.items()} == expected, metric


@pytest.mark.parametrize("metric", ["ts_rtt", "icmp_rtt", "dns_rtt"])
def test_latency_histograms_bucket_for_bucket(run: tuple[list[FlowRecord], dict[str, Any], Agent], metric: str) -> None:
    records, truth, _ = run
    got: dict[tuple[int, str, str], Counter[int]] = defaultdict(Counter)
    for r in records:
        for b in getattr(r, f"{metric}_hist"):
            got[_key(r)][b.b] += b.c
    expected = {
        (row["window_start_ns"], row["partner"], row["direction"]): Counter(bucket_of_us(v) for v in row["samples_us"])
        for row in truth["latency"]
        if row["metric"] == metric
    }
    assert dict(got) == expected
    assert sum(sum(c.values()) for c in expected.values()) > 50
