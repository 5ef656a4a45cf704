//! FlowRecord v1 as Kafka bytes: exactly what `schemas.codec.encode` (orjson of `to_dict`) writes for the same
//! record (field order of FLOW_RECORD_FIELDS, compact separators, raw UTF-8, orjson's escapes, histogram bins as
//! {"b":..,"c":..}), and the Kafka key of `ingest.producer.flow_key`. Addresses are written as glibc's
//! `inet_ntop` writes them (what `ingest.flowkey.ip_text` calls).

/// The field names in wire order. The engine refuses to start unless Python's FLOW_RECORD_FIELDS lists the same.
pub const FIELDS: [&str; 55] = [
    "schema_version",
    "agent_id",
    "seq",
    "link_id",
    "sampling_rate",
    "ip_version",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "protocol",
    "vlan",
    "first_ns",
    "last_ns",
    "export_ns",
    "end_reason",
    "bytes_fwd",
    "packets_fwd",
    "bytes_rev",
    "packets_rev",
    "tcp_flags_fwd",
    "tcp_flags_rev",
    "retrans_fwd",
    "retrans_rev",
    "hs_rtt_ext_us",
    "hs_rtt_int_us",
    "ts_rtt_count",
    "ts_rtt_min_us",
    "ts_rtt_max_us",
    "ts_rtt_sum_us",
    "ts_rtt_hist",
    "icmp_rtt_count",
    "icmp_rtt_min_us",
    "icmp_rtt_max_us",
    "icmp_rtt_sum_us",
    "icmp_rtt_hist",
    "dns_rtt_count",
    "dns_rtt_min_us",
    "dns_rtt_max_us",
    "dns_rtt_sum_us",
    "dns_rtt_hist",
    "direction",
    "partner",
    "remote_country",
    "remote_asn",
    "sampling_mode",
    "exporter",
    "in_if",
    "out_if",
    "src_asn",
    "dst_asn",
    "next_hop",
    "one_way",
    "dscp",
    "app_class",
];

/// One RTT summary: count, min, max, sum and the sparse histogram (bucket, count).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary<'a> {
    pub count: u64,
    pub min_us: Option<i64>,
    pub max_us: Option<i64>,
    pub sum_us: i64,
    pub hist: &'a [(u64, u64)],
}

/// Every field of a FlowRecord, borrowed; integers in the widest type the schema allows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record<'a> {
    pub schema_version: u64,
    pub agent_id: &'a str,
    pub seq: u64,
    pub link_id: &'a str,
    pub sampling_rate: u64,
    pub ip_version: u64,
    pub src_ip: &'a str,
    pub src_port: u64,
    pub dst_ip: &'a str,
    pub dst_port: u64,
    pub protocol: u64,
    pub vlan: u64,
    pub first_ns: i64,
    pub last_ns: i64,
    pub export_ns: i64,
    pub end_reason: &'a str,
    pub bytes_fwd: u64,
    pub packets_fwd: u64,
    pub bytes_rev: u64,
    pub packets_rev: u64,
    pub tcp_flags_fwd: u64,
    pub tcp_flags_rev: u64,
    pub retrans_fwd: u64,
    pub retrans_rev: u64,
    pub hs_rtt_ext_us: Option<i64>,
    pub hs_rtt_int_us: Option<i64>,
    pub sums: [Summary<'a>; 3], // ts, icmp, dns
    pub direction: &'a str,
    pub partner: &'a str,
    pub remote_country: &'a str,
    pub remote_asn: u64,
    pub sampling_mode: &'a str,
    pub exporter: &'a str,
    pub in_if: u64,
    pub out_if: u64,
    pub src_asn: u64,
    pub dst_asn: u64,
    pub next_hop: &'a str,
    pub one_way: u64,
    pub dscp: u64,
    pub app_class: &'a str,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A JSON string as orjson writes it: `"` and `\` escaped, control characters as \b \t \n \f \r or \u00XX,
/// everything else (DEL and non-ASCII included) as raw UTF-8.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(c >> 4) as usize]);
            out.push(HEX[(c & 15) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    put_u64(out, v.unsigned_abs());
}

fn put_opt(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        None => out.extend_from_slice(b"null"),
        Some(v) => put_i64(out, v),
    }
}

fn put_hist(out: &mut Vec<u8>, h: &[(u64, u64)]) {
    out.push(b'[');
    for (i, &(b, c)) in h.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"b\":");
        put_u64(out, b);
        out.extend_from_slice(b",\"c\":");
        put_u64(out, c);
        out.push(b'}');
    }
    out.push(b']');
}

