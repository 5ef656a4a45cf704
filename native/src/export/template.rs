//! NetFlow v9 and IPFIX: templates per (exporter, observation domain / source id, template id), their
//! refresh and IPFIX withdrawal, options templates carrying the sampling interval, variable-length and
//! enterprise fields (skipped by length), then data records read through their template.

use hashbrown::HashMap;

use super::netflow5::uptime_ns;
use super::{
    be, be16, be32, Addr, ExpRec, K_IPFIX, K_NETFLOW9, R_BAD_LENGTH, R_BAD_RECORD, R_BAD_TEMPLATE,
    R_NO_TEMPLATE, R_TEMPLATE_LIMIT, R_TRUNCATED,
};

const MAX_FIELDS: usize = 512;
const VARLEN: u16 = 65535;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TKey {
    pub exporter: Addr,
    pub ipfix: bool,
    pub domain: u32,
    pub id: u16,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Field {
    pub id: u16,
    pub ent: u32,
    pub len: u16,
}

/// A template compiled once, when it arrives: with no variable-length field every record has the same layout,
/// so a data record is read as (offset, length, information element) steps over the fields a flow record uses,
/// with one bounds check per record; enterprise fields are not in the plan at all.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Template {
    pub fields: Vec<Field>,
    pub scope: u16,
    pub options: bool,
    pub min_len: usize,
    /// Some(record length) when no field is variable-length.
    pub fixed_len: Option<usize>,
    /// For fixed layouts: (offset in the record, length, IANA element id) of each IANA field.
    pub plan: Vec<(u16, u16, u16)>,
}

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Domain {
    pub sampling: u32,
    pub sys_init_ms: u64,
}

#[derive(Default)]
pub struct Store {
    pub templates: HashMap<TKey, Template>,
    pub per_exporter: HashMap<Addr, usize>,
    pub domains: HashMap<(Addr, bool, u32), Domain>,
}

impl Store {
    fn insert(&mut self, k: TKey, t: Template, limit: usize) -> Result<(), u8> {
        let n = self.per_exporter.entry(k.exporter).or_insert(0);
        if !self.templates.contains_key(&k) {
            if *n >= limit {
                return Err(R_TEMPLATE_LIMIT);
            }
            *n += 1;
        }
        self.templates.insert(k, t);
        Ok(())
    }

    fn withdraw(&mut self, exporter: Addr, domain: u32, id: u16) {
        let before = self.templates.len();
        if id == 2 || id == 3 {
            // all (options) templates of the domain
            let opts = id == 3;
            self.templates.retain(|k, t| {
                !(k.exporter == exporter && k.ipfix && k.domain == domain && t.options == opts)
            });
        } else {
            self.templates.remove(&TKey {
                exporter,
                ipfix: true,
                domain,
                id,
            });
        }
        let gone = before - self.templates.len();
        if let Some(n) = self.per_exporter.get_mut(&exporter) {
            *n = n.saturating_sub(gone);
        }
    }

    /// An exporter's templates and sampling state, to persist (see `load`).
    pub fn save(&self, exporter: Addr) -> Vec<u8> {
        let mut o = Vec::new();
        let mut keys: Vec<(&TKey, &Template)> = self
            .templates
            .iter()
            .filter(|(k, _)| k.exporter == exporter)
            .collect();
        keys.sort_by_key(|(k, _)| (k.ipfix, k.domain, k.id));
        for (k, t) in keys {
            o.push(1u8);
            o.push(k.ipfix as u8);
            o.extend_from_slice(&k.domain.to_be_bytes());
            o.extend_from_slice(&k.id.to_be_bytes());
            o.push(t.options as u8);
            o.extend_from_slice(&t.scope.to_be_bytes());
            o.extend_from_slice(&(t.fields.len() as u16).to_be_bytes());
            for f in &t.fields {
                o.extend_from_slice(&f.id.to_be_bytes());
                o.extend_from_slice(&f.ent.to_be_bytes());
                o.extend_from_slice(&f.len.to_be_bytes());
            }
        }
        let mut doms: Vec<(&(Addr, bool, u32), &Domain)> = self
            .domains
            .iter()
            .filter(|(k, _)| k.0 == exporter)
            .collect();
        doms.sort_by_key(|(k, _)| (k.1, k.2));
        for ((_, ipfix, domain), d) in doms {
            o.push(2u8);
            o.push(*ipfix as u8);
            o.extend_from_slice(&domain.to_be_bytes());
            o.extend_from_slice(&d.sampling.to_be_bytes());
            o.extend_from_slice(&d.sys_init_ms.to_be_bytes());
        }
        o
    }

