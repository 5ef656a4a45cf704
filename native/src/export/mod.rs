//! Router flow export (NetFlow v5, NetFlow v9, IPFIX, sFlow v5) -> flow records, one datagram at a time.
//! Every read is bounds-checked: a datagram that does not parse is counted by reason and exporter and yields
//! no record (records already taken from a datagram's earlier, well-formed sets are kept).

pub mod netflow5;
pub mod py;
pub mod records;
pub mod sflow;
pub mod template;

use std::collections::HashMap;

pub const R_TRUNCATED: u8 = 0;
pub const R_UNKNOWN_VERSION: u8 = 1;
pub const R_BAD_COUNT: u8 = 2;
pub const R_BAD_LENGTH: u8 = 3;
pub const R_NO_TEMPLATE: u8 = 4;
pub const R_BAD_TEMPLATE: u8 = 5;
pub const R_TEMPLATE_LIMIT: u8 = 6;
pub const R_BAD_RECORD: u8 = 7;
pub const R_BAD_SAMPLE: u8 = 8;
pub const R_BAD_HEADER: u8 = 9;
pub const R_WRONG_PROTOCOL: u8 = 10;
pub const REASONS: [&str; 11] = [
    "truncated",
    "unknown_version",
    "bad_count",
    "bad_length",
    "no_template",
    "bad_template",
    "template_limit",
    "bad_record",
    "bad_sample",
    "bad_packet_header",
    "wrong_protocol",
];

/// Which protocol a listener expects (0: any).
pub const P_ANY: u8 = 0;
pub const P_NETFLOW: u8 = 1; // v5 and v9
pub const P_IPFIX: u8 = 2;
pub const P_SFLOW: u8 = 3;

pub const K_NETFLOW5: u8 = 0;
pub const K_NETFLOW9: u8 = 1;
pub const K_IPFIX: u8 = 2;
pub const K_SFLOW: u8 = 3;
pub const KIND_NAMES: [&str; 4] = ["netflow5", "netflow9", "ipfix", "sflow"];

/// An address as 16 bytes plus its family (IPv4 in the first 4 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Addr {
    pub b: [u8; 16],
    pub v6: bool,
}

impl Addr {
    pub fn v4(s: &[u8]) -> Addr {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&s[..4]);
        Addr { b, v6: false }
    }
    pub fn v6(s: &[u8]) -> Addr {
        let mut b = [0u8; 16];
        b.copy_from_slice(&s[..16]);
        Addr { b, v6: true }
    }
    pub fn bytes(&self) -> &[u8] {
        if self.v6 {
            &self.b[..]
        } else {
            &self.b[..4]
        }
    }
}

/// One exported flow (one direction unless `bytes_rev`/`pkts_rev` came with it, as NSEL's biflows).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpRec {
    pub kind: u8,
    pub exporter: Addr,
    pub domain: u32,
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub tos: u8,
    pub tcp_flags: u8,
    pub bytes: u64,
    pub pkts: u64,
    pub bytes_rev: u64,
    pub pkts_rev: u64,
    pub first_ns: i64,
    pub last_ns: i64,
    pub in_if: u32,
    pub out_if: u32,
    pub src_as: u32,
    pub dst_as: u32,
    pub next_hop: Addr,
    pub sampling: u32,
    pub vlan: u16,
    /// flowDirection as exported: 0 ingress, 1 egress, 255 not said.
    pub flow_dir: u8,
    /// The record counts both directions: its template has responder counters (NSEL responderOctets or
    /// responderPackets), whatever their value; a session whose responder never answered is still a biflow.
    pub biflow: bool,
}

/// An sFlow interface counter sample: the link's own octet counts, to cross-check the flows' totals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkCounter {
    pub exporter: Addr,
    pub if_index: u32,
    pub in_octets: u64,
    pub out_octets: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub speed: u64,
    pub recv_ns: i64,
    /// The counter sample's sequence number (per source id; restarts with the agent).
    pub seq: u32,
}

/// Bounds-checked big-endian reads; `None` past the end.
#[inline]
pub fn be(d: &[u8], o: usize, n: usize) -> Option<u64> {
    let s = d.get(o..o.checked_add(n)?)?;
    let mut v = 0u64;
    for &b in s {
        v = (v << 8) | b as u64;
    }
    Some(v)
}
#[inline]
pub fn be16(d: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_be_bytes(d.get(o..o + 2)?.try_into().ok()?))
}
#[inline]
pub fn be32(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(o..o + 4)?.try_into().ok()?))
}

pub struct Limits {
    pub max_templates_per_exporter: usize,
    pub max_exporters: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_templates_per_exporter: 4096,
            max_exporters: 10_000,
        }
    }
}

/// The decoding state of a collector: templates and sampling per exporter, counters, finished output.
pub struct Collector {
    pub templates: template::Store,
    pub out: Vec<ExpRec>,
    pub links: Vec<LinkCounter>,
    /// sFlow flow samples' octets scaled by their sampling rate, per (exporter, ifIndex, entering): the flows'
    /// view of the interfaces whose counter samples are in `links`, to cross-check the two.
    pub flow_octets: HashMap<(Addr, u32, bool), u64>,
    pub errors: HashMap<(Addr, u8), u64>,
    pub datagrams: [u64; 4],
    pub records: [u64; 4],
    pub limits: Limits,
    pub dcfg: crate::decode::DecodeConfig,
}

