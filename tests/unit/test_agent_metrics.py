"""The agent's metrics: names and labels, per-partner series against the generator's truth, sampling, RTT buckets."""

from __future__ import annotations

import io
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gwtel.metrics_http import process_registry
from gwtel.services.prometheus import find_tool
from ingest.agent import Agent
from ingest.agent_metrics import AgentCollector, MeteredAgent, PartnerTally
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.native import NativeAgent
from ingest.partners import PartnersConfig
from ingest.replay import replay_files
from ingest.sinks import JsonlSink
from ingest.synth import SynthConfig, generate
from schemas.flow_record import FlowRecord
from tests.records import sample_flow

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(agent: MeteredAgent) -> bytes:
    return generate_latest(process_registry(AgentCollector(agent)))


def samples(body: bytes) -> Samples:
    """Every sample of the exposition, keyed by (sample name, sorted labels)."""
    out: Samples = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def by_name(got: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in got.items() if n == name}


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Agent, list[FlowRecord], dict[str, Any], bytes]:
    d = tmp_path_factory.mktemp("agent-metrics")
    truth = generate(SynthConfig(seed=5, flows=200, duration_s=20), d / "s.pcap", d / "t.json")
    records: list[FlowRecord] = []
    agent = Agent(AgentConfig(link_id="qd-jp-1"), PartnerClassifier(PartnersConfig.default()), records.append)
    assert replay_files(agent, [Path(d / "s.pcap")]).errors == []
    return agent, records, truth, scrape(agent)


def test_partner_series_equal_the_traffic_generated(
    replayed: tuple[Agent, list[FlowRecord], dict[str, Any], bytes],
) -> None:
    _, _, truth, body = replayed
    expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in truth["bandwidth"]:
        expected[(row["partner"], row["direction"])][0] += row["bytes"]
        expected[(row["partner"], row["direction"])][1] += row["packets"]
    got = samples(body)
    octets = by_name(got, "gwtel_agent_partner_bytes_total")
    packets = by_name(got, "gwtel_agent_partner_packets_total")
    assert {dict(k)["link"] for k in octets} == {"qd-jp-1"}
    assert {(dict(k)["partner"], dict(k)["direction"]): [int(v), int(packets[k])] for k, v in octets.items()} == dict(
        expected
    )
    assert len(expected) >= 6  # several partners, both directions


def test_native_agent_series_equal_the_traffic_generated_and_its_address_cache_is_counted(tmp_path: Path) -> None:
    truth = generate(SynthConfig(seed=5, flows=200, duration_s=20), tmp_path / "s.pcap", tmp_path / "t.json")
    out = io.BytesIO()
    agent = NativeAgent(AgentConfig(link_id="qd-jp-1"), PartnerClassifier(PartnersConfig.default()), JsonlSink(out))
    assert replay_files(agent, [tmp_path / "s.pcap"]).errors == []
    got = samples(scrape(agent))
    expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in truth["bandwidth"]:
        expected[(row["partner"], row["direction"])][0] += row["bytes"]
        expected[(row["partner"], row["direction"])][1] += row["packets"]
    octets = by_name(got, "gwtel_agent_partner_bytes_total")
    packets = by_name(got, "gwtel_agent_partner_packets_total")
    assert {(dict(k)["partner"], dict(k)["direction"]): [int(v), int(packets[k])] for k, v in octets.items()} == dict(
        expected
    )
    lines = out.getvalue().splitlines()
    link = (("link", "qd-jp-1"),)
    assert got[("gwtel_agent_records_produced_total", link)] == len(lines) > 0
    ext = [v for row in truth["latency"] if row["metric"] == "hs_rtt_ext" for v in row["samples_us"]]
    count = sum(by_name(got, "gwtel_agent_partner_handshake_rtt_seconds_count").values())
    assert count == len(ext)
    addresses = {a for line in lines for a in (orjson.loads(line)["src_ip"], orjson.loads(line)["dst_ip"])}
    misses = got[("gwtel_agent_address_misses_total", link)]
    assert misses >= len(addresses)  # each address asked once (addresses of unfinished or rejected flows too)
    assert got[("gwtel_agent_address_lookups_total", link)] > 2 * misses  # hosts recur: the cache answers
    assert got[("gwtel_agent_address_cache_entries", link)] == misses
    assert got[("gwtel_agent_address_cache_clears_total", link)] == 0


def test_ledger_counters_equal_the_traffic_generated(
    replayed: tuple[Agent, list[FlowRecord], dict[str, Any], bytes],
) -> None:
    _, records, truth, body = replayed
    got = samples(body)
    link = (("link", "qd-jp-1"),)
    assert got[("gwtel_agent_packets_seen_total", link)] == truth["packets"]
    assert got[("gwtel_agent_packets_decoded_total", link)] == truth["packets"]
    assert sum(by_name(got, "gwtel_agent_packets_rejected_total").values()) == 0
    assert sum(by_name(got, "gwtel_agent_flows_exported_total").values()) == len(records)
    assert got[("gwtel_agent_records_produced_total", link)] == len(records)
    assert got[("gwtel_agent_kernel_drops_total", link)] == 0
    assert got[("gwtel_agent_spool_bytes", link)] == 0