    /// Restore what `save` wrote; a damaged file is refused whole (the next refresh brings templates back).
    pub fn load(&mut self, exporter: Addr, d: &[u8], limit: usize) -> Result<usize, String> {
        let bad = || "damaged template file".to_string();
        let mut tpls = Vec::new();
        let mut doms = Vec::new();
        let mut o = 0usize;
        while o < d.len() {
            match d[o] {
                1 => {
                    let ipfix = *d.get(o + 1).ok_or_else(bad)? != 0;
                    let domain = be32(d, o + 2).ok_or_else(bad)?;
                    let id = be16(d, o + 6).ok_or_else(bad)?;
                    let options = *d.get(o + 8).ok_or_else(bad)? != 0;
                    let scope = be16(d, o + 9).ok_or_else(bad)?;
                    let n = be16(d, o + 11).ok_or_else(bad)? as usize;
                    o += 13;
                    let mut fields = Vec::with_capacity(n.min(MAX_FIELDS));
                    for _ in 0..n {
                        let id = be16(d, o).ok_or_else(bad)?;
                        let ent = be32(d, o + 2).ok_or_else(bad)?;
                        let len = be16(d, o + 6).ok_or_else(bad)?;
                        fields.push(Field { id, ent, len });
                        o += 8;
                    }
                    let t = make(fields, scope, options).map_err(|_| bad())?;
                    tpls.push((
                        TKey {
                            exporter,
                            ipfix,
                            domain,
                            id,
                        },
                        t,
                    ));
                }
                2 => {
                    let ipfix = *d.get(o + 1).ok_or_else(bad)? != 0;
                    let domain = be32(d, o + 2).ok_or_else(bad)?;
                    let sampling = be32(d, o + 6).ok_or_else(bad)?;
                    let sys_init_ms = be(d, o + 10, 8).ok_or_else(bad)?;
                    doms.push((
                        (exporter, ipfix, domain),
                        Domain {
                            sampling,
                            sys_init_ms,
                        },
                    ));
                    o += 18;
                }
                _ => return Err(bad()),
            }
        }
        let n = tpls.len();
        for (k, t) in tpls {
            // templates that arrived meanwhile are newer than the file's
            if !self.templates.contains_key(&k) {
                self.insert(k, t, limit)
                    .map_err(|_| "template limit reached".to_string())?;
            }
        }
        for (k, v) in doms {
            self.domains.entry(k).or_insert(v);
        }
        Ok(n)
    }
}

fn make(fields: Vec<Field>, scope: u16, options: bool) -> Result<Template, u8> {
    if fields.is_empty() || fields.len() > MAX_FIELDS || scope as usize > fields.len() {
        return Err(R_BAD_TEMPLATE);
    }
    let mut min_len = 0usize;
    let mut plan = Vec::new();
    for f in &fields {
        if f.len == 0 {
            return Err(R_BAD_TEMPLATE);
        }
        // offsets fit u16: at most MAX_FIELDS fixed fields of a set (itself under 64 KiB) are planned
        if let Some(id) = element(f) {
            if f.len != VARLEN && min_len <= u16::MAX as usize {
                plan.push((min_len as u16, f.len, id));
            }
        }
        min_len += if f.len == VARLEN { 1 } else { f.len as usize };
    }
    let fixed = !fields.iter().any(|f| f.len == VARLEN) && min_len <= u16::MAX as usize;
    Ok(Template {
        fields,
        scope,
        options,
        min_len,
        fixed_len: fixed.then_some(min_len),
        plan: if fixed { plan } else { Vec::new() },
    })
}

