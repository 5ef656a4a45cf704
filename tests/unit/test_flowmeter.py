"""Flow meter: keys, orientation, counters, timeouts, eviction, ends, export numbering (hand-built packets).

The packet builders and fake classifier at the top are shared by test_latency and test_retrans."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.classification import Classification
from ingest.flowmeter import FlowMeter, MeterConfig
from ingest.packet import DecodedPacket
from schemas.flow_record import FlowRecord

T0 = 1_700_000_000 * 1_000_000_000  # a whole second, in ns
MS = 1_000_000
SEC = 1_000_000_000

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

DOM = "10.0.0.1"  # domestic host
DOM2 = "10.0.0.2"
REM = "203.0.113.5"  # partner host
REM2 = "203.0.113.6"


def ip(text: str) -> bytes:
    fam = socket.AF_INET6 if ":" in text else socket.AF_INET
    return socket.inet_pton(fam, text)


class FakeClassifier:
    """Addresses starting with ``10.`` or ``fd00:`` are domestic; records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    @staticmethod
    def _domestic(addr: str) -> bool:
        return addr.startswith(("10.", "fd00:"))

    def classify(self, src_ip: str, dst_ip: str, ip_version: int, link_id: str) -> Classification:
        self.calls.append((src_ip, dst_ip))
        s, d = self._domestic(src_ip), self._domestic(dst_ip)
        if s and not d:
            return Classification("egress", "japan", "JP", 64500, remote_is_initiator=False)
        if d and not s:
            return Classification("ingress", "japan", "JP", 64500, remote_is_initiator=True)
        return Classification("domestic" if s else "transit", "other", "", 0, remote_is_initiator=False)


def pkt(
    ts: int,
    src: str,
    dst: str,
    *,
    proto: int = 17,
    sport: int = 0,
    dport: int = 0,
    ip_len: int = 100,
    vlan: int = 0,
    **kw: object,
) -> DecodedPacket:
    a, b = ip(src), ip(dst)
    return DecodedPacket(
        ts_ns=ts,
        ip_len=ip_len,
        ip_version=4 if len(a) == 4 else 6,
        src_ip=a,
        dst_ip=b,
        protocol=proto,
        src_port=sport,
        dst_port=dport,
        vlan=vlan,
        **kw,  # type: ignore[arg-type]
    )


def tcp(
    ts: int,
    src: str,
    dst: str,
    sport: int,
    dport: int,
    flags: int,
    *,
    seq: int = 0,
    ack: int = 0,
    payload: int = 0,
    tsval: int | None = None,
    tsecr: int | None = None,
    vlan: int = 0,
) -> DecodedPacket:
    return pkt(
        ts,
        src,
        dst,
        proto=6,
        sport=sport,
        dport=dport,
        ip_len=40 + payload,
        vlan=vlan,
        tcp_flags=flags,
        tcp_seq=seq,
        tcp_ack=ack,
        tcp_payload_len=payload,
        tcp_tsval=tsval,
        tcp_tsecr=tsecr,
    )


def make_meter(
    cfg: MeterConfig | None = None, first_seq: int = 0, sampling_rate: int = 1
) -> tuple[FlowMeter, list[FlowRecord], FakeClassifier]:
    out: list[FlowRecord] = []
    clf = FakeClassifier()
    m = FlowMeter(
        cfg or MeterConfig(), clf, out.append, agent_id="qd-1", link_id="jp-1", first_seq=first_seq,
        sampling_rate=sampling_rate,
    )  # fmt: skip
    return m, out, clf


def run(pkts: list[DecodedPacket], cfg: MeterConfig | None = None, **kw: int) -> list[FlowRecord]:
    m, out, _ = make_meter(cfg, **kw)
    for p in pkts:
        m.add(p)
    m.flush()
    return out


# ---------------------------------------------------------------- keys, orientation, counters


