"""Test helpers: build frames with Scapy, write capture files by hand, and read Scapy's view of a frame.

`expected_fields` is the independent reference for the decoder: it walks Scapy's own dissection and
returns the DecodedPacket fields Scapy sees, or None when Scapy finds no IP packet.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scapy.config import conf
from scapy.contrib import gtp as _gtp  # noqa: F401  # binds GTP-U to UDP 2152, so Scapy sees the inner flow
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    IPv46,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import GRE, Dot1AD, Dot1Q, Ether, Loopback
from scapy.layers.ppp import PPP
from scapy.layers.vxlan import VXLAN
from scapy.packet import NoPayload, Packet, Raw, bind_bottom_up

from ingest.packet import RawFrame

__all__ = [
    "Iface",
    "dissect",
    "eth",
    "expected_fields",
    "frame_of",
    "pcap_bytes",
    "pcapng_bytes",
]

_SCAPY_L2: dict[int, Any] = {12: IPv46, 14: IPv46}

# Scapy only knows the running host's AF_INET6 for BSD loopback, and no MPLS over PPP: teach it the
# registered numbers so it can stay the reference for those captures.
for _af in (24, 28, 30):
    bind_bottom_up(Loopback, IPv6, type=_af)
bind_bottom_up(PPP, MPLS, proto=0x0281)


def frame_of(
    pkt: Packet | bytes, *, ts_ns: int = 1_000_000_000, linktype: int | None = None, snaplen: int | None = None
) -> RawFrame:
    """A RawFrame holding `pkt`, optionally cut to `snaplen` bytes (wire_len stays the full length)."""
    data = bytes(pkt)
    if linktype is None:
        if isinstance(pkt, bytes):
            raise ValueError("give the linktype for raw bytes")
        linktype = int(conf.l2types.layer2num[type(pkt)])
    cut = data if snaplen is None else data[:snaplen]
    return RawFrame(ts_ns, linktype, cut, len(data))


def dissect(frame: RawFrame) -> Packet | None:
    """Scapy's dissection of a frame, or None when Scapy has no class for its link type."""
    cls: Any = _SCAPY_L2.get(frame.linktype) or conf.l2types.get(frame.linktype)
    if cls is None:
        return None
    pkt: Packet = cls(frame.data)
    return pkt


# -- Scapy's view -------------------------------------------------------------------------------------------

_IPV6_EXT = (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, AH)


def _layers(pkt: Packet) -> list[Packet]:
    out = []
    layer: Packet = pkt
    while not isinstance(layer, NoPayload):
        out.append(layer)
        layer = layer.payload
    return out


def _is_ext(layer: Packet) -> bool:
    return any(isinstance(layer, c) for c in _IPV6_EXT)


def expected_fields(pkt: Packet, *, decap: bool = False) -> dict[str, Any] | None:
    """DecodedPacket fields as Scapy dissects `pkt`; with `decap`, the flow inside GRE/VXLAN/GTP-U.

    Keys present are the ones Scapy determines; `l4` says which transport layer Scapy dissected
    ("tcp", "udp", "icmp", "icmp6", "raw" when it fell back to raw bytes, "none" for other protocols).
    """
    layers = _layers(pkt)
    vlan = None
    i = 0
    while i < len(layers) and type(layers[i]) not in (IP, IPv6):
        if type(layers[i]) in (Dot1Q, Dot1AD) and vlan is None:
            vlan = int(layers[i].vlan)
        i += 1
    if i == len(layers):
        return None
    outer = layers[i]
    ip_len = int(outer.len) if type(outer) is IP else int(outer.plen) + 40
    while True:
        exp = _ip_fields(layers, i)
        j = exp.pop("_next")
        if not decap or j is None or j >= len(layers):
            break
        # follow the tunnel only where the decoder would
        nxt = layers[j]
        k = None
        if exp["protocol"] == 47 and isinstance(nxt, GRE):
            k = j + 1
        elif exp["protocol"] == 17 and type(layers[j]).__name__ == "UDP" and j + 1 < len(layers):
            tun = layers[j + 1]
            if isinstance(tun, VXLAN) or type(tun).__name__ == "GTP_U_Header":
                k = j + 2
        if k is None:
            break
        while k < len(layers) and type(layers[k]) not in (IP, IPv6):
            if type(layers[k]) in (Dot1Q, Dot1AD) and vlan is None:
                vlan = int(layers[k].vlan)
            k += 1
        if k >= len(layers):
            break
        frag_keys = ("frag_id", "frag_offset", "more_fragments")
        outer_frag: dict[str, Any] = {key: exp[key] for key in frag_keys if key in exp}
        inner = _ip_fields(layers, k)
        if inner.get("l4") == "raw" or "protocol" not in inner:
            break  # the decoder keeps the outer flow when the inner one is incomplete
        exp = inner
        i = k
        if outer_frag.get("more_fragments"):
            exp.update(outer_frag)
        exp.pop("_next")
    exp["ip_len"] = ip_len
    exp["vlan"] = vlan or 0
    return exp