/// Appends `rec` as one compact JSON object (no newline).
pub fn encode(out: &mut Vec<u8>, r: &Record<'_>) {
    macro_rules! key {
        ($i:expr) => {{
            out.extend_from_slice(if $i == 0 { b"{\"" } else { b",\"" });
            out.extend_from_slice(FIELDS[$i].as_bytes());
            out.extend_from_slice(b"\":");
        }};
    }
    macro_rules! u {
        ($i:expr, $v:expr) => {{
            key!($i);
            put_u64(out, $v);
        }};
    }
    macro_rules! s {
        ($i:expr, $v:expr) => {{
            key!($i);
            put_str(out, $v);
        }};
    }
    macro_rules! i {
        ($i:expr, $v:expr) => {{
            key!($i);
            put_i64(out, $v);
        }};
    }
    macro_rules! o {
        ($i:expr, $v:expr) => {{
            key!($i);
            put_opt(out, $v);
        }};
    }
    u!(0, r.schema_version);
    s!(1, r.agent_id);
    u!(2, r.seq);
    s!(3, r.link_id);
    u!(4, r.sampling_rate);
    u!(5, r.ip_version);
    s!(6, r.src_ip);
    u!(7, r.src_port);
    s!(8, r.dst_ip);
    u!(9, r.dst_port);
    u!(10, r.protocol);
    u!(11, r.vlan);
    i!(12, r.first_ns);
    i!(13, r.last_ns);
    i!(14, r.export_ns);
    s!(15, r.end_reason);
    u!(16, r.bytes_fwd);
    u!(17, r.packets_fwd);
    u!(18, r.bytes_rev);
    u!(19, r.packets_rev);
    u!(20, r.tcp_flags_fwd);
    u!(21, r.tcp_flags_rev);
    u!(22, r.retrans_fwd);
    u!(23, r.retrans_rev);
    o!(24, r.hs_rtt_ext_us);
    o!(25, r.hs_rtt_int_us);
    for (n, s) in r.sums.iter().enumerate() {
        let k = 26 + 5 * n;
        u!(k, s.count);
        o!(k + 1, s.min_us);
        o!(k + 2, s.max_us);
        i!(k + 3, s.sum_us);
        key!(k + 4);
        put_hist(out, s.hist);
    }
    s!(41, r.direction);
    s!(42, r.partner);
    s!(43, r.remote_country);
    u!(44, r.remote_asn);
    s!(45, r.sampling_mode);
    s!(46, r.exporter);
    u!(47, r.in_if);
    u!(48, r.out_if);
    u!(49, r.src_asn);
    u!(50, r.dst_asn);
    s!(51, r.next_hop);
    u!(52, r.one_way);
    u!(53, r.dscp);
    s!(54, r.app_class);
    out.push(b'}');
}

/// The Kafka key of `ingest.producer.flow_key`: "src/sport>dst/dport/proto".
pub fn key(out: &mut Vec<u8>, r: &Record<'_>) {
    out.extend_from_slice(r.src_ip.as_bytes());
    out.push(b'/');
    put_u64(out, r.src_port);
    out.push(b'>');
    out.extend_from_slice(r.dst_ip.as_bytes());
    out.push(b'/');
    put_u64(out, r.dst_port);
    out.push(b'/');
    put_u64(out, r.protocol);
}

