//! Decoded export records -> encoded FlowRecords, as `ingest.collect.records.RecordBuilder` builds them (the
//! Python reference): link and direction from the exporter's interface map, partner by AS number where a group
//! lists it, then by prefix and country; counts as exported with the sampling rate beside them; no latency.

use hashbrown::HashMap;

use super::{Addr, ExpRec};
use crate::apps::{Apps, FlowFacts};
use crate::batch::Batch;
use crate::classify::{Classifier, PairSides, EGRESS, INGRESS, TRANSIT};
use crate::record::{self, Record};

const TCP: u8 = 6;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

/// An exporter of the configuration: its sampling rate when it announces none, its interfaces.
pub struct ExporterMap {
    pub sampling: Option<u64>,
    /// ifIndex -> (link id index in the classifier's names, faces the partner)
    pub interfaces: HashMap<u32, (u32, bool)>,
}

pub struct Builder {
    pub cls: Classifier,
    pub agent_id: String,
    pub default_link: u32,
    pub exporters: HashMap<Addr, ExporterMap>,
    pub apps: Apps,
    pub hs_bounds: Vec<f64>,
    pub unmapped: u64,
    pub anon: Option<crate::anon::Anonymiser>, // addresses are anonymised after classification
    src: String,
    dst: String,
    exporter: Text,
    next_hop: Text,
    sides: Vec<PairSides>,
}

/// The text of the address last written: an exporter (and often a next hop) is the same for every record of a
/// datagram, so its text is kept rather than written again.
#[derive(Default)]
struct Text {
    of: Option<Addr>,
    text: String,
}

impl Text {
    /// Text of `a`, "" when it is all zero (an unset next hop or exporter).
    fn of(&mut self, a: &Addr) -> &str {
        if self.of != Some(*a) {
            if a.b.iter().all(|&b| b == 0) {
                self.text.clear();
            } else {
                record::ip_text(&mut self.text, a.bytes());
            }
            self.of = Some(*a);
        }
        &self.text
    }
}

fn end_reason(proto: u8, flags: u8) -> &'static str {
    if proto == TCP && flags & RST != 0 {
        "rst"
    } else if proto == TCP && flags & FIN != 0 {
        "fin"
    } else {
        // a router exports on its own timers: idle and active expiry look the same
        "active"
    }
}

impl Builder {
    pub fn new(
        cls: Classifier,
        agent_id: String,
        default_link: u32,
        exporters: HashMap<Addr, ExporterMap>,
        apps: Apps,
        hs_bounds: Vec<f64>,
    ) -> Self {
        Builder {
            cls,
            agent_id,
            default_link,
            exporters,
            apps,
            hs_bounds,
            unmapped: 0,
            anon: None,
            src: String::new(),
            dst: String::new(),
            exporter: Text::default(),
            next_hop: Text::default(),
            sides: Vec::new(),
        }
    }

    /// (link, direction or None: the addresses decide) from the interface map of `exp`, the record's exporter;
    /// None: the map names neither the exporter nor its interfaces.
    fn link(exp: Option<&ExporterMap>, r: &ExpRec) -> Option<(u32, Option<u32>)> {
        let exp = exp?;
        let into = exp.interfaces.get(&r.in_if).copied();
        let out = exp.interfaces.get(&r.out_if).copied();
        let out_external = out.is_some_and(|o| o.1);
        if let Some((link, true)) = into {
            if !out_external {
                return Some((link, Some(INGRESS)));
            }
        }
        if let Some((link, true)) = out {
            return Some((link, Some(EGRESS)));
        }
        into.or(out).map(|(link, _)| (link, None))
    }

