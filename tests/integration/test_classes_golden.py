"""Golden capture with per-class truth worked out by hand, through the native engine into ClickHouse.

Built with Scapy: trading (TCP to ports 9000-9099 marked EF), VR (UDP to 40000-40999), bulk web (TCP 443,
unmarked), all with the partner japan; one trading flow with korea. Bytes and packets are counted from how each
packet was built (IPv4 20 + TCP 20 or UDP 8 + payload), handshake RTTs from the times the packets were given, so
the truth owes nothing to the engine. In ClickHouse: bytes and packets per class and partner exact, each class's
handshake p95 exact, and on the same partner an objective met (trading) and one missed (bulk).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Packet, Raw

from ingest.applications import AppClassifier, ApplicationsConfig
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.native import NativeAgent
from ingest.partners import PartnersConfig
from ingest.replay import replay_files
from processors.migrate import Migrator
from processors.queries import handshake_rtt, slo_status
from processors.rows import flow_rows
from processors.tables import FLOWS_RAW
from tests.engines import Captured
from tests.integration.queries_data import nearest_rank
from tests.packets import eth, frame_of, pcap_bytes

pytestmark = pytest.mark.integration

EF = 46 << 2  # ToS byte of DSCP EF
PARTNERS = PartnersConfig.model_validate(
    {
        "domestic": {"countries": [], "prefixes": ["10.0.0.0/8"]},
        "groups": {"japan": {"prefixes": ["203.0.113.0/24"]}, "korea": {"prefixes": ["198.51.100.0/24"]}},
    }
)
APPS = AppClassifier(
    ApplicationsConfig.model_validate(
        {
            "default": "bulk",
            "rules": [
                {"class": "trading", "protocols": ["tcp"], "server_ports": ["9000-9099"], "dscp": ["EF"]},
                {"class": "vr", "protocols": ["udp"], "server_ports": ["40000-40999"]},
            ],
        }
    )
)
OBJECTIVES = {"japan": {"trading": 60.0, "bulk": 50.0}}
FLOWS = 20  # per class with japan


class Truth:
    def __init__(self) -> None:
        self.bytes: dict[tuple[str, str], int] = {}
        self.packets: dict[tuple[str, str], int] = {}
        self.rtt_us: dict[tuple[str, str], list[int]] = {}

    def count(self, key: tuple[str, str], ip_len: int) -> None:
        self.bytes[key] = self.bytes.get(key, 0) + ip_len
        self.packets[key] = self.packets.get(key, 0) + 1


def _tcp(key: tuple[str, str], truth: Truth, ends: tuple[str, str], sport: int, dport: int, tos: int,
         t0_us: int, rtt_ext_us: int, payload: int) -> list[tuple[int, Packet]]:  # fmt: skip
    """A TCP connection: SYN, SYN-ACK after `rtt_ext_us`, ACK 1 ms later, one data segment each way, FIN both
    ways, last ACK. Its handshake RTT is rtt_ext_us + 1000 us."""
    c, s = ends
    syn_ack, ack = t0_us + rtt_ext_us, t0_us + rtt_ext_us + 1000
    n = payload
    spec = [  # (time, from client, flags, seq, ack, payload): the client's sequence from 100, the server's from 500
        (t0_us, True, "S", 100, 0, 0), (syn_ack, False, "SA", 500, 101, 0), (ack, True, "A", 101, 501, 0),
        (ack + 100, True, "PA", 101, 501, n), (ack + 200, False, "PA", 501, 101 + n, n),
        (ack + 300, True, "FA", 101 + n, 501 + n, 0), (ack + 400, False, "FA", 501 + n, 102 + n, 0),
        (ack + 500, True, "A", 102 + n, 502 + n, 0),
    ]  # fmt: skip
    out: list[tuple[int, Packet]] = []
    for t, fwd, flags, seq, ackn, size in spec:
        src, dst, sp, dp = (c, s, sport, dport) if fwd else (s, c, dport, sport)
        tcp = TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ackn)
        out.append((t, IP(src=src, dst=dst, tos=tos) / tcp / Raw(b"x" * size)))
        truth.count(key, 20 + 20 + size)
    truth.rtt_us.setdefault(key, []).append(rtt_ext_us + 1000)
    return out


def _udp(key: tuple[str, str], truth: Truth, src: str, dst: str, sport: int, dport: int, t0_us: int, n: int,
         size: int) -> list[tuple[int, Packet]]:  # fmt: skip
    out: list[tuple[int, Packet]] = []
    for i in range(n):
        out.append((t0_us + i * 2000, IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(b"v" * size)))
        truth.count(key, 20 + 8 + size)
    return out


def golden(t0_us: int) -> tuple[list[tuple[int, Packet]], Truth]:
    truth = Truth()
    pkts: list[tuple[int, Packet]] = []
    for i in range(FLOWS):
        base = t0_us + i * 50_000
        # trading: 21-40 ms handshakes, p95 39 ms: meets 60 ms
        pkts += _tcp(("japan", "trading"), truth, (f"10.0.1.{i + 1}", "203.0.113.10"), 50_000 + i, 9000 + i, EF,
                     base, 20_000 + i * 1000, 100 + i)  # fmt: skip
        # bulk web: 81-100 ms handshakes, p95 99 ms: misses 50 ms
        pkts += _tcp(("japan", "bulk"), truth, (f"10.0.2.{i + 1}", "203.0.113.20"), 51_000 + i, 443, 0,
                     base + 10_000, 80_000 + i * 1000, 1000 + 10 * i)  # fmt: skip
        # a port of the trading range without EF: bulk
        if i % 5 == 0:
            pkts += _tcp(("japan", "bulk"), truth, (f"10.0.3.{i + 1}", "203.0.113.30"), 52_000 + i, 9050, 0,
                         base + 20_000, 80_500 + i * 1000, 10)  # fmt: skip
        # VR: UDP in the range, any marking
        pkts += _udp(("japan", "vr"), truth, f"10.0.4.{i + 1}", "203.0.113.40", 53_000 + i, 40_000 + i,
                     base + 30_000, 5, 300 + i)  # fmt: skip
    pkts += _tcp(("korea", "trading"), truth, ("10.0.5.1", "198.51.100.9"), 54_000, 9001, EF, t0_us, 150_000, 64)
    return pkts, truth


@pytest.fixture
def db(clickhouse_client: Any, clickhouse_db: str) -> Iterator[str]:
    Migrator(clickhouse_client, clickhouse_db).run()
    yield clickhouse_db


def test_golden_classes_in_clickhouse(clickhouse_client: Any, db: str, tmp_path: Path) -> None:
    t0_us = (time.time_ns() // 1000) - 600 * 10**6  # ten minutes ago: inside the raw table's retention
    pkts, truth = golden(t0_us)
    frames = [frame_of(eth() / p, ts_ns=t * 1000) for t, p in sorted(pkts, key=lambda x: x[0])]
    path = tmp_path / "golden_classes.pcap"
    path.write_bytes(pcap_bytes(frames, nanosecond=True))
    out = Captured()
    agent = NativeAgent(AgentConfig(), PartnerClassifier(PARTNERS, country_of=lambda _ip: None), out, apps=APPS)
    replay_files(agent, [path])
    rows = [[*row, "golden", 0, i] for i, (_k, v) in enumerate(out.pairs) for _spec, row in flow_rows(v)]
    clickhouse_client.insert(f"{db}.{FLOWS_RAW.name}", rows, column_names=FLOWS_RAW.column_names)

    got = clickhouse_client.query(
        f"SELECT partner, toString(app_class), sum(bytes_fwd + bytes_rev), sum(packets_fwd + packets_rev) "
        f"FROM {db}.flows_raw GROUP BY partner, app_class"
    ).result_rows
    assert {(p, c): b for p, c, b, _n in got} == truth.bytes
    assert {(p, c): n for p, c, _b, n in got} == truth.packets
    dscp = clickhouse_client.query(f"SELECT DISTINCT toString(app_class), dscp FROM {db}.flows_raw").result_rows
    assert sorted(dscp) == [("bulk", 0), ("trading", 46), ("vr", 0)]

    start_ms, end_ms = t0_us // 1000 - 60_000, t0_us // 1000 + 3_600_000
    rtt = handshake_rtt(clickhouse_client, db, start_ms, end_ms, by_class=True)
    measured = {(r.key[0], r.key[1]): r for r in rtt}
    assert set(measured) == set(truth.rtt_us)  # UDP flows have no handshake: VR has no RTT
    for key, values in truth.rtt_us.items():
        r = measured[key]
        assert r.samples == len(values)
        assert r.p95_us == nearest_rank(values, 0.95)  # exact: flows_raw keeps each flow's pair of legs
    assert measured[("japan", "trading")].p95_us == 39_000 and measured[("japan", "bulk")].p95_us == 99_000
    status = {(s.partner, s.app_class): s.met for s in slo_status(rtt, OBJECTIVES)}
    assert status == {("japan", "trading"): True, ("japan", "bulk"): False}  # one met, one missed, same partner