/// Text of a 4- or 16-byte address, as glibc's inet_ntop writes it (RFC 5952 zero compression, first longest
/// run of two or more zero groups; dotted quad for IPv4-compatible ::a.b.c.d and IPv4-mapped ::ffff:a.b.c.d).
pub fn ip_text(buf: &mut String, a: &[u8]) {
    buf.clear();
    if a.len() == 4 {
        dotted(buf, a);
        return;
    }
    let mut w = [0u16; 8];
    for (i, g) in w.iter_mut().enumerate() {
        *g = u16::from_be_bytes([a[2 * i], a[2 * i + 1]]);
    }
    // longest run of zero groups (first on a tie), kept only when at least two long
    let (mut best, mut best_len, mut cur, mut cur_len) = (usize::MAX, 0, 0, 0);
    for (i, &g) in w.iter().enumerate() {
        if g == 0 {
            if cur_len == 0 {
                cur = i;
            }
            cur_len += 1;
            if cur_len > best_len {
                best = cur;
                best_len = cur_len;
            }
        } else {
            cur_len = 0;
        }
    }
    if best_len < 2 {
        best = usize::MAX;
    }
    let mut i = 0;
    while i < 8 {
        if i == best {
            if i == 0 {
                buf.push(':');
            }
            buf.push(':');
            i += best_len;
            continue;
        }
        if i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)) {
            dotted(buf, &a[12..16]);
            return;
        }
        hex_group(buf, w[i]);
        if i < 7 {
            buf.push(':');
        }
        i += 1;
    }
}

fn dotted(buf: &mut String, a: &[u8]) {
    for (i, &o) in a.iter().enumerate() {
        if i > 0 {
            buf.push('.');
        }
        if o >= 100 {
            buf.push((b'0' + o / 100) as char);
        }
        if o >= 10 {
            buf.push((b'0' + o / 10 % 10) as char);
        }
        buf.push((b'0' + o % 10) as char);
    }
}

fn hex_group(buf: &mut String, g: u16) {
    let mut started = false;
    for shift in [12, 8, 4, 0] {
        let d = (g >> shift) & 15;
        if d != 0 || started || shift == 0 {
            buf.push(HEX[d as usize] as char);
            started = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(a: &[u8]) -> String {
        let mut s = String::new();
        ip_text(&mut s, a);
        s
    }

    fn v6(s: &str) -> [u8; 16] {
        s.parse::<std::net::Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn addresses_as_glibc_writes_them() {
        assert_eq!(text(&[10, 0, 0, 255]), "10.0.0.255");
        assert_eq!(text(&[0, 9, 99, 100]), "0.9.99.100");
        for (a, want) in [
            ("::", "::"),
            ("::1", "::1"),
            ("1::", "1::"),
            ("2001:db8::1", "2001:db8::1"),
            ("2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"),
            ("2001:0:0:1:0:0:1:1", "2001::1:0:0:1:1"),
            ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("::1.2.3.4", "::1.2.3.4"),
            ("::ffff:0:1", "::ffff:0.0.0.1"),
            ("::0:ffff:1:2", "::ffff:0.1.0.2"),
            ("::1:0:0:0:0", "0:0:0:1::"),
            ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"),
            ("fe80::abcd", "fe80::abcd"),
        ] {
            assert_eq!(text(&v6(a)), want, "{a}");
        }
    }

    #[test]
    fn strings_escape_as_orjson() {
        let mut out = Vec::new();
        put_str(&mut out, "a\"b\\c\n\u{1}\u{7f}é\u{8}\u{c}");
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001\u{7f}é\\b\\f\"".as_bytes());
    }

    #[test]
    fn integers() {
        let mut out = Vec::new();
        put_i64(&mut out, i64::MIN);
        out.push(b' ');
        put_u64(&mut out, u64::MAX);
        out.push(b' ');
        put_u64(&mut out, 0);
        assert_eq!(out, b"-9223372036854775808 18446744073709551615 0");
    }
}
