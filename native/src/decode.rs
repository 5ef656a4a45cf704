//! Frame -> decoded packet, the same layers, byte counting and reject reasons as `ingest/decode.py`.

pub const UNSUPPORTED_LINKTYPE: u8 = 0;
pub const TRUNCATED_L2: u8 = 1;
pub const NOT_IP: u8 = 2;
pub const TRUNCATED_IP: u8 = 3;
pub const BAD_IP_HEADER: u8 = 4;
pub const TRUNCATED_L4: u8 = 5;
pub const BAD_L4_HEADER: u8 = 6;
pub const REJECT_NAMES: [&str; 7] = [
    "unsupported_linktype",
    "truncated_l2",
    "not_ip",
    "truncated_ip",
    "bad_ip_header",
    "truncated_l4",
    "bad_l4_header",
];

const MAX_DECAP_DEPTH: u32 = 3;
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86DD;
const ETH_MPLS_UC: u16 = 0x8847;
const ETH_MPLS_MC: u16 = 0x8848;
const ETH_PPPOE_SESSION: u16 = 0x8864;
const ARPHRD_NETLINK: u16 = 824;

#[derive(Clone, Copy)]
pub struct DecodeConfig {
    pub decap_gre: bool,
    pub decap_vxlan: bool,
    pub decap_gtp: bool,
    pub vxlan_port: u32,
    pub gtp_port: u32,
}

/// (src, dst, protocol, id, is_v6) of a fragmented IP header.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u8,
    pub v6: bool,
    pub id: u32,
}

#[derive(Clone, Copy)]
pub struct Pkt {
    pub ts: i64,
    pub ip_len: u64,
    pub ver: u8,
    pub dscp: u8, // DiffServ code point: the upper six bits of the IPv4 ToS / IPv6 traffic class
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u8,
    pub sport: u32,
    pub dport: u32,
    pub vlan: u16,
    pub flags: u16,
    pub seq: u32,
    pub ack: u32,
    pub paylen: u64,
    pub tsval: Option<u32>,
    pub tsecr: Option<u32>,
    pub itype: i32,
    pub icode: i32,
    pub iid: u32,
    pub iseq: u32,
    pub dns_id: Option<u16>,
    pub dns_resp: bool,
    pub frag_off: u32,
    pub more_frags: bool,
    pub l4_present: bool,
    pub frag_key: Option<FragKey>,
}

#[inline]
fn u16at(d: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([d[o], d[o + 1]])
}
#[inline]
fn u32at(d: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]])
}

fn ppp_to_ethertype(p: u16) -> Option<u16> {
    match p {
        0x0021 => Some(ETH_IPV4),
        0x0057 => Some(ETH_IPV6),
        0x0281 => Some(ETH_MPLS_UC),
        0x0283 => Some(ETH_MPLS_MC),
        _ => None,
    }
}

