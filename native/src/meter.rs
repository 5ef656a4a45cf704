//! Agent core: decoded packets -> fragment attribution -> bidirectional flow table with the timeouts, lazy timer
//! wheel, eviction and export order of `ingest/flowmeter.py`, `ingest/fragments.py` and `ingest/agent.py`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::decode::{decode, DecodeConfig, FragKey, Pkt};
use crate::latency::{Latency, Summary, Tcp, ACK, CLOSING_FIN, CLOSING_NONE, NONE, SYN};

pub const R_IDLE: u8 = 0;
pub const R_ACTIVE: u8 = 1;
pub const R_FIN: u8 = 2;
pub const R_RST: u8 = 3;
pub const R_EVICTED: u8 = 4;
pub const R_FLUSH: u8 = 5;
pub const REASON_NAMES: [&str; 6] = ["idle", "active", "fin", "rst", "evicted", "flush"];

const ADVANCE_EVERY: u32 = 1024;

pub struct MeterConfig {
    pub idle_ns: i64,
    pub active_ns: i64,
    pub grace_ns: i64,
    pub tick_ns: i64,
    pub ooo_ns: i64,
    pub max_flows: usize,
    pub max_pending_ts: usize,
    pub max_pending_echo: usize,
    pub frag_max: usize,
    pub frag_timeout_ns: i64,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub lo: [u8; 16],
    pub hi: [u8; 16],
    pub lo_port: u32,
    pub hi_port: u32,
    pub vlan: u16,
    pub proto: u8,
    pub v6: bool,
}

/// A flow's key as stored in its slot: IPv4 addresses inline (decoded ones have zero bytes past the fourth),
/// IPv6 pairs out of line in `Core::v6_addrs` (`lo` is the index there): most flows are IPv4, 24 bytes less each.
/// An ICMP key has both ports equal, so `hi_port` holds the flow's first type and code instead.
#[derive(Clone, Copy)]
struct StoredKey {
    lo: u32,
    hi: u32,
    lo_port: u32,
    hi_port: u32,
    vlan: u16,
    proto: u8,
    bits: u8, // K_V6 (part of the key), and the flow's F_LO_INIT and F_RII: no padding byte for two bools
}

const K_V6: u8 = 1;
const F_LO_INIT: u8 = 2; // the lower endpoint of the key initiated the flow
const F_RII: u8 = 4; // remote side is the initiator (from the classifier's domestic test)
const F_DIRTY: u8 = 8; // in `Core::dirty`: packets since the flow's last record
const F_END_SENT: u8 = 16; // a record already reported the TCP close

fn v4_word(a: &[u8; 16]) -> u32 {
    u32::from_ne_bytes([a[0], a[1], a[2], a[3]])
}

fn v4_addr(w: u32) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&w.to_ne_bytes());
    a
}

impl StoredKey {
    fn v6(&self) -> bool {
        self.bits & K_V6 != 0
    }

    fn icmp(&self) -> bool {
        self.proto == 1 || self.proto == 58
    }

    fn key_hi_port(&self) -> u32 {
        if self.icmp() {
            self.lo_port
        } else {
            self.hi_port
        }
    }

    fn expand(&self, v6_addrs: &[[[u8; 16]; 2]]) -> Key {
        let (lo, hi) = if self.v6() {
            let p = &v6_addrs[self.lo as usize];
            (p[0], p[1])
        } else {
            (v4_addr(self.lo), v4_addr(self.hi))
        };
        Key {
            lo,
            hi,
            lo_port: self.lo_port,
            hi_port: self.key_hi_port(),
            vlan: self.vlan,
            proto: self.proto,
            v6: self.v6(),
        }
    }

    fn matches(&self, k: &Key, v6_addrs: &[[[u8; 16]; 2]]) -> bool {
        if self.lo_port != k.lo_port
            || self.key_hi_port() != k.hi_port
            || self.vlan != k.vlan
            || self.proto != k.proto
            || self.v6() != k.v6
        {
            return false;
        }
        if self.v6() {
            let p = &v6_addrs[self.lo as usize];
            p[0] == k.lo && p[1] == k.hi
        } else {
            self.lo == v4_word(&k.lo) && self.hi == v4_word(&k.hi)
        }
    }
}

impl Flow {
    fn lo_init(&self) -> bool {
        self.key.bits & F_LO_INIT != 0
    }

