"""`gwtel capture` on a real interface: known traffic sent with Scapy from a network namespace over a veth pair.

The capture runs as a subprocess on the host end, writing JSON lines; the test waits until it is ready, sends
the traffic, follows the agent's metrics endpoint until every packet is read and every flow exported, checks the
metrics and the records against what it sent (computed here from the packets built, not from the agent), then
stops the capture with SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet
from scapy.utils import rdpcap, wrpcap

from gwtel.services.prometheus import PrometheusService, find_tool, query
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.native import NativeAgent
from ingest.partners import PartnersConfig
from ingest.sources.live import LiveOptions, filter_program, interface_index, interface_linktype
from ingest.synth import SynthConfig, generate
from tests.integration.netns import PEER_MAC, SENDER_MAC, VethPair, create_link, send, veth_pair
from tests.integration.txsend import offer, sender_binary

pytestmark = pytest.mark.integration

WAIT_S = 90.0
LINK = "veth-test"
SYN_GAP_S = 0.005  # SYN -> SYN-ACK
ACK_GAP_S = 0.002  # SYN-ACK -> ACK
OPPOSITE = {"egress": "ingress", "ingress": "egress"}
FlowKey = tuple[str, int, str, int, int]  # initiator, its port, responder, its port, protocol
T = TypeVar("T")

CONFIG = """\
agent: {{agent_id: {agent_id}, link_id: {link}, metrics_port: 0, idle_timeout_s: 4}}
partners:
  domestic: {{countries: [CN], prefixes: [10.77.0.0/16, "fd77::/16"]}}
  groups:
    japan: {{countries: [JP], prefixes: [198.18.1.0/24, "2001:db8:1::/48"]}}
    korea: {{countries: [KR], prefixes: [198.18.2.0/24]}}
    belt_and_road: {{countries: [SG], prefixes: [198.18.3.0/24]}}