/// Read `count` field specifiers at `o`; IPFIX ones may carry an enterprise number.
fn field_specs(
    s: &[u8],
    mut o: usize,
    count: usize,
    ipfix: bool,
) -> Result<(Vec<Field>, usize), u8> {
    if count > MAX_FIELDS {
        return Err(R_BAD_TEMPLATE);
    }
    let mut fields = Vec::with_capacity(count);
    for _ in 0..count {
        let raw = be16(s, o).ok_or(R_BAD_TEMPLATE)?;
        let len = be16(s, o + 2).ok_or(R_BAD_TEMPLATE)?;
        o += 4;
        let (id, ent) = if ipfix && raw & 0x8000 != 0 {
            let e = be32(s, o).ok_or(R_BAD_TEMPLATE)?;
            o += 4;
            (raw & 0x7fff, e)
        } else {
            (raw, 0)
        };
        if len == VARLEN && !ipfix {
            return Err(R_BAD_TEMPLATE);
        }
        fields.push(Field { id, ent, len });
    }
    Ok((fields, o))
}

struct Msg {
    exporter: Addr,
    ipfix: bool,
    domain: u32,
    export_ns: i64,
    uptime_ms: u32,
}

/// Decode one NetFlow v9 datagram or one or more IPFIX messages (back to back) of `d`.
pub fn decode(
    st: &mut Store,
    limit: usize,
    exporter: Addr,
    ipfix: bool,
    d: &[u8],
    out: &mut Vec<ExpRec>,
    errs: &mut Vec<u8>,
) -> Result<(), u8> {
    if !ipfix {
        if d.len() < 20 {
            return Err(R_TRUNCATED);
        }
        let m = Msg {
            exporter,
            ipfix,
            domain: be32(d, 16).ok_or(R_TRUNCATED)?,
            export_ns: be32(d, 8).ok_or(R_TRUNCATED)? as i64 * 1_000_000_000,
            uptime_ms: be32(d, 4).ok_or(R_TRUNCATED)?,
        };
        // the v9 header's count is often wrong (it counts records, some exporters count sets): sets are walked
        sets(st, limit, &m, &d[20..], out, errs);
        return Ok(());
    }
    let mut o = 0usize;
    while o < d.len() {
        let m = &d[o..];
        if m.len() < 16 {
            return Err(R_TRUNCATED);
        }
        if be16(m, 0) != Some(10) {
            return Err(R_BAD_LENGTH);
        }
        let len = be16(m, 2).ok_or(R_TRUNCATED)? as usize;
        if len < 16 {
            return Err(R_BAD_LENGTH);
        }
        if len > m.len() {
            return Err(R_TRUNCATED);
        }
        let h = Msg {
            exporter,
            ipfix,
            domain: be32(m, 12).ok_or(R_TRUNCATED)?,
            export_ns: be32(m, 4).ok_or(R_TRUNCATED)? as i64 * 1_000_000_000,
            uptime_ms: 0,
        };
        sets(st, limit, &h, &m[16..len], out, errs);
        o += len;
    }
    Ok(())
}

fn sets(
    st: &mut Store,
    limit: usize,
    m: &Msg,
    mut d: &[u8],
    out: &mut Vec<ExpRec>,
    errs: &mut Vec<u8>,
) {
    while d.len() >= 4 {
        let id = be16(d, 0).unwrap_or(0);
        let len = be16(d, 2).unwrap_or(0) as usize;
        if len < 4 || len > d.len() {
            errs.push(if len > d.len() {
                R_TRUNCATED
            } else {
                R_BAD_LENGTH
            });
            return;
        }
        let body = &d[4..len];
        let r = match (m.ipfix, id) {
            (false, 0) | (true, 2) => templates(st, limit, m, body, false),
            (false, 1) | (true, 3) => templates(st, limit, m, body, true),
            (_, id) if id >= 256 => data(st, m, id, body, out),
            _ => Ok(()), // reserved set ids: skipped by length
        };
        if let Err(e) = r {
            errs.push(e);
        }
        d = &d[len..];
    }
}