    fn rii(&self) -> bool {
        self.key.bits & F_RII != 0
    }

    fn has_packets(&self) -> bool {
        self.pkts_f + self.pkts_r > 0
    }
}

pub struct Flow {
    key: StoredKey,
    flags_f: u16,
    flags_r: u16,
    gen: u32,
    first_ns: i64,
    last_ns: i64,
    bytes_f: u64,
    bytes_r: u64,
    pkts_f: u64,
    pkts_r: u64,
    tick: i64,
    created: u32, // creation order (flush exports in it); renumbered before it would wrap
    dscp: u8,     // of the flow's first packet (docs/classes.md says why not the dominant one)
    tcp: Option<Box<Tcp>>,
    lat: Option<Box<Latency>>,
}

pub struct SumOut {
    pub count: u64,
    pub min_us: i64,
    pub max_us: i64,
    pub sum_us: i64,
    pub hist: Vec<(u16, u32)>,
}

pub struct Rec {
    pub reason: u8,
    pub export_ns: i64,
    pub v6: bool,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u32,
    pub dport: u32,
    pub proto: u8,
    pub vlan: u16,
    pub first_ns: i64,
    pub last_ns: i64,
    pub bytes_f: u64,
    pub pkts_f: u64,
    pub bytes_r: u64,
    pub pkts_r: u64,
    pub flags_f: u16,
    pub flags_r: u16,
    pub retrans_f: u64,
    pub retrans_r: u64,
    pub hs_resp_ns: i64,
    pub hs_init_ns: i64,
    pub sums: [Option<SumOut>; 3],
    pub dscp: u8,
}

#[derive(Default)]
pub struct Counters {
    pub packets_seen: u64,
    pub wire_bytes: u64,
    pub decoded: u64,
    pub ip_bytes: u64,
    pub rejected: [u64; 7],
    pub records: u64,
    pub flows_created: u64,
    pub evicted: u64,
    pub reoriented: u64,
    pub out_of_order: u64,
    pub exported: [u64; 6],
    pub meter_packets: u64,
    pub meter_bytes: u64,
    pub frag_first: u64,
    pub frag_attributed: u64,
    pub frag_orphans: u64,
    pub frag_expired: u64,
    pub frag_evicted: u64,
}

struct FragEntry {
    expiry: i64,
    order: u64,
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    sport: u32,
    dport: u32,
}

fn is_icmp(proto: u8) -> bool {
    proto == 1 || proto == 58
}

/// Both "ports" of an ICMP/ICMPv6 key (ingest/flowkey.py): the echo id for echo messages, else
/// 0x10000 | type << 8 | code; a non-first fragment carries the first fragment's value in `sport`.
fn icmp_key_port(p: &Pkt) -> u32 {
    if !p.l4_present || p.itype < 0 {
        p.sport
    } else if (p.proto == 1 && (p.itype == 8 || p.itype == 0))
        || (p.proto == 58 && (p.itype == 128 || p.itype == 129))
    {
        p.iid
    } else {
        0x10000 | ((p.itype as u32) << 8) | (p.icode.max(0) as u32)
    }
}

pub type Oracle = Box<dyn FnMut(&[u8; 16], &[u8; 16], bool) -> bool + Send + Sync>;

pub struct Core {
    cfg: MeterConfig,
    dcfg: DecodeConfig,
    thresholds: Vec<u64>,
    oracle: Oracle,
    hasher: DefaultHashBuilder,
    index: HashTable<u32>,
    slab: Vec<Flow>,
    free: Vec<u32>,
    v6_addrs: Vec<[[u8; 16]; 2]>,
    v6_free: Vec<u32>,
    buckets: HashMap<i64, VecDeque<(u32, u32)>>,
    ticks: BinaryHeap<Reverse<i64>>,
    clock: i64,
    next_cut: i64,
    dirty: Vec<(u32, u32)>, // flows with packets since their last record, in order of the first one
    created_seq: u32,
    since_advance: u32,
    frags: HashMap<FragKey, FragEntry>,
    frag_order: VecDeque<(FragKey, u64)>,
    frag_seq: u64,
    pub counters: Counters,
    pub out: Vec<Rec>,
}

fn bucket_of(thresholds: &[u64], us: i64) -> u16 {
    if us <= 0 {
        return 0;
    }
    thresholds.partition_point(|&t| t <= us as u64) as u16
}

