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

/// Sequence state of one TCP flow. Out-of-order segments only feed a meter-wide counter: `segment` reports them.
#[derive(Default)]
pub struct Tcp {
    hi_f: u32, // highest sequence end seen initiator -> responder (valid when HAS_F is set in `has`)
    hi_r: u32,
    adv_f: i64, // ns when hi_f last moved forward
    adv_r: i64,
    pub irtt_ns: i64,
    pub retrans_f: u64,
    pub retrans_r: u64,
    has: u8,
    fins: u8,
    pub closing: u8,
    pub syn_seen: bool,
}

const HAS_F: u8 = 1;
const HAS_R: u8 = 2;

impl Tcp {
    pub fn new() -> Self {
        Tcp::default()
    }

    /// Account one segment; returns true when it was counted as out-of-order.
    pub fn segment(
        &mut self,
        fwd: bool,
        flags: u16,
        seq: u32,
        payload_len: u64,
        ts: i64,
        ooo_ns: i64,
    ) -> bool {
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
            return false;
        }
        let end = ((seq as u64 + seglen) & MASK as u64) as u32;
        let (has, hi) = if fwd {
            (self.has & HAS_F, self.hi_f)
        } else {
            (self.has & HAS_R, self.hi_r)
        };
        if has != 0 {
            let ahead = end.wrapping_sub(hi);
            if ahead == 0 || ahead >= HALF {
                if seglen <= 1 && flags & (SYN | FIN) == 0 && end == hi {
                    return false; // keep-alive probe
                }
                let adv = if fwd { self.adv_f } else { self.adv_r };
                let thr = if self.irtt_ns != 0 {
                    self.irtt_ns
                } else {
                    ooo_ns
                };
                let d = ts - adv;
                if end != hi && 0 <= d && d < thr {
                    return true;
                }
                if fwd {
                    self.retrans_f += 1;
                } else {
                    self.retrans_r += 1;
                }
                return false;
            }
        }
        if fwd {
            self.hi_f = end;
            self.adv_f = ts;
            self.has |= HAS_F;
        } else {
            self.hi_r = end;
            self.adv_r = ts;
            self.has |= HAS_R;
        }
        false
    }

    pub fn swap(&mut self) {
        std::mem::swap(&mut self.hi_f, &mut self.hi_r);
        std::mem::swap(&mut self.adv_f, &mut self.adv_r);
        std::mem::swap(&mut self.retrans_f, &mut self.retrans_r);
        self.has = ((self.has & 1) << 1) | ((self.has >> 1) & 1);
        self.fins = ((self.fins & 1) << 1) | ((self.fins >> 1) & 1);
    }

    pub fn reset_counts(&mut self) {
        self.retrans_f = 0;
        self.retrans_r = 0;
    }
}

/// count / min / max / sum of microsecond samples; the sparse histogram lives in the owner's slots.
pub struct Summary {
    pub count: u64,
    pub min_us: i64,
    pub max_us: i64,
    pub sum_us: i64,
}

impl Summary {
    fn new() -> Self {
        Summary {
            count: 0,
            min_us: 0,
            max_us: 0,
            sum_us: 0,
        }
    }

