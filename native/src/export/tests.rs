//! Hand-built datagrams (field by field from the RFCs / sFlow v5 spec) and never-panic properties.

use super::*;
use crate::decode::DecodeConfig;
use proptest::prelude::*;

fn dcfg() -> DecodeConfig {
    DecodeConfig {
        decap_gre: false,
        decap_vxlan: false,
        decap_gtp: false,
        vxlan_port: 4789,
        gtp_port: 2152,
    }
}

fn col() -> Collector {
    Collector::new(Limits::default(), dcfg())
}

const EXP: [u8; 4] = [192, 0, 2, 1];

fn exp() -> Addr {
    Addr::v4(&EXP)
}

fn errors(c: &Collector) -> Vec<(&'static str, u64)> {
    let mut v: Vec<(&'static str, u64)> = c
        .errors
        .iter()
        .map(|((_, r), n)| (REASONS[*r as usize], *n))
        .collect();
    v.sort();
    v
}

struct W(Vec<u8>);
impl W {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
}

fn v5(count_field: u16, n: usize, sampling: u16) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.u16(5)
        .u16(count_field)
        .u32(100_000)
        .u32(1_700_000_000)
        .u32(500)
        .u32(7)
        .u8(0)
        .u8(3)
        .u16(sampling);
    for i in 0..n {
        w.raw(&[10, 0, 0, i as u8])
            .raw(&[10, 0, 1, 1])
            .raw(&[10, 0, 0, 254]);
        w.u16(3).u16(4).u32(10).u32(1500).u32(90_000).u32(99_000);
        w.u16(40000 + i as u16)
            .u16(443)
            .u8(0)
            .u8(0x1b)
            .u8(6)
            .u8(0)
            .u16(64500)
            .u16(64501)
            .u8(24)
            .u8(24)
            .u16(0);
    }
    w.0
}

#[test]
fn netflow5_records() {
    let mut c = col();
    c.datagram(exp(), 0, P_ANY, &v5(2, 2, 0x4000 | 100));
    assert_eq!(c.out.len(), 2);
    let r = &c.out[1];
    assert_eq!(r.kind, K_NETFLOW5);
    assert_eq!(r.src.bytes(), &[10, 0, 0, 1]);
    assert_eq!(r.dst.bytes(), &[10, 0, 1, 1]);
    assert_eq!(r.next_hop.bytes(), &[10, 0, 0, 254]);
    assert_eq!((r.in_if, r.out_if, r.pkts, r.bytes), (3, 4, 10, 1500));
    assert_eq!(
        (r.sport, r.dport, r.proto, r.tcp_flags),
        (40001, 443, 6, 0x1b)
    );
    assert_eq!(
        (r.src_as, r.dst_as, r.sampling, r.domain),
        (64500, 64501, 100, 3)
    );
    let export = 1_700_000_000i64 * 1_000_000_000 + 500;
    assert_eq!(r.first_ns, export - 10_000 * 1_000_000);
    assert_eq!(r.last_ns, export - 1_000 * 1_000_000);
}

#[test]
fn netflow5_count_beyond_payload_is_refused_whole() {
    let mut c = col();
    c.datagram(exp(), 0, P_ANY, &v5(3, 2, 0));
    c.datagram(exp(), 0, P_ANY, &v5(55582, 2, 0));
    c.datagram(exp(), 0, P_ANY, &v5(2, 2, 0)[..50]);
    assert!(c.out.is_empty());
    assert_eq!(errors(&c), vec![("bad_count", 3)]);
}

#[test]
fn unknown_version_and_wrong_listener() {
    let mut c = col();
    c.datagram(exp(), 0, P_ANY, &[0, 7, 0, 1, 2, 3]);
    c.datagram(exp(), 0, P_IPFIX, &v5(2, 2, 0));
    c.datagram(exp(), 0, P_ANY, &[1]);
    assert!(c.out.is_empty());
    assert_eq!(
        errors(&c),
        vec![
            ("truncated", 1),
            ("unknown_version", 1),
            ("wrong_protocol", 1)
        ]
    );
}

// IPFIX message with the given sets
fn ipfix(domain: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = sets.concat();
    let mut w = W(Vec::new());
    w.u16(10)
        .u16(16 + body.len() as u16)
        .u32(1_700_000_000)
        .u32(1)
        .u32(domain)
        .raw(&body);
    w.0
}

fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.u16(id).u16(4 + body.len() as u16).raw(body);
    w.0
}

// template 256: src v4, dst v4, sport, dport, proto, octets(8), packets(4), start/end ms, an enterprise
// field (4 bytes) and a variable-length field, in/out if, src/dst AS
fn tpl256() -> Vec<u8> {
    let mut w = W(Vec::new());
    w.u16(256).u16(15);
    w.u16(8)
        .u16(4)
        .u16(12)
        .u16(4)
        .u16(7)
        .u16(2)
        .u16(11)
        .u16(2)
        .u16(4)
        .u16(1);
    w.u16(1)
        .u16(8)
        .u16(2)
        .u16(4)
        .u16(152)
        .u16(8)
        .u16(153)
        .u16(8);
    w.u16(0x8000 | 100).u16(4).u32(9); // enterprise 9, id 100
    w.u16(82).u16(65535); // interfaceName, variable length
    w.u16(10)
        .u16(4)
        .u16(14)
        .u16(4)
        .u16(16)
        .u16(4)
        .u16(17)
        .u16(4);
    set(2, &w.0)
}

fn rec256(w: &mut W, last: u8, name: &[u8]) {
    w.raw(&[198, 51, 100, last])
        .raw(&[203, 0, 113, 9])
        .u16(5000)
        .u16(53)
        .u8(17);
    w.u64(1234)
        .u32(5)
        .u64(1_700_000_000_000)
        .u64(1_700_000_001_500);
    w.u32(0xdead_beef);
    if name.len() < 255 {
        w.u8(name.len() as u8);
    } else {
        w.u8(255).u16(name.len() as u16);
    }
    w.raw(name).u32(7).u32(8).u32(64496).u32(64497);
}

#[test]
fn ipfix_template_then_data_with_varlen_and_enterprise() {
    let mut c = col();
    let mut d = W(Vec::new());
    rec256(&mut d, 1, b"xe-0/0/1");
    rec256(&mut d, 2, &[b'x'; 300]);
    d.raw(&[0, 0]); // padding shorter than a record
    c.datagram(exp(), 0, P_IPFIX, &ipfix(1, &[tpl256(), set(256, &d.0)]));
    assert_eq!(errors(&c), vec![]);
    assert_eq!(c.out.len(), 2);
    let r = &c.out[1];
    assert_eq!(r.kind, K_IPFIX);
    assert_eq!(r.src.bytes(), &[198, 51, 100, 2]);
    assert_eq!(r.dst.bytes(), &[203, 0, 113, 9]);
    assert_eq!(
        (r.sport, r.dport, r.proto, r.bytes, r.pkts),
        (5000, 53, 17, 1234, 5)
    );
    assert_eq!(
        (r.in_if, r.out_if, r.src_as, r.dst_as, r.sampling),
        (7, 8, 64496, 64497, 1)
    );
    assert_eq!(r.first_ns, 1_700_000_000_000 * 1_000_000);
    assert_eq!(r.last_ns, 1_700_000_001_500 * 1_000_000);
}

#[test]
fn data_before_template_then_withdrawal() {
    let mut c = col();
    let mut d = W(Vec::new());
    rec256(&mut d, 1, b"a");
    c.datagram(exp(), 0, P_IPFIX, &ipfix(1, &[set(256, &d.0)]));
    assert!(c.out.is_empty());
    // template for domain 1 does not serve domain 2, nor another exporter
    c.datagram(exp(), 0, P_IPFIX, &ipfix(1, &[tpl256()]));
    c.datagram(exp(), 0, P_IPFIX, &ipfix(2, &[set(256, &d.0)]));
    c.datagram(
        Addr::v4(&[192, 0, 2, 2]),
        0,
        P_IPFIX,
        &ipfix(1, &[set(256, &d.0)]),
    );
    assert!(c.out.is_empty());
    c.datagram(exp(), 0, P_IPFIX, &ipfix(1, &[set(256, &d.0)]));
    assert_eq!(c.out.len(), 1);
    // withdrawal: template id 256, field count 0
    c.datagram(exp(), 0, P_IPFIX, &ipfix(1, &[set(2, &[1, 0, 0, 0])]));
    c.datagram(exp(), 0, P_IPFIX, &ipfix(1, &[set(256, &d.0)]));
    assert_eq!(c.out.len(), 1);
    // one for the other exporter, three for this one
    assert_eq!(errors(&c), vec![("no_template", 1), ("no_template", 3)]);
    assert_eq!(c.templates.per_exporter[&exp()], 0);
}