impl Core {
    pub fn new(cfg: MeterConfig, dcfg: DecodeConfig, thresholds: Vec<u64>, oracle: Oracle) -> Self {
        Core {
            cfg,
            dcfg,
            thresholds,
            oracle,
            hasher: DefaultHashBuilder::default(),
            index: HashTable::new(),
            slab: Vec::new(),
            free: Vec::new(),
            v6_addrs: Vec::new(),
            v6_free: Vec::new(),
            buckets: HashMap::new(),
            ticks: BinaryHeap::new(),
            clock: 0,
            next_cut: i64::MIN,
            dirty: Vec::new(),
            created_seq: 0,
            since_advance: 0,
            frags: HashMap::new(),
            frag_order: VecDeque::new(),
            frag_seq: 0,
            counters: Counters::default(),
            out: Vec::new(),
        }
    }

    pub fn active(&self) -> usize {
        self.index.len()
    }

    /// Heap bytes held by the flow table and its per-flow state (for the memory benchmark): capacities times
    /// element sizes, so allocator headers are not included.
    pub fn table_bytes(&self) -> usize {
        self.table_breakdown().iter().map(|&(_, n)| n).sum()
    }

    /// `table_bytes` by component, so the benchmark can show where a flow's bytes go.
    pub fn table_breakdown(&self) -> Vec<(&'static str, usize)> {
        let mut timers = self.ticks.capacity() * 8;
        for q in self.buckets.values() {
            timers += q.capacity() * 8 + 8 + 24 + 1;
        }
        let (mut tcp, mut lat) = (0, [0usize; 4]);
        for f in &self.slab {
            if f.tick < 0 {
                continue;
            }
            if f.tcp.is_some() {
                tcp += std::mem::size_of::<Tcp>();
            }
            if let Some(l) = &f.lat {
                for (a, b) in lat.iter_mut().zip(l.heap_parts()) {
                    *a += b;
                }
            }
        }
        vec![
            ("flows", self.slab.capacity() * std::mem::size_of::<Flow>()),
            ("free_list", self.free.capacity() * 4),
            (
                "v6_addresses",
                self.v6_addrs.capacity() * 32 + self.v6_free.capacity() * 4,
            ),
            ("index", self.index.capacity() * (4 + 1) + 16),
            ("timers", timers),
            ("tcp", tcp),
            ("latency", lat[0]),
            ("handshake", lat[1]),
            ("pending", lat[2]),
            ("histogram", lat[3]),
        ]
    }

    // ------------------------------------------------------------------ agent

    pub fn feed(&mut self, ts: i64, lt: u32, data: &[u8], wire: u64) {
        let c = &mut self.counters;
        c.packets_seen += 1;
        c.wire_bytes += wire;
        match decode(ts, lt, data, &self.dcfg) {
            Err(r) => c.rejected[r as usize] += 1,
            Ok(mut p) => {
                c.decoded += 1;
                c.ip_bytes += p.ip_len;
                if p.frag_off != 0 || p.more_frags {
                    self.fragment(&mut p);
                }
                self.add(&p);
            }
        }
        self.since_advance += 1;
        if self.since_advance >= ADVANCE_EVERY {
            self.since_advance = 0;
            self.advance(ts);
        }
    }

    fn fragment(&mut self, p: &mut Pkt) {
        let key = match p.frag_key {
            None => return,
            Some(k) => k,
        };
        if p.frag_off == 0 {
            self.frag_expire(p.ts);
            if let Some(old) = self.frags.remove(&key) {
                let _ = old; // a repeated first fragment starts afresh (its queue entry goes stale)
            } else if self.frags.len() >= self.cfg.frag_max {
                self.frag_pop_oldest();
                self.counters.frag_evicted += 1;
            }
            self.frag_seq += 1;
            let order = self.frag_seq;
            self.frags.insert(
                key,
                FragEntry {
                    expiry: p.ts + self.cfg.frag_timeout_ns,
                    order,
                    v6: p.ver == 6,
                    src: p.src,
                    dst: p.dst,
                    proto: p.proto,
                    // ICMP keys on its echo id or type/code, which later fragments lack: they get the first
                    // fragment's key port in both port fields (see icmp_key_port).
                    sport: if is_icmp(p.proto) {
                        icmp_key_port(p)
                    } else {
                        p.sport
                    },
                    dport: if is_icmp(p.proto) {
                        icmp_key_port(p)
                    } else {
                        p.dport
                    },
                },
            );
            self.frag_order.push_back((key, order));
            self.counters.frag_first += 1;
            return;
        }
        self.frag_expire(p.ts);
        match self.frags.get(&key) {
            Some(e) if e.expiry >= p.ts => {
                p.ver = if e.v6 { 6 } else { 4 };
                p.src = e.src;
                p.dst = e.dst;
                p.proto = e.proto;
                p.sport = e.sport;
                p.dport = e.dport;
                self.counters.frag_attributed += 1;
            }
            _ => self.counters.frag_orphans += 1,
        }
    }