def test_bidirectional_counters_and_times() -> None:
    pk = [
        pkt(T0, DOM, REM, sport=1111, dport=53, ip_len=60),
        pkt(T0 + 5 * MS, REM, DOM, sport=53, dport=1111, ip_len=200),
        pkt(T0 + 7 * MS, DOM, REM, sport=1111, dport=53, ip_len=61),
    ]
    (r,) = run(pk, sampling_rate=64)
    assert (r.src_ip, r.src_port, r.dst_ip, r.dst_port, r.protocol, r.vlan) == (DOM, 1111, REM, 53, 17, 0)
    assert (r.bytes_fwd, r.packets_fwd, r.bytes_rev, r.packets_rev) == (121, 2, 200, 1)
    assert (r.first_ns, r.last_ns) == (T0, T0 + 7 * MS)
    assert (r.agent_id, r.link_id, r.sampling_rate, r.schema_version) == ("qd-1", "jp-1", 64, 1)
    assert (r.direction, r.partner, r.remote_country, r.remote_asn) == ("egress", "japan", "JP", 64500)
    assert r.end_reason == "flush"


def test_first_packet_sender_is_initiator_for_udp() -> None:
    (r,) = run([pkt(T0, REM, DOM, sport=53, dport=1111), pkt(T0 + 1, DOM, REM, sport=1111, dport=53)])
    assert (r.src_ip, r.src_port, r.direction) == (REM, 53, "ingress")


def test_vlan_collision_makes_two_flows() -> None:
    pk = [
        tcp(T0, DOM, REM, 40000, 80, SYN, seq=1, vlan=10),
        tcp(T0 + 1 * MS, DOM, REM, 40000, 80, SYN, seq=1, vlan=20),
        tcp(T0 + 2 * MS, REM, DOM, 80, 40000, SYN | ACK, seq=5, ack=2, vlan=20),
    ]
    recs = run(pk)
    assert sorted((r.vlan, r.packets_fwd, r.packets_rev, r.retrans_fwd) for r in recs) == [
        (10, 1, 0, 0),
        (20, 1, 1, 0),
    ]


def test_tcp_flags_are_ored_per_direction() -> None:
    pk = [
        tcp(T0, DOM, REM, 1, 2, SYN, seq=1),
        tcp(T0 + 1, REM, DOM, 2, 1, SYN | ACK, seq=1, ack=2),
        tcp(T0 + 2, DOM, REM, 1, 2, ACK | PSH, seq=2, ack=2, payload=5),
    ]
    (r,) = run(pk)
    assert (r.tcp_flags_fwd, r.tcp_flags_rev) == (SYN | ACK | PSH, SYN | ACK)


def test_non_first_fragment_joins_its_flow() -> None:
    pk = [
        pkt(T0, DOM, REM, sport=5000, dport=6000, ip_len=1500, frag_id=9, more_fragments=True),
        pkt(T0 + 1, DOM, REM, sport=5000, dport=6000, ip_len=520, frag_id=9, frag_offset=1480, l4_present=False),
    ]
    (r,) = run(pk)
    assert (r.packets_fwd, r.bytes_fwd) == (2, 2020)


def test_classifier_called_once_per_flow() -> None:
    m, _, clf = make_meter()
    for i in range(10):
        m.add(pkt(T0 + i, DOM, REM, sport=1, dport=2))
        m.add(pkt(T0 + i, REM, DOM, sport=2, dport=1))
    assert clf.calls == [(DOM, REM)]


# ---------------------------------------------------------------- timeouts


# A cut interval far longer than any test: the idle timeout alone decides when these flows leave.
NO_CUT = 1_000_000.0


def test_idle_timeout_by_advance() -> None:
    cfg = MeterConfig(idle_timeout_s=30, timer_tick_s=1, active_timeout_s=NO_CUT)
    m, out, _ = make_meter(cfg)
    m.add(pkt(T0, DOM, REM, sport=1, dport=2))
    m.add(pkt(T0 + 1 * SEC, DOM, REM, sport=1, dport=2))
    m.advance(T0 + 31 * SEC - 1)
    assert out == []
    m.advance(T0 + 31 * SEC)
    (r,) = out
    assert (r.end_reason, r.export_ns, r.packets_fwd, r.last_ns) == ("idle", T0 + 31 * SEC, 2, T0 + 1 * SEC)
    assert m.stats.active == 0