fn templates(st: &mut Store, limit: usize, m: &Msg, s: &[u8], options: bool) -> Result<(), u8> {
    let mut o = 0usize;
    // v9 pads sets to 4 bytes; the smallest template record is longer than any padding
    while s.len() - o >= if options && !m.ipfix { 6 } else { 4 } {
        let tid = be16(s, o).ok_or(R_BAD_TEMPLATE)?;
        let (fields, scope, next) = if !m.ipfix && options {
            let scope_len = be16(s, o + 2).ok_or(R_BAD_TEMPLATE)? as usize;
            let opt_len = be16(s, o + 4).ok_or(R_BAD_TEMPLATE)? as usize;
            if !scope_len.is_multiple_of(4) || !opt_len.is_multiple_of(4) {
                return Err(R_BAD_TEMPLATE);
            }
            let (f, next) = field_specs(s, o + 6, (scope_len + opt_len) / 4, false)?;
            (f, (scope_len / 4) as u16, next)
        } else {
            let count = be16(s, o + 2).ok_or(R_BAD_TEMPLATE)? as usize;
            if count == 0 {
                if !m.ipfix {
                    return Err(R_BAD_TEMPLATE);
                }
                st.withdraw(m.exporter, m.domain, tid);
                o += 4;
                continue;
            }
            let (scope, start) = if options {
                (be16(s, o + 4).ok_or(R_BAD_TEMPLATE)?, o + 6)
            } else {
                (0, o + 4)
            };
            if options && scope == 0 {
                return Err(R_BAD_TEMPLATE);
            }
            let (f, next) = field_specs(s, start, count, m.ipfix)?;
            (f, scope, next)
        };
        if tid < 256 {
            return Err(R_BAD_TEMPLATE);
        }
        let t = make(fields, scope, options)?;
        let k = TKey {
            exporter: m.exporter,
            ipfix: m.ipfix,
            domain: m.domain,
            id: tid,
        };
        st.insert(k, t, limit)?;
        o = next;
    }
    Ok(())
}

fn data(st: &mut Store, m: &Msg, tid: u16, s: &[u8], out: &mut Vec<ExpRec>) -> Result<(), u8> {
    let k = TKey {
        exporter: m.exporter,
        ipfix: m.ipfix,
        domain: m.domain,
        id: tid,
    };
    let Some(t) = st.templates.get(&k) else {
        return Err(R_NO_TEMPLATE);
    };
    let dkey = (m.exporter, m.ipfix, m.domain);
    // the domain's sampling state is read once per set (options records change it only for options sets)
    let dom = if t.options {
        Domain::default()
    } else {
        st.domains.get(&dkey).copied().unwrap_or_default()
    };
    let mut o = 0usize;
    while s.len() - o >= t.min_len {
        let mut rec = Reader::default();
        if let Some(n) = t.fixed_len {
            let r = &s[o..o + n];
            for &(off, len, id) in &t.plan {
                rec.field(id, &r[off as usize..off as usize + len as usize]);
            }
            o += n;
        } else {
            o = read_varlen(t, s, o, &mut rec)?;
        }
        if t.options {
            let dom = st.domains.entry(dkey).or_default();
            if let Some(r) = rec.sampling() {
                dom.sampling = r;
            }
            if rec.sys_init_ms != 0 {
                dom.sys_init_ms = rec.sys_init_ms;
            }
            continue;
        }
        match rec.finish(m, &dom) {
            Some(r) => out.push(r),
            None => return Err(R_BAD_RECORD),
        }
    }
    Ok(())
}

/// One record of a template with variable-length fields, read field by field from `o`; returns its end.
fn read_varlen(t: &Template, s: &[u8], mut o: usize, rec: &mut Reader) -> Result<usize, u8> {
    for f in &t.fields {
        let mut len = f.len as usize;
        if f.len == VARLEN {
            let l1 = *s.get(o).ok_or(R_BAD_RECORD)? as usize;
            o += 1;
            len = if l1 == 255 {
                let l = be16(s, o).ok_or(R_BAD_RECORD)? as usize;
                o += 2;
                l
            } else {
                l1
            };
        }
        let v = s.get(o..o + len).ok_or(R_BAD_RECORD)?;
        o += len;
        if let Some(id) = element(f) {
            rec.field(id, v);
        }
    }
    Ok(o)
}

/// RFC 5103's private enterprise number: its element n is the reverse direction's IANA element n.
const REVERSE_PEN: u32 = 29305;
/// The id `Reader::field` knows a reverse element by: the IANA id with the enterprise bit (IANA ids are 15 bits).
const REVERSE: u16 = 0x8000;