#[test]
fn ipfix_options_template_sets_sampling() {
    let mut c = col();
    // options template 300: scope observationDomainId (149, 4 bytes), samplingPacketInterval (305),
    // samplingPacketSpace (306)
    let mut o = W(Vec::new());
    o.u16(300)
        .u16(3)
        .u16(1)
        .u16(149)
        .u16(4)
        .u16(305)
        .u16(4)
        .u16(306)
        .u16(4);
    let mut od = W(Vec::new());
    od.u32(1).u32(1).u32(999);
    let mut d = W(Vec::new());
    rec256(&mut d, 1, b"a");
    c.datagram(
        exp(),
        0,
        P_IPFIX,
        &ipfix(
            1,
            &[tpl256(), set(3, &o.0), set(300, &od.0), set(256, &d.0)],
        ),
    );
    assert_eq!(errors(&c), vec![]);
    assert_eq!(c.out.len(), 1);
    assert_eq!(c.out[0].sampling, 1000);
}

#[test]
fn templates_survive_save_and_load() {
    let mut c = col();
    c.datagram(exp(), 0, P_IPFIX, &ipfix(1, &[tpl256()]));
    let saved = c.templates.save(exp());
    let mut c2 = col();
    assert_eq!(c2.templates.load(exp(), &saved, 10), Ok(1));
    let mut d = W(Vec::new());
    rec256(&mut d, 1, b"a");
    c2.datagram(exp(), 0, P_IPFIX, &ipfix(1, &[set(256, &d.0)]));
    assert_eq!(c2.out.len(), 1);
    assert!(c2
        .templates
        .load(exp(), &saved[..saved.len() - 1], 10)
        .is_err());
    assert!(c2.templates.load(exp(), &[9], 10).is_err());
}

#[test]
fn template_limit_per_exporter() {
    let mut c = Collector::new(
        Limits {
            max_templates_per_exporter: 1,
            max_exporters: 10,
        },
        dcfg(),
    );
    let mut t2 = tpl256();
    t2[4] = 1;
    t2[5] = 1; // template id 257
    c.datagram(exp(), 0, P_IPFIX, &ipfix(1, &[tpl256(), t2.clone()]));
    c.datagram(exp(), 0, P_IPFIX, &ipfix(1, &[tpl256()])); // a refresh is not a new template
    assert_eq!(errors(&c), vec![("template_limit", 1)]);
}

fn v9(sets: &[Vec<u8>]) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.u16(9)
        .u16(1)
        .u32(100_000)
        .u32(1_700_000_000)
        .u32(1)
        .u32(42)
        .raw(&sets.concat());
    w.0
}

#[test]
fn netflow9_uptime_times_and_options_sampling() {
    let mut c = col();
    // template 260: IPv6 src/dst, ports, proto, bytes, pkts, first/last switched
    let mut t = W(Vec::new());
    t.u16(260)
        .u16(9)
        .u16(27)
        .u16(16)
        .u16(28)
        .u16(16)
        .u16(7)
        .u16(2)
        .u16(11)
        .u16(2)
        .u16(4)
        .u16(1);
    t.u16(1).u16(4).u16(2).u16(4).u16(22).u16(4).u16(21).u16(4);
    t.u16(0); // padding
              // options template 261: scope system (1, 4 bytes), SAMPLING_INTERVAL (34, 4 bytes)
    let mut o = W(Vec::new());
    o.u16(261).u16(4).u16(4).u16(1).u16(4).u16(34).u16(4).u16(0);
    let mut od = W(Vec::new());
    od.u32(0).u32(512);
    let mut d = W(Vec::new());
    let a: Vec<u8> = (0..16).collect();
    let b: Vec<u8> = (16..32).collect();
    d.raw(&a)
        .raw(&b)
        .u16(1)
        .u16(2)
        .u8(6)
        .u32(900)
        .u32(3)
        .u32(95_000)
        .u32(99_500);
    c.datagram(
        exp(),
        0,
        P_NETFLOW,
        &v9(&[set(0, &t.0), set(1, &o.0), set(261, &od.0), set(260, &d.0)]),
    );
    assert_eq!(errors(&c), vec![]);
    assert_eq!(c.out.len(), 1);
    let r = &c.out[0];
    assert_eq!(
        (r.kind, r.domain, r.sampling, r.bytes, r.pkts),
        (K_NETFLOW9, 42, 512, 900, 3)
    );
    assert!(r.src.v6 && r.src.b[15] == 15 && r.dst.b[0] == 16);
    assert_eq!(
        r.first_ns,
        1_700_000_000i64 * 1_000_000_000 - 5_000 * 1_000_000
    );
    assert_eq!(
        r.last_ns,
        1_700_000_000i64 * 1_000_000_000 - 500 * 1_000_000
    );
}

