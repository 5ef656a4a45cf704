"""Link-layer header types (LINKTYPE_* numbers as stored in pcap/pcapng) that the decoder understands."""

from __future__ import annotations

from typing import Final

NULL: Final = 0  # BSD loopback, 4-byte address family in the capturing host's byte order
ETHERNET: Final = 1
PPP: Final = 9  # PPP with optional HDLC-like address/control bytes
RAW_DLT12: Final = 12  # DLT_RAW as some BSDs number it: bare IPv4/IPv6
RAW_DLT14: Final = 14  # DLT_RAW on OpenBSD
RAW: Final = 101  # LINKTYPE_RAW: bare IPv4/IPv6, version from the first nibble
LOOP: Final = 108  # OpenBSD loopback, address family in network byte order
LINUX_SLL: Final = 113
IPV4: Final = 228
IPV6: Final = 229
LINUX_SLL2: Final = 276

NAMES: Final[dict[int, str]] = {
    NULL: "NULL (BSD loopback)",
    ETHERNET: "Ethernet",
    PPP: "PPP",
    RAW_DLT12: "raw IP (DLT 12)",
    RAW_DLT14: "raw IP (DLT 14)",
    RAW: "raw IP",
    LOOP: "LOOP (OpenBSD loopback)",
    LINUX_SLL: "Linux cooked v1 (SLL)",
    IPV4: "raw IPv4",
    IPV6: "raw IPv6",
    LINUX_SLL2: "Linux cooked v2 (SLL2)",
}

SUPPORTED: Final[frozenset[int]] = frozenset(NAMES)

# Bits 26-31 of the pcap header's link-type field carry FCS information (pcap spec); the type is the rest.
LINKTYPE_MASK: Final = 0x03FF_FFFF


def name(linktype: int) -> str:
    """Human-readable name for messages and metrics labels."""
    return NAMES.get(linktype, f"unsupported link type {linktype}")