/// The element id a field is read as: IANA ones as they are, RFC 5103 reverse ones marked `REVERSE`; other
/// enterprises' fields are skipped.
fn element(f: &Field) -> Option<u16> {
    match f.ent {
        0 => Some(f.id),
        REVERSE_PEN => Some(REVERSE | f.id),
        _ => None,
    }
}

/// A timestamp in `unit` ns as ns since the epoch; absurd ones saturate instead of wrapping.
fn ns(v: u64, unit: i64) -> i64 {
    (v.min(i64::MAX as u64) as i64).saturating_mul(unit)
}

/// An NTP timestamp (seconds since 1900 in the high 32 bits, a binary fraction in the low 32: RFC 7011's
/// dateTimeMicroseconds / dateTimeNanoseconds) as ns since the Unix epoch; before 1970 reads as 0.
fn ntp_ns(v: u64) -> i64 {
    const NTP_TO_UNIX_S: u64 = 2_208_988_800;
    let secs = (v >> 32).saturating_sub(NTP_TO_UNIX_S) as i64;
    let frac = (((v & 0xffff_ffff) * 1_000_000_000) >> 32) as i64;
    if v >> 32 < NTP_TO_UNIX_S {
        return 0;
    }
    secs * 1_000_000_000 + frac
}

/// The information elements of one data record that a flow record uses (IANA IPFIX ids, equal to v9's).
#[derive(Default)]
struct Reader {
    r: ExpRec,
    has_src: bool,
    has_dst: bool,
    bytes_total: u64,
    pkts_total: u64,
    has_delta: bool,
    has_pdelta: bool,
    bytes_rev_total: u64,
    pkts_rev_total: u64,
    has_rdelta: bool,
    has_rpdelta: bool,
    first_up: Option<u32>,
    last_up: Option<u32>,
    first_ns: Option<i64>,
    last_ns: Option<i64>,
    bgp_nh: Option<Addr>,
    sampling: u32,
    pkt_interval: u64,
    pkt_space: u64,
    sys_init_ms: u64,
}

impl Reader {
    fn field(&mut self, id: u16, v: &[u8]) {
        let n = v.len();
        // integers may be sent in fewer octets than their type (reduced-size encoding)
        let int = || {
            if (1..=8).contains(&n) {
                be(v, 0, n)
            } else {
                None
            }
        };
        let u = || int().unwrap_or(0);
        let r = &mut self.r;
        match id {
            1 => {
                if let Some(x) = int() {
                    r.bytes = x;
                    self.has_delta = true;
                }
            }
            2 => {
                if let Some(x) = int() {
                    r.pkts = x;
                    self.has_pdelta = true;
                }
            }
            85 => self.bytes_total = u(),
            86 => self.pkts_total = u(),
            231 => {
                // NSEL initiatorOctets / responderOctets: one biflow
                r.bytes = u();
                self.has_delta = true;
            }
            232 => {
                r.bytes_rev = u();
                r.biflow = true;
            }
            298 => {
                r.pkts = u();
                self.has_pdelta = true;
            }
            299 => {
                r.pkts_rev = u();
                r.biflow = true;
            }
            // RFC 5103 reverse counters (reverseOctetDeltaCount ...): a biflow by their presence too, as NSEL's
            0x8001 => {
                r.bytes_rev = u();
                self.has_rdelta = true;
                r.biflow = true;
            }
            0x8002 => {
                r.pkts_rev = u();
                self.has_rpdelta = true;
                r.biflow = true;
            }
            0x8055 => {
                self.bytes_rev_total = u();
                r.biflow = true;
            }
            0x8056 => {
                self.pkts_rev_total = u();
                r.biflow = true;
            }
            4 => r.proto = u() as u8,
            5 => r.tos = u() as u8,
            6 => r.tcp_flags = u() as u8,
            7 => r.sport = u() as u16,
            11 => r.dport = u() as u16,
            32 | 139 if r.dport == 0 => r.dport = u() as u16,
            // a template may carry both families, the unused one zero: a zero address never replaces a set one
            8 | 27
                if n == if id == 8 { 4 } else { 16 } && (!self.has_src || r.src.b == [0; 16]) =>
            {
                r.src = if n == 4 { Addr::v4(v) } else { Addr::v6(v) };
                self.has_src = true;
            }
            12 | 28
                if n == if id == 12 { 4 } else { 16 } && (!self.has_dst || r.dst.b == [0; 16]) =>
            {
                r.dst = if n == 4 { Addr::v4(v) } else { Addr::v6(v) };
                self.has_dst = true;
            }
            15 if n == 4 => r.next_hop = Addr::v4(v),
            62 if n == 16 => r.next_hop = Addr::v6(v),
            18 if n == 4 => self.bgp_nh = Some(Addr::v4(v)),
            63 if n == 16 => self.bgp_nh = Some(Addr::v6(v)),
            10 => r.in_if = u() as u32,
            14 => r.out_if = u() as u32,
            16 => r.src_as = u() as u32,
            17 => r.dst_as = u() as u32,
            58 | 243 if r.vlan == 0 => r.vlan = (u() & 0x0fff) as u16,
            61 => r.flow_dir = u() as u8,
            22 => self.first_up = Some(u() as u32),
            21 => self.last_up = Some(u() as u32),
            150 => self.first_ns = Some(ns(u(), 1_000_000_000)),
            151 => self.last_ns = Some(ns(u(), 1_000_000_000)),
            152 => self.first_ns = Some(ns(u(), 1_000_000)),
            153 => self.last_ns = Some(ns(u(), 1_000_000)),
            154 | 156 if n == 8 => self.first_ns = Some(ntp_ns(u())),
            155 | 157 if n == 8 => self.last_ns = Some(ntp_ns(u())),
            34 | 50 => self.sampling = u().min(u32::MAX as u64) as u32,
            305 => self.pkt_interval = u(),
            306 => self.pkt_space = u(),
            160 => self.sys_init_ms = u(),
            _ => {}
        }
    }