#[test]
fn bad_sets_are_counted_and_stop_the_datagram() {
    let mut c = col();
    let mut t = W(Vec::new());
    t.u16(100).u16(1).u16(8).u16(4); // template id below 256
    c.datagram(exp(), 0, P_IPFIX, &ipfix(1, &[set(2, &t.0)]));
    let mut m = ipfix(1, &[tpl256()]);
    m[19] = 0xff; // set length past the message
    c.datagram(exp(), 0, P_IPFIX, &m);
    let mut m = ipfix(1, &[tpl256()]);
    m[3] = 200; // message length past the datagram
    c.datagram(exp(), 0, P_IPFIX, &m);
    assert!(c.out.is_empty());
    assert_eq!(errors(&c), vec![("bad_template", 1), ("truncated", 2)]);
}

fn eth_ipv4_tcp(total_len: u16) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.raw(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2])
        .u16(0x8100)
        .u16(0x0064)
        .u16(0x0800);
    w.raw(&[0x45, 0])
        .u16(total_len)
        .raw(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    w.raw(&[192, 0, 2, 10]).raw(&[198, 51, 100, 20]);
    w.u16(33000)
        .u16(80)
        .u32(1)
        .u32(0)
        .raw(&[0x50, 0x18])
        .u16(1000)
        .u16(0)
        .u16(0);
    w.0
}

fn sflow(samples: &[Vec<u8>]) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.u32(5)
        .u32(1)
        .raw(&[10, 9, 9, 9])
        .u32(0)
        .u32(1)
        .u32(1000)
        .u32(samples.len() as u32)
        .raw(&samples.concat());
    w.0
}

fn sample(fmt: u32, body: &[u8]) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.u32(fmt).u32(body.len() as u32).raw(body);
    w.0
}

#[test]
fn sflow_flow_and_counter_samples() {
    let mut c = col();
    let hdr = eth_ipv4_tcp(1400);
    let mut raw = W(Vec::new());
    raw.u32(1).u32(1418).u32(4).u32(hdr.len() as u32).raw(&hdr);
    while raw.0.len() % 4 != 0 {
        raw.u8(0);
    }
    let mut gw = W(Vec::new());
    gw.u32(1)
        .raw(&[10, 0, 0, 1])
        .u32(65000)
        .u32(64500)
        .u32(64501)
        .u32(1)
        .u32(2)
        .u32(2)
        .u32(64510)
        .u32(64520);
    gw.u32(0).u32(100);
    let mut fs = W(Vec::new());
    fs.u32(1)
        .u32(5)
        .u32(2048)
        .u32(1)
        .u32(0)
        .u32(11)
        .u32(12)
        .u32(2);
    fs.raw(&sample(1, &raw.0)).raw(&sample(1003, &gw.0));
    let mut ifc = W(Vec::new());
    ifc.u32(11)
        .u32(6)
        .u64(10_000_000_000)
        .u32(1)
        .u32(3)
        .u64(123_456_789)
        .u32(10)
        .u32(1)
        .u32(2);
    ifc.u32(0)
        .u32(0)
        .u32(0)
        .u64(987_654_321)
        .u32(20)
        .u32(3)
        .u32(4)
        .u32(0)
        .u32(0)
        .u32(0);
    let mut cs = W(Vec::new());
    cs.u32(5).u32(11).u32(1).raw(&sample(1, &ifc.0)); // sequence 5, source id 11, one record
    c.datagram(
        Addr::v4(&[127, 0, 0, 1]),
        77,
        P_SFLOW,
        &sflow(&[sample(1, &fs.0), sample(2, &cs.0)]),
    );
    assert_eq!(errors(&c), vec![]);
    assert_eq!(c.out.len(), 1);
    let r = &c.out[0];
    assert_eq!(r.exporter.bytes(), &[10, 9, 9, 9]);
    assert_eq!(
        (r.kind, r.sampling, r.in_if, r.out_if),
        (K_SFLOW, 2048, 11, 12)
    );
    assert_eq!(r.src.bytes(), &[192, 0, 2, 10]);
    assert_eq!(r.dst.bytes(), &[198, 51, 100, 20]);
    assert_eq!(
        (r.sport, r.dport, r.proto, r.tcp_flags, r.vlan),
        (33000, 80, 6, 0x18, 100)
    );
    assert_eq!((r.bytes, r.pkts, r.first_ns), (1400, 1, 77));
    assert_eq!((r.src_as, r.dst_as), (64500, 64520));
    assert_eq!(r.next_hop.bytes(), &[10, 0, 0, 1]);
    assert_eq!(c.links.len(), 1);
    let l = &c.links[0];
    assert_eq!(
        (l.if_index, l.in_octets, l.out_octets, l.in_pkts, l.out_pkts),
        (11, 123_456_789, 987_654_321, 13, 27)
    );
    assert_eq!(l.seq, 5);
}

