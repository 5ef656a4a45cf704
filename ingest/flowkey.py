"""Direction-independent flow keys.

A key is one ``bytes`` object: ``lo_ip + hi_ip + pack(lo_port, hi_port, vlan, protocol)`` where ``lo`` is the
endpoint whose (address, port) sorts first. Both directions of a conversation therefore build the same key,
and the VLAN is part of it, so the same 5-tuple seen on two VLANs makes two flows. One flat ``bytes`` costs
far less memory than a tuple of objects and hashes fast.

ICMP has no ports. Echo request and reply must meet in one flow, so for echo messages both "ports" are the
echo identifier; other ICMP messages use ``0x10000 | type << 8 | code`` (outside the 16-bit id range, so they
never collide with an echo flow). A non-first ICMP fragment (``l4_present`` False) carries no ICMP header: its
key port comes from ``src_port`` as filled by the upstream fragment tracker (see ``icmp_key_port``).
"""

from __future__ import annotations

import socket
import struct
from typing import Final

from ingest.packet import DecodedPacket

PROTO_ICMP: Final = 1
PROTO_TCP: Final = 6
PROTO_UDP: Final = 17
PROTO_ICMPV6: Final = 58

# (protocol, type) of echo requests / replies
ECHO_REQUEST: Final = frozenset({(PROTO_ICMP, 8), (PROTO_ICMPV6, 128)})
ECHO_REPLY: Final = frozenset({(PROTO_ICMP, 0), (PROTO_ICMPV6, 129)})
_ECHO_ANY: Final = ECHO_REQUEST | ECHO_REPLY

# ports are 32-bit in the key because of the ICMP non-echo encoding above
_TAIL: Final = struct.Struct(">IIHB")
TAIL_LEN: Final = _TAIL.size  # 11


def icmp_key_port(pkt: DecodedPacket) -> int:
    """The value used as both ports of an ICMP/ICMPv6 key (see module docstring)."""
    if not pkt.l4_present or pkt.icmp_type < 0:
        # Non-first fragment: the fragment tracker copies the first fragment's key port into src_port.
        return pkt.src_port
    if (pkt.protocol, pkt.icmp_type) in _ECHO_ANY:
        return pkt.icmp_id
    return 0x10000 | (pkt.icmp_type << 8) | max(pkt.icmp_code, 0)


def flow_key(pkt: DecodedPacket) -> tuple[bytes, bool]:
    """Return ``(key, sender_is_lo)`` for a packet; ``sender_is_lo`` tells which end of the key sent it."""
    src = pkt.src_ip
    dst = pkt.dst_ip
    proto = pkt.protocol
    if proto in (PROTO_ICMP, PROTO_ICMPV6):
        sport = dport = icmp_key_port(pkt)
    else:
        sport = pkt.src_port
        dport = pkt.dst_port
    if src < dst or (src == dst and sport <= dport):
        return src + dst + _TAIL.pack(sport, dport, pkt.vlan, proto), True
    return dst + src + _TAIL.pack(dport, sport, pkt.vlan, proto), False


class KeyParts:
    """The fields of a key, decoded back (at export only: not on the hot path)."""

    __slots__ = ("hi_ip", "hi_port", "ip_version", "lo_ip", "lo_port", "protocol", "vlan")

    def __init__(self, key: bytes) -> None:
        alen = (len(key) - TAIL_LEN) // 2
        self.ip_version = 4 if alen == 4 else 6
        self.lo_ip = key[:alen]
        self.hi_ip = key[alen : 2 * alen]
        self.lo_port, self.hi_port, self.vlan, self.protocol = _TAIL.unpack_from(key, 2 * alen)


def ip_text(addr: bytes) -> str:
    """Packed address -> text form (``socket.inet_ntop`` is far faster than ``ipaddress``)."""
    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)