def test_idle_expiry_is_late_by_at_most_one_tick() -> None:
    cfg = MeterConfig(idle_timeout_s=30, timer_tick_s=1, active_timeout_s=NO_CUT)
    m, out, _ = make_meter(cfg)
    m.add(pkt(T0 + 300 * MS, DOM, REM, sport=1, dport=2))
    m.advance(T0 + 30 * SEC + 299 * MS)  # before the deadline
    assert out == []
    m.advance(T0 + 30 * SEC + 999 * MS)  # after it, inside the same tick
    assert out == []
    m.advance(T0 + 31 * SEC)
    assert [r.end_reason for r in out] == ["idle"]


def test_idle_gap_without_advance_splits_the_flow() -> None:
    cfg = MeterConfig(idle_timeout_s=30, active_timeout_s=NO_CUT)
    recs = run([pkt(T0, DOM, REM, sport=1, dport=2), pkt(T0 + 40 * SEC, REM, DOM, sport=2, dport=1)], cfg)
    assert [(r.end_reason, r.src_ip, r.first_ns, r.export_ns) for r in recs] == [
        ("idle", DOM, T0, T0 + 40 * SEC),
        ("flush", REM, T0 + 40 * SEC, T0 + 40 * SEC),
    ]


def test_active_timeout_slices() -> None:
    cfg = MeterConfig(idle_timeout_s=30, active_timeout_s=10)
    pk = [pkt(T0 + i * SEC, DOM, REM, sport=1, dport=2, ip_len=100 + i) for i in range(25)]
    recs = run(pk, cfg)
    assert [(r.end_reason, r.first_ns, r.last_ns, r.packets_fwd) for r in recs] == [
        ("active", T0, T0 + 9 * SEC, 10),
        ("active", T0 + 10 * SEC, T0 + 19 * SEC, 10),
        ("flush", T0 + 20 * SEC, T0 + 24 * SEC, 5),
    ]
    assert [r.bytes_fwd for r in recs] == [sum(range(100, 110)), sum(range(110, 120)), sum(range(120, 125))]
    assert [r.seq for r in recs] == [0, 1, 2]
    assert {(r.src_ip, r.src_port, r.dst_ip, r.dst_port) for r in recs} == {(DOM, 1, REM, 2)}


def test_cut_at_the_boundary_without_a_packet() -> None:
    """A flow that falls silent is reported at the next boundary, not after its idle timeout; its idle end
    then exports nothing (every packet is already reported)."""
    cfg = MeterConfig(idle_timeout_s=30, active_timeout_s=10, timer_tick_s=1)
    m, out, _ = make_meter(cfg)
    m.add(pkt(T0 + 3 * SEC, DOM, REM, sport=1, dport=2, ip_len=100))
    m.add(pkt(T0 + 7 * SEC, REM, DOM, sport=2, dport=1, ip_len=60))
    m.advance(T0 + 10 * SEC - 1)
    assert out == []
    m.advance(T0 + 10 * SEC + 300 * MS)
    (r,) = out
    assert (r.end_reason, r.first_ns, r.last_ns, r.export_ns) == ("active", T0 + 3 * SEC, T0 + 7 * SEC, T0 + 10 * SEC)
    assert (r.bytes_fwd, r.bytes_rev) == (100, 60)
    assert m.stats.active == 1  # the flow stays, with its state
    m.advance(T0 + 60 * SEC)
    assert len(out) == 1 and m.stats.active == 0  # its idle end had nothing to report
    m.flush()
    assert len(out) == 1


def test_cut_boundaries_are_epoch_aligned() -> None:
    cfg = MeterConfig(idle_timeout_s=30, active_timeout_s=10)
    start = T0 + 7 * SEC  # not on a boundary
    recs = run([pkt(start + i * SEC, DOM, REM, sport=1, dport=2) for i in range(8)], cfg)
    assert [(r.end_reason, r.first_ns - T0, r.last_ns - T0, r.packets_fwd) for r in recs] == [
        ("active", 7 * SEC, 9 * SEC, 3),
        ("flush", 10 * SEC, 14 * SEC, 5),
    ]


