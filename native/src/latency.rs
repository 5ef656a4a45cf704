//! Per-flow TCP sequence state and passive latency trackers: `ingest/tcpstate.py` and `ingest/latency.py`.

const MASK: u32 = 0xFFFF_FFFF;
const HALF: u32 = 0x8000_0000;
pub const FIN: u16 = 0x01;
pub const SYN: u16 = 0x02;
pub const RST: u16 = 0x04;
pub const ACK: u16 = 0x10;

pub const CLOSING_NONE: u8 = 0;
pub const CLOSING_FIN: u8 = 1;
pub const CLOSING_RST: u8 = 2;

/// Sentinel for "no value" in i64 time and duration fields (times and legs are never negative).
pub const NONE: i64 = -1;

pub fn ns_to_us(ns: i64) -> i64 {
    (ns + 500).div_euclid(1000)
}

#[derive(Default)]
pub struct Tcp {
    pub hi_f: i64,
    pub hi_r: i64,
    pub adv_f: i64,
    pub adv_r: i64,
    pub irtt_ns: i64,
    pub retrans_f: u64,
    pub retrans_r: u64,
    pub ooo_f: u64,
    pub ooo_r: u64,
    pub fins: u8,
    pub closing: u8,
    pub syn_seen: bool,
}

impl Tcp {
    pub fn new() -> Self {
        Tcp { hi_f: -1, hi_r: -1, ..Default::default() }
    }

    pub fn segment(&mut self, fwd: bool, flags: u16, seq: u32, payload_len: u64, ts: i64, ooo_ns: i64) {
        if flags & RST != 0 {
            self.closing = CLOSING_RST;
        }
        if flags & FIN != 0 {
            self.fins |= if fwd { 1 } else { 2 };
            if self.fins == 3 && self.closing == CLOSING_NONE {
                self.closing = CLOSING_FIN;
            }
        }
        let seglen = payload_len + (flags & SYN != 0) as u64 + (flags & FIN != 0) as u64;
        if seglen == 0 {
            return;
        }
        let end = ((seq as u64 + seglen) & MASK as u64) as i64;
        let hi = if fwd { self.hi_f } else { self.hi_r };
        if hi >= 0 {
            let ahead = (end.wrapping_sub(hi) as u64 & MASK as u64) as u32;
            if ahead == 0 || ahead >= HALF {
                if seglen <= 1 && flags & (SYN | FIN) == 0 && end == hi {
                    return;
                }
                let adv = if fwd { self.adv_f } else { self.adv_r };
                let thr = if self.irtt_ns != 0 { self.irtt_ns } else { ooo_ns };
                let d = ts - adv;
                if end != hi && 0 <= d && d < thr {
                    if fwd {
                        self.ooo_f += 1;
                    } else {
                        self.ooo_r += 1;
                    }
                } else if fwd {
                    self.retrans_f += 1;
                } else {
                    self.retrans_r += 1;
                }
                return;
            }
        }
        if fwd {
            self.hi_f = end;
            self.adv_f = ts;
        } else {
            self.hi_r = end;
            self.adv_r = ts;
        }
    }

    pub fn swap(&mut self) {
        std::mem::swap(&mut self.hi_f, &mut self.hi_r);
        std::mem::swap(&mut self.adv_f, &mut self.adv_r);
        std::mem::swap(&mut self.retrans_f, &mut self.retrans_r);
        std::mem::swap(&mut self.ooo_f, &mut self.ooo_r);
        self.fins = ((self.fins & 1) << 1) | ((self.fins >> 1) & 1);
    }

    pub fn reset_counts(&mut self) {
        self.retrans_f = 0;
        self.retrans_r = 0;
        self.ooo_f = 0;
        self.ooo_r = 0;
    }
}

/// count / min / max / sum and a sparse histogram (bucket, count) of microsecond samples.
pub struct Summary {
    pub count: u64,
    pub min_us: i64,
    pub max_us: i64,
    pub sum_us: i64,
    pub hist: Vec<(u16, u32)>,
}

impl Summary {
    fn new() -> Self {
        Summary { count: 0, min_us: 0, max_us: 0, sum_us: 0, hist: Vec::new() }
    }

    fn add(&mut self, us: i64, bucket: u16) {
        if self.count == 0 || us < self.min_us {
            self.min_us = us;
        }
        self.max_us = self.max_us.max(us);
        self.count += 1;
        self.sum_us += us;
        for e in self.hist.iter_mut() {
            if e.0 == bucket {
                e.1 += 1;
                return;
            }
        }
        self.hist.push((bucket, 1));
    }
}