def _addr(ip: Packet) -> tuple[bytes, bytes]:
    fam = socket.AF_INET if type(ip) is IP else socket.AF_INET6
    return socket.inet_pton(fam, ip.src), socket.inet_pton(fam, ip.dst)


def _ip_fields(layers: list[Packet], i: int) -> dict[str, Any]:
    ip = layers[i]
    src, dst = _addr(ip)
    exp: dict[str, Any] = {"ip_version": 4 if type(ip) is IP else 6, "src_ip": src, "dst_ip": dst}
    # Scapy's ToS / traffic class byte; the DSCP is its upper six bits (RFC 2474)
    exp["dscp"] = int(ip.tos if type(ip) is IP else ip.tc) >> 2
    frag_off = 0
    j = i + 1
    if type(ip) is IP:
        exp["protocol"] = int(ip.proto)
        frag_off = int(ip.frag) * 8
        if frag_off or ip.flags.MF:
            exp.update(frag_id=int(ip.id), frag_offset=frag_off, more_fragments=bool(ip.flags.MF))
        seg_len = int(ip.len) - int(ip.ihl) * 4
    else:
        proto = int(ip.nh)
        seg_len = int(ip.plen)
        while j < len(layers) and _is_ext(layers[j]):
            ext = layers[j]
            proto = int(ext.nh)
            seg_len -= len(ext) - len(ext.payload)
            j += 1
            if isinstance(ext, IPv6ExtHdrFragment):
                frag_off = int(ext.offset) * 8
                exp.update(frag_id=int(ext.id), frag_offset=frag_off, more_fragments=bool(ext.m))
                if frag_off:
                    break
        exp["protocol"] = proto
    exp["l4_present"] = frag_off == 0
    exp["_next"] = j
    if frag_off:
        exp["l4"] = "none"
        return exp
    l4 = layers[j] if j < len(layers) else None
    if l4 is None or isinstance(l4, Raw):
        exp["l4"] = "raw" if exp["protocol"] in (1, 6, 17, 58) else "none"
        return exp
    if isinstance(l4, TCP):
        exp.update(
            l4="tcp",
            src_port=int(l4.sport),
            dst_port=int(l4.dport),
            tcp_seq=int(l4.seq),
            tcp_ack=int(l4.ack),
            tcp_flags=int(l4.flags),
            tcp_payload_len=seg_len - int(l4.dataofs) * 4,
        )
        for opt in l4.options:
            if opt[0] == "Timestamp" and isinstance(opt[1], tuple):
                exp["tcp_tsval"], exp["tcp_tsecr"] = int(opt[1][0]), int(opt[1][1])
                break
    elif isinstance(l4, UDP):
        exp.update(l4="udp", src_port=int(l4.sport), dst_port=int(l4.dport))
        dns = l4.payload
        if type(dns).__name__ == "DNS" and (l4.sport == 53 or l4.dport == 53):
            exp.update(dns_id=int(dns.id), dns_is_response=bool(dns.qr))
    elif isinstance(l4, ICMP):
        exp.update(l4="icmp", icmp_type=int(l4.type), icmp_code=int(l4.code))
        if l4.type in (0, 8):
            exp.update(icmp_id=int(l4.id), icmp_seq=int(l4.seq))
    elif type(l4).__name__.startswith("ICMPv6") and exp["protocol"] == 58:
        # the second field is the code, whatever Scapy names it (MLDv2 reports call it "res")
        code = l4.getfieldval(l4.fields_desc[1].name)
        exp.update(l4="icmp6", icmp_type=int(l4.type), icmp_code=int(code))
        if l4.type in (128, 129):
            exp.update(icmp_id=int(l4.id), icmp_seq=int(l4.seq))
    else:
        exp["l4"] = "none"
    return exp