def test_cut_order_is_first_packet_order() -> None:
    cfg = MeterConfig(active_timeout_s=10)
    pk = [
        pkt(T0 + 1 * SEC, DOM, REM, sport=5, dport=2),
        pkt(T0 + 2 * SEC, DOM, REM, sport=3, dport=2),
        pkt(T0 + 3 * SEC, DOM, REM, sport=5, dport=2),
        pkt(T0 + 11 * SEC, DOM, REM, sport=3, dport=2),
        pkt(T0 + 12 * SEC, DOM, REM, sport=5, dport=2),
    ]
    recs = run(pk, cfg)
    assert [(r.src_port, r.end_reason, r.export_ns - T0) for r in recs] == [
        (5, "active", 10 * SEC),
        (3, "active", 10 * SEC),
        (5, "flush", 12 * SEC),  # flush goes in creation order
        (3, "flush", 12 * SEC),
    ]


def test_cut_in_the_close_grace_reports_the_close_once() -> None:
    cfg = MeterConfig(tcp_close_grace_s=2, timer_tick_s=1, active_timeout_s=10)
    m, out, _ = make_meter(cfg)
    t = T0 + 9 * SEC
    for p in [
        *_handshake(t),
        tcp(t + 900 * MS, DOM, REM, 40000, 443, FIN | ACK, seq=101, ack=901),
        tcp(t + 950 * MS, REM, DOM, 443, 40000, FIN | ACK, seq=901, ack=102),
    ]:
        m.add(p)
    m.add(tcp(T0 + 10 * SEC + 5 * MS, DOM, REM, 40000, 443, ACK, seq=102, ack=902))  # after the boundary
    m.advance(T0 + 20 * SEC)
    assert [(r.end_reason, r.packets_fwd, r.packets_rev) for r in out] == [("fin", 3, 2), ("active", 1, 0)]
    assert m.stats.active == 0


def test_cut_ends_a_flow_whose_grace_passed_before_the_boundary() -> None:
    """The cut ends a closed flow whose grace ran out before the boundary, whether or not advance ran."""
    cfg = MeterConfig(tcp_close_grace_s=1, timer_tick_s=1, active_timeout_s=10)
    pk = [*_handshake(T0 + 5 * SEC), tcp(T0 + 5 * SEC + 50 * MS, REM, DOM, 443, 40000, RST, seq=901)]
    m, out, _ = make_meter(cfg)
    for p in pk:
        m.add(p)
    m.add(pkt(T0 + 10 * SEC, REM2, DOM2, sport=9, dport=9))  # the first packet after the boundary
    assert [(r.end_reason, r.export_ns) for r in out] == [("rst", T0 + 10 * SEC)]


def test_active_slice_reports_handshake_once() -> None:
    cfg = MeterConfig(active_timeout_s=10)
    pk = [
        tcp(T0, DOM, REM, 1, 2, SYN, seq=0),
        tcp(T0 + 10 * MS, REM, DOM, 2, 1, SYN | ACK, seq=0, ack=1),
        tcp(T0 + 11 * MS, DOM, REM, 1, 2, ACK, seq=1, ack=1),
        tcp(T0 + 12 * SEC, DOM, REM, 1, 2, ACK, seq=1, ack=1),
    ]
    a, b = run(pk, cfg)
    assert (a.end_reason, a.hs_rtt_ext_us, a.hs_rtt_int_us) == ("active", 10_000, 1_000)
    assert (b.hs_rtt_ext_us, b.hs_rtt_int_us, b.packets_fwd, b.tcp_flags_fwd) == (None, None, 1, ACK)


# ---------------------------------------------------------------- TCP end, eviction, flush


def _handshake(t: int, sport: int = 40000) -> list[DecodedPacket]:
    return [
        tcp(t, DOM, REM, sport, 443, SYN, seq=100),
        tcp(t + 10 * MS, REM, DOM, 443, sport, SYN | ACK, seq=900, ack=101),
        tcp(t + 11 * MS, DOM, REM, sport, 443, ACK, seq=101, ack=901),
    ]


def test_fin_both_sides_then_grace_keeps_last_ack() -> None:
    cfg = MeterConfig(tcp_close_grace_s=2, timer_tick_s=1)
    m, out, _ = make_meter(cfg)
    for p in [
        *_handshake(T0),
        tcp(T0 + 20 * MS, DOM, REM, 40000, 443, FIN | ACK, seq=101, ack=901),
        tcp(T0 + 30 * MS, REM, DOM, 443, 40000, FIN | ACK, seq=901, ack=102),
    ]:
        m.add(p)
        m.advance(p.ts_ns)
    m.add(tcp(T0 + 41 * MS, DOM, REM, 40000, 443, ACK, seq=102, ack=902))  # the last ACK
    m.advance(T0 + 2 * SEC)
    assert out == []  # grace runs from the last packet: T0 + 2.041 s
    m.advance(T0 + 3 * SEC)
    (r,) = out
    assert (r.end_reason, r.packets_fwd, r.packets_rev, r.last_ns) == ("fin", 4, 2, T0 + 41 * MS)
    assert m.stats.exported == {"fin": 1}