#[test]
fn sflow_garbage_header_counts_and_makes_no_record() {
    let mut c = col();
    let mut raw = W(Vec::new());
    raw.u32(1)
        .u32(64)
        .u32(0)
        .u32(8)
        .raw(&[1, 2, 3, 4, 5, 6, 7, 8]);
    let mut fs = W(Vec::new());
    fs.u32(1)
        .u32(5)
        .u32(10)
        .u32(1)
        .u32(0)
        .u32(1)
        .u32(2)
        .u32(1)
        .raw(&sample(1, &raw.0));
    let mut big = W(Vec::new());
    big.u32(1)
        .u32(5)
        .u32(10)
        .u32(1)
        .u32(0)
        .u32(1)
        .u32(2)
        .u32(0xffff_ffff);
    c.datagram(
        exp(),
        0,
        P_SFLOW,
        &sflow(&[sample(1, &fs.0), sample(1, &big.0)]),
    );
    let mut d = sflow(&[]);
    d[27] = 200; // sample count beyond the datagram
    c.datagram(exp(), 0, P_SFLOW, &d);
    assert!(c.out.is_empty());
    assert_eq!(
        errors(&c),
        vec![
            ("bad_count", 1),
            ("bad_packet_header", 1),
            ("bad_sample", 1)
        ]
    );
}

#[test]
fn batch_frames() {
    let mut c = col();
    let d = v5(1, 1, 0);
    let mut w = W(Vec::new());
    for _ in 0..3 {
        w.u32(d.len() as u32)
            .u64(5)
            .u8(4)
            .raw(&EXP)
            .raw(&[0; 12])
            .u8(P_NETFLOW)
            .raw(&d);
    }
    assert_eq!(c.batch(&w.0), Ok(3));
    assert_eq!(c.out.len(), 3);
    assert!(c.batch(&w.0[..w.0.len() - 1]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::fuzz::cases(3000)))]

    #[test]
    fn never_panics_on_arbitrary_bytes(d in proptest::collection::vec(any::<u8>(), 0..600), proto in 0u8..4) {
        let mut c = col();
        c.datagram(exp(), 0, proto, &d);
        let _ = c.batch(&d);
    }

    #[test]
    fn never_panics_on_mutated_valid_datagrams(
        which in 0usize..4, flips in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8), cut in any::<u16>()
    ) {
        let mut d = W(Vec::new());
        rec256(&mut d, 1, b"ge-0/0/0");
        let base = match which {
            0 => v5(3, 3, 0),
            1 => ipfix(1, &[tpl256(), set(256, &d.0)]),
            2 => v9(&[tpl256()[4..].to_vec()]),
            _ => {
                let hdr = eth_ipv4_tcp(60);
                let mut raw = W(Vec::new());
                raw.u32(1).u32(64).u32(0).u32(hdr.len() as u32).raw(&hdr);
                let mut fs = W(Vec::new());
                fs.u32(1).u32(5).u32(10).u32(1).u32(0).u32(1).u32(2).u32(1).raw(&sample(1, &raw.0));
                sflow(&[sample(1, &fs.0)])
            }
        };
        let mut m = base.clone();
        for (pos, v) in flips {
            let i = pos as usize % m.len();
            m[i] ^= v;
        }
        m.truncate(cut as usize % (m.len() + 1));
        let mut c = col();
        c.datagram(exp(), 0, P_ANY, &base);
        c.datagram(exp(), 0, P_ANY, &m);
        for r in &c.out {
            prop_assert!(r.sampling >= 1 && r.last_ns >= r.first_ns);
        }
    }
}