    /// The oldest live entry of the fragment table, dropping stale queue entries on the way.
    fn frag_oldest(&mut self) -> Option<(FragKey, i64)> {
        while let Some((k, order)) = self.frag_order.front() {
            match self.frags.get(k) {
                Some(e) if e.order == *order => return Some((*k, e.expiry)),
                _ => {
                    self.frag_order.pop_front();
                }
            }
        }
        None
    }

    fn frag_pop_oldest(&mut self) {
        if let Some((k, _)) = self.frag_oldest() {
            self.frags.remove(&k);
            self.frag_order.pop_front();
        }
    }

    fn frag_expire(&mut self, now: i64) {
        while let Some((k, expiry)) = self.frag_oldest() {
            if expiry >= now {
                return;
            }
            self.frags.remove(&k);
            self.frag_order.pop_front();
            self.counters.frag_expired += 1;
        }
    }

    // ------------------------------------------------------------------ meter

    fn find(&self, key: &Key, hash: u64) -> Option<u32> {
        let (slab, v6) = (&self.slab, &self.v6_addrs);
        self.index
            .find(hash, |&i| slab[i as usize].key.matches(key, v6))
            .copied()
    }

    pub fn add(&mut self, p: &Pkt) {
        let ts = p.ts;
        self.clock = self.clock.max(ts);
        if ts >= self.next_cut {
            self.cut(ts);
        }
        let v6 = p.ver == 6;
        let (sport, dport) = if is_icmp(p.proto) {
            let kp = icmp_key_port(p);
            (kp, kp)
        } else {
            (p.sport, p.dport)
        };
        let sender_lo = p.src < p.dst || (p.src == p.dst && sport <= dport);
        let key = if sender_lo {
            Key {
                lo: p.src,
                hi: p.dst,
                lo_port: sport,
                hi_port: dport,
                vlan: p.vlan,
                proto: p.proto,
                v6,
            }
        } else {
            Key {
                lo: p.dst,
                hi: p.src,
                lo_port: dport,
                hi_port: sport,
                vlan: p.vlan,
                proto: p.proto,
                v6,
            }
        };
        let hash = self.hasher.hash_one(key);
        let mut cur = self.find(&key, hash);
        if let Some(i) = cur {
            let f = &self.slab[i as usize];
            let gap = ts - f.last_ns;
            let closing = f.tcp.as_ref().map_or(CLOSING_NONE, |t| t.closing);
            if closing != CLOSING_NONE {
                if gap >= self.cfg.grace_ns || p.flags & (SYN | ACK) == SYN {
                    self.end(i, closing_reason(closing), ts);
                    cur = None;
                }
            } else if gap >= self.cfg.idle_ns {
                self.end(i, R_IDLE, ts);
                cur = None;
            }
        }
        let i = match cur {
            Some(i) => i,
            None => self.create(key, hash, sender_lo, p),
        };
        let idx = i as usize;
        let f = &mut self.slab[idx];
        if f.key.bits & F_DIRTY == 0 {
            f.key.bits |= F_DIRTY;
            self.dirty.push((i, f.gen));
        }
        if !f.has_packets() {
            f.first_ns = ts; // the first packet of this record
        }
        let flags = p.flags;
        let l4 = p.l4_present;
        let mut fwd = sender_lo == self.slab[idx].lo_init();
        if let Some(t) = &self.slab[idx].tcp {
            if l4 && flags & (SYN | ACK) == SYN && !fwd && !t.syn_seen {
                self.reorient(idx);
                fwd = true;
            }
        }
        let n = p.ip_len;
        self.counters.meter_packets += 1;
        self.counters.meter_bytes += n;
        let f = &mut self.slab[idx];
        if fwd {
            f.bytes_f += n;
            f.pkts_f += 1;
            f.flags_f |= flags;
        } else {
            f.bytes_r += n;
            f.pkts_r += 1;
            f.flags_r |= flags;
        }
        f.last_ns = f.last_ns.max(ts);
        if !l4 {
            return;
        }
        if f.tcp.is_some() {
            self.tcp(idx, p, fwd);
            return;
        }
        let to_remote = fwd != f.rii();
        let th = &self.thresholds;
        let bucket = |us: i64| bucket_of(th, us);
        if p.proto == 17 {
            if let Some(id) = p.dns_id {
                if p.dns_resp {
                    if !to_remote {
                        if let Some(l) = &mut f.lat {
                            l.reply(id as u32, ts, &bucket);
                        }
                    }
                } else if to_remote {
                    f.lat
                        .get_or_insert_with(|| Box::new(Latency::new()))
                        .request(id as u32, ts, self.cfg.max_pending_echo);
                }
            }
        } else if p.proto == 1 || p.proto == 58 {
            let req = if p.proto == 1 {
                p.itype == 8
            } else {
                p.itype == 128
            };
            let rep = if p.proto == 1 {
                p.itype == 0
            } else {
                p.itype == 129
            };
            if req {
                if to_remote {
                    f.lat
                        .get_or_insert_with(|| Box::new(Latency::new()))
                        .request(p.iseq, ts, self.cfg.max_pending_echo);
                }
            } else if rep && !to_remote {
                if let Some(l) = &mut f.lat {
                    l.reply(p.iseq, ts, &bucket);
                }
            }
        }
    }