def test_single_fin_is_not_an_end() -> None:
    cfg = MeterConfig(tcp_close_grace_s=1, idle_timeout_s=30, active_timeout_s=NO_CUT)
    m, out, _ = make_meter(cfg)
    for p in [*_handshake(T0), tcp(T0 + 20 * MS, DOM, REM, 40000, 443, FIN | ACK, seq=101, ack=901)]:
        m.add(p)
    m.advance(T0 + 10 * SEC)
    assert out == []


def test_rst_ends_flow_and_new_syn_starts_another() -> None:
    m, out, _ = make_meter(MeterConfig(tcp_close_grace_s=2))
    for p in [
        *_handshake(T0),
        tcp(T0 + 50 * MS, REM, DOM, 443, 40000, RST | ACK, seq=901, ack=101),
        *_handshake(T0 + 100 * MS),  # same ports again: a new connection
    ]:
        m.add(p)
    assert [(r.end_reason, r.packets_fwd, r.packets_rev, r.export_ns) for r in out] == [("rst", 2, 2, T0 + 100 * MS)]
    m.flush()
    assert [(r.end_reason, r.hs_rtt_ext_us) for r in out] == [("rst", 10_000), ("flush", 10_000)]


def test_eviction_when_full_takes_least_recently_active() -> None:
    cfg = MeterConfig(max_flows=2, timer_tick_s=1, idle_timeout_s=30)
    m, out, _ = make_meter(cfg)
    m.add(pkt(T0, DOM, REM, sport=1, dport=1))  # A
    m.add(pkt(T0 + 1 * SEC, DOM, REM, sport=2, dport=2))  # B
    m.add(pkt(T0 + 5 * SEC, REM, DOM, sport=1, dport=1))  # A again: now B is the least recently active
    m.add(pkt(T0 + 6 * SEC, DOM, REM, sport=3, dport=3))  # C: table full
    (r,) = out
    assert (r.end_reason, r.src_port, r.export_ns) == ("evicted", 2, T0 + 6 * SEC)
    assert (m.stats.evicted, m.stats.active, m.stats.flows_created) == (1, 2, 3)
    m.flush()
    assert sorted(r.src_port for r in out) == [1, 2, 3]


def test_eviction_of_an_already_expired_flow_keeps_its_reason() -> None:
    cfg = MeterConfig(max_flows=1, idle_timeout_s=5)
    m, out, _ = make_meter(cfg)
    m.add(pkt(T0, DOM, REM, sport=1, dport=1))
    m.add(pkt(T0 + 9 * SEC, DOM, REM, sport=2, dport=2))
    assert [r.end_reason for r in out] == ["idle"] and m.stats.evicted == 0


def test_flush_exports_everything_in_creation_order_and_keeps_fin() -> None:
    m, out, _ = make_meter(MeterConfig(idle_timeout_s=30))
    m.add(pkt(T0, DOM, REM, sport=9, dport=9))
    for p in _handshake(T0 + 1 * MS):
        m.add(p)
    m.add(tcp(T0 + 20 * MS, DOM, REM, 40000, 443, FIN | ACK, seq=101, ack=901))
    m.add(tcp(T0 + 21 * MS, REM, DOM, 443, 40000, FIN | ACK, seq=901, ack=102))
    m.add(pkt(T0 + 22 * MS, DOM, REM2, sport=8, dport=8))
    m.flush()
    assert [(r.protocol, r.end_reason, r.export_ns) for r in out] == [
        (17, "flush", T0 + 22 * MS),
        (6, "fin", T0 + 22 * MS),
        (17, "flush", T0 + 22 * MS),
    ]
    assert m.stats.active == 0
    m.flush()
    assert len(out) == 3