pub fn decode(ts: i64, lt: u32, data: &[u8], cfg: &DecodeConfig) -> Result<Pkt, u8> {
    let n = data.len();
    let etype: u16;
    let mut off: usize;
    match lt {
        1 => {
            if n < 14 {
                return Err(TRUNCATED_L2);
            }
            etype = u16at(data, 12);
            off = 14;
        }
        101 | 12 | 14 => {
            if n == 0 {
                return Err(TRUNCATED_IP);
            }
            etype = match data[0] >> 4 {
                4 => ETH_IPV4,
                6 => ETH_IPV6,
                _ => return Err(BAD_IP_HEADER),
            };
            off = 0;
        }
        113 => {
            if n < 16 {
                return Err(TRUNCATED_L2);
            }
            if u16at(data, 2) == ARPHRD_NETLINK {
                return Err(NOT_IP);
            }
            etype = u16at(data, 14);
            off = 16;
        }
        276 => {
            if n < 20 {
                return Err(TRUNCATED_L2);
            }
            if u16at(data, 8) == ARPHRD_NETLINK {
                return Err(NOT_IP);
            }
            etype = u16at(data, 0);
            off = 20;
        }
        0 | 108 => {
            if n < 4 {
                return Err(TRUNCATED_L2);
            }
            let mut af = if lt == 108 {
                u32at(data, 0)
            } else {
                u32::from_le_bytes([data[0], data[1], data[2], data[3]])
            };
            if af > 0xFFFF {
                af = u32at(data, 0);
            }
            etype = match af {
                2 => ETH_IPV4,
                10 | 24 | 28 | 30 => ETH_IPV6,
                _ => return Err(NOT_IP),
            };
            off = 4;
        }
        228 => {
            etype = ETH_IPV4;
            off = 0;
        }
        229 => {
            etype = ETH_IPV6;
            off = 0;
        }
        9 => {
            off = if n >= 2 && data[0] == 0xFF && data[1] == 0x03 {
                2
            } else {
                0
            };
            if off >= n {
                return Err(TRUNCATED_L2);
            }
            let proto: u16;
            if data[off] & 1 != 0 {
                proto = data[off] as u16;
                off += 1;
            } else {
                if off + 2 > n {
                    return Err(TRUNCATED_L2);
                }
                proto = u16at(data, off);
                off += 2;
            }
            etype = match ppp_to_ethertype(proto) {
                Some(e) => e,
                None => return Err(NOT_IP),
            };
        }
        _ => return Err(UNSUPPORTED_LINKTYPE),
    }
    if etype == ETH_IPV4 {
        return ip(ts, data, off, n, 4, 0, cfg, 0);
    }
    if etype == ETH_IPV6 {
        return ip(ts, data, off, n, 6, 0, cfg, 0);
    }
    let (ver, off, vlan) = walk_ethertypes(data, off, n, etype)?;
    ip(ts, data, off, n, ver, vlan, cfg, 0)
}

