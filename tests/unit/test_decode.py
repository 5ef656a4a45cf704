"""Decoder on hand-built packets with known answers: every layer, every reject reason, decapsulation."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.gtp import GTP_U_Header
from scapy.contrib.mpls import MPLS
from scapy.layers.dns import DNS
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, GRE, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Loopback
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from ingest import decode as d
from ingest.decode import REJECT_REASONS, DecodeConfig, decode
from ingest.fragments import FragmentTracker
from ingest.linktypes import SUPPORTED
from ingest.packet import DecodedPacket, RawFrame
from tests.packets import eth, fragments4, fragments6, frame_of

A4, B4 = "192.0.2.1", "198.51.100.2"
A6, B6 = "2001:db8::1", "2001:db8::2"
DECAP = DecodeConfig(decap_gre=True, decap_vxlan=True, decap_gtp=True)


def ip4(a: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, a)


def ip6(a: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, a)


PLAIN = DecodeConfig()


def ok(frame: RawFrame, cfg: DecodeConfig = PLAIN) -> DecodedPacket:
    got = decode(frame, cfg)
    assert isinstance(got, DecodedPacket), got
    return got


def check(pkt: DecodedPacket, **want: Any) -> None:
    for key, value in want.items():
        assert getattr(pkt, key) == value, (key, getattr(pkt, key), value)


def tcp4(**kw: Any) -> Packet:
    return IP(src=A4, dst=B4) / TCP(sport=40000, dport=443, **kw)


# -- layers ------------------------------------------------------------------------------------------------


def test_ethernet_ipv4_tcp_with_timestamps() -> None:
    pkt = eth() / tcp4(flags="SA", seq=1000, ack=2000, options=[("Timestamp", (111, 222))]) / (b"x" * 10)
    got = ok(frame_of(pkt, ts_ns=5))
    check(got, ts_ns=5, ip_version=4, src_ip=ip4(A4), dst_ip=ip4(B4), protocol=6, src_port=40000,
          dst_port=443, tcp_flags=0x12, tcp_seq=1000, tcp_ack=2000, tcp_tsval=111, tcp_tsecr=222,
          tcp_payload_len=10, ip_len=20 + 32 + 10, vlan=0, l4_present=True, frag_key=None)  # fmt: skip


def test_tcp_ns_flag_is_the_ninth_flag_bit() -> None:
    got = ok(frame_of(eth() / tcp4(flags="SEN")))
    assert got.tcp_flags == 0x02 | 0x40 | 0x100


def test_tcp_options_other_than_timestamp_are_skipped() -> None:
    opts = [("MSS", 1460), ("NOP", None), ("WScale", 7), ("SAckOK", b""), ("Timestamp", (7, 0))]
    got = ok(frame_of(eth() / tcp4(flags="S", options=opts)))
    check(got, tcp_tsval=7, tcp_tsecr=0)
    assert ok(frame_of(eth() / tcp4(options=[("MSS", 1460)]))).tcp_tsval is None


def test_ethernet_padding_is_not_counted() -> None:
    pkt = eth() / IP(src=A4, dst=B4) / UDP(sport=1, dport=2)  # 42 bytes, padded to 60 on the wire
    frame = RawFrame(1, 1, bytes(pkt) + b"\0" * 18, 60)
    check(ok(frame), ip_len=28, src_port=1, dst_port=2)


def test_snaplen_cut_frame_counts_the_ip_length() -> None:
    pkt = eth() / tcp4(flags="A", options=[("Timestamp", (1, 2))]) / (b"y" * 1400)
    got = ok(frame_of(pkt, snaplen=96))
    check(got, ip_len=20 + 32 + 1400, tcp_payload_len=1400, tcp_tsval=1, tcp_tsecr=2, tcp_flags=0x10)


def test_cut_inside_tcp_options_keeps_the_base_header() -> None:
    pkt = eth() / tcp4(flags="S", seq=9, options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))])
    got = ok(frame_of(pkt, snaplen=14 + 20 + 20 + 6))  # the TS option is cut
    check(got, tcp_flags=0x02, tcp_seq=9, tcp_tsval=None, ip_len=20 + 32)


@pytest.mark.parametrize(
    ("l2", "vlan"),
    [
        (eth() / Dot1Q(vlan=100), 100),
        (eth() / Dot1AD(vlan=200) / Dot1Q(vlan=300), 200),
        (eth(type=0x9100) / Dot1Q(vlan=7) / Dot1Q(vlan=8), 7),
        (eth(type=0x8100) / Dot1Q(vlan=4094, prio=5), 4094),
    ],
    ids=["802.1q", "qinq-88a8", "qinq-9100", "prio"],
)
def test_vlan_tags_report_the_outer_id(l2: Packet, vlan: int) -> None:
    got = ok(frame_of(l2 / IP(src=A4, dst=B4) / UDP(sport=5, dport=6)))
    check(got, vlan=vlan, src_port=5, dst_port=6, src_ip=ip4(A4))


def test_mpls_stack_then_ipv6() -> None:
    pkt = eth() / MPLS(label=100, s=0) / MPLS(label=200, s=1) / IPv6(src=A6, dst=B6) / TCP(sport=1, dport=2)
    check(ok(frame_of(pkt)), ip_version=6, src_ip=ip6(A6), protocol=6, src_port=1, ip_len=60)


def test_mpls_ethernet_pseudowire_with_control_word() -> None:
    inner = eth() / Dot1Q(vlan=33) / IP(src=A4, dst=B4) / UDP(sport=7, dport=8)
    pkt = eth() / MPLS(label=16, s=1) / Raw(b"\0\0\0\0" + bytes(inner))
    check(ok(frame_of(pkt)), src_port=7, dst_port=8, vlan=33)


def test_pppoe_session_ipv4_and_ipv6() -> None:
    v4 = eth() / PPPoE(sessionid=1) / PPP(proto=0x0021) / tcp4(flags="S")
    v6 = eth() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / PPPoE(sessionid=2) / PPP(proto=0x0057)
    v6 = v6 / IPv6(src=A6, dst=B6) / UDP(sport=3, dport=4)
    check(ok(frame_of(v4)), src_ip=ip4(A4), src_port=40000, tcp_flags=2)
    check(ok(frame_of(v6)), src_ip=ip6(A6), src_port=3, vlan=10)


def test_ipv4_options_move_the_transport_header() -> None:
    pkt = eth() / IP(src=A4, dst=B4, options=[IPOption_RR(routers=["1.1.1.1", "2.2.2.2"])]) / UDP(sport=9, dport=10)
    got = ok(frame_of(pkt))
    check(got, src_port=9, dst_port=10, ip_len=len(bytes(pkt)) - 14)


def test_ipv4_fragments_first_has_ports_later_do_not() -> None:
    big = IP(src=A4, dst=B4, id=4242) / UDP(sport=1111, dport=2222) / (b"z" * 3000)
    frags = fragments4(big, 1000)
    assert len(frags) == 4  # 3008 UDP bytes: 1000 + 1000 + 1000 + 8
    first, *later = (ok(frame_of(eth() / f)) for f in frags)
    check(first, src_port=1111, dst_port=2222, frag_id=4242, frag_offset=0, more_fragments=True,
          l4_present=True, frag_key=(ip4(A4), ip4(B4), 17, 4242))  # fmt: skip
    check(later[0], src_port=0, l4_present=False, frag_offset=1000, more_fragments=True, protocol=17)
    check(later[2], l4_present=False, frag_offset=3000, more_fragments=False, ip_len=20 + 8)


def test_ipv6_extension_headers() -> None:
    chain = IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=[B6]) / IPv6ExtHdrDestOpt()
    pkt = eth() / IPv6(src=A6, dst=B6) / chain / TCP(sport=80, dport=81, flags="F")
    got = ok(frame_of(pkt))
    check(got, protocol=6, src_port=80, dst_port=81, tcp_flags=1, ip_len=len(bytes(pkt)) - 14)


def test_ipv6_authentication_header() -> None:
    pkt = eth() / IPv6(src=A6, dst=B6) / AH(nh=17, payloadlen=4, spi=1, icv=b"\0" * 12) / UDP(sport=500, dport=4500)
    check(ok(frame_of(pkt)), protocol=17, src_port=500, dst_port=4500)


def test_ipv6_fragments() -> None:
    big = IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=77) / UDP(sport=53, dport=3333) / (b"q" * 2000)
    frags = fragments6(big, 1000)
    assert len(frags) >= 3
    first, second = ok(frame_of(eth() / frags[0])), ok(frame_of(eth() / frags[1]))
    check(first, protocol=17, src_port=53, frag_id=77, frag_offset=0, more_fragments=True, l4_present=True)
    check(second, protocol=17, src_port=0, frag_id=77, l4_present=False, frag_key=(ip6(A6), ip6(B6), 17, 77))
    assert second.frag_offset > 0


def test_icmp_echo_and_error() -> None:
    echo = ok(frame_of(eth() / IP(src=A4, dst=B4) / ICMP(type=8, id=0x1234, seq=7)))
    check(echo, protocol=1, icmp_type=8, icmp_code=0, icmp_id=0x1234, icmp_seq=7, src_port=0)
    unreach = ok(frame_of(eth() / IP(src=A4, dst=B4) / ICMP(type=3, code=1) / IP() / UDP()))
    check(unreach, icmp_type=3, icmp_code=1, icmp_id=0, icmp_seq=0)


def test_icmpv6_echo_reply() -> None:
    got = ok(frame_of(eth() / IPv6(src=A6, dst=B6) / ICMPv6EchoReply(id=5, seq=6)))
    check(got, protocol=58, icmp_type=129, icmp_code=0, icmp_id=5, icmp_seq=6)


def test_dns_id_and_qr_on_either_port() -> None:
    query = ok(frame_of(eth() / IP(src=A4, dst=B4) / UDP(sport=5555, dport=53) / DNS(id=0xBEEF, qr=0)))
    reply = ok(frame_of(eth() / IP(src=B4, dst=A4) / UDP(sport=53, dport=5555) / DNS(id=0xBEEF, qr=1)))
    check(query, dns_id=0xBEEF, dns_is_response=False)
    check(reply, dns_id=0xBEEF, dns_is_response=True)
    short = ok(frame_of(eth() / IP(src=A4, dst=B4) / UDP(sport=5555, dport=53) / b"\x01\x02\x03"))
    assert short.dns_id is None
    other = ok(frame_of(eth() / IP(src=A4, dst=B4) / UDP(sport=5555, dport=54) / DNS(id=1)))
    assert other.dns_id is None


# -- link types ---------------------------------------------------------------------------------------------

V4 = bytes(IP(src=A4, dst=B4) / UDP(sport=11, dport=12))
V6 = bytes(IPv6(src=A6, dst=B6) / UDP(sport=11, dport=12))


@pytest.mark.parametrize(
    ("linktype", "data", "version"),
    [
        (101, V4, 4),
        (101, V6, 6),
        (12, V4, 4),
        (14, V6, 6),
        (228, V4, 4),
        (229, V6, 6),
        (113, bytes(CookedLinux(proto=0x0800) / IP(V4)), 4),
        (276, bytes(CookedLinuxV2(proto=0x86DD) / IPv6(V6)), 6),
        (0, bytes(Loopback(type=2)) + V4, 4),  # little-endian writer
        (0, b"\0\0\0\x1e" + V6, 6),  # big-endian writer, Darwin AF_INET6
        (108, b"\0\0\0\x18" + V6, 6),
        (108, b"\0\0\0\x02" + V4, 4),
        (9, b"\xff\x03\x00\x21" + V4, 4),
        (9, b"\x00\x57" + V6, 6),
        (9, b"\x21" + V4, 4),  # protocol-field compression
    ],
)
def test_linktypes(linktype: int, data: bytes, version: int) -> None:
    got = ok(RawFrame(1, linktype, data, len(data)))
    check(got, ip_version=version, src_port=11, dst_port=12, protocol=17)
    assert got.src_ip == (ip4(A4) if version == 4 else ip6(A6))


# -- reject reasons -----------------------------------------------------------------------------------------

TCP_FRAME = bytes(eth() / tcp4(flags="S"))


def _set(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value) :]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (RawFrame(1, 147, TCP_FRAME, 54), d.UNSUPPORTED_LINKTYPE),
        (RawFrame(1, 1, TCP_FRAME[:10], 54), d.TRUNCATED_L2),
        (frame_of(eth() / Dot1Q(vlan=1) / IP(), snaplen=16), d.TRUNCATED_L2),
        (frame_of(eth() / MPLS(s=0) / MPLS(s=1) / IP(), snaplen=18), d.TRUNCATED_L2),
        (frame_of(eth() / PPPoE() / PPP(proto=0x21) / IP(), snaplen=20), d.TRUNCATED_L2),
        (RawFrame(1, 113, b"\0" * 10, 10), d.TRUNCATED_L2),
        (frame_of(eth() / ARP()), d.NOT_IP),
        (frame_of(eth() / PPPoE() / PPP(proto=0xC021) / (b"\0" * 8)), d.NOT_IP),
        (frame_of(eth(type=0x88CC) / (b"\0" * 40)), d.NOT_IP),
        (RawFrame(1, 0, b"\x07\0\0\0" + V4, 32), d.NOT_IP),
        (RawFrame(1, 1, TCP_FRAME[:30], 54), d.TRUNCATED_IP),
        (RawFrame(1, 101, b"", 0), d.TRUNCATED_IP),
        (frame_of(eth() / IPv6() / IPv6ExtHdrHopByHop() / TCP(), snaplen=14 + 40 + 1), d.TRUNCATED_IP),
        (RawFrame(1, 1, _set(TCP_FRAME, 14, b"\x44"), 54), d.BAD_IP_HEADER),  # IHL 4
        (RawFrame(1, 1, _set(TCP_FRAME, 14, b"\x55"), 54), d.BAD_IP_HEADER),  # version 5
        (RawFrame(1, 1, _set(TCP_FRAME, 16, b"\x00\x10"), 54), d.BAD_IP_HEADER),  # total length 16
        (RawFrame(1, 101, b"\x50" + V4[1:], 28), d.BAD_IP_HEADER),
        (frame_of(eth() / IPv6(plen=4) / IPv6ExtHdrDestOpt() / UDP()), d.BAD_IP_HEADER),
        (RawFrame(1, 1, TCP_FRAME[:44], 54), d.TRUNCATED_L4),
        (frame_of(eth() / IP() / UDP(), snaplen=14 + 20 + 6), d.TRUNCATED_L4),
        (frame_of(eth() / IP() / ICMP(), snaplen=14 + 20 + 4), d.TRUNCATED_L4),
        (frame_of(eth() / tcp4(dataofs=3)), d.BAD_L4_HEADER),
        (RawFrame(1, 1, _set(TCP_FRAME, 16, b"\x00\x1e"), 54), d.BAD_L4_HEADER),  # IP says 10 TCP bytes
        (frame_of(eth() / tcp4(dataofs=15)), d.BAD_L4_HEADER),  # header longer than the packet
    ],
)
def test_reject_reasons(frame: RawFrame, reason: str) -> None:
    assert reason in REJECT_REASONS
    assert decode(frame) == reason


def test_reject_reason_set_is_small_and_fixed() -> None:
    expected = {"unsupported_linktype", "truncated_l2", "not_ip", "truncated_ip", "bad_ip_header"}
    assert expected | {"truncated_l4", "bad_l4_header"} == REJECT_REASONS


# -- decapsulation ------------------------------------------------------------------------------------------

INNER = IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80, flags="PA", seq=5) / (b"p" * 20)


def _inner_ok(got: DecodedPacket, outer_len: int) -> None:
    check(got, src_ip=ip4("10.0.0.1"), dst_ip=ip4("10.0.0.2"), protocol=6, src_port=1234, dst_port=80,
          tcp_flags=0x18, tcp_seq=5, tcp_payload_len=20, ip_len=outer_len)  # fmt: skip


@pytest.mark.parametrize(
    "tunnel",
    [
        IP(src=A4, dst=B4) / GRE() / INNER,
        IP(src=A4, dst=B4) / GRE(key_present=1, key=9, seqnum_present=1, chksum_present=1) / INNER,
        IP(src=A4, dst=B4) / GRE(proto=0x6558) / eth() / Dot1Q(vlan=44) / INNER,
        IP(src=A4, dst=B4) / GRE(proto=0x8847) / MPLS(s=1) / INNER,
        IP(src=A4, dst=B4) / UDP(sport=999, dport=4789) / VXLAN(vni=5) / eth() / INNER,
        IPv6(src=A6, dst=B6) / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=1) / INNER,
    ],
    ids=["gre", "gre-key-seq-csum", "gre-eth", "gre-mpls", "vxlan", "gtp-u-over-ipv6"],
)
def test_decapsulation_gives_inner_flow_and_outer_bytes(tunnel: Packet) -> None:
    frame = frame_of(eth() / Dot1Q(vlan=3) / tunnel)
    outer_len = len(bytes(tunnel))
    _inner_ok(ok(frame, DECAP), outer_len)
    assert ok(frame, DECAP).vlan == 3
    plain = ok(frame)
    assert plain.protocol in (17, 47)
    assert plain.ip_len == outer_len


def test_erspan_type_ii() -> None:
    mirrored = bytes(eth() / INNER)
    gre = b"\x10\x00\x88\xbe" + b"\0\0\0\x01"  # S flag + sequence number
    erspan = b"\x10\x01\x00\x05" + b"\0\0\0\0"
    outer = IP(src=A4, dst=B4, proto=47) / Raw(gre + erspan + mirrored)
    _inner_ok(ok(frame_of(eth() / outer), DECAP), len(bytes(outer)))


def test_gtp_with_extension_header() -> None:
    ext = b"\x01\x00\x00\x00"  # one 4-byte extension, next type 0
    gtp = b"\x34\xff" + (8 + len(bytes(INNER))).to_bytes(2, "big") + b"\0\0\0\x01" + b"\0\0\0\x85" + ext
    outer = IP(src=A4, dst=B4) / UDP(sport=2152, dport=2152) / Raw(gtp + bytes(INNER))
    _inner_ok(ok(frame_of(eth() / outer), DECAP), len(bytes(outer)))


def test_undecodable_inner_packet_stays_on_the_outer_flow() -> None:
    tunnel = IP(src=A4, dst=B4) / UDP(sport=999, dport=4789) / VXLAN(vni=5) / eth() / ARP()
    got = ok(frame_of(eth() / tunnel), DECAP)
    check(got, src_ip=ip4(A4), protocol=17, dst_port=4789)
    cut = ok(frame_of(eth() / IP(src=A4, dst=B4) / GRE() / INNER, snaplen=14 + 20 + 4 + 10), DECAP)
    check(cut, src_ip=ip4(A4), protocol=47, ip_len=20 + 4 + len(bytes(INNER)))


def test_first_fragment_of_a_tunnel_packet_is_decapsulated() -> None:
    outer = IP(src=A4, dst=B4, id=99) / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=1) / INNER
    frags = fragments4(outer, 64)  # the first fragment holds the inner IP and TCP headers
    first = ok(frame_of(eth() / frags[0]), DECAP)
    _inner_ok(first, len(bytes(frags[0])))
    check(first, frag_id=99, more_fragments=True, frag_key=(ip4(A4), ip4(B4), 17, 99))
    later = ok(frame_of(eth() / frags[1]), DECAP)
    check(later, src_ip=ip4(A4), protocol=17, l4_present=False, frag_key=(ip4(A4), ip4(B4), 17, 99))


def test_decapsulation_is_off_by_default() -> None:
    assert DecodeConfig() == DecodeConfig(decap_gre=False, decap_vxlan=False, decap_gtp=False)


# -- robustness ---------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=400, deadline=200, suppress_health_check=[HealthCheck.too_slow])
LINKTYPES = st.sampled_from([*sorted(SUPPORTED), 147, 65535])


def _result_ok(got: DecodedPacket | str) -> None:
    if isinstance(got, str):
        assert got in REJECT_REASONS
    else:
        assert got.ip_version in (4, 6)
        assert len(got.src_ip) == len(got.dst_ip) == (4 if got.ip_version == 4 else 16)
        assert 0 <= got.src_port <= 0xFFFF and 0 <= got.dst_port <= 0xFFFF


@FUZZ
@given(data=st.binary(max_size=200), linktype=LINKTYPES, decap=st.booleans())
def test_random_bytes_never_raise(data: bytes, linktype: int, decap: bool) -> None:
    _result_ok(decode(RawFrame(0, linktype, data, len(data)), DECAP if decap else DecodeConfig()))


SEEDS = [
    bytes(eth() / Dot1Q(vlan=5) / tcp4(flags="S", options=[("Timestamp", (1, 2))])),
    bytes(eth() / IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment() / UDP(dport=53) / DNS()),
    bytes(eth() / IP() / GRE() / eth() / MPLS(s=1) / IP() / ICMP()),
    bytes(eth() / IP() / UDP(dport=2152) / GTP_U_Header() / IPv6() / TCP()),
    bytes(eth() / PPPoE() / PPP(proto=0x21) / IP() / UDP(dport=4789) / VXLAN() / eth() / IP() / TCP()),
]


@FUZZ
@given(
    seed=st.sampled_from(SEEDS),
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 200),
)
def test_mutated_packets_never_raise(seed: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    frame = RawFrame(0, 1, bytes(data[: max(cut, 0)] if cut < len(data) else data), len(data))
    _result_ok(decode(frame, DECAP))
    _result_ok(decode(frame))


# -- fragment attribution -----------------------------------------------------------------------------------


def _frags(ident: int, sport: int = 1111) -> list[DecodedPacket]:
    big = IP(src=A4, dst=B4, id=ident) / UDP(sport=sport, dport=2222) / (b"z" * 2000)
    return [ok(frame_of(eth() / f, ts_ns=1_000 + i)) for i, f in enumerate(fragments4(big, 800))]


def test_tracker_gives_later_fragments_the_first_ones_ports() -> None:
    tracker = FragmentTracker()
    out = [tracker.process(p) for p in _frags(7)]
    assert [(p.src_port, p.dst_port) for p in out] == [(1111, 2222)] * 3
    assert [p.l4_present for p in out] == [True, False, False]
    assert tracker.stats.first_fragments == 1 and tracker.stats.attributed == 2


def test_tracker_orphans_get_ports_zero_and_are_counted() -> None:
    tracker = FragmentTracker()
    first, second, third = _frags(8)
    assert tracker.process(third).src_port == 0  # arrives before its first fragment
    tracker.process(first)
    assert tracker.process(second).src_port == 1111
    assert tracker.stats.orphans == 1 and tracker.stats.attributed == 1


def test_tracker_keys_on_the_ip_id() -> None:
    tracker = FragmentTracker()
    a, b = _frags(1, sport=10), _frags(2, sport=20)
    tracker.process(a[0])
    tracker.process(b[0])
    assert tracker.process(b[1]).src_port == 20
    assert tracker.process(a[1]).src_port == 10


def test_tracker_entries_time_out() -> None:
    tracker = FragmentTracker(timeout_ns=100)
    first, second, _ = _frags(3)
    tracker.process(first)
    second.ts_ns = first.ts_ns + 101
    assert tracker.process(second).src_port == 0
    assert tracker.stats.expired == 1 and tracker.stats.orphans == 1 and len(tracker) == 0


def test_tracker_is_bounded() -> None:
    tracker = FragmentTracker(max_datagrams=2)
    groups = [_frags(i, sport=100 + i) for i in range(3)]
    for g in groups:
        tracker.process(g[0])
    assert len(tracker) == 2 and tracker.stats.evicted == 1
    assert tracker.process(groups[0][1]).src_port == 0  # the oldest was dropped
    assert tracker.process(groups[2][1]).src_port == 102


def test_tracker_attributes_outer_fragments_to_the_inner_flow() -> None:
    outer = IP(src=A4, dst=B4, id=99) / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=1) / INNER
    first, later = (ok(frame_of(eth() / f), DECAP) for f in fragments4(outer, 64))
    tracker = FragmentTracker()
    tracker.process(first)
    got = tracker.process(later)
    check(got, src_ip=ip4("10.0.0.1"), dst_ip=ip4("10.0.0.2"), protocol=6, src_port=1234, dst_port=80,
          ip_len=len(bytes(later_bytes := fragments4(outer, 64)[1])), l4_present=False)  # fmt: skip
    assert later_bytes.frag > 0


def test_tracker_passes_unfragmented_packets_untouched() -> None:
    tracker = FragmentTracker()
    pkt = ok(frame_of(eth() / tcp4()))
    assert tracker.process(pkt) is pkt and len(tracker) == 0
