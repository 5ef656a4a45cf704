//! sFlow v5: flow samples (the sampled packet header decoded by the agent's own decoder, the sampling rate,
//! input and output interface, the gateway's AS numbers and next hop) and interface counter samples.

use super::{
    be, be32, Addr, ExpRec, LinkCounter, K_SFLOW, R_BAD_HEADER, R_BAD_SAMPLE, R_TRUNCATED,
};
use crate::decode::{decode as decode_frame, DecodeConfig};

/// Agent address at `o`: (address, bytes used).
fn address(d: &[u8], o: usize) -> Option<(Addr, usize)> {
    match be32(d, o)? {
        1 => Some((Addr::v4(d.get(o + 4..o + 8)?), 8)),
        2 => Some((Addr::v6(d.get(o + 4..o + 20)?), 20)),
        0 => Some((Addr::default(), 4)),
        _ => None,
    }
}

/// The (format, body, next offset) of the format/length/body element at `o` (samples and their records).
fn element(d: &[u8], o: usize, err: u8) -> Result<(u32, &[u8], usize), u8> {
    let fmt = be32(d, o).ok_or(err)?;
    let len = be32(d, o + 4).ok_or(err)? as usize;
    let end = (o + 8).checked_add(len).ok_or(err)?;
    Ok((fmt, d.get(o + 8..end).ok_or(err)?, end))
}

/// A compact interface word: an ifIndex when its format bits are 0.
fn if_index(w: u32) -> u32 {
    if w >> 30 == 0 {
        w & 0x3fff_ffff
    } else {
        0
    }
}

pub fn decode(
    udp_source: Addr,
    recv_ns: i64,
    d: &[u8],
    dcfg: &DecodeConfig,
    out: &mut Vec<ExpRec>,
    links: &mut Vec<LinkCounter>,
    errs: &mut Vec<u8>,
) -> Result<(), u8> {
    let (agent, alen) = address(d, 4).ok_or(R_TRUNCATED)?;
    let exporter = if agent == Addr::default() {
        udp_source
    } else {
        agent
    };
    let mut o = 4 + alen;
    let sub_agent = be32(d, o).ok_or(R_TRUNCATED)?;
    let n = be32(d, o + 12).ok_or(R_TRUNCATED)? as usize;
    o += 16;
    // every sample takes at least its 8-byte header
    if n > (d.len() - o.min(d.len())) / 8 {
        return Err(super::R_BAD_COUNT);
    }
    for _ in 0..n {
        let (fmt, body, next) = element(d, o, R_TRUNCATED)?;
        o = next;
        let r = match fmt {
            1 | 3 => flow_sample(exporter, sub_agent, recv_ns, body, fmt == 3, dcfg, out),
            2 | 4 => counter_sample(exporter, recv_ns, body, fmt == 4, links),
            _ => Ok(()), // other enterprises' samples: skipped by length
        };
        if let Err(e) = r {
            errs.push(e);
        }
    }
    Ok(())
}