impl Collector {
    pub fn new(limits: Limits, dcfg: crate::decode::DecodeConfig) -> Self {
        Collector {
            templates: template::Store::default(),
            out: Vec::new(),
            links: Vec::new(),
            flow_octets: HashMap::new(),
            errors: HashMap::new(),
            datagrams: [0; 4],
            records: [0; 4],
            limits,
            dcfg,
        }
    }

    pub fn count(&mut self, exporter: Addr, reason: u8) {
        // bounded: one key per (exporter, reason), exporters past the cap share the zero address
        let key = if self.errors.len() >= self.limits.max_exporters * REASONS.len()
            && !self.errors.contains_key(&(exporter, reason))
        {
            (Addr::default(), reason)
        } else {
            (exporter, reason)
        };
        *self.errors.entry(key).or_insert(0) += 1;
    }

    /// Decode one datagram from `exporter` (its UDP source), received at `recv_ns`; `proto` is what the
    /// listener expects (P_ANY: told by the version field).
    pub fn datagram(&mut self, exporter: Addr, recv_ns: i64, proto: u8, d: &[u8]) {
        let Some(ver) = be16(d, 0) else {
            self.count(exporter, R_TRUNCATED);
            return;
        };
        let before = self.out.len();
        let kind = match ver {
            5 => K_NETFLOW5,
            9 => K_NETFLOW9,
            10 => K_IPFIX,
            // sFlow's version is 32 bits: 0x00000005
            0 if be16(d, 2) == Some(5) => K_SFLOW,
            _ => {
                self.count(exporter, R_UNKNOWN_VERSION);
                return;
            }
        };
        let expected = match kind {
            K_NETFLOW5 | K_NETFLOW9 => P_NETFLOW,
            K_IPFIX => P_IPFIX,
            _ => P_SFLOW,
        };
        if proto != P_ANY && proto != expected {
            self.count(exporter, R_WRONG_PROTOCOL);
            return;
        }
        let r = match kind {
            K_NETFLOW5 => netflow5::decode(exporter, d, &mut self.out),
            K_NETFLOW9 | K_IPFIX => {
                let lim = self.limits.max_templates_per_exporter;
                let mut errs: Vec<u8> = Vec::new();
                let r = template::decode(
                    &mut self.templates,
                    lim,
                    exporter,
                    kind == K_IPFIX,
                    d,
                    &mut self.out,
                    &mut errs,
                );
                for e in errs {
                    self.count(exporter, e);
                }
                r
            }
            _ => {
                let dcfg = self.dcfg;
                let mut errs: Vec<u8> = Vec::new();
                let r = sflow::decode(
                    exporter,
                    recv_ns,
                    d,
                    &dcfg,
                    &mut self.out,
                    &mut self.links,
                    &mut errs,
                );
                for e in errs {
                    self.count(exporter, e);
                }
                r
            }
        };
        self.datagrams[kind as usize] += 1;
        if let Err(reason) = r {
            self.count(exporter, reason);
        }
        self.records[kind as usize] += (self.out.len() - before) as u64;
        if kind == K_SFLOW {
            self.add_flow_octets(before);
        }
    }

    /// Sum the sFlow samples decoded from `out[from..]` into `flow_octets` (bounded like `errors`: interfaces
    /// past the cap are not summed). Interface values of 0 (unknown) or with the format bits set (discarded,
    /// several ports) name no single interface.
    fn add_flow_octets(&mut self, from: usize) {
        const IF_FORMAT: u32 = 1 << 30;
        let cap = self.limits.max_exporters * 64;
        for r in &self.out[from..] {
            let scaled = r.bytes.saturating_mul(u64::from(r.sampling.max(1)));
            for (if_index, entering) in [(r.in_if, true), (r.out_if, false)] {
                if if_index == 0 || if_index >= IF_FORMAT {
                    continue;
                }
                let key = (r.exporter, if_index, entering);
                if self.flow_octets.len() >= cap && !self.flow_octets.contains_key(&key) {
                    continue;
                }
                let v = self.flow_octets.entry(key).or_insert(0);
                *v = v.saturating_add(scaled);
            }
        }
    }

    /// A batch of framed datagrams: per datagram `u32 length, i64 recv_ns, u8 family (4|6), 16 address bytes,
    /// u8 protocol`, then `length` payload bytes (all big-endian). Returns the number of datagrams.
    pub fn batch(&mut self, buf: &[u8]) -> Result<usize, String> {
        let mut o = 0usize;
        let mut n = 0usize;
        while o < buf.len() {
            let (Some(len), Some(ns), Some(&fam)) =
                (be32(buf, o), be(buf, o + 4, 8), buf.get(o + 12))
            else {
                return Err(format!("batch frame header truncated at byte {o}"));
            };
            let Some(a) = buf.get(o + 13..o + 29) else {
                return Err(format!("batch frame header truncated at byte {o}"));
            };
            let proto = *buf
                .get(o + 29)
                .ok_or_else(|| format!("batch frame header truncated at byte {o}"))?;
            let start = o + 30;
            let end = start
                .checked_add(len as usize)
                .filter(|&e| e <= buf.len())
                .ok_or_else(|| format!("batch frame at byte {o} runs past the batch"))?;
            let exporter = match fam {
                4 => Addr::v4(a),
                6 => Addr::v6(a),
                _ => return Err(format!("batch frame at byte {o}: family {fam}")),
            };
            self.datagram(exporter, ns as i64, proto, &buf[start..end]);
            o = end;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