"""


def poll(fetch: Callable[[], T], done: Callable[[T], bool], what: str, timeout_s: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = fetch()
        if done(seen):
            return seen
        if time.monotonic() >= deadline:
            pytest.fail(f"{what} not reached within {timeout_s:.0f}s; last seen: {seen!r:.2000}")
        time.sleep(0.3)


# --------------------------------------------------------------------------- the traffic and its truth
@dataclass
class Traffic:
    """Frames to send (``time`` cumulative) and what the agent must report about them."""

    frames: list[Packet] = field(default_factory=list)
    flows: dict[FlowKey, dict[str, Any]] = field(default_factory=dict)
    t: float = 0.0

    def flow(self, key: FlowKey, meta: dict[str, str], vlan: int = 0) -> None:
        """A flow of ``meta`` partner and direction, counters at 0."""
        self.flows[key] = {"bytes_fwd": 0, "packets_fwd": 0, "bytes_rev": 0, "packets_rev": 0, **meta, "vlan": vlan}

    def put(self, key: FlowKey, fwd: bool, l3: Packet, gap_s: float = 0.0) -> None:
        vlan = self.flows[key]["vlan"]
        eth = Ether(src=SENDER_MAC, dst=PEER_MAC)
        frame = eth / Dot1Q(vlan=vlan) / l3 if vlan else eth / l3
        self.t += gap_s
        frame.time = self.t
        self.frames.append(frame)
        side = "fwd" if fwd else "rev"
        self.flows[key][f"bytes_{side}"] += len(bytes(l3))  # IP header + payload
        self.flows[key][f"packets_{side}"] += 1

    def by_partner(self) -> dict[tuple[str, str], list[int]]:
        """Bytes and packets per partner and direction of travel."""
        out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for f in self.flows.values():
            for side, direction in (("fwd", f["direction"]), ("rev", OPPOSITE[f["direction"]])):
                if f[f"packets_{side}"]:
                    out[(f["partner"], direction)][0] += f[f"bytes_{side}"]
                    out[(f["partner"], direction)][1] += f[f"packets_{side}"]
        return dict(out)


def l3(src: str, dst: str) -> Packet:
    return IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)


def tcp_flow(
    tr: Traffic, cli: str, srv: str, sport: int, dport: int, up: list[int], down: list[int], **meta: str
) -> None:
    """Handshake (gaps SYN_GAP_S, ACK_GAP_S), data both ways with ACKs, FIN both ways, last ACK."""
    key = (cli, sport, srv, dport, 6)
    tr.flow(key, meta)
    cs, ss = 1000, 5000  # next sequence number of each side

    def c(flags: str, payload: bytes = b"", gap: float = 0.0) -> None:
        nonlocal cs
        tr.put(key, True, l3(cli, srv) / TCP(sport=sport, dport=dport, flags=flags, seq=cs, ack=ss) / payload, gap)
        cs += len(payload) + (1 if "S" in flags or "F" in flags else 0)

    def s(flags: str, payload: bytes = b"", gap: float = 0.0) -> None:
        nonlocal ss
        tr.put(key, False, l3(srv, cli) / TCP(sport=dport, dport=sport, flags=flags, seq=ss, ack=cs) / payload, gap)
        ss += len(payload) + (1 if "S" in flags or "F" in flags else 0)

    tr.put(key, True, l3(cli, srv) / TCP(sport=sport, dport=dport, flags="S", seq=cs - 1), 0.01)
    s("SA", gap=SYN_GAP_S)
    c("A", gap=ACK_GAP_S)
    for n in up:
        c("PA", b"u" * n)
        s("A")
    for n in down:
        s("PA", b"d" * n)
    c("A")
    c("FA")
    s("FA")
    c("A")


def udp_flow(
    tr: Traffic, cli: str, srv: str, sport: int, dport: int, up: list[int], down: list[int], vlan: int = 0, **meta: str
) -> None:
    key = (cli, sport, srv, dport, 17)
    tr.flow(key, meta, vlan)
    for n in up:
        tr.put(key, True, l3(cli, srv) / UDP(sport=sport, dport=dport) / (b"q" * n), 0.001)
    for n in down:
        tr.put(key, False, l3(srv, cli) / UDP(sport=dport, dport=sport) / (b"r" * n), 0.001)


def echo_flow(tr: Traffic, cli: str, srv: str, seqs: int, **meta: str) -> None:
    key = (cli, 0, srv, 8 << 8, 1)  # ICMP: destination "port" is type<<8|code of the first packet
    tr.flow(key, meta)
    for seq in range(1, seqs + 1):
        tr.put(key, True, IP(src=cli, dst=srv) / ICMP(type=8, id=7, seq=seq) / (b"p" * 56), 0.001)
        tr.put(key, False, IP(src=srv, dst=cli) / ICMP(type=0, id=7, seq=seq) / (b"p" * 56), 0.003)


def gateway_traffic() -> Traffic:
    tr = Traffic()
    tcp_flow(
        tr, "10.77.0.1", "198.18.1.10", 40001, 443, [300, 20], [1400, 1400, 700], partner="japan", direction="egress"
    )
    tcp_flow(tr, "10.77.0.1", "198.18.2.10", 40002, 80, [120], [900], partner="korea", direction="egress")
    tcp_flow(tr, "198.18.3.10", "10.77.0.2", 50000, 22, [64, 64], [500], partner="belt_and_road", direction="ingress")
    tcp_flow(tr, "fd77::1", "2001:db8:1::10", 40003, 443, [200], [1200], partner="japan", direction="egress")
    udp_flow(tr, "10.77.0.1", "198.18.1.53", 53000, 53, [40], [120], partner="japan", direction="egress")
    udp_flow(
        tr, "198.18.2.20", "10.77.0.3", 4000, 5000, [10, 200, 1000, 30, 7], [], partner="korea", direction="ingress"
    )
    echo_flow(tr, "10.77.0.1", "198.18.3.1", 2, partner="belt_and_road", direction="egress")
    # Linux strips the 802.1Q tag before the capture socket sees the frame; the agent must put it back.
    udp_flow(tr, "10.77.0.4", "198.18.2.40", 42001, 8000, [50, 60], [70], vlan=42, partner="korea", direction="egress")
    return tr


# --------------------------------------------------------------------------- the capture process
@dataclass
class Capture:
    proc: subprocess.Popen[bytes]
    url: str
    records_path: Path
    stderr_path: Path
    agent_id: str

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(self.url, timeout=10) as resp:
            body = resp.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body)
            for s in fam.samples
        }

    def raw_scrape(self) -> bytes:
        with urllib.request.urlopen(self.url, timeout=10) as resp:
            body: bytes = resp.read()
        return body

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.metrics().items() if n == name)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=WAIT_S)
        return rc, self.stderr_path.read_text()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.records_path.read_text().splitlines()]


@contextlib.contextmanager
def running_capture(
    pair: VethPair,
    workdir: Path,
    *extra: str,
    ring_config: str = "",
    prefix: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Iterator[Capture]:
    """`gwtel capture` on the host end, started and ready (socket bound, metrics served); killed if still running.

    `prefix`: a command that runs the capture (e.g. setpriv dropping privileges); `env`: its environment."""
    agent_id = f"cap-{uuid.uuid4().hex[:8]}"
    config = workdir / f"{agent_id}.yaml"
    text = CONFIG.format(agent_id=agent_id, link=LINK)
    if ring_config:
        text = text.replace("idle_timeout_s: 4}", f"idle_timeout_s: 4, {ring_config}}}")
    config.write_text(text)
    records = workdir / f"{agent_id}.jsonl"
    stderr = workdir / f"{agent_id}.stderr"
    argv = [sys.executable, "-m", "gwtel.cli", "--config", str(config), "capture", "--iface", pair.host_if]
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(
            [*prefix, *argv, "--to", f"jsonl:{records}", *extra], stdout=subprocess.DEVNULL, stderr=err, env=env
        )
    try:

        def ready() -> str | None:
            if proc.poll() is not None:
                pytest.fail(f"gwtel capture exited with {proc.returncode}: {stderr.read_text()}")
            m = re.search(r"metrics on (http://\S+)", stderr.read_text())
            return m.group(1) if m else None

        url = poll(ready, lambda u: u is not None, "capture ready")
        assert url is not None
        yield Capture(proc, url, records, stderr, agent_id)
    finally:
        if proc.poll() is None:  # the test failed midway: stop it the clean way first (withdraws its target)
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


@pytest.fixture
def pair() -> Iterator[VethPair]:
    with veth_pair() as p:
        yield p


def partner_bytes_in_prometheus(prometheus: PrometheusService, agent_id: str) -> dict[tuple[str, str], int]:
    promql = f'sum by (partner, direction) (gwtel_agent_partner_bytes_total{{instance="{agent_id}"}})'
    rows = query(prometheus.endpoint(), promql)
    return {(r["metric"]["partner"], r["metric"]["direction"]): int(float(r["value"][1])) for r in rows}


def test_records_and_metrics_equal_the_traffic_sent(
    pair: VethPair, tmp_path: Path, prometheus: PrometheusService
) -> None:
    tr = gateway_traffic()
    expected_bytes = {k: v[0] for k, v in tr.by_partner().items()}
    with running_capture(pair, tmp_path) as cap:
        send(pair, tr.frames, tmp_path)
        poll(lambda: cap.total("gwtel_agent_packets_seen_total"), lambda n: n >= len(tr.frames), "all packets read")
        poll(lambda: cap.total("gwtel_agent_flows_exported_total"), lambda n: n >= len(tr.flows), "all flows exported")
        # The ring's kernel counters are read once a second, apart from the packets: wait for that read too.
        poll(lambda: cap.total("gwtel_agent_kernel_packets_total"), lambda n: n >= len(tr.frames), "kernel count read")
        got = cap.metrics()
        body = cap.raw_scrape()
        # The local Prometheus found the capture through its file_sd target and scraped the partner series.
        poll(
            lambda: partner_bytes_in_prometheus(prometheus, cap.agent_id),
            lambda seen: seen == expected_bytes,
            "per-partner bytes in Prometheus",
        )
        rc, stderr = cap.stop()
        records = cap.records()

    link = (("link", LINK),)
    assert got[("gwtel_agent_packets_seen_total", link)] == len(tr.frames)
    assert got[("gwtel_agent_packets_decoded_total", link)] == len(tr.frames)
    assert got[("gwtel_agent_kernel_packets_total", link)] == len(tr.frames)
    assert got[("gwtel_agent_kernel_drops_total", link)] == 0
    # A flow whose packets cross a 10 s boundary (agent.active_timeout_s, epoch-aligned) is reported in one
    # record per interval: at least one record per flow.
    assert got[("gwtel_agent_records_produced_total", link)] >= len(tr.flows)
    partner = {
        (dict(k)["partner"], dict(k)["direction"]): [int(v), int(got[("gwtel_agent_partner_packets_total", k)])]
        for (n, k), v in got.items()
        if n == "gwtel_agent_partner_bytes_total"
    }
    assert partner == tr.by_partner()
    # Every handshake lasted at least SYN_GAP_S + ACK_GAP_S (the sender sleeps at least that long).
    handshakes = Counter((f["partner"], f["direction"]) for k, f in tr.flows.items() if k[4] == 6)
    rtt_count = {
        (dict(k)["partner"], dict(k)["direction"]): v
        for (n, k), v in got.items()
        if n == "gwtel_agent_partner_handshake_rtt_seconds_count"
    }
    assert rtt_count == handshakes
    below_6ms = [v for (n, k), v in got.items() if n.endswith("rtt_seconds_bucket") and dict(k)["le"] == "0.006"]
    assert below_6ms and sum(below_6ms) == 0

    promtool = subprocess.run(
        [str(find_tool("promtool")), "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert promtool.returncode == 0, (promtool.stdout + promtool.stderr).decode()

    assert rc == 0, stderr
    assert "Traceback" not in stderr and "stopped (stop)" in stderr
    got_flows: dict[tuple[Any, ...], dict[str, Any]] = {}
    handshakes_seen: Counter[tuple[Any, ...]] = Counter()
    for r in records:  # a flow's records (one per 10 s interval it had packets in) add up to the flow
        key = (r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["protocol"])
        f = got_flows.setdefault(key, {k: r[k] for k in ("partner", "direction", "vlan")})
        for k in ("bytes_fwd", "packets_fwd", "bytes_rev", "packets_rev"):
            f[k] = f.get(k, 0) + r[k]
        if r["protocol"] == 6 and r["hs_rtt_ext_us"] is not None:
            handshakes_seen[key] += 1
            remote_leg, near_leg = (SYN_GAP_S, ACK_GAP_S) if r["direction"] == "egress" else (ACK_GAP_S, SYN_GAP_S)
            assert remote_leg * 1e6 * 0.95 <= r["hs_rtt_ext_us"] < 1e6
            assert near_leg * 1e6 * 0.95 <= r["hs_rtt_int_us"] < 1e6
    assert got_flows == tr.flows
    assert {(r["sampling_rate"], r["link_id"]) for r in records} == {(1, LINK)}
    # Each handshake is reported once, with the record holding its packets.
    assert handshakes_seen == Counter(k for k in tr.flows if k[4] == 6)


def test_sampling_one_in_four_scales_within_five_sigma(pair: VethPair, tmp_path: Path) -> None:
    n_rate = 4
    tr = Traffic()
    sizes = [(i * 37) % 1200 + 20 for i in range(3600)]
    for j in range(3):
        udp_flow(
            tr, f"10.77.0.{j + 1}", "198.18.2.30", 41000 + j, 9000, sizes[j::3], [], partner="korea", direction="egress"
        )
    udp_packets = len(tr.frames)
    for f in tr.frames:
        f.time = 0.0  # no gaps: as fast as the sender goes
    tr.t = 0.0
    # Traffic the filter must keep out entirely.
    tcp_flow(tr, "10.77.0.9", "198.18.1.9", 40100, 443, [100], [100], partner="japan", direction="egress")
    echo_flow(tr, "10.77.0.9", "198.18.3.9", 20, partner="belt_and_road", direction="egress")
    udp = {k: f for k, f in tr.flows.items() if k[4] == 17}

    with running_capture(pair, tmp_path, "--sample", str(n_rate), "--bpf", "udp") as cap:
        send(pair, tr.frames, tmp_path)
        # Flows leave the table only once idle (4 s), so by then every sampled packet was read, and the kernel
        # counts (read every second) are up to date.
        names = ("flows_active", "flows_exported_total", "kernel_packets_total", "packets_seen_total")
        poll(
            lambda: [cap.total(f"gwtel_agent_{n}") for n in names],
            lambda v: v[0] == 0 and v[1] > 0 and v[2] == v[3] > 0,
            "every sampled packet read and every flow exported",
        )
        got = cap.metrics()
        rc, stderr = cap.stop()
        records = cap.records()

    assert rc == 0, stderr
    assert got[("gwtel_agent_kernel_drops_total", (("link", LINK),))] == 0
    assert got[("gwtel_agent_sampling_rate", (("link", LINK),))] == n_rate
    assert records and all(r["protocol"] == 17 and r["sampling_rate"] == n_rate for r in records)
    assert {(r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["protocol"]) for r in records} <= set(udp)
    sampled = sum(r["packets_fwd"] + r["packets_rev"] for r in records)
    scaled_packets = n_rate * sampled
    scaled_bytes = n_rate * sum(r["bytes_fwd"] + r["bytes_rev"] for r in records)
    sent_bytes = sum(f["bytes_fwd"] for f in udp.values())
    sq = sum((s + 28) ** 2 for s in sizes)  # IPv4 + UDP headers: 28 bytes
    # Each packet is kept with p = 1/N independently: N * (kept count) has variance (N - 1) * sum(x_i^2).
    packets_bound = 5 * math.sqrt((n_rate - 1) * udp_packets)
    bytes_bound = 5 * math.sqrt((n_rate - 1) * sq)
    assert abs(scaled_packets - udp_packets) <= packets_bound, (scaled_packets, udp_packets, packets_bound)
    assert abs(scaled_bytes - sent_bytes) <= bytes_bound, (scaled_bytes, sent_bytes, bytes_bound)
    # The partner series carry the same scaled totals as the records.
    assert got[
        ("gwtel_agent_partner_packets_total", (("direction", "egress"), ("link", LINK), ("partner", "korea")))
    ] == (scaled_packets)


@pytest.mark.parametrize("workers", [1, 2])
def test_link_flap_is_survived_and_a_recreated_interface_is_captured_again(
    pair: VethPair, tmp_path: Path, workers: int
) -> None:
    before, after, again = Traffic(), Traffic(), Traffic()
    udp_flow(before, "10.77.0.5", "198.18.1.77", 42000, 7000, [100] * 5, [], partner="japan", direction="egress")
    udp_flow(after, "10.77.0.5", "198.18.1.77", 42000, 7000, [300] * 3, [], partner="japan", direction="egress")
    udp_flow(again, "10.77.0.5", "198.18.1.77", 42000, 7000, [200] * 2, [], partner="japan", direction="egress")
    with running_capture(pair, tmp_path, "--workers", str(workers)) as cap:
        send(pair, before.frames, tmp_path)
        poll(lambda: cap.total("gwtel_agent_packets_seen_total"), lambda n: n >= 5, "first packets read")
        subprocess.run(["ip", "link", "set", pair.host_if, "down"], check=True, timeout=30)
        subprocess.run(["ip", "link", "set", pair.host_if, "up"], check=True, timeout=30)
        poll(lambda: cap.proc.poll() is None and cap.total("gwtel_agent_packets_seen_total"), lambda n: n == 5, "alive")
        send(pair, after.frames, tmp_path)
        poll(lambda: cap.total("gwtel_agent_packets_seen_total"), lambda n: n >= 8, "packets after the flap read")
        poll(lambda: cap.total("gwtel_agent_link_down_total"), lambda n: n >= 1, "link down counted")
        # Removed (both veth ends go) and created again under the same name: a new interface index.
        subprocess.run(["ip", "link", "del", pair.host_if], check=True, timeout=30)
        time.sleep(1.5)  # the capture notices within a second
        create_link(pair)
        poll(lambda: cap.total("gwtel_agent_ring_reopened_total"), lambda n: n >= workers, "rings opened again")
        send(pair, again.frames, tmp_path)
        poll(lambda: cap.total("gwtel_agent_packets_seen_total"), lambda n: n >= 10, "packets after re-creation read")
        assert cap.proc.poll() is None
        rc, stderr = cap.stop()
        records = cap.records()
    assert rc == 0, stderr
    assert "Traceback" not in stderr
    assert f"interface {pair.host_if} was removed" in stderr
    # Every packet of the three sends, in one flow or in slices of it.
    assert sum(r["packets_fwd"] for r in records) == 10
    assert sum(r["bytes_fwd"] for r in records) == 5 * 128 + 3 * 328 + 2 * 228


def test_flow_sampling_keeps_whole_flows_with_their_exact_handshake_rtt(pair: VethPair, tmp_path: Path) -> None:
    n_rate = 3
    tr = Traffic()
    for i in range(60):
        tcp_flow(
            tr, f"10.77.1.{i + 1}", "198.18.1.10", 41000 + i, 443, [100], [700], partner="japan", direction="egress"
        )
    with running_capture(pair, tmp_path, "--sample", str(n_rate), "--sample-mode", "flow") as cap:
        send(pair, tr.frames, tmp_path)
        poll(
            lambda: [
                cap.total(f"gwtel_agent_{n}") for n in ("flows_active", "kernel_packets_total", "packets_seen_total")
            ],
            lambda v: v[0] == 0 and v[1] == v[2] > 0,
            "every sampled packet read and every flow exported",
        )
        rc, stderr = cap.stop()
        records = cap.records()
    assert rc == 0, stderr
    assert records and {(r["sampling_rate"], r["sampling_mode"]) for r in records} == {(n_rate, "flow")}
    # Roughly one flow in three (binomial(60, 1/3): 5 sigma is about 18 flows).
    flows = _per_flow(records)  # a flow crossing a 10 s boundary is cut into two records
    assert 2 <= len(flows) <= 38, len(flows)
    for key, f in flows.items():
        sent = tr.flows[key[:5]]
        # Every packet of a kept flow (records carry what was kept; consumers scale by sampling_rate).
        assert (f["packets_fwd"], f["packets_rev"]) == (sent["packets_fwd"], sent["packets_rev"])
        assert (f["bytes_fwd"], f["bytes_rev"]) == (sent["bytes_fwd"], sent["bytes_rev"])
    for r in records:
        if r["hs_rtt_ext_us"] is None:  # the later slice of a cut flow: its handshake went with the first
            assert (r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["protocol"], r["vlan"]) in flows
            continue
        # The handshake's both legs were seen, and measured at least the gaps the sender slept.
        assert SYN_GAP_S * 1e6 * 0.95 <= r["hs_rtt_ext_us"] < 1e6
        assert ACK_GAP_S * 1e6 * 0.95 <= r["hs_rtt_int_us"] < 1e6
    assert sum(r["hs_rtt_ext_us"] is not None for r in records) == len(flows)


def _per_flow(records: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Slices of one flow added up: counters summed, flags OR-ed, labels as they are."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        key = (r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["protocol"], r["vlan"])
        f = out.setdefault(key, {"direction": r["direction"], "partner": r["partner"], "tcp_flags": [0, 0], "n": 0})
        f["n"] += 1
        for k in ("bytes_fwd", "packets_fwd", "bytes_rev", "packets_rev"):
            f[k] = f.get(k, 0) + r[k]
        f["tcp_flags"] = [f["tcp_flags"][0] | r["tcp_flags_fwd"], f["tcp_flags"][1] | r["tcp_flags_rev"]]
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_live_capture_of_a_capture_file_equals_its_replay(pair: VethPair, tmp_path: Path, workers: int) -> None:
    # Two workers share the interface by flow hash: each flow must still be metered whole by one of them.
    pcap = tmp_path / "gateway.pcap"
    generate(SynthConfig(seed=11, flows=300, duration_s=3), pcap, tmp_path / "truth.json")
    config = tmp_path / "replay.yaml"
    config.write_text(CONFIG.format(agent_id="replay-ref", link=LINK))
    replayed = tmp_path / "replay.jsonl"
    ref = subprocess.run(
        [sys.executable, "-m", "gwtel.cli", "--config", str(config), "replay", str(pcap), "--to", f"jsonl:{replayed}"],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    assert ref.returncode == 0, ref.stderr
    want = _per_flow([json.loads(line) for line in replayed.read_text().splitlines()])
    with running_capture(pair, tmp_path, "--workers", str(workers)) as cap:
        sent = subprocess.run(
            ["ip", "netns", "exec", pair.netns, "tcpreplay", "-q", "--pps=5000", "-i", pair.ns_if, str(pcap)],
            capture_output=True,
            text=True,
            timeout=WAIT_S,
            check=False,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        frames = int(re.search(r"Actual: (\d+) packets", sent.stdout).group(1))  # type: ignore[union-attr]
        poll(lambda: cap.total("gwtel_agent_packets_seen_total"), lambda n: n >= frames, "every frame read")
        rings = poll(
            lambda: [v for (n, _), v in cap.metrics().items() if n == "gwtel_agent_ring_packets_total"],
            lambda v: sum(v) == frames,
            "every frame counted by the rings",
        )
        assert len(rings) == workers and all(v > 0 for v in rings), rings  # the fanout used every ring
        rc, stderr = cap.stop()
        got = _per_flow(cap.records())
    assert rc == 0, stderr
    assert len(want) > 200

    # Records are cut at 10 s boundaries of the packets' own clock: the capture's clock (now) and the file's
    # fall differently on them, so a flow may be one record in one and two in the other. Its sums are the same.
    def sums(flows: dict[tuple[Any, ...], dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
        return {k: {f: v for f, v in d.items() if f != "n"} for k, d in flows.items()}

    assert sums(got) == sums(want)


def test_a_reader_held_back_makes_the_kernel_drop_and_the_agent_recovers(pair: VethPair, tmp_path: Path) -> None:
    burst, after = Traffic(), Traffic()
    udp_flow(burst, "10.77.0.6", "198.18.1.66", 42100, 7100, [200] * 600, [], partner="japan", direction="egress")
    udp_flow(after, "10.77.0.7", "198.18.1.67", 42101, 7101, [100] * 5, [], partner="japan", direction="egress")
    for f in burst.frames:
        f.time = 0.0
    # Two 4 KiB blocks: a few dozen frames fill the ring.
    ring = "capture: {block_size_kib: 4, block_count: 2, block_timeout_ms: 10}"
    with running_capture(pair, tmp_path, ring_config=ring) as cap:
        cap.proc.send_signal(signal.SIGSTOP)  # the reader stops reading; the kernel keeps filling the ring
        try:
            send(pair, burst.frames, tmp_path)
        finally:
            cap.proc.send_signal(signal.SIGCONT)
        poll(
            lambda: [cap.total("gwtel_agent_kernel_packets_total"), cap.total("gwtel_agent_packets_seen_total")],
            lambda v: v[0] >= 600,
            "the burst counted by the kernel",
        )
        drops = cap.total("gwtel_agent_kernel_drops_total")
        ring_drops = cap.total("gwtel_agent_ring_drops_total")
        seen = cap.total("gwtel_agent_packets_seen_total")
        assert drops > 0 and ring_drops == drops
        assert seen + drops == 600
        send(pair, after.frames, tmp_path)  # recovered: everything sent afterwards is read
        poll(lambda: cap.total("gwtel_agent_packets_seen_total"), lambda n: n >= seen + 5, "packets after the burst")
        assert cap.total("gwtel_agent_kernel_drops_total") == drops
        rc, stderr = cap.stop()
    assert rc == 0, stderr


def test_one_process_captures_several_interfaces(pair: VethPair, tmp_path: Path) -> None:
    first, second = Traffic(), Traffic()
    udp_flow(first, "10.77.0.8", "198.18.1.88", 42200, 7200, [100] * 4, [50], partner="japan", direction="egress")
    tcp_flow(second, "10.77.0.9", "198.18.2.99", 42300, 443, [120], [900], partner="korea", direction="egress")
    with veth_pair() as other, running_capture(pair, tmp_path, "--iface", other.host_if, "--workers", "2") as cap:
        send(pair, first.frames, tmp_path)
        send(other, second.frames, tmp_path)
        total = len(first.frames) + len(second.frames)
        poll(lambda: cap.total("gwtel_agent_packets_seen_total"), lambda n: n >= total, "frames of both interfaces")
        ifaces = poll(
            lambda: {
                dict(k)["iface"] for (n, k), v in cap.metrics().items() if n == "gwtel_agent_ring_packets_total" and v
            },
            lambda seen: len(seen) == 2,
            "both interfaces' rings counted",
        )
        assert ifaces == {pair.host_if, other.host_if}
        rc, stderr = cap.stop()
        records = cap.records()
    assert rc == 0, stderr
    got = {
        (r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["protocol"]): {
            k: r[k] for k in ("bytes_fwd", "packets_fwd", "bytes_rev", "packets_rev", "partner", "direction", "vlan")
        }
        for r in records
    }
    assert got == {**first.flows, **second.flows}
    assert len({r["seq"] for r in records}) == len(records) == 2  # one sequence for the whole process


@pytest.mark.parametrize("threads", [1, 2])
def test_the_ring_sender_offers_every_frame_in_order_and_skips_what_the_mtu_refuses(
    pair: VethPair, tmp_path: Path, threads: int
) -> None:
    # The benchmark's sender (native/src/bin/gwtel-send.rs): what arrives at the other end of the veth pair,
    # as tcpdump writes it, must be the frames Scapy built, byte for byte, twice (two loops), each sending thread's
    # part in order; a frame longer than the interface's MTU allows is not sent and is counted.
    frames = [bytes(f) for f in gateway_traffic().frames]
    too_long = Ether(src=SENDER_MAC, dst=PEER_MAC) / IP(src="10.77.0.1", dst="198.18.1.1") / UDP() / (b"x" * 1600)
    pcap = tmp_path / "offer.pcap"
    wrpcap(str(pcap), [Ether(f) for f in frames[:5]] + [too_long] + [Ether(f) for f in frames[5:]])
    out = tmp_path / "arrived.pcap"
    loops = 2
    err = tmp_path / "tcpdump.err"
    with open(err, "wb") as e:
        dump = subprocess.Popen(
            ["tcpdump", "-i", pair.host_if, "-w", str(out), "-U", "-n", "-p", "-c", str(loops * len(frames))],
            stdout=subprocess.DEVNULL,
            stderr=e,
        )
    try:
        poll(err.read_text, lambda t: "listening" in t or dump.poll() is not None, "tcpdump listening")
        report = offer(sender_binary(), pair.netns, pair.ns_if, pcap, loops=loops, pps=2000, threads=threads)
        assert dump.wait(timeout=WAIT_S) == 0, err.read_text()
    finally:
        if dump.poll() is None:
            dump.kill()
            dump.wait()
    assert (report["sent"], report["skipped"]) == (loops * len(frames), 1)
    arrived = [bytes(p) for p in rdpcap(str(out))]
    parts = [frames[len(frames) * t // threads : len(frames) * (t + 1) // threads] for t in range(threads)]
    for part in parts:  # the threads interleave; each sends its part, whole, loop after loop
        mine = [f for f in arrived if f in part]
        assert mine == part * loops
    assert Counter(arrived) == Counter(frames * loops)


def _small_ring_opener(pair: VethPair) -> tuple[NativeAgent, Callable[[Any, int], int | None]]:
    """A native agent, and a function that opens a small ring of one of its engines on the pair's capture side
    in fanout group `group` (0: a new one) and returns the group's id. Nothing reads the rings: the frames they
    have no room for count as kernel drops."""
    agent = NativeAgent(AgentConfig(), PartnerClassifier(PartnersConfig()), lambda _r: None)
    lt = interface_linktype(pair.host_if)
    prog = filter_program(LiveOptions(pair.host_if, promisc=False), lt)
    idx = interface_index(pair.host_if)
    assert idx is not None

    def open_ring(engine: Any, group: int) -> int | None:
        got: int | None = engine.open_ring(
            ifindex=idx,
            linktype=lt,
            filter=prog,
            block_size=1 << 16,
            block_count=2,
            block_timeout_ms=10,
            fanout_group=group,
            promisc=False,
        )
        return got

    return agent, open_ring


def test_fanout_group_ids_are_unique_in_the_namespace_and_joined_by_id(pair: VethPair) -> None:
    # 0 asks the kernel for a new group with an id no other group has; giving an id joins that group.
    agent, open_ring = _small_ring_opener(pair)
    engines = [agent.new_engine() for _ in range(3)]

    try:
        first, second = open_ring(engines[0], 0), open_ring(engines[1], 0)
        assert first is not None and second is not None and first != second
        assert open_ring(engines[2], first) == first
    finally:
        for e in engines:
            e.close_ring()


def test_rings_joining_a_fanout_group_while_frames_arrive_count_no_frame_twice(pair: VethPair, tmp_path: Path) -> None:
    # A ring must be bound to the interface before the kernel lets it join the group, and a bound ring receives
    # every frame by itself until it joins: frames arriving then also reach the group's other rings. Rings join
    # one after the other while a stream of frames arrives; the kernel's count of frames accepted, over every ring,
    # must not exceed the frames the interface received.
    joins = 150
    frames = [
        Ether(src=SENDER_MAC, dst=PEER_MAC) / IP(src="10.77.0.5", dst="198.18.1.77") / UDP(sport=20000 + i, dport=7000)
        for i in range(1000)
    ]
    pcap = tmp_path / "flows.pcap"
    wrpcap(str(pcap), frames)
    binary = sender_binary()
    agent, open_ring = _small_ring_opener(pair)

    rx = Path("/sys/class/net") / pair.host_if / "statistics" / "rx_packets"
    engines = [agent.new_engine() for _ in range(joins + 1)]
    sent: dict[str, Any] = {}
    try:
        before = int(rx.read_text())
        group = open_ring(engines[0], 0)
        assert group is not None
        sender = threading.Thread(
            target=lambda: sent.update(offer(binary, pair.netns, pair.ns_if, pcap, loops=2000, pps=300_000))
        )
        sender.start()
        try:
            poll(lambda: int(rx.read_text()) - before, lambda n: n > 10_000, "frames arriving")
            for e in engines[1:]:
                assert open_ring(e, group) == group
                time.sleep(0.002)
            joined_while_sending = sender.is_alive()
        finally:
            sender.join(timeout=WAIT_S)
        time.sleep(0.5)
        counted = sum(e.ring_stats()[0] for e in engines)
        arrived = int(rx.read_text()) - before
    finally:
        for e in engines:
            e.close_ring()
    assert joined_while_sending and sent["sent"] == 2000 * len(frames)
    assert counted <= arrived, f"{counted - arrived} frames counted twice"
    assert counted >= 0.99 * arrived


def test_two_agents_with_fanout_workers_on_one_interface_each_see_every_frame(pair: VethPair, tmp_path: Path) -> None:
    # Two processes, two workers each: had they joined one group, each would see part of the traffic.
    tr = gateway_traffic()
    with (
        running_capture(pair, tmp_path, "--workers", "2") as one,
        running_capture(pair, tmp_path, "--workers", "2") as two,
    ):
        send(pair, tr.frames, tmp_path)
        for cap in (one, two):
            seen = partial(cap.total, "gwtel_agent_packets_seen_total")
            poll(seen, lambda n: n >= len(tr.frames), "every frame read by both")
        stopped = [one.stop(), two.stop()]
        got = [one.records(), two.records()]
    want = {k: [f["packets_fwd"], f["packets_rev"]] for k, f in tr.flows.items()}
    for (rc, stderr), records in zip(stopped, got, strict=True):
        assert rc == 0, stderr
        flows: dict[FlowKey, list[int]] = defaultdict(lambda: [0, 0])
        for r in records:  # a flow crossing a 10 s boundary is two records
            f = flows[(r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["protocol"])]
            f[0] += r["packets_fwd"]
            f[1] += r["packets_rev"]
        assert dict(flows) == want