#[test]
fn zero_address_of_the_other_family_does_not_replace() {
    let mut c = col();
    // template 270: IPv4 src/dst then IPv6 src/dst (zero in this record), octets
    let mut t = W(Vec::new());
    t.u16(270)
        .u16(5)
        .u16(8)
        .u16(4)
        .u16(12)
        .u16(4)
        .u16(27)
        .u16(16)
        .u16(28)
        .u16(16)
        .u16(1)
        .u16(4);
    let mut d = W(Vec::new());
    d.raw(&[192, 0, 2, 16])
        .raw(&[192, 0, 2, 17])
        .raw(&[0; 16])
        .raw(&[0; 16])
        .u32(60);
    c.datagram(
        exp(),
        0,
        P_IPFIX,
        &ipfix(1, &[set(2, &t.0), set(270, &d.0)]),
    );
    assert_eq!(errors(&c), vec![]);
    assert_eq!(c.out.len(), 1);
    assert_eq!(c.out[0].src, Addr::v4(&[192, 0, 2, 16]));
    assert_eq!(c.out[0].dst, Addr::v4(&[192, 0, 2, 17]));
}

#[test]
fn ipfix_ntp_timestamps() {
    let mut c = col();
    // template 280: src, dst, flowStartMicroseconds (154), flowEndNanoseconds (157)
    let mut t = W(Vec::new());
    t.u16(280)
        .u16(4)
        .u16(8)
        .u16(4)
        .u16(12)
        .u16(4)
        .u16(154)
        .u16(8)
        .u16(157)
        .u16(8);
    let ntp = |unix_s: u64, frac: u64| ((unix_s + 2_208_988_800) << 32) | frac;
    let mut d = W(Vec::new());
    d.raw(&[192, 0, 2, 1])
        .raw(&[192, 0, 2, 2])
        .u64(ntp(1_700_000_000, 1 << 31))
        .u64(ntp(1_700_000_002, 1 << 30));
    c.datagram(
        exp(),
        0,
        P_IPFIX,
        &ipfix(1, &[set(2, &t.0), set(280, &d.0)]),
    );
    assert_eq!(errors(&c), vec![]);
    assert_eq!(c.out[0].first_ns, 1_700_000_000_500_000_000);
    assert_eq!(c.out[0].last_ns, 1_700_000_002_250_000_000);
}

#[test]
fn nsel_responder_fields_make_a_biflow_even_at_zero() {
    // Cisco ASA NSEL over NetFlow v9: src, dst, 231/232 initiator/responder octets (4), 298/299 packets (8).
    let mut t = W(Vec::new());
    t.u16(260).u16(6);
    for (id, len) in [
        (8u16, 4u16),
        (12, 4),
        (231, 4),
        (232, 4),
        (298, 8),
        (299, 8),
    ] {
        t.u16(id).u16(len);
    }
    let mut d = W(Vec::new());
    for (last, rev, prev) in [(1u8, 0u32, 0u64), (2, 4200, 5)] {
        d.raw(&[10, 1, 1, last])
            .raw(&[203, 0, 113, last])
            .u32(180)
            .u32(rev)
            .u64(3)
            .u64(prev);
    }
    // and the same flow from a one-way template (octets and packets only)
    let mut t1 = W(Vec::new());
    t1.u16(261).u16(4);
    for (id, len) in [(8u16, 4u16), (12, 4), (1, 4), (2, 4)] {
        t1.u16(id).u16(len);
    }
    let mut d1 = W(Vec::new());
    d1.raw(&[10, 1, 1, 3])
        .raw(&[203, 0, 113, 3])
        .u32(700)
        .u32(2);
    let mut c = col();
    c.datagram(
        exp(),
        0,
        P_ANY,
        &v9(&[set(0, &t.0), set(260, &d.0), set(0, &t1.0), set(261, &d1.0)]),
    );
    let got: Vec<_> = c
        .out
        .iter()
        .map(|r| (r.bytes, r.bytes_rev, r.pkts_rev, r.biflow))
        .collect();
    assert_eq!(
        got,
        vec![(180, 0, 0, true), (180, 4200, 5, true), (700, 0, 0, false)]
    );
}

