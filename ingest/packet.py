"""Typed records at the ingest boundaries: raw frame (source -> decoder) and decoded packet (decoder -> meter)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RawFrame:
    """One captured frame as a packet source hands it to the decoder."""

    ts_ns: int  # capture time, ns since the Unix epoch
    linktype: int  # DLT/LINKTYPE number of the interface it came from
    data: bytes  # captured bytes (may be cut by the snap length)
    wire_len: int  # original frame length on the wire


@dataclass(slots=True)
class DecodedPacket:
    """The fields the flow meter needs from one packet, innermost flow after configured decapsulation."""

    ts_ns: int
    ip_len: int  # IP-layer octets (IP header + payload) from the IP length field, even if the frame was cut
    ip_version: int  # 4 or 6
    src_ip: bytes  # packed, 4 or 16 bytes
    dst_ip: bytes
    protocol: int  # IP protocol of the transport header (after IPv6 extension headers)
    src_port: int = 0  # TCP/UDP ports; 0 when absent (ICMP, non-first fragments before attribution)
    dst_port: int = 0
    vlan: int = 0  # outer 802.1Q/802.1ad VLAN id, 0 when untagged
    # TCP
    tcp_flags: int = 0
    tcp_seq: int = 0
    tcp_ack: int = 0
    tcp_payload_len: int = 0
    tcp_tsval: int | None = None
    tcp_tsecr: int | None = None
    # ICMP / ICMPv6 (echo id/seq for RTT matching)
    icmp_type: int = -1
    icmp_code: int = -1
    icmp_id: int = 0
    icmp_seq: int = 0
    # DNS over UDP (from the first 4 header bytes, when the payload was captured)
    dns_id: int | None = None
    dns_is_response: bool = False
    # IP fragments
    frag_id: int = 0
    frag_offset: int = 0  # in bytes
    more_fragments: bool = False
    l4_present: bool = True  # False for non-first fragments: ports come from the fragment tracker
    # (src, dst, protocol, id) of the fragmented IP header, None when not a fragment. It differs from this
    # packet's own addresses when the first fragment of a tunnel packet was decapsulated.
    frag_key: tuple[bytes, bytes, int, int] | None = None
    # DiffServ code point (IPv4 ToS / IPv6 traffic class >> 2) of this (innermost) IP header
    dscp: int = 0