def test_handshake_histogram_counts_every_complete_handshake(
    replayed: tuple[Agent, list[FlowRecord], dict[str, Any], bytes],
) -> None:
    _, _, truth, body = replayed
    ext = [v for row in truth["latency"] if row["metric"] == "hs_rtt_ext" for v in row["samples_us"]]
    internal = [v for row in truth["latency"] if row["metric"] == "hs_rtt_int" for v in row["samples_us"]]
    assert len(ext) == len(internal) > 50  # every generated handshake has both legs
    got = samples(body)
    count = sum(by_name(got, "gwtel_agent_partner_handshake_rtt_seconds_count").values())
    total = sum(by_name(got, "gwtel_agent_partner_handshake_rtt_seconds_sum").values())
    assert count == len(ext)
    assert total == pytest.approx((sum(ext) + sum(internal)) / 1e6, rel=1e-9)


def test_sampled_records_are_scaled_and_split_by_direction_of_travel() -> None:
    tally = PartnerTally()
    tally.add(sample_flow(sampling_rate=4, bytes_fwd=1200, packets_fwd=10, bytes_rev=9000, packets_rev=8))
    tally.add(
        sample_flow(direction="ingress", partner="korea", bytes_fwd=500, packets_fwd=5, bytes_rev=0, packets_rev=0)
    )
    tally.add(
        sample_flow(direction="domestic", partner="other", bytes_fwd=70, packets_fwd=1, bytes_rev=30, packets_rev=1)
    )
    assert tally.traffic == {
        ("japan", "egress", "jp-1"): [4800, 40],
        ("japan", "ingress", "jp-1"): [36000, 32],
        ("korea", "ingress", "jp-1"): [500, 5],
        ("other", "domestic", "jp-1"): [100, 2],
    }


def test_handshake_rtt_buckets_are_inclusive_upper_bounds() -> None:
    tally = PartnerTally()
    tally.add(sample_flow(hs_rtt_ext_us=3000, hs_rtt_int_us=4000))  # 7 ms
    tally.add(sample_flow(hs_rtt_ext_us=600, hs_rtt_int_us=400))  # exactly 1 ms: in le="0.001"
    tally.add(sample_flow(hs_rtt_ext_us=35_000, hs_rtt_int_us=None))  # incomplete handshake: not observed
    tally.add(sample_flow(hs_rtt_ext_us=2_500_000, hs_rtt_int_us=1))  # beyond the last bound
    agent = Agent(AgentConfig(), PartnerClassifier(PartnersConfig.default()), lambda _r: None)
    agent.partners = tally
    got = by_name(samples(scrape(agent)), "gwtel_agent_partner_handshake_rtt_seconds_bucket")
    le = {dict(k)["le"]: v for k, v in got.items() if dict(k)["partner"] == "japan"}
    assert (le["0.001"], le["0.006"], le["0.008"], le["2.0"], le["+Inf"]) == (1, 1, 2, 2, 3)


def test_handshake_rtt_is_kept_per_application_class() -> None:
    # the alert rules judge each class's objective on its own flows (gwtel/observability/rules.py)
    tally = PartnerTally()
    tally.add(sample_flow(hs_rtt_ext_us=3000, hs_rtt_int_us=4000, app_class="vr"))  # 7 ms
    tally.add(sample_flow(hs_rtt_ext_us=40_000, hs_rtt_int_us=1000, app_class="trading"))  # 41 ms
    tally.add(sample_flow(hs_rtt_ext_us=40_000, hs_rtt_int_us=1000, app_class="trading"))
    assert {k: sum(h.counts) for k, h in tally.handshake.items()} == {
        ("japan", "egress", "vr"): 1,
        ("japan", "egress", "trading"): 2,
    }


def test_names_labels_and_promtool(replayed: tuple[Agent, list[FlowRecord], dict[str, Any], bytes]) -> None:
    _, _, _, body = replayed
    got = samples(body)
    names = {n for n, _ in got}
    required = {
        "gwtel_agent_partner_bytes_total": {"partner", "direction", "link"},
        "gwtel_agent_partner_packets_total": {"partner", "direction", "link"},
        "gwtel_agent_partner_handshake_rtt_seconds_bucket": {"partner", "direction", "app_class", "le"},
        "gwtel_agent_kernel_drops_total": {"link"},
        "gwtel_agent_spool_bytes": {"link"},
        "gwtel_agent_records_produced_total": {"link"},
        "gwtel_agent_packets_seen_total": {"link"},
        "gwtel_agent_packets_decoded_total": {"link"},
        "gwtel_agent_packets_rejected_total": {"link", "reason"},
        "gwtel_agent_flows_exported_total": {"link", "reason"},
        "gwtel_agent_produce_latency_seconds_bucket": {"link", "le"},
    }
    for name, labels in required.items():
        assert name in names, name
        assert all({k for k, _ in lab} == labels for lab in by_name(got, name)), name
    # Bounded labels only: no address or port ever becomes a label value (application classes are configured).
    keys = {k for (n, lab) in got if n.startswith("gwtel_agent_") for k, _ in lab}
    assert keys == {"link", "partner", "direction", "reason", "le", "app_class"}  # classes: at most 32
    proc = subprocess.run(
        [str(find_tool("promtool")), "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