struct Handshake {
    syn_ns: i64,
    syn_seq: u32,
    synack_seq: u32,
    synack_ns: i64,
    leg_resp_ns: i64,
    leg_init_ns: i64,
    done: bool,
}

impl Handshake {
    fn new() -> Self {
        Handshake { syn_ns: -1, syn_seq: 0, synack_seq: 0, synack_ns: -1, leg_resp_ns: NONE, leg_init_ns: NONE, done: false }
    }
    fn syn(&mut self, ts: i64, seq: u32) {
        if self.done {
            return;
        }
        self.syn_ns = ts;
        self.syn_seq = seq;
        self.synack_ns = -1;
        self.leg_resp_ns = NONE;
    }
    fn synack(&mut self, ts: i64, seq: u32, ack: u32) {
        if self.done {
            return;
        }
        if self.syn_ns < 0 {
            self.done = true;
            return;
        }
        if ack != self.syn_seq.wrapping_add(1) || ts < self.syn_ns {
            return;
        }
        if self.leg_resp_ns == NONE {
            self.leg_resp_ns = ts - self.syn_ns;
        }
        self.synack_ns = ts;
        self.synack_seq = seq;
    }
    fn ack(&mut self, ts: i64, ack: u32) {
        if self.done || self.synack_ns < 0 {
            return;
        }
        if ack != self.synack_seq.wrapping_add(1) || ts < self.synack_ns {
            return;
        }
        self.leg_init_ns = ts - self.synack_ns;
        self.done = true;
    }
}

struct TsMatcher {
    last_val: i64,
    pending: Vec<(u32, i64)>,
}

impl TsMatcher {
    fn out(&mut self, tsval: u32, ts: i64, cap: usize) {
        if tsval as i64 == self.last_val {
            return;
        }
        self.last_val = tsval as i64;
        if self.pending.len() < cap && !self.pending.iter().any(|e| e.0 == tsval) {
            self.pending.push((tsval, ts));
        }
    }
    fn echo(&mut self, tsecr: u32, ts: i64) -> Option<i64> {
        let t0 = self.pending.iter().find(|e| e.0 == tsecr)?.1;
        self.pending.retain(|e| tsecr.wrapping_sub(e.0) >= HALF);
        if ts >= t0 {
            Some(ts - t0)
        } else {
            None
        }
    }
}

/// Requests by identifier (ICMP echo seq, DNS id) in arrival order; few entries, so a small vector.
struct Echo {
    pending: Vec<(u32, i64)>,
}

impl Echo {
    fn request(&mut self, ident: u32, ts: i64, cap: usize) {
        if self.pending.len() < cap && !self.pending.iter().any(|e| e.0 == ident) {
            self.pending.push((ident, ts));
        }
    }
    fn reply(&mut self, ident: u32, ts: i64) -> Option<i64> {
        let i = self.pending.iter().position(|e| e.0 == ident)?;
        let t0 = self.pending.swap_remove(i).1;
        if ts < t0 {
            None
        } else {
            Some(ts - t0)
        }
    }
}

/// Allocated per flow only once a packet that can yield latency is seen.
pub struct Latency {
    hs: Option<Box<Handshake>>,
    hs_done: bool,
    hs_resp_ns: i64,
    hs_init_ns: i64,
    ts: Option<Box<TsMatcher>>,
    icmp: Option<Box<Echo>>,
    dns: Option<Box<Echo>>,
    pub ts_sum: Option<Box<Summary>>,
    pub icmp_sum: Option<Box<Summary>>,
    pub dns_sum: Option<Box<Summary>>,
}

pub type BucketFn<'a> = &'a dyn Fn(i64) -> u16;

fn add_sample(s: &mut Option<Box<Summary>>, rtt: i64, bucket: BucketFn) {
    let us = ns_to_us(rtt);
    s.get_or_insert_with(|| Box::new(Summary::new())).add(us, bucket(us));
}

impl Latency {
    pub fn new() -> Self {
        Latency {
            hs: None,
            hs_done: false,
            hs_resp_ns: NONE,
            hs_init_ns: NONE,
            ts: None,
            icmp: None,
            dns: None,
            ts_sum: None,
            icmp_sum: None,
            dns_sum: None,
        }
    }

    fn hs_mut(&mut self) -> Option<&mut Handshake> {
        if self.hs_done {
            return None;
        }
        Some(self.hs.get_or_insert_with(|| Box::new(Handshake::new())))
    }

