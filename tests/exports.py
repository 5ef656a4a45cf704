"""Hand-built flow export datagrams (field by field from RFC 3954 / RFC 7011 / the Cisco v5 layout) for tests."""

from __future__ import annotations

import ipaddress
import struct


def netflow5(
    flows: list[tuple[str, str, int, int, int, int, int]],
    *,
    sampling: int = 0,
    unix_secs: int = 1_700_000_000,
    next_hop: str = "0.0.0.0",
    src_as: int = 0,
    dst_as: int = 0,
    tos: int = 0,
) -> bytes:
    """(src, dst, sport, dport, proto, packets, octets) per record, in on interface 1 and out on 2, with the
    given next hop, AS numbers and ToS byte; first/last 1 s and 0 s before export."""
    head = struct.pack("!HHIIIIBBH", 5, len(flows), 10_000, unix_secs, 0, 0, 0, 0, sampling)
    body = b""
    for src, dst, sport, dport, proto, pkts, octets in flows:
        body += ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
        body += ipaddress.IPv4Address(next_hop).packed
        body += struct.pack(
            "!HHIIIIHHBBBBHHBBH", 1, 2, pkts, octets, 9_000, 10_000, sport, dport, 0, 0, proto, tos, src_as, dst_as,
            0, 0, 0,
        )  # fmt: skip
    return head + body


IPFIX_TEMPLATE_ID = 400
# sourceIPv4Address, destinationIPv4Address, sourceTransportPort, destinationTransportPort, protocolIdentifier,
# octetDeltaCount (8), packetDeltaCount (8), ingressInterface, egressInterface
_FIELDS = ((8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (10, 4), (14, 4))


def _ipfix(domain: int, sets: bytes, export_s: int = 1_700_000_000) -> bytes:
    return struct.pack("!HHIII", 10, 16 + len(sets), export_s, 0, domain) + sets


def ipfix_template(domain: int = 1) -> bytes:
    rec = struct.pack("!HH", IPFIX_TEMPLATE_ID, len(_FIELDS)) + b"".join(struct.pack("!HH", i, n) for i, n in _FIELDS)
    return _ipfix(domain, struct.pack("!HH", 2, 4 + len(rec)) + rec)


def ipfix_data(
    flows: list[tuple[str, str, int, int, int, int, int, int, int]], domain: int = 1, export_s: int = 1_700_000_000
) -> bytes:
    """(src, dst, sport, dport, proto, octets, packets, in_if, out_if) per record; no timestamps (the flow is
    placed at the export time)."""
    body = b""
    for src, dst, sport, dport, proto, octets, pkts, in_if, out_if in flows:
        body += ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
        body += struct.pack("!HHBQQII", sport, dport, proto, octets, pkts, in_if, out_if)
    return _ipfix(domain, struct.pack("!HH", IPFIX_TEMPLATE_ID, 4 + len(body)) + body, export_s)


def _v9(sets: bytes, unix_secs: int = 1_700_000_000, source_id: int = 0) -> bytes:
    return struct.pack("!HHIIII", 9, 1, 100_000, unix_secs, 0, source_id) + sets


V9_TEMPLATE_ID = 300
# as _FIELDS, with FIRST_SWITCHED / LAST_SWITCHED (sysUptime ms)
_V9_FIELDS = (*_FIELDS, (22, 4), (21, 4))


def netflow9_template() -> bytes:
    rec = struct.pack("!HH", V9_TEMPLATE_ID, len(_V9_FIELDS)) + b"".join(
        struct.pack("!HH", i, n) for i, n in _V9_FIELDS
    )
    return _v9(struct.pack("!HH", 0, 4 + len(rec)) + rec)


def netflow9_data(flows: list[tuple[str, str, int, int, int, int, int, int, int]]) -> bytes:
    """(src, dst, sport, dport, proto, octets, packets, in_if, out_if) per record, 9 s .. 1 s before export."""
    body = b""
    for src, dst, sport, dport, proto, octets, pkts, in_if, out_if in flows:
        body += ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
        body += struct.pack("!HHBQQIIII", sport, dport, proto, octets, pkts, in_if, out_if, 91_000, 99_000)
    return _v9(struct.pack("!HH", V9_TEMPLATE_ID, 4 + len(body)) + body)


def sflow_samples(
    packets: list[tuple[str, str, int, int, int]], *, rate: int = 1000, agent: str = "192.0.2.1"
) -> bytes:
    """One sFlow v5 datagram, one flow sample per (src, dst, sport, dport, ip_len): a raw Ethernet/IPv4/TCP header
    of the sampled packet, input ifIndex 1, output 2."""
    samples = b""
    for i, (src, dst, sport, dport, ip_len) in enumerate(packets):
        tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x10, 1000, 0, 0)
        ip = struct.pack("!BBHHHBBH", 0x45, 0, ip_len, 1, 0, 64, 6, 0)
        ip += ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
        header = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp
        raw = struct.pack("!IIII", 1, ip_len + 18, 4, len(header)) + header
        raw += bytes(-len(raw) % 4)
        flow = struct.pack("!IIIIIIII", i, 1, rate, rate * (i + 1), 0, 1, 2, 1) + struct.pack("!II", 1, len(raw)) + raw
        samples += struct.pack("!II", 1, len(flow)) + flow
    head = (
        struct.pack("!II", 5, 1) + ipaddress.IPv4Address(agent).packed + struct.pack("!IIII", 0, 1, 1000, len(packets))
    )
    return head + samples


def sflow_counters(
    counters: list[tuple[int, int, int]],
    *,
    agent: str = "192.0.2.1",
    seq: int = 0,
    speed_bps: int = 10_000_000_000,
    packets: tuple[int, int] = (100, 90),
) -> bytes:
    """One sFlow v5 datagram, one counter sample (sequence `seq + i`) per (ifIndex, ifInOctets, ifOutOctets) with a
    generic interface counter record (sflow.org sFlow v5: counters_sample format 2, if_counters format 1, 88 bytes);
    `packets` = (ifInUcastPkts, ifOutUcastPkts), multicast and broadcast counters 0."""
    samples = b""
    for i, (if_index, in_octets, out_octets) in enumerate(counters):
        rec = struct.pack("!IIQII", if_index, 6, speed_bps, 1, 3)
        rec += struct.pack("!Q6I", in_octets, packets[0], 0, 0, 0, 0, 0)
        rec += struct.pack("!Q5I", out_octets, packets[1], 0, 0, 0, 0) + struct.pack("!I", 0)
        assert len(rec) == 88
        body = struct.pack("!III", seq + i, if_index, 1) + struct.pack("!II", 1, len(rec)) + rec
        samples += struct.pack("!II", 2, len(body)) + body
    head = (
        struct.pack("!II", 5, 1) + ipaddress.IPv4Address(agent).packed + struct.pack("!IIII", 0, 2, 1000, len(counters))
    )
    return head + samples