#[test]
fn rfc5103_reverse_counters_make_a_biflow() {
    // template 270: src, dst, octetDeltaCount (8), packetDeltaCount (4), reverseOctetDeltaCount (PEN 29305, 8),
    // reversePacketDeltaCount (29305, 4), and enterprise 9's element 1 (not a reverse field: skipped)
    let mut t = W(Vec::new());
    t.u16(270).u16(7);
    t.u16(8).u16(4).u16(12).u16(4).u16(1).u16(8).u16(2).u16(4);
    t.u16(0x8001).u16(8).u32(29305);
    t.u16(0x8002).u16(4).u32(29305);
    t.u16(0x8001).u16(4).u32(9);
    // template 271: reverseOctetTotalCount / reversePacketTotalCount (85/86) beside the forward totals
    t.u16(271).u16(6);
    t.u16(8).u16(4).u16(12).u16(4).u16(85).u16(8).u16(86).u16(8);
    t.u16(0x8000 | 85).u16(8).u32(29305);
    t.u16(0x8000 | 86).u16(8).u32(29305);
    let mut d = W(Vec::new());
    for (last, rev, prev) in [(1u8, 0u64, 0u32), (2, 96_000, 70)] {
        d.raw(&[10, 1, 1, last])
            .raw(&[203, 0, 113, last])
            .u64(1_500)
            .u32(10)
            .u64(rev)
            .u32(prev)
            .u32(0xffff_ffff);
    }
    let mut d1 = W(Vec::new());
    d1.raw(&[10, 1, 1, 3])
        .raw(&[203, 0, 113, 3])
        .u64(800)
        .u64(4)
        .u64(6_400)
        .u64(9);
    let mut c = col();
    c.datagram(
        exp(),
        0,
        P_IPFIX,
        &ipfix(1, &[set(2, &t.0), set(270, &d.0), set(271, &d1.0)]),
    );
    assert_eq!(errors(&c), vec![]);
    let got: Vec<_> = c
        .out
        .iter()
        .map(|r| {
            (
                r.src.b[3],
                r.bytes,
                r.pkts,
                r.bytes_rev,
                r.pkts_rev,
                r.biflow,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            // a reverse direction that sent nothing is still counted (at zero): a biflow
            (1, 1_500, 10, 0, 0, true),
            (2, 1_500, 10, 96_000, 70, true),
            (3, 800, 4, 6_400, 9, true),
        ]
    );
}

#[test]
fn fixed_layout_plan_reads_as_the_field_walk() {
    // the same records through a fixed template (compiled plan) and through one with a trailing
    // variable-length field (read field by field) decode alike
    let fields = [
        (8u16, 4u16),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (1, 8),
        (2, 8),
        (10, 4),
        (14, 4),
    ];
    let mut t = W(Vec::new());
    t.u16(280).u16(fields.len() as u16);
    for (id, len) in fields {
        t.u16(id).u16(len);
    }
    t.u16(281).u16(fields.len() as u16 + 1);
    for (id, len) in fields {
        t.u16(id).u16(len);
    }
    t.u16(82).u16(65535);
    let (mut fixed, mut var) = (W(Vec::new()), W(Vec::new()));
    for i in 0..5u8 {
        for w in [&mut fixed, &mut var] {
            w.raw(&[10, 0, 0, i])
                .raw(&[203, 0, 113, i])
                .u16(1024 + i as u16)
                .u16(443)
                .u8(6)
                .u64(1500 * (i as u64 + 1))
                .u64(i as u64 + 1)
                .u32(3)
                .u32(4);
        }
        var.u8(2).raw(b"et");
    }
    let mut c = col();
    c.datagram(
        exp(),
        0,
        P_IPFIX,
        &ipfix(1, &[set(2, &t.0), set(280, &fixed.0), set(281, &var.0)]),
    );
    assert_eq!(errors(&c), vec![]);
    assert_eq!(c.out.len(), 10);
    assert_eq!(c.out[..5], c.out[5..]);
    assert_eq!(
        (
            c.out[4].sport,
            c.out[4].bytes,
            c.out[4].pkts,
            c.out[4].in_if,
            c.out[4].out_if
        ),
        (1028, 7500, 5, 3, 4)
    );
}
