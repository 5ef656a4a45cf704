"""The batch format the native collector reads: per datagram a 30-byte header, then the payload.

Header (big-endian): u32 payload length, i64 receive time (ns since the epoch), u8 address family (4 or 6),
16 bytes of exporter address (IPv4 in the first 4), u8 protocol the listener expects (see PROTOCOLS).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from typing import Final

HEADER: Final = struct.Struct("!IqB16sB")
PROTOCOLS: Final = {"any": 0, "netflow": 1, "ipfix": 2, "sflow": 3}


def packed_address(address: str) -> tuple[int, bytes]:
    """(family 4|6, 16 bytes) of an address in text form."""
    if ":" in address:
        return 6, socket.inet_pton(socket.AF_INET6, address)
    return 4, socket.inet_pton(socket.AF_INET, address) + bytes(12)


def batch(datagrams: Iterable[tuple[str, int, bytes]], protocol: str = "any") -> bytes:
    """Frame (exporter address, receive ns, payload) datagrams into one batch (tests, benchmarks, replays)."""
    proto = PROTOCOLS[protocol]
    out = bytearray()
    for address, recv_ns, payload in datagrams:
        family, addr16 = packed_address(address)
        out += HEADER.pack(len(payload), recv_ns, family, addr16, proto)
        out += payload
    return bytes(out)