    fn tcp(&mut self, idx: usize, p: &Pkt, fwd: bool) {
        let ts = p.ts;
        let flags = p.flags;
        let th = &self.thresholds;
        let bucket = |us: i64| bucket_of(th, us);
        let f = &mut self.slab[idx];
        let syn_ack = flags & (SYN | ACK);
        if syn_ack == SYN {
            if fwd {
                f.tcp.as_mut().unwrap().syn_seen = true;
                f.lat
                    .get_or_insert_with(|| Box::new(Latency::new()))
                    .hs_syn(ts, p.seq);
            }
        } else if syn_ack == SYN | ACK {
            let l = f.lat.get_or_insert_with(|| Box::new(Latency::new()));
            if fwd {
                l.hs_taint();
            } else {
                l.hs_synack(ts, p.seq, p.ack);
            }
        } else if syn_ack == ACK && fwd {
            if let Some(l) = &mut f.lat {
                if l.has_hs() {
                    let irtt = l.hs_ack(ts, p.ack);
                    if irtt != 0 {
                        f.tcp.as_mut().unwrap().irtt_ns = irtt;
                    }
                }
            }
        }
        let t = f.tcp.as_mut().unwrap();
        let was_closing = t.closing;
        if t.segment(fwd, flags, p.seq, p.paylen, ts, self.cfg.ooo_ns) {
            self.counters.out_of_order += 1;
        }
        let starts_closing = was_closing == CLOSING_NONE && t.closing != CLOSING_NONE;
        if let Some(tsval) = p.tsval {
            let to_remote = fwd != f.rii();
            if to_remote {
                f.lat
                    .get_or_insert_with(|| Box::new(Latency::new()))
                    .ts_out(tsval, ts, self.cfg.max_pending_ts);
            } else if flags & ACK != 0 {
                if let (Some(l), Some(tsecr)) = (&mut f.lat, p.tsecr) {
                    l.ts_echo(tsecr, ts, &bucket);
                }
            }
        }
        if starts_closing {
            let d = self.slab[idx].last_ns + self.cfg.grace_ns;
            self.schedule(idx as u32, d);
        }
    }

    pub fn advance(&mut self, now: i64) {
        self.clock = self.clock.max(now);
        if now >= self.next_cut {
            self.cut(now);
        }
        if self.ticks.is_empty() {
            return;
        }
        let now_tick = now.div_euclid(self.cfg.tick_ns);
        while let Some(&Reverse(tick)) = self.ticks.peek() {
            if tick > now_tick {
                break;
            }
            self.ticks.pop();
            let bucket = self.buckets.remove(&tick).unwrap_or_default();
            for (i, gen) in bucket {
                let f = &self.slab[i as usize];
                if f.gen != gen || f.tick != tick {
                    continue;
                }
                let deadline = self.deadline(i);
                if deadline <= now {
                    let r = self.natural_reason(i);
                    self.end(i, r, now);
                } else {
                    self.schedule(i, deadline);
                }
            }
        }
    }

