"""Fast packet decoder: RawFrame -> DecodedPacket, or a reject reason.

Plain offset arithmetic over the frame's bytes with precompiled `struct` unpackers: no per-layer objects.

Layers: Ethernet, 802.1Q / 802.1ad / 0x9100 tags (`vlan` = the outermost tag's id), MPLS label stacks
(IPv4/IPv6 chosen by the first nibble after the bottom of stack; an Ethernet pseudowire with a zero control
word is followed), PPPoE session (PPP 0x0021 / 0x0057), Linux SLL/SLL2, BSD NULL/LOOP, PPP, raw IP; IPv4
(options, fragments), IPv6 (hop-by-hop, routing, fragment, destination options, AH); TCP, UDP, ICMP, ICMPv6,
DNS id/QR over UDP port 53.

Byte counting: `ip_len` comes from the IP header's length field (IPv4 total length, IPv6 payload length
+ 40), so a frame cut by the snap length still counts in full. With decapsulation enabled
(`DecodeConfig`), the flow fields describe the inner packet while `ip_len` and `vlan` stay those of the
outer packet: the bytes that crossed the monitored link. If the inner packet cannot be decoded (cut by the
snap length, not IP), the packet is accounted to the outer tunnel flow instead of being rejected.

IP fragments: a first fragment (offset 0) carries the transport header and is decoded in full; later
fragments come back with `l4_present=False` and ports 0 (see `ingest.fragments`). Only the first fragment
of a fragmented tunnel packet can be decapsulated; its `frag_*` fields then describe the outer header.

Reject reasons (the complete set, `REJECT_REASONS`):
- `unsupported_linktype`: the frame's link type is not one of `ingest.linktypes.SUPPORTED`;
- `truncated_l2`: the capture ends inside the link-layer, VLAN, MPLS or PPPoE headers;
- `not_ip`: the frame carries something other than IPv4/IPv6 (ARP, LLDP, PPPoE discovery, ...);
- `truncated_ip`: the capture ends inside the IP header or its IPv6 extension headers;
- `bad_ip_header`: wrong version, header length < 20, total length shorter than the header, an extension
  header running past the packet's payload length;
- `truncated_l4`: the capture ends before the TCP (20 bytes), UDP (8) or ICMP (8) header is complete; TCP
  options are read as far as they were captured;
- `bad_l4_header`: the IP packet itself is too short for its transport header, or a TCP data offset < 5.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ingest.packet import DecodedPacket, RawFrame

UNSUPPORTED_LINKTYPE: Final = "unsupported_linktype"
TRUNCATED_L2: Final = "truncated_l2"
NOT_IP: Final = "not_ip"
TRUNCATED_IP: Final = "truncated_ip"
BAD_IP_HEADER: Final = "bad_ip_header"
TRUNCATED_L4: Final = "truncated_l4"
BAD_L4_HEADER: Final = "bad_l4_header"

REJECT_REASONS: Final[frozenset[str]] = frozenset(
    {UNSUPPORTED_LINKTYPE, TRUNCATED_L2, NOT_IP, TRUNCATED_IP, BAD_IP_HEADER, TRUNCATED_L4, BAD_L4_HEADER}
)

MAX_DECAP_DEPTH: Final = 3  # tunnel in tunnel in tunnel; deeper nesting stays on the last decoded level


@dataclass(frozen=True, slots=True)
class DecodeConfig:
    """Which tunnels to open; the flow is then the inner one (bytes stay the outer packet's)."""

    decap_gre: bool = False  # IP protocol 47: IPv4/IPv6, transparent Ethernet, MPLS, ERSPAN II/III
    decap_vxlan: bool = False  # UDP destination port `vxlan_port`
    decap_gtp: bool = False  # GTP-U G-PDU on UDP port `gtp_port` (either side)
    vxlan_port: int = 4789
    gtp_port: int = 2152


DEFAULT_CONFIG: Final = DecodeConfig()

_ETH_IPV4: Final = 0x0800
_ETH_IPV6: Final = 0x86DD
_ETH_MPLS_UC: Final = 0x8847
_ETH_MPLS_MC: Final = 0x8848
_ETH_PPPOE_SESSION: Final = 0x8864
_VLAN_TPIDS: Final = frozenset({0x8100, 0x88A8, 0x9100})
_PPP_TO_ETHERTYPE: Final = {0x0021: _ETH_IPV4, 0x0057: _ETH_IPV6, 0x0281: _ETH_MPLS_UC, 0x0283: _ETH_MPLS_MC}
_BSD_AF_INET6: Final = frozenset({10, 24, 28, 30})  # Linux, NetBSD/OpenBSD, FreeBSD, Darwin
_IPV6_EXT: Final = frozenset({0, 43, 44, 51, 60})
_ARPHRD_NETLINK: Final = 824

_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from
_U32LE = struct.Struct("<I").unpack_from
_TAG = struct.Struct("!HH").unpack_from
_IP4 = struct.Struct("!BxHHHxBxx4s4s").unpack_from  # ver/ihl, total length, id, flags/offset, proto, src, dst
_IP6 = struct.Struct("!IHBx16s16s").unpack_from  # ver/tc/flow, payload length, next header, src, dst
_TCP = struct.Struct("!HHIIBB").unpack_from  # ports, seq, ack, data offset byte, flags byte
_UDP = struct.Struct("!HH").unpack_from
_ICMP = struct.Struct("!BBxxHH").unpack_from  # type, code, echo id, echo seq
_TSOPT = struct.Struct("!II").unpack_from
_FRAG6 = struct.Struct("!BxHI").unpack_from  # next header, offset/flags, id


def decode(frame: RawFrame, cfg: DecodeConfig = DEFAULT_CONFIG) -> DecodedPacket | str:
    """Decode one frame; a str result is one of REJECT_REASONS."""
    data = frame.data
    lt = frame.linktype
    n = len(data)
    if lt == 1:  # Ethernet first: by far the most common
        if n < 14:
            return TRUNCATED_L2
        etype = (data[12] << 8) | data[13]
        off = 14
    elif lt in (101, 12, 14):
        if not n:
            return TRUNCATED_IP
        ver = data[0] >> 4
        if ver == 4:
            etype = _ETH_IPV4
        elif ver == 6:
            etype = _ETH_IPV6
        else:
            return BAD_IP_HEADER
        off = 0
    elif lt == 113:
        if n < 16:
            return TRUNCATED_L2
        if _U16(data, 2)[0] == _ARPHRD_NETLINK:
            return NOT_IP
        etype = (data[14] << 8) | data[15]
        off = 16
    elif lt == 276:
        if n < 20:
            return TRUNCATED_L2
        if _U16(data, 8)[0] == _ARPHRD_NETLINK:
            return NOT_IP
        etype = (data[0] << 8) | data[1]
        off = 20
    elif lt in (0, 108):
        if n < 4:
            return TRUNCATED_L2
        af = _U32(data, 0)[0] if lt == 108 else _U32LE(data, 0)[0]
        if af > 0xFFFF:  # NULL is in the writer's byte order: a big-endian writer's value reads swapped
            af = int.from_bytes(data[:4], "big")
        if af == 2:
            etype = _ETH_IPV4
        elif af in _BSD_AF_INET6:
            etype = _ETH_IPV6
        else:
            return NOT_IP
        off = 4
    elif lt == 228:
        etype, off = _ETH_IPV4, 0
    elif lt == 229:
        etype, off = _ETH_IPV6, 0
    elif lt == 9:
        off = 2 if data[:2] == b"\xff\x03" else 0  # address/control bytes are optional
        if off >= n:
            return TRUNCATED_L2
        if data[off] & 1:  # protocol-field compression: one-byte protocol
            proto = data[off]
            off += 1
        else:
            if off + 2 > n:
                return TRUNCATED_L2
            proto = _U16(data, off)[0]
            off += 2
        mapped = _PPP_TO_ETHERTYPE.get(proto)
        if mapped is None:
            return NOT_IP
        etype = mapped
    else:
        return UNSUPPORTED_LINKTYPE
    if etype == _ETH_IPV4:
        return _ip(frame.ts_ns, data, off, n, 4, 0, cfg, 0)
    if etype == _ETH_IPV6:
        return _ip(frame.ts_ns, data, off, n, 6, 0, cfg, 0)
    walked = _walk_ethertypes(data, off, n, etype)
    if isinstance(walked, str):
        return walked
    ver, off, vlan = walked
    return _ip(frame.ts_ns, data, off, n, ver, vlan, cfg, 0)


def _walk_ethertypes(data: bytes, off: int, lim: int, etype: int) -> tuple[int, int, int] | str:
    """Follow VLAN tags, MPLS and PPPoE down to IP; return (IP version, offset, outer VLAN id)."""
    vlan = -1
    while True:  # every pass consumes header bytes, so the loop ends
        if etype == _ETH_IPV4:
            return 4, off, vlan if vlan > 0 else 0
        if etype == _ETH_IPV6:
            return 6, off, vlan if vlan > 0 else 0
        if etype in _VLAN_TPIDS:
            if off + 4 > lim:
                return TRUNCATED_L2
            tci, etype = _TAG(data, off)
            if vlan < 0:
                vlan = tci & 0x0FFF
            off += 4
        elif etype in (_ETH_MPLS_UC, _ETH_MPLS_MC):
            while True:
                if off + 4 > lim:
                    return TRUNCATED_L2
                bottom = data[off + 2] & 1
                off += 4
                if bottom:
                    break
            if off >= lim:
                return TRUNCATED_L2
            nibble = data[off] >> 4
            if nibble == 4:
                etype = _ETH_IPV4
            elif nibble == 6:
                etype = _ETH_IPV6
            elif nibble == 0:  # Ethernet pseudowire behind a control word
                if off + 18 > lim:
                    return TRUNCATED_L2
                etype = _U16(data, off + 16)[0]
                off += 18
            else:
                return NOT_IP
        elif etype == _ETH_PPPOE_SESSION:
            if off + 8 > lim:
                return TRUNCATED_L2
            mapped = _PPP_TO_ETHERTYPE.get(_U16(data, off + 6)[0])
            if mapped is None:
                return NOT_IP
            etype = mapped
            off += 8
        else:
            return NOT_IP


def _ip(
    ts: int, data: bytes, off: int, lim: int, ver: int, vlan: int, cfg: DecodeConfig, depth: int
) -> DecodedPacket | str:
    """Decode the IP packet at `off` (bytes beyond `lim` belong to an enclosing packet or padding)."""
    frag_id = 0
    frag_off = 0
    more_frags = False
    frag_key: tuple[bytes, bytes, int, int] | None = None
    if ver == 4:
        if off + 20 > lim:
            return TRUNCATED_IP
        vihl, ip_len, ident, fl, proto, src, dst = _IP4(data, off)
        dscp = data[off + 1] >> 2
        hl = (vihl & 0x0F) << 2
        if vihl >> 4 != 4 or hl < 20 or ip_len < hl:
            return BAD_IP_HEADER
        if off + hl > lim:
            return TRUNCATED_IP
        l4 = off + hl
        if fl & 0x3FFF:  # MF set or a non-zero offset
            frag_id = ident
            frag_off = (fl & 0x1FFF) << 3
            more_frags = bool(fl & 0x2000)
            frag_key = (src, dst, proto, ident)
    else:
        if off + 40 > lim:
            return TRUNCATED_IP
        vtf, plen, proto, src, dst = _IP6(data, off)
        dscp = (vtf >> 22) & 0x3F
        if vtf >> 28 != 6:
            return BAD_IP_HEADER
        ip_len = plen + 40
        l4 = off + 40
        pkt_end = off + ip_len
        while proto in _IPV6_EXT:
            if proto == 44:
                ext_len = 8
            elif l4 + 2 > lim:
                return BAD_IP_HEADER if l4 + 2 > pkt_end else TRUNCATED_IP
            elif proto == 51:
                ext_len = (data[l4 + 1] + 2) << 2
            else:
                ext_len = (data[l4 + 1] + 1) << 3
            if l4 + ext_len > pkt_end:
                return BAD_IP_HEADER
            if l4 + ext_len > lim:
                return TRUNCATED_IP
            if proto == 44:
                nh, fl, ident = _FRAG6(data, l4)
                frag_id = ident
                frag_off = fl & 0xFFF8
                more_frags = bool(fl & 1)
                frag_key = (src, dst, nh, ident)
                proto = nh
                l4 += 8
                if frag_off:
                    break  # the rest is the middle of the original payload
            else:
                proto = data[l4]
                l4 += ext_len

    end = off + ip_len  # end of this IP packet ...
    avail = end if end < lim else lim  # ... and of what was captured of it
    sport = dport = 0
    flags = seq = ack = paylen = 0
    tsval: int | None = None
    tsecr: int | None = None
    itype = icode = -1
    iid = iseq = 0
    dns_id: int | None = None
    dns_resp = False
    l4_present = frag_off == 0
    if l4_present:
        if proto == 6:
            if l4 + 20 > avail:
                return BAD_L4_HEADER if l4 + 20 > end else TRUNCATED_L4
            sport, dport, seq, ack, doff, flags = _TCP(data, l4)
            doff = (doff >> 4) << 2
            flags |= (data[l4 + 12] & 1) << 8  # NS / AE bit, as Scapy's 9-bit flags field
            seg = end - l4
            if doff < 20 or doff > seg:
                return BAD_L4_HEADER
            paylen = seg - doff
            # options, as far as they were captured
            p = l4 + 20
            oend = l4 + doff
            oend = min(oend, avail)
            while p < oend:
                kind = data[p]
                if kind == 0:
                    break
                if kind == 1:
                    p += 1
                    continue
                if p + 1 >= oend:
                    break
                olen = data[p + 1]
                if olen < 2 or p + olen > oend:
                    break
                if kind == 8 and olen == 10:
                    tsval, tsecr = _TSOPT(data, p + 2)
                    break
                p += olen
        elif proto == 17:
            if l4 + 8 > avail:
                return BAD_L4_HEADER if l4 + 8 > end else TRUNCATED_L4
            sport, dport = _UDP(data, l4)
            if (sport == 53 or dport == 53) and l4 + 12 <= avail:
                dns_id = _U16(data, l4 + 8)[0]
                dns_resp = bool(data[l4 + 10] & 0x80)
            if depth < MAX_DECAP_DEPTH:
                inner: DecodedPacket | str | None = None
                if cfg.decap_vxlan and dport == cfg.vxlan_port:
                    inner = _vxlan(ts, data, l4 + 8, avail, cfg, depth)
                elif cfg.decap_gtp and cfg.gtp_port in (dport, sport):
                    inner = _gtp(ts, data, l4 + 8, avail, cfg, depth)
                if isinstance(inner, DecodedPacket):
                    return _as_outer(inner, ip_len, vlan, frag_id, frag_off, more_frags, frag_key)
        elif proto in (1, 58):
            if l4 + 8 > avail:
                return BAD_L4_HEADER if l4 + 8 > end else TRUNCATED_L4
            itype, icode, iid, iseq = _ICMP(data, l4)
            if not (itype in (0, 8) if proto == 1 else itype in (128, 129)):
                iid = iseq = 0  # id/seq only mean something for echo
        elif proto == 47 and cfg.decap_gre and depth < MAX_DECAP_DEPTH:
            inner = _gre(ts, data, l4, avail, cfg, depth)
            if isinstance(inner, DecodedPacket):
                return _as_outer(inner, ip_len, vlan, frag_id, frag_off, more_frags, frag_key)
    return DecodedPacket(
        ts, ip_len, ver, src, dst, proto, sport, dport, vlan, flags, seq, ack, paylen, tsval, tsecr,
        itype, icode, iid, iseq, dns_id, dns_resp, frag_id, frag_off, more_frags, l4_present, frag_key, dscp,
    )  # fmt: skip


def _as_outer(
    inner: DecodedPacket,
    ip_len: int,
    vlan: int,
    frag_id: int,
    frag_off: int,
    more_frags: bool,
    frag_key: tuple[bytes, bytes, int, int] | None,
) -> DecodedPacket:
    """Give a decapsulated packet the outer packet's size, VLAN and (first-)fragment identity."""
    inner.ip_len = ip_len
    if vlan:
        inner.vlan = vlan
    if frag_key is not None:
        inner.frag_id, inner.frag_offset, inner.more_fragments = frag_id, frag_off, more_frags
        inner.frag_key = frag_key
    return inner


def _from_ethernet(ts: int, data: bytes, off: int, lim: int, cfg: DecodeConfig, depth: int) -> DecodedPacket | str:
    if off + 14 > lim:
        return TRUNCATED_L2
    walked = _walk_ethertypes(data, off + 14, lim, _U16(data, off + 12)[0])
    if isinstance(walked, str):
        return walked
    ver, off, vlan = walked
    return _ip(ts, data, off, lim, ver, vlan, cfg, depth + 1)


def _from_nibble(ts: int, data: bytes, off: int, lim: int, cfg: DecodeConfig, depth: int) -> DecodedPacket | str:
    if off >= lim:
        return TRUNCATED_IP
    ver = data[off] >> 4
    if ver not in (4, 6):
        return NOT_IP
    return _ip(ts, data, off, lim, ver, 0, cfg, depth + 1)


def _vxlan(ts: int, data: bytes, off: int, lim: int, cfg: DecodeConfig, depth: int) -> DecodedPacket | str | None:
    if off + 8 > lim or not data[off] & 0x08:  # I flag: a valid VNI follows
        return None
    return _from_ethernet(ts, data, off + 8, lim, cfg, depth)


def _gtp(ts: int, data: bytes, off: int, lim: int, cfg: DecodeConfig, depth: int) -> DecodedPacket | str | None:
    if off + 8 > lim:
        return None
    fl = data[off]
    if fl >> 5 != 1 or not fl & 0x10 or data[off + 1] != 0xFF:  # GTPv1, GTP (not GTP'), G-PDU
        return None
    p = off + 8
    if fl & 0x07:  # sequence number, N-PDU number, next extension type
        if p + 4 > lim:
            return None
        nxt = data[p + 3]
        p += 4
        if fl & 0x04:
            while nxt:
                if p >= lim:
                    return None
                elen = data[p] << 2
                if not elen or p + elen > lim:
                    return None
                nxt = data[p + elen - 1]
                p += elen
    return _from_nibble(ts, data, p, lim, cfg, depth)


def _gre(ts: int, data: bytes, off: int, lim: int, cfg: DecodeConfig, depth: int) -> DecodedPacket | str | None:
    if off + 4 > lim:
        return None
    fl, ptype = _TAG(data, off)
    if fl & 0x0007 or fl & 0x4000:  # only version 0 without (obsolete) source routing
        return None
    p = off + 4 + ((fl >> 15) & 1) * 4 + ((fl >> 13) & 1) * 4 + ((fl >> 12) & 1) * 4
    if ptype in (_ETH_IPV4, _ETH_IPV6):
        return _from_nibble(ts, data, p, lim, cfg, depth)
    if ptype == 0x6558:  # transparent Ethernet bridging
        return _from_ethernet(ts, data, p, lim, cfg, depth)
    if ptype == 0x88BE:  # ERSPAN type II: 8-byte header, then the mirrored Ethernet frame
        return _from_ethernet(ts, data, p + 8, lim, cfg, depth)
    if ptype == 0x22EB:  # ERSPAN type III: 12 bytes, plus 8 when the O flag announces a subheader
        if p + 12 > lim:
            return None
        return _from_ethernet(ts, data, p + 12 + (8 if data[p + 11] & 1 else 0), lim, cfg, depth)
    if ptype in (_ETH_MPLS_UC, _ETH_MPLS_MC):
        walked = _walk_ethertypes(data, p, lim, ptype)
        if isinstance(walked, str):
            return walked
        ver, p, _vlan = walked
        return _ip(ts, data, p, lim, ver, 0, cfg, depth + 1)
    return None