    fn add(&mut self, us: i64) {
        if self.count == 0 || us < self.min_us {
            self.min_us = us;
        }
        self.max_us = self.max_us.max(us);
        self.count += 1;
        self.sum_us += us;
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
        Handshake {
            syn_ns: -1,
            syn_seq: 0,
            synack_seq: 0,
            synack_ns: -1,
            leg_resp_ns: NONE,
            leg_init_ns: NONE,
            done: false,
        }
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

/// A request or TSval awaiting its reply (id, ts), or a histogram bin (bucket, count); packed to 12 bytes.
/// Bins and pending entries share one vector (bins first): one vector header per flow instead of two.
#[derive(Clone, Copy)]
#[repr(C, packed)]
struct Entry {
    id: u32,
    ts: i64,
}

/// Allocated per flow only once a packet that can yield latency is seen. A flow's protocol allows one kind of
/// sample only (TCP: timestamps, ICMP: echo, UDP: DNS), so one pending table and one summary serve all three;
/// an empty table or a summary of count 0 stands for the reference's absent one (they behave the same).
pub struct Latency {
    hs: Option<Box<Handshake>>,
    hs_resp_ns: i64,
    hs_init_ns: i64,
    slots: Vec<Entry>, // [..n_hist]: histogram bins (bucket, count); the rest: pending entries
    pub sum: Summary,
    n_hist: u16,   // fewer than u16::MAX buckets exist (checked when the engine is made)
    last_val: u32, // TCP: the last TSval seen toward the remote side, when has_last
    has_last: bool,
    hs_done: bool,
}

pub type BucketFn<'a> = &'a dyn Fn(i64) -> u16;

fn push_exact(v: &mut Vec<Entry>, e: Entry) {
    if v.len() == v.capacity() {
        v.reserve_exact(1); // grow one slot at a time: few entries, memory matters more
    }
    v.push(e);
}

impl Latency {
    pub fn new() -> Self {
        Latency {
            hs: None,
            hs_resp_ns: NONE,
            hs_init_ns: NONE,
            slots: Vec::new(),
            sum: Summary::new(),
            n_hist: 0,
            last_val: 0,
            has_last: false,
            hs_done: false,
        }
    }

    /// Heap bytes of this state and what it owns (allocation accounting for the memory benchmark): the state
    /// itself, its handshake, pending entries and histogram.
    pub fn heap_parts(&self) -> [usize; 4] {
        use std::mem::size_of;
        [
            size_of::<Latency>(),
            if self.hs.is_some() {
                size_of::<Handshake>()
            } else {
                0
            },
            (self.slots.capacity() - self.n_hist as usize) * size_of::<Entry>(),
            self.n_hist as usize * size_of::<Entry>(),
        ]
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

    /// The whole handshake RTT (SYN -> ACK) in ns when this ACK completes it, else 0.
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

    fn pending(&self) -> &[Entry] {
        &self.slots[self.n_hist as usize..]
    }

    /// Histogram bins (bucket, count), unordered.
    pub fn hist(&self) -> Vec<(u16, u32)> {
        self.slots[..self.n_hist as usize]
            .iter()
            .map(|e| (e.id as u16, e.ts as u32))
            .collect()
    }

    pub fn ts_out(&mut self, tsval: u32, ts: i64, cap: usize) {
        if self.has_last && tsval == self.last_val {
            return; // not the first occurrence
        }
        self.last_val = tsval;
        self.has_last = true;
        let p = self.pending();
        if p.len() < cap && !p.iter().any(|e| e.id == tsval) {
            push_exact(&mut self.slots, Entry { id: tsval, ts });
        }
    }

    pub fn ts_echo(&mut self, tsecr: u32, ts: i64, bucket: BucketFn) {
        let Some(t0) = self.pending().iter().find(|e| e.id == tsecr).map(|e| e.ts) else {
            return;
        };
        // The echoed value and older ones go: TSecr is non-decreasing, older values will never be echoed.
        let bins = self.n_hist as usize;
        let mut i = 0;
        self.slots.retain(|e| {
            i += 1;
            i <= bins || tsecr.wrapping_sub(e.id) >= HALF
        });
        // Most of a burst echoed: give the room back (a flow keeps only what is in flight).
        if self.slots.capacity() >= 2 * self.slots.len() + 4 {
            self.slots.shrink_to_fit();
        }
        if ts >= t0 {
            self.sample(ts - t0, bucket);
        }
    }

    /// ICMP echo request or DNS query toward the remote side.
    pub fn request(&mut self, ident: u32, ts: i64, cap: usize) {
        let p = self.pending();
        if p.len() < cap && !p.iter().any(|e| e.id == ident) {
            push_exact(&mut self.slots, Entry { id: ident, ts });
        }
    }

    /// ICMP echo reply or DNS response from the remote side.
    pub fn reply(&mut self, ident: u32, ts: i64, bucket: BucketFn) {
        let Some(i) = self.pending().iter().position(|e| e.id == ident) else {
            return;
        };
        let t0 = self.slots.swap_remove(self.n_hist as usize + i).ts;
        if ts >= t0 {
            self.sample(ts - t0, bucket);
        }
    }

    fn sample(&mut self, rtt: i64, bucket: BucketFn) {
        let us = ns_to_us(rtt);
        self.sum.add(us);
        let b = bucket(us) as u32;
        let bins = self.n_hist as usize;
        if let Some(e) = self.slots[..bins].iter_mut().find(|e| e.id == b) {
            e.ts = (e.ts as u32).wrapping_add(1) as i64;
            return;
        }
        if self.slots.len() == self.slots.capacity() {
            self.slots.reserve_exact(1);
        }
        self.slots.insert(bins, Entry { id: b, ts: 1 });
        self.n_hist += 1;
    }

    pub fn reoriented(&mut self) {
        // Pending entries go and their memory with them, as the reference drops its tables.
        self.slots.truncate(self.n_hist as usize);
        self.slots.shrink_to_fit();
        self.has_last = false;
    }

    pub fn new_slice(&mut self) {
        self.sum = Summary::new();
        self.slots.drain(..self.n_hist as usize);
        self.slots.shrink_to_fit();
        self.n_hist = 0;
        self.hs_resp_ns = NONE;
        self.hs_init_ns = NONE;
        if let Some(hs) = &mut self.hs {
            hs.leg_resp_ns = NONE;
            hs.leg_init_ns = NONE;
        }
    }
}