def test_seq_numbering_from_first_seq() -> None:
    m, out, _ = make_meter(first_seq=1000)
    for i in range(3):
        m.add(pkt(T0, DOM, REM, sport=i + 1, dport=7))
    m.flush()
    assert [r.seq for r in out] == [1000, 1001, 1002]
    assert m.next_seq == 1003


def test_stats_count_packets_bytes_and_reasons() -> None:
    m, _, _ = make_meter(MeterConfig(idle_timeout_s=1))
    m.add(pkt(T0, DOM, REM, sport=1, dport=2, ip_len=10))
    m.add(pkt(T0 + 5 * SEC, DOM, REM, sport=1, dport=2, ip_len=20))
    m.flush()
    s = m.stats
    assert (s.packets, s.bytes, s.flows_created, s.records) == (2, 30, 2, 2)
    assert s.exported == {"idle": 1, "flush": 1}


def test_same_input_same_output() -> None:
    pk = [pkt(T0 + i * 700 * MS, DOM, REM, sport=i % 5, dport=1) for i in range(40)]
    cfg = MeterConfig(idle_timeout_s=2, active_timeout_s=3, max_flows=3)
    assert run(pk, cfg) == run(pk, cfg)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        MeterConfig(idle_timeout_s=0)
    with pytest.raises(ValueError):
        MeterConfig(max_flows=0)


# ---------------------------------------------------------------- conservation property

_HOSTS = (DOM, DOM2, REM, REM2)


@st.composite
def _packets(draw: st.DrawFn) -> list[tuple[DecodedPacket, bool]]:
    n = draw(st.integers(1, 60))
    t = T0
    out: list[tuple[DecodedPacket, bool]] = []
    for _ in range(n):
        t += draw(st.sampled_from((0, 1, 3 * MS, 400 * MS, 2 * SEC, 7 * SEC)))
        src, dst = draw(st.permutations(_HOSTS))[:2]
        proto = draw(st.sampled_from((6, 17, 1)))
        vlan = draw(st.sampled_from((0, 5)))
        size = draw(st.integers(20, 1500))
        if proto == 6:
            p = tcp(
                t,
                src,
                dst,
                draw(st.sampled_from((1, 2))),
                draw(st.sampled_from((1, 2))),
                draw(st.sampled_from((SYN, SYN | ACK, ACK, FIN | ACK, RST, ACK | PSH))),
                seq=draw(st.integers(0, 3)) * 100,
                payload=draw(st.sampled_from((0, 100))),
                vlan=vlan,
            )
            p.ip_len = size
        elif proto == 17:
            p = pkt(t, src, dst, sport=draw(st.sampled_from((1, 53))), dport=53, ip_len=size, vlan=vlan)
        else:
            p = pkt(t, src, dst, proto=1, ip_len=size, vlan=vlan, icmp_type=draw(st.sampled_from((0, 8, 3))))
        out.append((p, draw(st.booleans())))
    return out


@settings(max_examples=200, deadline=None)
@given(
    seq=_packets(),
    max_flows=st.integers(1, 6),
    idle=st.sampled_from((1.0, 5.0)),
    active=st.sampled_from((0.5, 3.0, 60.0)),
)
def test_bytes_and_packets_are_conserved(
    seq: list[tuple[DecodedPacket, bool]], max_flows: int, idle: float, active: float
) -> None:
    cfg = MeterConfig(
        idle_timeout_s=idle, active_timeout_s=active, max_flows=max_flows, tcp_close_grace_s=0.5, timer_tick_s=0.5
    )
    m, out, _ = make_meter(cfg)
    for p, adv in seq:
        m.add(p)
        if adv:
            m.advance(p.ts_ns)
        assert len(m) <= max_flows
    m.flush()
    assert sum(r.bytes_fwd + r.bytes_rev for r in out) == sum(p.ip_len for p, _ in seq)
    assert sum(r.packets_fwd + r.packets_rev for r in out) == len(seq)
    assert [r.seq for r in out] == list(range(len(out)))
    assert all(r.first_ns <= r.last_ns <= r.export_ns for r in out)
    assert all(r.packets_fwd + r.packets_rev > 0 for r in out)
    assert m.stats.records == len(out) and m.stats.active == 0