fn flow_sample(
    exporter: Addr,
    sub_agent: u32,
    recv_ns: i64,
    s: &[u8],
    expanded: bool,
    dcfg: &DecodeConfig,
    out: &mut Vec<ExpRec>,
) -> Result<(), u8> {
    let g = |o: usize| be32(s, o).ok_or(R_BAD_SAMPLE);
    let (rate, in_if, out_if, nrec, mut o) = if expanded {
        let inf = if g(24)? == 0 { g(28)? } else { 0 };
        let outf = if g(32)? == 0 { g(36)? } else { 0 };
        (g(12)?, inf, outf, g(40)? as usize, 44)
    } else {
        (
            g(8)?,
            if_index(g(20)?),
            if_index(g(24)?),
            g(28)? as usize,
            32,
        )
    };
    if nrec > s.len() / 8 {
        return Err(R_BAD_SAMPLE);
    }
    let mut rec = ExpRec {
        kind: K_SFLOW,
        exporter,
        domain: sub_agent,
        in_if,
        out_if,
        sampling: rate.max(1),
        first_ns: recv_ns,
        last_ns: recv_ns,
        flow_dir: 255,
        pkts: 1,
        ..Default::default()
    };
    let mut have_header = false;
    let mut sw_vlan = 0u16;
    for _ in 0..nrec {
        let (fmt, r, next) = element(s, o, R_BAD_SAMPLE)?;
        o = next;
        let rg = |o: usize| be32(r, o).ok_or(R_BAD_SAMPLE);
        match fmt {
            1 => {
                let lt = match rg(0)? {
                    1 => 1,    // Ethernet
                    11 => 228, // IPv4
                    12 => 229, // IPv6
                    _ => return Err(R_BAD_HEADER),
                };
                let hlen = rg(12)? as usize;
                let h = r.get(16..16 + hlen).ok_or(R_BAD_SAMPLE)?;
                let p = decode_frame(recv_ns, lt, h, dcfg).map_err(|_| R_BAD_HEADER)?;
                rec.src = if p.ver == 6 {
                    Addr::v6(&p.src)
                } else {
                    Addr::v4(&p.src)
                };
                rec.dst = if p.ver == 6 {
                    Addr::v6(&p.dst)
                } else {
                    Addr::v4(&p.dst)
                };
                rec.proto = p.proto;
                if p.proto == 1 || p.proto == 58 {
                    rec.sport = 0;
                    rec.dport = (((p.itype as u32 & 0xff) << 8) | (p.icode as u32 & 0xff)) as u16;
                } else {
                    rec.sport = p.sport as u16;
                    rec.dport = p.dport as u16;
                }
                rec.tcp_flags = (p.flags & 0xff) as u8;
                rec.tos = p.dscp << 2; // the sampled header's DSCP (its ECN bits are not kept)
                rec.vlan = p.vlan;
                rec.bytes = p.ip_len;
                have_header = true;
            }
            1001 => sw_vlan = (rg(0)? & 0x0fff) as u16,
            1002 => rec.next_hop = address(r, 0).ok_or(R_BAD_SAMPLE)?.0,
            1003 => {
                let (nh, used) = address(r, 0).ok_or(R_BAD_SAMPLE)?;
                rec.next_hop = nh;
                let mut q = used;
                rec.src_as = rg(q + 4)?;
                let segs = rg(q + 12)? as usize;
                q += 16;
                if segs > r.len() / 8 {
                    return Err(R_BAD_SAMPLE);
                }
                let mut last = 0u32;
                for _ in 0..segs {
                    let cnt = rg(q + 4)? as usize;
                    if cnt > r.len() / 4 {
                        return Err(R_BAD_SAMPLE);
                    }
                    if cnt > 0 {
                        last = rg(q + 8 + (cnt - 1) * 4)?;
                    }
                    q += 8 + cnt * 4;
                }
                // the path's last AS is the destination's
                rec.dst_as = last;
            }
            _ => {}
        }
    }
    if !have_header {
        // a sample without the packet header says nothing of the flow it belongs to
        return Err(R_BAD_SAMPLE);
    }
    if rec.vlan == 0 {
        rec.vlan = sw_vlan;
    }
    out.push(rec);
    Ok(())
}

fn counter_sample(
    exporter: Addr,
    recv_ns: i64,
    s: &[u8],
    expanded: bool,
    links: &mut Vec<LinkCounter>,
) -> Result<(), u8> {
    let (nrec, mut o) = if expanded {
        (be32(s, 12).ok_or(R_BAD_SAMPLE)? as usize, 16)
    } else {
        (be32(s, 8).ok_or(R_BAD_SAMPLE)? as usize, 12)
    };
    if nrec > s.len() / 8 {
        return Err(R_BAD_SAMPLE);
    }
    let seq = be32(s, 0).ok_or(R_BAD_SAMPLE)?;
    for _ in 0..nrec {
        let (fmt, r, next) = element(s, o, R_BAD_SAMPLE)?;
        o = next;
        if fmt == 1 {
            if r.len() < 88 {
                return Err(R_BAD_SAMPLE);
            }
            let g = |o: usize, n: usize| be(r, o, n).unwrap_or(0);
            links.push(LinkCounter {
                exporter,
                if_index: g(0, 4) as u32,
                speed: g(8, 8),
                in_octets: g(24, 8),
                in_pkts: g(32, 4) + g(36, 4) + g(40, 4),
                out_octets: g(56, 8),
                out_pkts: g(64, 4) + g(68, 4) + g(72, 4),
                recv_ns,
                seq,
            });
        }
    }
    Ok(())
}
