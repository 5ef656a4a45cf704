"""The tuple layout of one decoded export record as ``gwtel_native.Collector.take`` returns it."""

from __future__ import annotations

from typing import NamedTuple


class Exported(NamedTuple):
    kind: str  # netflow5, netflow9, ipfix, sflow
    exporter: bytes  # packed address (sFlow: the agent address of the datagram)
    domain: int  # v5 engine type/id, v9 source id, IPFIX observation domain, sFlow sub-agent
    ip_version: int
    src: bytes
    dst: bytes
    src_port: int
    dst_port: int  # ICMP: type<<8|code
    protocol: int
    tos: int
    tcp_flags: int
    octets: int  # as exported: sampled, not renormalised
    packets: int
    octets_rev: int  # biflows only (Cisco NSEL responder, RFC 5103 reverse fields), else 0
    packets_rev: int
    first_ns: int
    last_ns: int
    in_if: int
    out_if: int
    src_as: int
    dst_as: int
    next_hop: bytes  # empty when not exported
    sampling_rate: int
    vlan: int
    flow_direction: int  # IPFIX flowDirection: 0 ingress, 1 egress, 255 not exported
    biflow: bool = False  # both directions counted (NSEL responder or RFC 5103 reverse fields present, even at 0)


class LinkCounters(NamedTuple):
    """One sFlow generic interface counter sample."""

    exporter: bytes
    if_index: int
    in_octets: int
    out_octets: int
    in_packets: int
    out_packets: int
    speed_bps: int
    recv_ns: int
    seq: int  # the counter sample's sequence number