    /// Classify and encode `recs`, numbered from `seq`, exported at `export_ns`.
    pub fn add(&mut self, batch: &mut Batch, recs: &[ExpRec], mut seq: u64, export_ns: i64) {
        // the classifier is asked once about every address of `recs` it has not cached (always a cached
        // classifier here: `configure_records` makes one)
        let cached = self.cls.pair_sides(
            recs.iter().map(|r| (&r.src.b, &r.dst.b, r.src.v6)),
            &mut self.sides,
        );
        debug_assert!(cached);
        for (r, &pair) in recs.iter().zip(&self.sides) {
            let exp = self.exporters.get(&r.exporter);
            let (link, dir) = Self::link(exp, r).unwrap_or_else(|| {
                self.unmapped += 1;
                (self.default_link, None)
            });
            let v6 = r.src.v6;
            let c = self.cls.flow_of(pair, link);
            let (mut partner, mut country, mut asn) = (c.partner, c.country, c.asn);
            let direction = match dir {
                None => {
                    let remote_asn = match c.direction {
                        EGRESS | TRANSIT => r.dst_as,
                        INGRESS => r.src_as,
                        _ => 0,
                    } as u64;
                    if remote_asn != 0 {
                        partner = self.cls.partner_of_asn(remote_asn).unwrap_or(partner);
                        asn = remote_asn;
                    }
                    c.direction
                }
                Some(d) => {
                    let ingress = d == INGRESS;
                    let (side, a_as) = if ingress {
                        (pair[0], r.src_as)
                    } else {
                        (pair[1], r.dst_as)
                    };
                    if let Some(rc) = self.cls.remote(side, link, a_as as u64) {
                        (partner, country, asn) = (rc.partner, rc.country, rc.asn);
                    }
                    d
                }
            };
            let n = if v6 { 16 } else { 4 };
            crate::anon::ip_text(self.anon.as_mut(), &mut self.src, &r.src.b[..n]);
            crate::anon::ip_text(self.anon.as_mut(), &mut self.dst, &r.dst.b[..n]);
            let exporter = self.exporter.of(&r.exporter);
            let next_hop = self.next_hop.of(&r.next_hop);
            let mut sampling = r.sampling as u64;
            if sampling <= 1 {
                if let Some(s) = exp.and_then(|e| e.sampling) {
                    sampling = s;
                }
            }
            let names = &self.cls.names;
            let dscp = r.tos >> 2;
            // the export's source is taken as the initiator; the remote end is it on an ingress link
            let app_class = self.apps.class(&FlowFacts {
                protocol: r.proto,
                server_port: r.dport as u32,
                dscp,
                src: &r.src.b,
                dst: &r.dst.b,
                v6,
                remote_is_initiator: direction == INGRESS,
                remote_asn: asn,
                link: names.get(link),
            });
            let rec = Record {
                schema_version: 1,
                agent_id: &self.agent_id,
                seq,
                link_id: names.get(link),
                sampling_rate: sampling,
                ip_version: if v6 { 6 } else { 4 },
                src_ip: &self.src,
                src_port: r.sport as u64,
                dst_ip: &self.dst,
                dst_port: r.dport as u64,
                protocol: r.proto as u64,
                vlan: r.vlan as u64,
                first_ns: r.first_ns,
                last_ns: r.last_ns,
                export_ns,
                end_reason: end_reason(r.proto, r.tcp_flags),
                bytes_fwd: r.bytes,
                packets_fwd: r.pkts,
                bytes_rev: r.bytes_rev,
                packets_rev: r.pkts_rev,
                tcp_flags_fwd: r.tcp_flags as u64,
                direction: names.get(direction),
                partner: names.get(partner),
                remote_country: names.get(country),
                remote_asn: asn,
                sampling_mode: "packet",
                exporter,
                in_if: r.in_if as u64,
                out_if: r.out_if as u64,
                src_asn: r.src_as as u64,
                dst_asn: r.dst_as as u64,
                next_hop,
                one_way: u64::from(!r.biflow && r.bytes_rev == 0 && r.pkts_rev == 0),
                dscp: dscp as u64,
                app_class,
                ..Record::default()
            };
            batch.add(&rec, (partner, direction, link), &self.hs_bounds);
            seq += 1;
        }
    }
}