fn walk_ethertypes(
    data: &[u8],
    mut off: usize,
    lim: usize,
    mut etype: u16,
) -> Result<(u8, usize, u16), u8> {
    let mut vlan: i32 = -1;
    loop {
        if etype == ETH_IPV4 {
            return Ok((4, off, if vlan > 0 { vlan as u16 } else { 0 }));
        }
        if etype == ETH_IPV6 {
            return Ok((6, off, if vlan > 0 { vlan as u16 } else { 0 }));
        }
        if etype == 0x8100 || etype == 0x88A8 || etype == 0x9100 {
            if off + 4 > lim {
                return Err(TRUNCATED_L2);
            }
            let tci = u16at(data, off);
            etype = u16at(data, off + 2);
            if vlan < 0 {
                vlan = (tci & 0x0FFF) as i32;
            }
            off += 4;
        } else if etype == ETH_MPLS_UC || etype == ETH_MPLS_MC {
            loop {
                if off + 4 > lim {
                    return Err(TRUNCATED_L2);
                }
                let bottom = data[off + 2] & 1;
                off += 4;
                if bottom != 0 {
                    break;
                }
            }
            if off >= lim {
                return Err(TRUNCATED_L2);
            }
            match data[off] >> 4 {
                4 => etype = ETH_IPV4,
                6 => etype = ETH_IPV6,
                0 => {
                    if off + 18 > lim {
                        return Err(TRUNCATED_L2);
                    }
                    etype = u16at(data, off + 16);
                    off += 18;
                }
                _ => return Err(NOT_IP),
            }
        } else if etype == ETH_PPPOE_SESSION {
            if off + 8 > lim {
                return Err(TRUNCATED_L2);
            }
            etype = match ppp_to_ethertype(u16at(data, off + 6)) {
                Some(e) => e,
                None => return Err(NOT_IP),
            };
            off += 8;
        } else {
            return Err(NOT_IP);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn ip(
    ts: i64,
    data: &[u8],
    off: usize,
    lim: usize,
    ver: u8,
    vlan: u16,
    cfg: &DecodeConfig,
    depth: u32,
) -> Result<Pkt, u8> {
    let mut frag_off: u32 = 0;
    let mut more_frags = false;
    let mut frag_key: Option<FragKey> = None;
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    let ip_len: usize;
    let mut l4: usize;
    let mut proto: u8;
    let dscp: u8;
    if ver == 4 {
        if off + 20 > lim {
            return Err(TRUNCATED_IP);
        }
        let vihl = data[off];
        dscp = data[off + 1] >> 2;
        ip_len = u16at(data, off + 2) as usize;
        let ident = u16at(data, off + 4);
        let fl = u16at(data, off + 6);
        proto = data[off + 9];
        src[..4].copy_from_slice(&data[off + 12..off + 16]);
        dst[..4].copy_from_slice(&data[off + 16..off + 20]);
        let hl = ((vihl & 0x0F) as usize) << 2;
        if vihl >> 4 != 4 || hl < 20 || ip_len < hl {
            return Err(BAD_IP_HEADER);
        }
        if off + hl > lim {
            return Err(TRUNCATED_IP);
        }
        l4 = off + hl;
        if fl & 0x3FFF != 0 {
            frag_off = ((fl & 0x1FFF) as u32) << 3;
            more_frags = fl & 0x2000 != 0;
            frag_key = Some(FragKey {
                src,
                dst,
                proto,
                v6: false,
                id: ident as u32,
            });
        }
    } else {
        if off + 40 > lim {
            return Err(TRUNCATED_IP);
        }
        let vtf = u32at(data, off);
        dscp = ((vtf >> 22) & 0x3F) as u8;
        let plen = u16at(data, off + 4) as usize;
        proto = data[off + 6];
        src.copy_from_slice(&data[off + 8..off + 24]);
        dst.copy_from_slice(&data[off + 24..off + 40]);
        if vtf >> 28 != 6 {
            return Err(BAD_IP_HEADER);
        }
        ip_len = plen + 40;
        l4 = off + 40;
        let pkt_end = off + ip_len;
        while matches!(proto, 0 | 43 | 44 | 51 | 60) {
            let ext_len: usize;
            if proto == 44 {
                ext_len = 8;
            } else if l4 + 2 > lim {
                return Err(if l4 + 2 > pkt_end {
                    BAD_IP_HEADER
                } else {
                    TRUNCATED_IP
                });
            } else if proto == 51 {
                ext_len = ((data[l4 + 1] as usize) + 2) << 2;
            } else {
                ext_len = ((data[l4 + 1] as usize) + 1) << 3;
            }
            if l4 + ext_len > pkt_end {
                return Err(BAD_IP_HEADER);
            }
            if l4 + ext_len > lim {
                return Err(TRUNCATED_IP);
            }
            if proto == 44 {
                let nh = data[l4];
                let fl = u16at(data, l4 + 2);
                let ident = u32at(data, l4 + 4);
                frag_off = (fl & 0xFFF8) as u32;
                more_frags = fl & 1 != 0;
                frag_key = Some(FragKey {
                    src,
                    dst,
                    proto: nh,
                    v6: true,
                    id: ident,
                });
                proto = nh;
                l4 += 8;
                if frag_off != 0 {
                    break;
                }
            } else {
                proto = data[l4];
                l4 += ext_len;
            }
        }
    }
    let end = off + ip_len;
    let avail = if end < lim { end } else { lim };
    let mut p = Pkt {
        ts,
        ip_len: ip_len as u64,
        ver,
        dscp,
        src,
        dst,
        proto,
        sport: 0,
        dport: 0,
        vlan,
        flags: 0,
        seq: 0,
        ack: 0,
        paylen: 0,
        tsval: None,
        tsecr: None,
        itype: -1,
        icode: -1,
        iid: 0,
        iseq: 0,
        dns_id: None,
        dns_resp: false,
        frag_off,
        more_frags,
        l4_present: frag_off == 0,
        frag_key,
    };
    if !p.l4_present {
        return Ok(p);
    }
    match proto {
        6 => {
            if l4 + 20 > avail {
                return Err(if l4 + 20 > end {
                    BAD_L4_HEADER
                } else {
                    TRUNCATED_L4
                });
            }
            p.sport = u16at(data, l4) as u32;
            p.dport = u16at(data, l4 + 2) as u32;
            p.seq = u32at(data, l4 + 4);
            p.ack = u32at(data, l4 + 8);
            let doff = ((data[l4 + 12] >> 4) as usize) << 2;
            p.flags = data[l4 + 13] as u16 | (((data[l4 + 12] & 1) as u16) << 8);
            let seg = end - l4;
            if doff < 20 || doff > seg {
                return Err(BAD_L4_HEADER);
            }
            p.paylen = (seg - doff) as u64;
            let mut q = l4 + 20;
            let oend = (l4 + doff).min(avail);
            while q < oend {
                let kind = data[q];
                if kind == 0 {
                    break;
                }
                if kind == 1 {
                    q += 1;
                    continue;
                }
                if q + 1 >= oend {
                    break;
                }
                let olen = data[q + 1] as usize;
                if olen < 2 || q + olen > oend {
                    break;
                }
                if kind == 8 && olen == 10 {
                    p.tsval = Some(u32at(data, q + 2));
                    p.tsecr = Some(u32at(data, q + 6));
                    break;
                }
                q += olen;
            }
        }
        17 => {
            if l4 + 8 > avail {
                return Err(if l4 + 8 > end {
                    BAD_L4_HEADER
                } else {
                    TRUNCATED_L4
                });
            }
            p.sport = u16at(data, l4) as u32;
            p.dport = u16at(data, l4 + 2) as u32;
            if (p.sport == 53 || p.dport == 53) && l4 + 12 <= avail {
                p.dns_id = Some(u16at(data, l4 + 8));
                p.dns_resp = data[l4 + 10] & 0x80 != 0;
            }
            if depth < MAX_DECAP_DEPTH {
                let mut inner: Option<Result<Pkt, u8>> = None;
                if cfg.decap_vxlan && p.dport == cfg.vxlan_port {
                    inner = vxlan(ts, data, l4 + 8, avail, cfg, depth);
                } else if cfg.decap_gtp && (cfg.gtp_port == p.dport || cfg.gtp_port == p.sport) {
                    inner = gtp(ts, data, l4 + 8, avail, cfg, depth);
                }
                if let Some(Ok(i)) = inner {
                    return Ok(as_outer(i, &p));
                }
            }
        }
        1 | 58 => {
            if l4 + 8 > avail {
                return Err(if l4 + 8 > end {
                    BAD_L4_HEADER
                } else {
                    TRUNCATED_L4
                });
            }
            p.itype = data[l4] as i32;
            p.icode = data[l4 + 1] as i32;
            p.iid = u16at(data, l4 + 4) as u32;
            p.iseq = u16at(data, l4 + 6) as u32;
            let echo = if proto == 1 {
                p.itype == 0 || p.itype == 8
            } else {
                p.itype == 128 || p.itype == 129
            };
            if !echo {
                p.iid = 0;
                p.iseq = 0;
            }
        }
        47 if cfg.decap_gre && depth < MAX_DECAP_DEPTH => {
            if let Some(Ok(i)) = gre(ts, data, l4, avail, cfg, depth) {
                return Ok(as_outer(i, &p));
            }
        }
        _ => {}
    }
    Ok(p)
}

fn as_outer(mut inner: Pkt, outer: &Pkt) -> Pkt {
    inner.ip_len = outer.ip_len;
    if outer.vlan != 0 {
        inner.vlan = outer.vlan;
    }
    if outer.frag_key.is_some() {
        inner.frag_off = outer.frag_off;
        inner.more_frags = outer.more_frags;
        inner.frag_key = outer.frag_key;
    }
    inner
}

fn from_ethernet(
    ts: i64,
    data: &[u8],
    off: usize,
    lim: usize,
    cfg: &DecodeConfig,
    depth: u32,
) -> Result<Pkt, u8> {
    if off + 14 > lim {
        return Err(TRUNCATED_L2);
    }
    let (ver, o, vlan) = walk_ethertypes(data, off + 14, lim, u16at(data, off + 12))?;
    ip(ts, data, o, lim, ver, vlan, cfg, depth + 1)
}

fn from_nibble(
    ts: i64,
    data: &[u8],
    off: usize,
    lim: usize,
    cfg: &DecodeConfig,
    depth: u32,
) -> Result<Pkt, u8> {
    if off >= lim {
        return Err(TRUNCATED_IP);
    }
    let ver = data[off] >> 4;
    if ver != 4 && ver != 6 {
        return Err(NOT_IP);
    }
    ip(ts, data, off, lim, ver, 0, cfg, depth + 1)
}

fn vxlan(
    ts: i64,
    data: &[u8],
    off: usize,
    lim: usize,
    cfg: &DecodeConfig,
    depth: u32,
) -> Option<Result<Pkt, u8>> {
    if off + 8 > lim || data[off] & 0x08 == 0 {
        return None;
    }
    Some(from_ethernet(ts, data, off + 8, lim, cfg, depth))
}

fn gtp(
    ts: i64,
    data: &[u8],
    off: usize,
    lim: usize,
    cfg: &DecodeConfig,
    depth: u32,
) -> Option<Result<Pkt, u8>> {
    if off + 8 > lim {
        return None;
    }
    let fl = data[off];
    if fl >> 5 != 1 || fl & 0x10 == 0 || data[off + 1] != 0xFF {
        return None;
    }
    let mut p = off + 8;
    if fl & 0x07 != 0 {
        if p + 4 > lim {
            return None;
        }
        let mut nxt = data[p + 3];
        p += 4;
        if fl & 0x04 != 0 {
            while nxt != 0 {
                if p >= lim {
                    return None;
                }
                let elen = (data[p] as usize) << 2;
                if elen == 0 || p + elen > lim {
                    return None;
                }
                nxt = data[p + elen - 1];
                p += elen;
            }
        }
    }
    Some(from_nibble(ts, data, p, lim, cfg, depth))
}

fn gre(
    ts: i64,
    data: &[u8],
    off: usize,
    lim: usize,
    cfg: &DecodeConfig,
    depth: u32,
) -> Option<Result<Pkt, u8>> {
    if off + 4 > lim {
        return None;
    }
    let fl = u16at(data, off);
    let ptype = u16at(data, off + 2);
    if fl & 0x0007 != 0 || fl & 0x4000 != 0 {
        return None;
    }
    let p = off
        + 4
        + (((fl >> 15) & 1) as usize) * 4
        + (((fl >> 13) & 1) as usize) * 4
        + (((fl >> 12) & 1) as usize) * 4;
    match ptype {
        ETH_IPV4 | ETH_IPV6 => Some(from_nibble(ts, data, p, lim, cfg, depth)),
        0x6558 => Some(from_ethernet(ts, data, p, lim, cfg, depth)),
        0x88BE => Some(from_ethernet(ts, data, p + 8, lim, cfg, depth)),
        0x22EB => {
            if p + 12 > lim {
                return None;
            }
            let extra = if data[p + 11] & 1 != 0 { 8 } else { 0 };
            Some(from_ethernet(ts, data, p + 12 + extra, lim, cfg, depth))
        }
        ETH_MPLS_UC | ETH_MPLS_MC => {
            let r = walk_ethertypes(data, p, lim, ptype)
                .and_then(|(ver, q, _)| ip(ts, data, q, lim, ver, 0, cfg, depth + 1));
            Some(r)
        }
        _ => None,
    }
}