    pub fn flush(&mut self) {
        let now = self.clock;
        self.advance(now);
        let mut live: Vec<(u32, u32)> = Vec::with_capacity(self.index.len());
        for (i, f) in self.slab.iter().enumerate() {
            if f.tick >= 0 {
                live.push((f.created, i as u32));
            }
        }
        live.sort_unstable();
        for (_, i) in live {
            let closing = self.slab[i as usize]
                .tcp
                .as_ref()
                .map_or(CLOSING_NONE, |t| t.closing);
            let r = if closing != CLOSING_NONE {
                closing_reason(closing)
            } else {
                R_FLUSH
            };
            self.end(i, r, now);
        }
        self.buckets.clear();
        self.ticks.clear();
        self.dirty.clear();
    }

    /// Export a record for every flow with packets since its last one, at the boundary `now` reached
    /// (`ingest/flowmeter.py` `_cut`).
    fn cut(&mut self, now: i64) {
        let step = self.cfg.active_ns;
        let at = self.next_cut;
        self.next_cut = (now.div_euclid(step) + 1).saturating_mul(step);
        if at == i64::MIN {
            return; // the first packet or advance: nothing metered yet
        }
        let dirty = std::mem::take(&mut self.dirty);
        for &(i, gen) in &dirty {
            let f = &mut self.slab[i as usize];
            if f.gen != gen || f.tick < 0 {
                continue; // ended since, with its record
            }
            f.key.bits &= !F_DIRTY;
            if self.deadline(i) <= at {
                let r = self.natural_reason(i);
                self.end(i, r, at);
                continue;
            }
            let f = &mut self.slab[i as usize];
            let closing = f.tcp.as_ref().map_or(CLOSING_NONE, |t| t.closing);
            if closing != CLOSING_NONE && f.key.bits & F_END_SENT == 0 {
                f.key.bits |= F_END_SENT;
                self.export(i, closing_reason(closing), at);
            } else {
                self.export(i, R_ACTIVE, at);
            }
            self.new_slice(i);
        }
        self.dirty = dirty;
        self.dirty.clear(); // keeps its capacity
    }

    fn create(&mut self, key: Key, hash: u64, sender_lo: bool, p: &Pkt) -> u32 {
        if self.index.len() >= self.cfg.max_flows {
            self.evict_one(p.ts);
        }
        let rii = (self.oracle)(&p.src, &p.dst, p.ver == 6);
        let mut aux = 0;
        let mut tcp = None;
        if p.proto == 6 {
            tcp = Some(Box::new(Tcp::new()));
        } else if p.proto == 1 || p.proto == 58 {
            aux = ((p.itype.max(0) as u32) << 8) | p.icode.max(0) as u32;
        }
        if self.created_seq == u32::MAX {
            self.renumber_created();
        }
        self.created_seq += 1;
        let stored = if key.v6 {
            let pair = [key.lo, key.hi];
            let j = match self.v6_free.pop() {
                Some(j) => {
                    self.v6_addrs[j as usize] = pair;
                    j
                }
                None => {
                    self.v6_addrs.push(pair);
                    (self.v6_addrs.len() - 1) as u32
                }
            };
            (j, 0)
        } else {
            (v4_word(&key.lo), v4_word(&key.hi))
        };
        let flow = Flow {
            key: StoredKey {
                lo: stored.0,
                hi: stored.1,
                lo_port: key.lo_port,
                hi_port: if p.proto == 1 || p.proto == 58 {
                    aux
                } else {
                    key.hi_port
                },
                vlan: key.vlan,
                proto: key.proto,
                bits: if key.v6 { K_V6 } else { 0 }
                    | if sender_lo { F_LO_INIT } else { 0 }
                    | if rii { F_RII } else { 0 },
            },
            flags_f: 0,
            flags_r: 0,
            gen: 0,
            first_ns: p.ts,
            last_ns: p.ts,
            bytes_f: 0,
            bytes_r: 0,
            pkts_f: 0,
            pkts_r: 0,
            tick: 0,
            created: self.created_seq,
            dscp: p.dscp,
            tcp,
            lat: None,
        };
        let i = match self.free.pop() {
            Some(i) => {
                let gen = self.slab[i as usize].gen;
                self.slab[i as usize] = Flow { gen, ..flow };
                i
            }
            None => {
                if self.slab.len() == self.slab.capacity() {
                    // grow by a sixteenth: little of the slab idle after a growth, copies stay amortized
                    let extra = (self.slab.len() / 16).max(1024);
                    self.slab.reserve_exact(extra);
                }
                self.slab.push(flow);
                (self.slab.len() - 1) as u32
            }
        };
        let (slab, v6, hasher) = (&self.slab, &self.v6_addrs, &self.hasher);
        self.index.insert_unique(hash, i, |&j| {
            hasher.hash_one(slab[j as usize].key.expand(v6))
        });
        self.counters.flows_created += 1;
        let d = p.ts + self.cfg.idle_ns;
        self.schedule(i, d);
        i
    }