# -- capture files written by hand --------------------------------------------------------------------------


def pcap_bytes(
    frames: Iterable[RawFrame],
    *,
    linktype: int = 1,
    nanosecond: bool = False,
    big_endian: bool = False,
    snaplen: int = 262144,
    version: tuple[int, int] = (2, 4),
) -> bytes:
    """A classic pcap file: global header then one record per frame."""
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype)]
    div = 1 if nanosecond else 1000
    for f in frames:
        sec, frac = divmod(f.ts_ns, 1_000_000_000)
        out.append(struct.pack(e + "IIII", sec, frac // div, len(f.data), f.wire_len))
        out.append(f.data)
    return b"".join(out)


@dataclass(frozen=True)
class Iface:
    """One pcapng interface: link type, snap length, optional if_tsresol byte and if_tsoffset seconds."""

    linktype: int = 1
    snaplen: int = 0
    tsresol: int | None = None
    tsoffset: int | None = None


def _block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    blen = len(body) + 12
    return struct.pack(e + "II", btype, blen) + body + struct.pack(e + "I", blen)


def _opt(e: str, code: int, value: bytes) -> bytes:
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def pcapng_bytes(
    ifaces: Sequence[Iface],
    packets: Iterable[tuple[int, int, bytes, int]],
    *,
    big_endian: bool = False,
    extra_blocks: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """A one-section pcapng file; packets are (interface id, timestamp in ticks, data, wire length)."""
    e = ">" if big_endian else "<"
    out = [_block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for btype, body in extra_blocks:
        out.append(_block(e, btype, body))
    for iface in ifaces:
        opts = b""
        if iface.tsresol is not None:
            opts += _opt(e, 9, bytes([iface.tsresol]))
        if iface.tsoffset is not None:
            opts += _opt(e, 14, struct.pack(e + "q", iface.tsoffset))
        if opts:
            opts += _opt(e, 0, b"")
        out.append(_block(e, 1, struct.pack(e + "HHI", iface.linktype, 0, iface.snaplen) + opts))
    for if_id, ticks, data, wire_len in packets:
        body = struct.pack(e + "IIIII", if_id, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wire_len) + data
        out.append(_block(e, 6, body))
    return b"".join(out)


def fragments4(pkt: Packet, size: int) -> list[Packet]:
    """Scapy's IPv4 fragmentation, typed."""
    from scapy.layers.inet import fragment

    out: list[Packet] = fragment(pkt, fragsize=size)  # type: ignore[no-untyped-call]
    return out


def fragments6(pkt: Packet, size: int) -> list[Packet]:
    """Scapy's IPv6 fragmentation (the packet needs an IPv6ExtHdrFragment), typed."""
    from scapy.layers.inet6 import fragment6

    out: list[Packet] = fragment6(pkt, size)  # type: ignore[no-untyped-call]
    return out


def eth(**kw: Any) -> Ether:
    """Ethernet header with fixed addresses (an Ether() without them makes Scapy resolve them by ARP)."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **kw)
