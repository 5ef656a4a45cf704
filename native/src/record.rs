//! FlowRecord v1 as Kafka bytes: exactly what `schemas.codec.encode` (orjson of `to_dict`) writes for the same
//! record (field order of FLOW_RECORD_FIELDS, compact separators, raw UTF-8, orjson's escapes, histogram bins as
//! {"b":..,"c":..}), and the Kafka key of `ingest.producer.flow_key`. Addresses are written as glibc's
//! `inet_ntop` writes them (what `ingest.flowkey.ip_text` calls).

/// The field names in wire order (`FIELDS`) and each one's JSON key as the encoder writes it after the previous
/// value (`KEYS`: `,"name":`), both from one list: a new field is one line here plus its value in `encode`.
macro_rules! wire_fields {
    ($n:literal; $($name:literal,)*) => {
        /// The field names in wire order. The engine refuses to start unless Python's FLOW_RECORD_FIELDS lists the same.
        pub const FIELDS: [&str; $n] = [$($name,)*];
        const KEYS: [&str; $n] = [$(concat!(",\"", $name, "\":"),)*];
    };
}

wire_fields!(55;
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
);

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

use std::mem::MaybeUninit;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `c` must be escaped in a JSON string (orjson: `"`, `\` and the control characters).
#[inline]
fn needs_escape(c: u8) -> bool {
    c < 0x20 || c == b'"' || c == b'\\'
}

/// A JSON string as orjson writes it: `"` and `\` escaped, control characters as \b \t \n \f \r or \u00XX,
/// everything else (DEL and non-ASCII included) as raw UTF-8.
#[inline]
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.push(b'"');
    if !b.iter().any(|&c| needs_escape(c)) {
        // the usual case (names, addresses): one copy
        out.extend_from_slice(b);
        out.push(b'"');
        return;
    }
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

/// "00" .. "99": two digits per division.
const DIGITS2: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

#[inline]
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    if v < 10 {
        out.push(b'0' + v as u8);
        return;
    }
    with_cur(out, 20, |c| c.digits(v));
}

#[inline]
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    put_u64(out, v.unsigned_abs());
}

#[inline]
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

/// The latency fields (hs_rtt_ext_us .. dns_rtt_hist) of a record without any RTT, as the general path writes
/// them: export records and most capture records are this constant text.
fn no_rtt_text() -> &'static [u8] {
    static TEXT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let mut out = Vec::new();
        put_rtt(&mut out, &Record::default());
        out
    })
}

fn has_rtt(r: &Record<'_>) -> bool {
    r.hs_rtt_ext_us.is_some()
        || r.hs_rtt_int_us.is_some()
        || r.sums.iter().any(|s| *s != Summary::default())
}

/// Fields 24 ..= 40 (the latency block), each with its key.
fn put_rtt(out: &mut Vec<u8>, r: &Record<'_>) {
    out.extend_from_slice(KEYS[24].as_bytes());
    put_opt(out, r.hs_rtt_ext_us);
    out.extend_from_slice(KEYS[25].as_bytes());
    put_opt(out, r.hs_rtt_int_us);
    for (n, s) in r.sums.iter().enumerate() {
        let k = 26 + 5 * n;
        out.extend_from_slice(KEYS[k].as_bytes());
        put_u64(out, s.count);
        out.extend_from_slice(KEYS[k + 1].as_bytes());
        put_opt(out, s.min_us);
        out.extend_from_slice(KEYS[k + 2].as_bytes());
        put_opt(out, s.max_us);
        out.extend_from_slice(KEYS[k + 3].as_bytes());
        put_i64(out, s.sum_us);
        out.extend_from_slice(KEYS[k + 4].as_bytes());
        put_hist(out, s.hist);
    }
}

/// `v` < 100 as two digits.
#[inline(always)]
fn put2(dst: &mut [MaybeUninit<u8>], v: u32) {
    let d = v as usize * 2;
    dst.write_copy_of_slice(&DIGITS2[d..d + 2]);
}

/// `v` < 10000 as four digits.
#[inline(always)]
fn put4(dst: &mut [MaybeUninit<u8>], v: u32) {
    put2(&mut dst[..2], v / 100);
    put2(&mut dst[2..], v % 100);
}

/// A cursor over capacity reserved for one record: the encoder's writes go through a local index, with no
/// capacity check and no length update per write (the record's worst case is reserved once, `encode`).
struct Cur<'a> {
    buf: &'a mut [MaybeUninit<u8>],
    i: usize,
}