    /// Live flows numbered 1..=n in their creation order, so the counter goes on without wrapping.
    fn renumber_created(&mut self) {
        let mut live: Vec<(u32, u32)> = Vec::with_capacity(self.index.len());
        for (i, f) in self.slab.iter().enumerate() {
            if f.tick >= 0 {
                live.push((f.created, i as u32));
            }
        }
        live.sort_unstable();
        for (n, &(_, i)) in live.iter().enumerate() {
            self.slab[i as usize].created = n as u32 + 1;
        }
        self.created_seq = live.len() as u32;
    }

    fn reorient(&mut self, idx: usize) {
        let f = &mut self.slab[idx];
        f.key.bits ^= F_LO_INIT;
        std::mem::swap(&mut f.bytes_f, &mut f.bytes_r);
        std::mem::swap(&mut f.pkts_f, &mut f.pkts_r);
        std::mem::swap(&mut f.flags_f, &mut f.flags_r);
        if let Some(t) = &mut f.tcp {
            t.swap();
        }
        if let Some(l) = &mut f.lat {
            l.reoriented();
        }
        let k = f.key.expand(&self.v6_addrs);
        let (a, b) = if f.lo_init() {
            (k.lo, k.hi)
        } else {
            (k.hi, k.lo)
        };
        let v6 = k.v6;
        let rii = (self.oracle)(&a, &b, v6);
        let k = &mut self.slab[idx].key;
        k.bits = (k.bits & !F_RII) | if rii { F_RII } else { 0 };
        self.counters.reoriented += 1;
    }

    fn deadline(&self, i: u32) -> i64 {
        let f = &self.slab[i as usize];
        let closing = f.tcp.as_ref().is_some_and(|t| t.closing != CLOSING_NONE);
        f.last_ns
            + if closing {
                self.cfg.grace_ns
            } else {
                self.cfg.idle_ns
            }
    }

    fn natural_reason(&self, i: u32) -> u8 {
        let f = &self.slab[i as usize];
        match f.tcp.as_ref().map_or(CLOSING_NONE, |t| t.closing) {
            CLOSING_NONE => R_IDLE,
            c => closing_reason(c),
        }
    }

    fn ceil_tick(&self, deadline: i64) -> i64 {
        -((-deadline).div_euclid(self.cfg.tick_ns))
    }

    fn schedule(&mut self, i: u32, deadline: i64) {
        let tick = self.ceil_tick(deadline);
        let f = &mut self.slab[i as usize];
        f.tick = tick;
        let gen = f.gen;
        match self.buckets.get_mut(&tick) {
            Some(q) => q.push_back((i, gen)),
            None => {
                let mut q = VecDeque::with_capacity(4);
                q.push_back((i, gen));
                self.buckets.insert(tick, q);
                self.ticks.push(Reverse(tick));
            }
        }
    }

    fn evict_one(&mut self, now: i64) {
        while let Some(&Reverse(tick)) = self.ticks.peek() {
            loop {
                let entry = match self.buckets.get_mut(&tick).and_then(|q| q.pop_front()) {
                    None => break,
                    Some(e) => e,
                };
                let (i, gen) = entry;
                let f = &self.slab[i as usize];
                if f.gen != gen || f.tick != tick {
                    continue;
                }
                let deadline = self.deadline(i);
                if self.ceil_tick(deadline) > tick {
                    self.schedule(i, deadline);
                    continue;
                }
                if self.buckets.get(&tick).is_none_or(|q| q.is_empty()) {
                    self.ticks.pop();
                    self.buckets.remove(&tick);
                }
                if deadline <= now {
                    let r = self.natural_reason(i);
                    self.end(i, r, now);
                } else {
                    self.counters.evicted += 1;
                    self.end(i, R_EVICTED, now);
                }
                return;
            }
            self.ticks.pop();
            self.buckets.remove(&tick);
        }
    }