    fn sampling(&self) -> Option<u32> {
        // one packet in (interval + space) was kept, for every `interval` packets
        if let Some(r) = self
            .pkt_interval
            .saturating_add(self.pkt_space)
            .checked_div(self.pkt_interval)
        {
            return Some(r.clamp(1, u32::MAX as u64) as u32);
        }
        (self.sampling > 0).then_some(self.sampling)
    }

    fn finish(mut self, m: &Msg, dom: &Domain) -> Option<ExpRec> {
        if !(self.has_src && self.has_dst) || self.r.src.v6 != self.r.dst.v6 {
            return None;
        }
        let mut r = std::mem::take(&mut self.r);
        if !self.has_delta {
            r.bytes = self.bytes_total;
        }
        if !self.has_pdelta {
            r.pkts = self.pkts_total;
        }
        if !self.has_rdelta && self.bytes_rev_total != 0 {
            r.bytes_rev = self.bytes_rev_total;
        }
        if !self.has_rpdelta && self.pkts_rev_total != 0 {
            r.pkts_rev = self.pkts_rev_total;
        }
        if r.next_hop == Addr::default() {
            if let Some(a) = self.bgp_nh {
                r.next_hop = a;
            }
        }
        r.kind = if m.ipfix { K_IPFIX } else { K_NETFLOW9 };
        r.exporter = m.exporter;
        r.domain = m.domain;
        r.sampling = self.sampling().unwrap_or(dom.sampling).max(1);
        if r.flow_dir > 1 {
            r.flow_dir = 255;
        }
        let init_ms = if self.sys_init_ms != 0 {
            self.sys_init_ms
        } else {
            dom.sys_init_ms
        };
        let up = |ms: Option<u32>| -> Option<i64> {
            let ms = ms?;
            if !m.ipfix {
                Some(uptime_ns(m.export_ns, m.uptime_ms, ms))
            } else if init_ms != 0 {
                Some(ns(init_ms.saturating_add(ms as u64), 1_000_000))
            } else {
                None
            }
        };
        r.first_ns = self
            .first_ns
            .or_else(|| up(self.first_up))
            .unwrap_or(m.export_ns);
        r.last_ns = self
            .last_ns
            .or_else(|| up(self.last_up))
            .unwrap_or(m.export_ns);
        if r.last_ns < r.first_ns {
            r.last_ns = r.first_ns;
        }
        Some(r)
    }
}