impl Cur<'_> {
    #[inline(always)]
    fn put(&mut self, b: &[u8]) {
        self.buf[self.i..self.i + b.len()].write_copy_of_slice(b);
        self.i += b.len();
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.buf[self.i].write(b);
        self.i += 1;
    }

    #[inline(always)]
    fn u64(&mut self, v: u64) {
        if v < 10 {
            self.byte(b'0' + v as u8);
        } else {
            self.digits(v);
        }
    }

    /// `v` >= 10, written from its last digit: eight-digit pieces split off in 64 bits (nanosecond times have
    /// 19 digits), each split in two four-digit halves and those in two-digit pairs, so the divisions of a piece
    /// do not wait on each other (a chain of four divisions by 100 was the encoder's slowest part).
    fn digits(&mut self, v: u64) {
        let n = v.ilog10() as usize + 1;
        let dst = &mut self.buf[self.i..self.i + n];
        let (mut v, mut i) = (v, n);
        while v >= 100_000_000 {
            let lo = (v % 100_000_000) as u32;
            v /= 100_000_000;
            i -= 8;
            put4(&mut dst[i..i + 4], lo / 10_000);
            put4(&mut dst[i + 4..i + 8], lo % 10_000);
        }
        let mut v = v as u32;
        if v >= 10_000 {
            i -= 4;
            put4(&mut dst[i..i + 4], v % 10_000);
            v /= 10_000;
        }
        if v >= 100 {
            i -= 2;
            put2(&mut dst[i..i + 2], v % 100);
            v /= 100;
        }
        if v >= 10 {
            put2(&mut dst[i - 2..i], v);
        } else {
            dst[i - 1].write(b'0' + v as u8);
        }
        self.i += n;
    }

    /// A time in nanoseconds: as `i64`, the seconds of a 19-digit one (from 2001-09-09 on) from `secs`.
    #[inline(always)]
    fn ns(&mut self, v: i64, secs: &mut Seconds) {
        const E9: i64 = 1_000_000_000;
        if v < E9 * E9 {
            self.i64(v);
            return;
        }
        self.put(secs.text((v / E9) as u64));
        let f = (v % E9) as u32;
        self.byte(b'0' + (f / 100_000_000) as u8);
        let lo = f % 100_000_000;
        let dst = &mut self.buf[self.i..self.i + 8];
        put4(&mut dst[..4], lo / 10_000);
        put4(&mut dst[4..], lo % 10_000);
        self.i += 8;
    }

    #[inline(always)]
    fn i64(&mut self, v: i64) {
        if v < 0 {
            self.byte(b'-');
        }
        self.u64(v.unsigned_abs());
    }

    #[inline(always)]
    fn str(&mut self, s: &str) {
        let b = s.as_bytes();
        if b.iter().any(|&c| needs_escape(c)) {
            let mut tmp = Vec::with_capacity(b.len() * 6 + 2);
            put_str(&mut tmp, s);
            self.put(&tmp);
        } else {
            self.byte(b'"');
            self.put(b);
            self.byte(b'"');
        }
    }
}

/// An upper bound of `r`'s encoded length: every key, every number at 20 digits and a sign, every string at 6
/// bytes a character (\u00XX) plus quotes, every histogram bin at two numbers and its braces.
fn max_len(r: &Record<'_>) -> usize {
    const PER_FIELD: usize = 4 + 21; // ,"": and the longest number or null
    let names: usize = FIELDS.iter().map(|f| f.len()).sum::<usize>();
    let strs = [
        r.agent_id,
        r.link_id,
        r.src_ip,
        r.dst_ip,
        r.end_reason,
        r.direction,
        r.partner,
        r.remote_country,
        r.sampling_mode,
        r.exporter,
        r.next_hop,
        r.app_class,
    ];
    let text: usize = strs.iter().map(|s| 6 * s.len() + 2).sum();
    let bins: usize = r.sums.iter().map(|s| s.hist.len() * (2 * 20 + 12)).sum();
    2 + names + FIELDS.len() * PER_FIELD + text + bins
}

/// The texts of the whole seconds of the last two nanosecond times written: the flow times of a batch's records
/// share their seconds and the export time has its own, so the first ten of their 19 digits are copied, not
/// worked out again (the digits were the encoder's largest cost).
#[derive(Default)]
pub struct Seconds {
    slots: [(u64, [u8; 10]); 2], // (seconds, their ten digits); seconds 0: empty
    next: usize,
}

impl Seconds {
    /// The ten digits of `secs` (1e9 <= `secs` <= i64::MAX / 1e9), from a slot or written into the older one.
    #[inline]
    fn text(&mut self, secs: u64) -> &[u8; 10] {
        if let Some(i) = self.slots.iter().position(|s| s.0 == secs) {
            return &self.slots[i].1;
        }
        let i = self.next;
        self.next ^= 1;
        let (mut v, slot) = (secs, &mut self.slots[i]);
        for d in slot.1.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        slot.0 = secs;
        &slot.1
    }
}

