"""Hand-built conversations with known timings through both agent engines (Python reference and native).

The expected values are computed here from the packet times (the same cases as test_latency.py, which drives
the Python flow meter directly), so each engine is checked against the truth, not against the other.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.packet import Packet, Raw

from ingest.agent import Agent
from ingest.classification import Classification
from ingest.config import AgentConfig
from ingest.native import NativeAgent
from ingest.replay import replay_files
from schemas.flow_record import FlowRecord, HistBin
from schemas.histogram import bucket_of_us
from tests.packets import frame_of, pcap_bytes

T0 = 1_700_000_000 * 1_000_000_000
MS = 1_000_000
DOM = "10.0.0.1"
REM = "203.0.113.5"
SYN, ACK, PA = "S", "A", "PA"


class _Clf:
    """10.x is domestic; anything else is a partner host in Japan."""

    def classify(self, src_ip: str, dst_ip: str, ip_version: int, link_id: str) -> Classification:
        s, d = src_ip.startswith("10."), dst_ip.startswith("10.")
        if s and not d:
            return Classification("egress", "japan", "JP", 64500, remote_is_initiator=False)
        if d and not s:
            return Classification("ingress", "japan", "JP", 64500, remote_is_initiator=True)
        return Classification("domestic" if s else "transit", "other", "ZZ", 0, remote_is_initiator=False)


def _records(engine: str, pkts: list[tuple[int, Packet]], tmp: Path) -> list[FlowRecord]:
    path = tmp / "case.pcap"
    path.write_bytes(pcap_bytes([frame_of(p, ts_ns=t, linktype=101) for t, p in pkts], linktype=101, nanosecond=True))
    out: list[FlowRecord] = []
    cls = NativeAgent if engine == "native" else Agent
    agent = cls(AgentConfig(agent_id="qd-1", link_id="jp-1"), _Clf(), out.append)
    res = replay_files(agent, [path])
    assert not res.errors
    return out


def _tcp(src: str, dst: str, sport: int, dport: int, flags: str, seq: int, ack: int, **kw: object) -> Packet:
    opts = [("Timestamp", kw["ts"])] if "ts" in kw else []
    pkt: Packet = IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, options=opts)
    if "payload" in kw:
        pkt = pkt / Raw(b"\0" * int(str(kw["payload"])))
    return pkt


engines = pytest.mark.parametrize("engine", ["python", "native"])


@engines
def test_handshake_legs_egress(engine: str, tmp_path: Path) -> None:
    recs = _records(
        engine,
        [
            (T0, _tcp(DOM, REM, 40000, 443, SYN, 1000, 0)),
            (T0 + 35_250_400, _tcp(REM, DOM, 443, 40000, "SA", 9000, 1001)),
            (T0 + 35_250_400 + 1_499_600, _tcp(DOM, REM, 40000, 443, ACK, 1001, 9001)),
        ],
        tmp_path,
    )
    (r,) = recs
    assert (r.src_ip, r.src_port, r.dst_ip, r.dst_port, r.direction) == (DOM, 40000, REM, 443, "egress")
    assert (r.hs_rtt_ext_us, r.hs_rtt_int_us) == (35_250, 1_500)  # 35.2504 ms and 1.4996 ms, nearest us


@engines
def test_handshake_legs_ingress_with_wrapping_ack(engine: str, tmp_path: Path) -> None:
    recs = _records(
        engine,
        [
            (T0, _tcp(REM, DOM, 51000, 22, SYN, 7, 0)),
            (T0 + 800_500, _tcp(DOM, REM, 22, 51000, "SA", 0xFFFFFFFF, 8)),
            (T0 + 800_500 + 60 * MS, _tcp(REM, DOM, 51000, 22, ACK, 8, 0)),
        ],
        tmp_path,
    )
    (r,) = recs
    assert (r.src_ip, r.direction, r.hs_rtt_int_us, r.hs_rtt_ext_us) == (REM, "ingress", 801, 60_000)


@engines
def test_synack_before_syn_reorients_without_a_sample(engine: str, tmp_path: Path) -> None:
    recs = _records(
        engine,
        [
            (T0, _tcp(REM, DOM, 443, 40000, "SA", 9000, 1001)),
            (T0 + 5 * MS, _tcp(DOM, REM, 40000, 443, SYN, 1000, 0)),
            (T0 + 6 * MS, _tcp(DOM, REM, 40000, 443, ACK, 1001, 9001)),
        ],
        tmp_path,
    )
    (r,) = recs
    assert (r.src_ip, r.dst_port, r.packets_fwd, r.packets_rev) == (DOM, 443, 2, 1)
    assert (r.hs_rtt_ext_us, r.hs_rtt_int_us) == (None, None)


@engines
def test_tcp_timestamp_rtt_and_retransmission(engine: str, tmp_path: Path) -> None:
    pkts = [
        (T0, _tcp(DOM, REM, 40000, 443, PA, 1, 1, ts=(100, 0), payload=100)),
        (T0 + 40 * MS, _tcp(REM, DOM, 443, 40000, ACK, 1, 101, ts=(900, 100))),  # echoes 100: 40 ms
        (T0 + 50 * MS, _tcp(DOM, REM, 40000, 443, PA, 101, 1, ts=(110, 900), payload=100)),
        (T0 + 300 * MS, _tcp(DOM, REM, 40000, 443, PA, 101, 1, ts=(130, 900), payload=100)),  # retransmission
        (T0 + 350 * MS, _tcp(REM, DOM, 443, 40000, ACK, 1, 201, ts=(950, 110))),  # echoes 110: 300 ms
    ]
    (r,) = _records(engine, pkts, tmp_path)
    assert (r.ts_rtt_count, r.ts_rtt_min_us, r.ts_rtt_max_us, r.ts_rtt_sum_us) == (2, 40_000, 300_000, 340_000)
    assert r.ts_rtt_hist == (HistBin(bucket_of_us(40_000), 1), HistBin(bucket_of_us(300_000), 1))
    assert (r.retrans_fwd, r.retrans_rev) == (1, 0)


@engines
def test_icmp_echo_rtt(engine: str, tmp_path: Path) -> None:
    pkts: list[tuple[int, Packet]] = []
    for i, rtt in enumerate((20_000_400, 25_000_600)):
        t = T0 + i * 1000 * MS
        pkts.append((t, IP(src=DOM, dst=REM) / ICMP(type=8, id=77, seq=i)))
        pkts.append((t + rtt, IP(src=REM, dst=DOM) / ICMP(type=0, id=77, seq=i)))
    (r,) = _records(engine, pkts, tmp_path)
    assert (r.protocol, r.src_port, r.dst_port) == (1, 0, 8 << 8)
    assert (r.icmp_rtt_count, r.icmp_rtt_min_us, r.icmp_rtt_max_us) == (2, 20_000, 25_001)


@engines
def test_fragmented_icmp_echo_is_one_flow(engine: str, tmp_path: Path) -> None:
    # 3000 bytes of payload in 1200-byte fragments: 3 fragments each way, only the first with the ICMP header.
    pkts: list[tuple[int, Packet]] = []
    for i, (src, dst, typ) in enumerate(((DOM, REM, 8), (REM, DOM, 0))):
        echo = IP(src=src, dst=dst, id=500 + i) / ICMP(type=typ, id=77, seq=1) / Raw(b"x" * 3000)
        frags: list[Packet] = fragment(echo, fragsize=1200)  # type: ignore[no-untyped-call]
        pkts += [(T0 + i * 30 * MS + j * 1000, frag) for j, frag in enumerate(frags)]
    (r,) = _records(engine, pkts, tmp_path)
    # IP octets: 8 + 3000 bytes of ICMP in pieces of 1200, 1200 and 608, each behind a 20-byte header.
    assert (r.packets_fwd, r.bytes_fwd, r.packets_rev, r.bytes_rev) == (3, 3068, 3, 3068)
    assert (r.protocol, r.src_port, r.dst_port, r.icmp_rtt_count, r.icmp_rtt_min_us) == (1, 0, 8 << 8, 1, 30_000)


@engines
def test_dns_query_response(engine: str, tmp_path: Path) -> None:
    q = IP(src=DOM, dst=REM) / UDP(sport=5353, dport=53) / DNS(id=4242, qd=DNSQR(qname="example.jp"))
    a = IP(src=REM, dst=DOM) / UDP(sport=53, dport=5353) / DNS(id=4242, qr=1, qd=DNSQR(qname="example.jp"))
    (r,) = _records(engine, [(T0, q), (T0 + 31_999_500, a)], tmp_path)
    assert (r.dns_rtt_count, r.dns_rtt_min_us, r.dns_rtt_sum_us) == (1, 32_000, 32_000)
