"""Hand-built flow export datagrams (field by field from RFC 3954 / RFC 7011 / the Cisco v5 layout) for tests."""

from __future__ import annotations

import ipaddress
import struct


def netflow5(
    flows: list[tuple[str, str, int, int, int, int, int]], *, sampling: int = 0, unix_secs: int = 1_700_000_000
) -> bytes:
    """(src, dst, sport, dport, proto, packets, octets) per record; first/last 1 s and 0 s before export."""
    head = struct.pack("!HHIIIIBBH", 5, len(flows), 10_000, unix_secs, 0, 0, 0, 0, sampling)
    body = b""
    for src, dst, sport, dport, proto, pkts, octets in flows:
        body += ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + bytes(4)
        body += struct.pack(
            "!HHIIIIHHBBBBHHBBH", 1, 2, pkts, octets, 9_000, 10_000, sport, dport, 0, 0, proto, 0, 0, 0, 0, 0, 0
        )
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