/// Appends `rec` as one compact JSON object (no newline).
pub fn encode(out: &mut Vec<u8>, r: &Record<'_>) {
    encode_with(out, r, &mut Seconds::default());
}

/// `encode`, with the seconds of the times written before (`Seconds`).
pub fn encode_with(out: &mut Vec<u8>, r: &Record<'_>, secs: &mut Seconds) {
    with_cur(out, max_len(r), |c| encode_into(c, r, secs));
}

fn encode_into(c: &mut Cur<'_>, r: &Record<'_>, secs: &mut Seconds) {
    // each key is a constant (`KEYS[i]` with a literal i): copied inline
    macro_rules! u {
        ($i:expr, $v:expr) => {{
            c.put(KEYS[$i].as_bytes());
            c.u64($v);
        }};
    }
    macro_rules! s {
        ($i:expr, $v:expr) => {{
            c.put(KEYS[$i].as_bytes());
            c.str($v);
        }};
    }
    macro_rules! t {
        ($i:expr, $v:expr) => {{
            c.put(KEYS[$i].as_bytes());
            c.ns($v, secs);
        }};
    }
    c.byte(b'{');
    c.put(&KEYS[0].as_bytes()[1..]);
    c.u64(r.schema_version);
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
    t!(12, r.first_ns);
    t!(13, r.last_ns);
    t!(14, r.export_ns);
    s!(15, r.end_reason);
    u!(16, r.bytes_fwd);
    u!(17, r.packets_fwd);
    u!(18, r.bytes_rev);
    u!(19, r.packets_rev);
    u!(20, r.tcp_flags_fwd);
    u!(21, r.tcp_flags_rev);
    u!(22, r.retrans_fwd);
    u!(23, r.retrans_rev);
    if has_rtt(r) {
        let mut tmp = Vec::new();
        put_rtt(&mut tmp, r);
        c.put(&tmp);
    } else {
        c.put(no_rtt_text());
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
    c.byte(b'}');
}

/// Appends what `write` writes through a cursor over `bound` bytes of reserved capacity (it panics, never
/// writes, past them).
#[inline]
fn with_cur(out: &mut Vec<u8>, bound: usize, write: impl FnOnce(&mut Cur<'_>)) {
    out.reserve(bound);
    let len = out.len();
    let mut c = Cur {
        buf: &mut out.spare_capacity_mut()[..bound],
        i: 0,
    };
    write(&mut c);
    let n = c.i;
    // SAFETY: the cursor wrote every one of the `n` bytes after `len` (it only advances past what it wrote),
    // inside the capacity reserved above
    unsafe { out.set_len(len + n) };
}

/// The Kafka key of `ingest.producer.flow_key`: "src/sport>dst/dport/proto".
pub fn key(out: &mut Vec<u8>, r: &Record<'_>) {
    // one reservation for the whole key: three numbers at 20 digits, four separators
    let bound = r.src_ip.len() + r.dst_ip.len() + 3 * 20 + 4;
    with_cur(out, bound, |c| {
        c.put(r.src_ip.as_bytes());
        c.byte(b'/');
        c.u64(r.src_port);
        c.byte(b'>');
        c.put(r.dst_ip.as_bytes());
        c.byte(b'/');
        c.u64(r.dst_port);
        c.byte(b'/');
        c.u64(r.protocol);
    });
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

/// The dotted quad of `a`'s four bytes, built in a stack buffer and appended at once (one capacity check for
/// the address, not one per character).
fn dotted(buf: &mut String, a: &[u8]) {
    let mut t = [0u8; 15];
    let mut n = 0;
    for (i, &o) in a[..4].iter().enumerate() {
        if i > 0 {
            t[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            t[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            t[n] = b'0' + o / 10 % 10;
            n += 1;
        }
        t[n] = b'0' + o % 10;
        n += 1;
    }
    // SAFETY: only ASCII digits and dots were written
    buf.push_str(unsafe { std::str::from_utf8_unchecked(&t[..n]) });
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
    fn nanosecond_times_with_remembered_seconds() {
        // records encoded one after another through one `Seconds` (two slots, three times a record, seconds
        // shared, alternating and new; zero, negative and short values, every fraction width) against the
        // decimal text of each value
        let mut secs = Seconds::default();
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut vals = vec![
            0i64,
            -1,
            999_999_999_999_999_999,
            1_000_000_000_000_000_000,
            i64::MAX,
            i64::MIN,
        ];
        for k in 0..30_000i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base =
                [1_700_000_000, 1_700_000_001, 1_000_000_000, 9_223_372_035][(k % 4) as usize];
            let frac =
                [0, 1, 99_999_999, 100_000_000, (x % 1_000_000_000) as i64][(k % 5) as usize];
            vals.push(base * 1_000_000_000 + frac);
            vals.push((x >> (k % 64)) as i64);
        }
        for w in vals.chunks(3) {
            let r = Record {
                first_ns: w[0],
                last_ns: w.get(1).copied().unwrap_or(0),
                export_ns: w.get(2).copied().unwrap_or(0),
                ..Record::default()
            };
            let mut out = Vec::new();
            encode_with(&mut out, &r, &mut secs);
            let text = String::from_utf8(out).unwrap();
            let want = format!(
                "\"first_ns\":{},\"last_ns\":{},\"export_ns\":{},",
                r.first_ns, r.last_ns, r.export_ns
            );
            assert!(text.contains(&want), "{want}");
        }
    }

    #[test]
    fn encoded_integers_at_every_width() {
        let mut p = 1u64;
        for _ in 0..20 {
            for v in [
                p - 1,
                p,
                p + 1,
                p.saturating_mul(9),
                p.saturating_mul(7) / 3,
            ] {
                let r = Record {
                    seq: v,
                    first_ns: -(v.min(i64::MAX as u64) as i64),
                    ..Record::default()
                };
                let mut out = Vec::new();
                encode(&mut out, &r);
                let text = String::from_utf8(out).unwrap();
                assert!(text.contains(&format!(",\"seq\":{v},")), "{v}");
                assert!(
                    text.contains(&format!(",\"first_ns\":{},", r.first_ns)),
                    "{v}"
                );
            }
            p = p.saturating_mul(10);
        }
        let mut out = Vec::new();
        encode(
            &mut out,
            &Record {
                seq: u64::MAX,
                ..Record::default()
            },
        );
        assert!(String::from_utf8(out)
            .unwrap()
            .contains(&format!(",\"seq\":{},", u64::MAX)));
    }

    #[test]
    fn widest_record_fits_its_bound() {
        let h: Vec<(u64, u64)> = (0..50).map(|_| (u64::MAX, u64::MAX)).collect();
        let esc = "\u{1}".repeat(40);
        let sum = Summary {
            count: u64::MAX,
            min_us: Some(i64::MIN),
            max_us: Some(i64::MIN),
            sum_us: i64::MIN,
            hist: &h,
        };
        let r = Record {
            seq: u64::MAX,
            first_ns: i64::MIN,
            last_ns: i64::MIN,
            export_ns: i64::MIN,
            bytes_fwd: u64::MAX,
            hs_rtt_ext_us: Some(i64::MIN),
            hs_rtt_int_us: Some(i64::MIN),
            agent_id: &esc,
            next_hop: &esc,
            app_class: &esc,
            sums: [sum.clone(), sum.clone(), sum],
            ..Record::default()
        };
        let mut out = vec![b'x'];
        encode(&mut out, &r);
        assert!(out.len() - 1 <= max_len(&r));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("x{\"schema_version\":0,\"agent_id\":\"\\u0001"));
        let last = format!(
            ",\"one_way\":0,\"dscp\":0,\"app_class\":\"{}\"}}",
            "\\u0001".repeat(40)
        );
        assert!(text.ends_with(&last));
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
        // every digit count, at and around each power of ten
        let mut p = 1u64;
        for _ in 0..20 {
            for v in [p - 1, p, p + 1, p.saturating_mul(9)] {
                let mut out = Vec::new();
                put_u64(&mut out, v);
                assert_eq!(out, v.to_string().as_bytes(), "{v}");
            }
            p = p.saturating_mul(10);
        }
        // pseudo-random values of every magnitude (every length, every digit in every position)
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for k in 0..200_000u32 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let v = x >> (k % 64);
            let mut out = Vec::new();
            put_u64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes(), "{v}");
        }
    }

    #[test]
    fn latency_block_constant_is_the_general_text() {
        let h = [(3u64, 4u64)];
        let mut with = Record::default();
        with.sums[1].hist = &h;
        assert!(has_rtt(&with) && !has_rtt(&Record::default()));
        let mut general = Vec::new();
        put_rtt(&mut general, &Record::default());
        assert_eq!(no_rtt_text(), &general[..]);
        let text = String::from_utf8(general).unwrap();
        assert!(
            text.starts_with(",\"hs_rtt_ext_us\":null,") && text.ends_with("\"dns_rtt_hist\":[]")
        );
        // a record with any latency value takes the general path
        let mut out = Vec::new();
        encode(&mut out, &with);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("\"icmp_rtt_hist\":[{\"b\":3,\"c\":4}]"));
    }
}