    fn settle(&mut self) {
        if let Some(hs) = &self.hs {
            if hs.done {
                self.hs_resp_ns = hs.leg_resp_ns;
                self.hs_init_ns = hs.leg_init_ns;
                self.hs_done = true;
                self.hs = None;
            }
        }
    }

    /// Heap bytes of this state and what it owns (allocation accounting for the memory benchmark).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let mut n = size_of::<Latency>();
        if self.hs.is_some() {
            n += size_of::<Handshake>();
        }
        if let Some(m) = &self.ts {
            n += size_of::<TsMatcher>() + m.pending.capacity() * size_of::<(u32, i64)>();
        }
        for e in [&self.icmp, &self.dns].into_iter().flatten() {
            n += size_of::<Echo>() + e.pending.capacity() * size_of::<(u32, i64)>();
        }
        for s in [&self.ts_sum, &self.icmp_sum, &self.dns_sum].into_iter().flatten() {
            n += size_of::<Summary>() + s.hist.capacity() * size_of::<(u16, u32)>();
        }
        n
    }

    pub fn has_hs(&self) -> bool {
        self.hs.is_some()
    }

    pub fn hs_syn(&mut self, ts: i64, seq: u32) {
        if let Some(hs) = self.hs_mut() {
            hs.syn(ts, seq);
        }
    }

    pub fn hs_synack(&mut self, ts: i64, seq: u32, ack: u32) {
        if let Some(hs) = self.hs_mut() {
            hs.synack(ts, seq, ack);
            self.settle();
        }
    }

    pub fn hs_ack(&mut self, ts: i64, ack: u32) -> i64 {
        match &mut self.hs {
            None => return 0,
            Some(hs) => hs.ack(ts, ack),
        }
        self.settle();
        if self.hs_resp_ns != NONE && self.hs_init_ns != NONE {
            return self.hs_resp_ns + self.hs_init_ns;
        }
        0
    }

    pub fn hs_taint(&mut self) {
        if let Some(hs) = self.hs_mut() {
            hs.done = true;
            self.settle();
        }
    }

    pub fn hs_legs(&self) -> (i64, i64) {
        match &self.hs {
            Some(hs) => (hs.leg_resp_ns, hs.leg_init_ns),
            None => (self.hs_resp_ns, self.hs_init_ns),
        }
    }

    pub fn ts_out(&mut self, tsval: u32, ts: i64, cap: usize) {
        self.ts.get_or_insert_with(|| Box::new(TsMatcher { last_val: -1, pending: Vec::new() })).out(tsval, ts, cap);
    }

    pub fn ts_echo(&mut self, tsecr: u32, ts: i64, bucket: BucketFn) {
        if let Some(m) = &mut self.ts {
            if let Some(rtt) = m.echo(tsecr, ts) {
                add_sample(&mut self.ts_sum, rtt, bucket);
            }
        }
    }

    pub fn icmp_request(&mut self, seq: u32, ts: i64, cap: usize) {
        self.icmp.get_or_insert_with(|| Box::new(Echo { pending: Vec::new() })).request(seq, ts, cap);
    }

    pub fn icmp_reply(&mut self, seq: u32, ts: i64, bucket: BucketFn) {
        if let Some(m) = &mut self.icmp {
            if let Some(rtt) = m.reply(seq, ts) {
                add_sample(&mut self.icmp_sum, rtt, bucket);
            }
        }
    }

    pub fn dns_query(&mut self, id: u32, ts: i64, cap: usize) {
        self.dns.get_or_insert_with(|| Box::new(Echo { pending: Vec::new() })).request(id, ts, cap);
    }

    pub fn dns_response(&mut self, id: u32, ts: i64, bucket: BucketFn) {
        if let Some(m) = &mut self.dns {
            if let Some(rtt) = m.reply(id, ts) {
                add_sample(&mut self.dns_sum, rtt, bucket);
            }
        }
    }

    pub fn reoriented(&mut self) {
        self.ts = None;
        self.icmp = None;
        self.dns = None;
    }

    pub fn new_slice(&mut self) {
        self.ts_sum = None;
        self.icmp_sum = None;
        self.dns_sum = None;
        self.hs_resp_ns = NONE;
        self.hs_init_ns = NONE;
        if let Some(hs) = &mut self.hs {
            hs.leg_resp_ns = NONE;
            hs.leg_init_ns = NONE;
        }
    }
}
