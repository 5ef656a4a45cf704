"""The traffic generator's ground truth, checked against Scapy's reading of the pcap it wrote."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from pathlib import Path

import iptocc
import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import PcapReader

from ingest.synth import DOMESTIC_BLOCKS, EPOCH_NS, PARTNER_SITES, SynthConfig, generate


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    d = tmp_path_factory.mktemp("synth")
    doc = generate(SynthConfig(seed=7, flows=300, duration_s=30), d / "s.pcap", d / "s.json")
    return d / "s.pcap", doc


def test_blocks_are_allocated_to_the_stated_countries() -> None:
    for block in DOMESTIC_BLOCKS:
        assert iptocc.country_code(str(ipaddress.ip_network(block).network_address + 1)) == "CN"
    for sites in PARTNER_SITES.values():
        for block, country, _ in sites:
            assert iptocc.country_code(str(ipaddress.ip_network(block).network_address + 1)) == country


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    cfg = SynthConfig(seed=3, flows=50)
    a = generate(cfg, tmp_path / "a.pcap", tmp_path / "a.json")
    b = generate(cfg, tmp_path / "b.pcap", tmp_path / "b.json")
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()
    assert a["bandwidth"] == b["bandwidth"]


def _partner_of(addr: str) -> str | None:
    ip = ipaddress.ip_address(addr)
    for partner, sites in PARTNER_SITES.items():
        if any(ip in ipaddress.ip_network(block) for block, _, _ in sites):
            return partner
    return None


def test_truth_matches_an_independent_reading(synth: tuple[Path, dict[str, object]]) -> None:
    pcap, doc = synth
    window_ns = int(doc["window_s"]) * 1_000_000_000  # type: ignore[call-overload]
    # Scapy: per flow (5-tuple, either way), the packets, bytes and last timestamp, per direction of travel.
    flows: dict[tuple[object, ...], list[tuple[int, str, int]]] = defaultdict(list)
    domestic = [ipaddress.ip_network(b) for b in DOMESTIC_BLOCKS]
    with PcapReader(str(pcap)) as reader:
        for pkt in reader:
            ip = pkt[IP]
            sport = pkt.sport if TCP in pkt or ip.proto == 17 else 0
            dport = pkt.dport if TCP in pkt or ip.proto == 17 else 0
            ends = sorted([(ip.src, sport), (ip.dst, dport)])
            from_domestic = any(ipaddress.ip_address(ip.src) in n for n in domestic)
            ts_ns = int(pkt.time * 1_000_000) * 1000
            flows[(ip.proto, *ends)].append((ts_ns, "egress" if from_domestic else "ingress", ip.len))
    got: dict[tuple[int, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for key, pkts in flows.items():
        last = max(t for t, _, _ in pkts)
        window = last - last % window_ns
        remote = key[1][0] if _partner_of(key[1][0]) else key[2][0]  # type: ignore[index]
        partner = _partner_of(remote)
        assert partner is not None
        for _, direction, length in pkts:
            got[(window, partner, direction)][0] += length
            got[(window, partner, direction)][1] += 1
    expected = {
        (r["window_start_ns"], r["partner"], r["direction"]): [r["bytes"], r["packets"]]
        for r in doc["bandwidth"]  # type: ignore[attr-defined]
    }
    assert dict(got) == expected
    assert min(w for w, _, _ in expected) >= EPOCH_NS


def test_latency_samples_are_plausible(synth: tuple[Path, dict[str, object]]) -> None:
    _, doc = synth
    by_metric: dict[str, list[int]] = defaultdict(list)
    for row in doc["latency"]:  # type: ignore[attr-defined]
        by_metric[row["metric"]].extend(row["samples_us"])
    assert set(by_metric) == {"hs_rtt_ext", "hs_rtt_int", "ts_rtt", "icmp_rtt", "dns_rtt"}
    assert all(20_000 <= v <= 4 * 220_000 + 3000 for v in by_metric["hs_rtt_ext"])
    assert all(200 <= v <= 2000 for v in by_metric["hs_rtt_int"])