    fn end(&mut self, i: u32, reason: u8, now: i64) {
        let stored = self.slab[i as usize].key;
        let hash = self.hasher.hash_one(stored.expand(&self.v6_addrs));
        if let Ok(e) = self.index.find_entry(hash, |&j| j == i) {
            e.remove();
        }
        let f = &self.slab[i as usize];
        if f.has_packets() {
            let r = if f.key.bits & F_END_SENT != 0 {
                R_ACTIVE
            } else {
                reason
            };
            self.export(i, r, now);
        }
        let f = &mut self.slab[i as usize];
        f.tick = -1;
        f.gen = f.gen.wrapping_add(1);
        f.tcp = None;
        f.lat = None;
        self.free.push(i);
        if stored.v6() {
            self.v6_free.push(stored.lo);
        }
    }

    fn export(&mut self, i: u32, reason: u8, now: i64) {
        let f = &self.slab[i as usize];
        let k = &f.key.expand(&self.v6_addrs);
        let (mut src, mut sport, mut dst, mut dport) = if f.lo_init() {
            (k.lo, k.lo_port, k.hi, k.hi_port)
        } else {
            (k.hi, k.hi_port, k.lo, k.lo_port)
        };
        if !k.v6 {
            src[4..].fill(0);
            dst[4..].fill(0);
        }
        if k.proto == 1 || k.proto == 58 {
            sport = 0;
            dport = f.key.hi_port;
        }
        let (mut resp, mut init) = (NONE, NONE);
        let mut sums: [Option<SumOut>; 3] = [None, None, None];
        if let Some(l) = &f.lat {
            (resp, init) = l.hs_legs();
            // the flow's protocol says which kind of sample its one summary holds
            let slot = match k.proto {
                6 => 0,
                1 | 58 => 1,
                _ => 2,
            };
            if l.sum.count > 0 {
                sums[slot] = Some(sum_out(&l.sum, l.hist()));
            }
        }
        let (rf, rr) = f
            .tcp
            .as_ref()
            .map_or((0, 0), |t| (t.retrans_f, t.retrans_r));
        self.out.push(Rec {
            reason,
            export_ns: now,
            v6: k.v6,
            src,
            dst,
            sport,
            dport,
            proto: k.proto,
            vlan: k.vlan,
            first_ns: f.first_ns,
            last_ns: f.last_ns,
            bytes_f: f.bytes_f,
            pkts_f: f.pkts_f,
            bytes_r: f.bytes_r,
            pkts_r: f.pkts_r,
            flags_f: f.flags_f,
            flags_r: f.flags_r,
            retrans_f: rf,
            retrans_r: rr,
            hs_resp_ns: resp,
            hs_init_ns: init,
            sums,
            dscp: f.dscp,
        });
        self.counters.records += 1;
        self.counters.exported[reason as usize] += 1;
    }

    fn new_slice(&mut self, i: u32) {
        // last_ns stays: the idle timeout runs from the flow's last packet; the next packet sets first_ns.
        let f = &mut self.slab[i as usize];
        f.bytes_f = 0;
        f.pkts_f = 0;
        f.bytes_r = 0;
        f.pkts_r = 0;
        f.flags_f = 0;
        f.flags_r = 0;
        if let Some(t) = &mut f.tcp {
            t.reset_counts();
        }
        if let Some(l) = &mut f.lat {
            l.new_slice();
        }
    }
}

fn closing_reason(c: u8) -> u8 {
    if c == CLOSING_FIN {
        R_FIN
    } else {
        R_RST
    }
}

fn sum_out(s: &Summary, mut hist: Vec<(u16, u32)>) -> SumOut {
    hist.sort_unstable();
    SumOut {
        count: s.count,
        min_us: s.min_us,
        max_us: s.max_us,
        sum_us: s.sum_us,
        hist,
    }
}
