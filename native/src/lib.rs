//! gwtel_native: the agent's per-packet work (capture reading, decoding, fragments, flow table, RTT) in one
//! batch call per chunk of a capture file, with exactly the semantics of the Python reference in `ingest/`.
//! Finished flows are classified (per-address answers of Python's classifier, cached) and encoded here too:
//! Python receives batches of Kafka keys and values and per-partner aggregates, never single records.

mod anon;
mod apps;
mod batch;
mod classify;
mod decode;
mod export;
#[cfg(test)]
mod fuzz;
mod latency;
mod meter;
#[cfg(test)]
mod proptests;
mod reader;
mod record;
mod ring;

use std::fs::File;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use pyo3::IntoPyObjectExt;

use apps::{AppArgs, Apps, FlowFacts};
use batch::{Batch, Stamp};
use classify::{Classifier, Rules};
use decode::{DecodeConfig, REJECT_NAMES};
use latency::{ns_to_us, NONE};
use meter::{Core, MeterConfig, Rec, REASON_NAMES};
use reader::Reader;
use record::Record;
use ring::{parse_block, Ring, RingConfig, RingError, RingResult};

const LINKTYPE_ETHERNET: u32 = 1;

const ORACLE_CACHE_MAX: usize = 1 << 20;

// Send + Sync (not `unsendable`): Python's cycle collector may free an engine on whichever thread it
// runs, such as the Kafka client's sender thread.
#[pyclass(module = "gwtel_native")]
struct Engine {
    core: Core,
    reader: Option<Reader>,
    pending: Vec<u8>, // bytes pushed and not parsed yet
    oracle_err: Arc<Mutex<Option<PyErr>>>,
    live: Option<Live>,
    records: Records,
}

/// A live capture ring and what metering its frames needs.
struct Live {
    ring: Ring,
    lt: u32,
    skip_outgoing: bool,
    scratch: Vec<u8>, // a frame with its 802.1Q tag put back
}

impl Live {
    /// Meter every frame of ready blocks (at most `max_blocks`); returns (frames, blocks).
    fn meter(
        &mut self,
        core: &mut Core,
        timeout_ms: i32,
        max_blocks: usize,
    ) -> RingResult<(u64, usize)> {
        let Live {
            ring,
            lt,
            skip_outgoing,
            scratch,
        } = self;
        let (lt, skip_outgoing) = (*lt, *skip_outgoing);
        let mut frames = 0u64;
        let mut damaged = 0u64;
        let blocks = ring.read_blocks(timeout_ms, max_blocks, |block| {
            let (_, bad) = parse_block(block, |f| {
                if skip_outgoing && f.outgoing {
                    return;
                }
                frames += 1;
                match f.vlan {
                    // Linux takes the 802.1Q tag off the frame and reports it beside it: put it back, so the
                    // decoder sees the frame as it was on the wire.
                    Some((tpid, tci)) if lt == LINKTYPE_ETHERNET && f.data.len() >= 12 => {
                        scratch.clear();
                        scratch.extend_from_slice(&f.data[..12]);
                        scratch.extend_from_slice(&tpid.to_be_bytes());
                        scratch.extend_from_slice(&tci.to_be_bytes());
                        scratch.extend_from_slice(&f.data[12..]);
                        core.feed(f.ts_ns, lt, scratch, f.wire + 4);
                    }
                    _ => core.feed(f.ts_ns, lt, f.data, f.wire),
                }
            });
            damaged += bad as u64;
        })?;
        ring.damaged_blocks += damaged;
        Ok((frames, blocks))
    }
}

/// The engine refuses a schema it does not encode (FLOW_RECORD_FIELDS is the one definition).
pub(crate) fn check_fields(fields: &[String]) -> PyResult<()> {
    if fields
        .iter()
        .map(String::as_str)
        .ne(record::FIELDS.iter().copied())
    {
        return Err(PyValueError::new_err(
            "FLOW_RECORD_FIELDS differs from the fields this engine encodes: rebuild gwtel_native",
        ));
    }
    Ok(())
}

fn opt_us(ns: i64) -> Option<i64> {
    (ns != NONE).then(|| ns_to_us(ns))
}

/// Scratch space of the encoder: address texts and histogram bins of the record being written.
#[derive(Default)]
struct Scratch {
    src: String,
    dst: String,
    hist: [Vec<(u64, u64)>; 3],
    sides: Vec<classify::PairSides>,
}

/// Everything a capture engine's finished flows need to become FlowRecords.
struct Records {
    cls: Arc<Mutex<Classifier>>,
    stamp: Stamp,
    link: u32, // the link id's index among the classifier's names
    apps: Apps,
    hs_bounds: Vec<f64>,
    batch: Batch,
    scratch: Scratch,
    anon: Option<anon::Anonymiser>, // addresses are anonymised after classification
}

impl Records {
    /// Classify and encode the finished flows `recs`, numbered from `seq`.
    fn add(&mut self, recs: &[Rec], mut seq: u64) {
        let mut cls = self.cls.lock().unwrap_or_else(|p| p.into_inner());
        let Scratch {
            src,
            dst,
            hist,
            sides,
        } = &mut self.scratch;
        // one question to the classifier about the addresses it has not cached (most were asked at the flows'
        // start); none when it is called per flow
        cls.pair_sides(recs.iter().map(|r| (&r.src, &r.dst, r.v6)), sides);
        for (i, r) in recs.iter().enumerate() {
            let c = match sides.get(i) {
                Some(&pair) => cls.flow_of(pair, self.link),
                None => cls.flow(&r.src, &r.dst, r.v6, self.link),
            };
            let n = if r.v6 { 16 } else { 4 };
            anon::ip_text(self.anon.as_mut(), src, &r.src[..n]);
            anon::ip_text(self.anon.as_mut(), dst, &r.dst[..n]);
            let (resp, init) = (opt_us(r.hs_resp_ns), opt_us(r.hs_init_ns));
            let (ext, int) = if c.remote_is_initiator {
                (init, resp)
            } else {
                (resp, init)
            };
            for (h, s) in hist.iter_mut().zip(&r.sums) {
                h.clear();
                if let Some(s) = s {
                    h.extend(s.hist.iter().map(|&(b, c)| (b as u64, c as u64)));
                }
            }
            let sum = |i: usize| match &r.sums[i] {
                None => record::Summary::default(),
                Some(s) => record::Summary {
                    count: s.count,
                    min_us: Some(s.min_us),
                    max_us: Some(s.max_us),
                    sum_us: s.sum_us,
                    hist: &hist[i],
                },
            };
            let app_class = self.apps.class(&FlowFacts {
                protocol: r.proto,
                server_port: r.dport,
                dscp: r.dscp,
                src: &r.src,
                dst: &r.dst,
                v6: r.v6,
                remote_is_initiator: c.remote_is_initiator,
                remote_asn: c.asn,
                link: &self.stamp.link_id,
            });
            let names = &cls.names;
            let rec = Record {
                schema_version: 1,
                agent_id: &self.stamp.agent_id,
                seq,
                link_id: &self.stamp.link_id,
                sampling_rate: self.stamp.sampling_rate,
                ip_version: if r.v6 { 6 } else { 4 },
                src_ip: src,
                src_port: r.sport as u64,
                dst_ip: dst,
                dst_port: r.dport as u64,
                protocol: r.proto as u64,
                vlan: r.vlan as u64,
                first_ns: r.first_ns,
                last_ns: r.last_ns,
                export_ns: r.export_ns,
                end_reason: REASON_NAMES[r.reason as usize],
                bytes_fwd: r.bytes_f,
                packets_fwd: r.pkts_f,
                bytes_rev: r.bytes_r,
                packets_rev: r.pkts_r,
                tcp_flags_fwd: r.flags_f as u64,
                tcp_flags_rev: r.flags_r as u64,
                retrans_fwd: r.retrans_f,
                retrans_rev: r.retrans_r,
                hs_rtt_ext_us: ext,
                hs_rtt_int_us: int,
                sums: [sum(0), sum(1), sum(2)],
                direction: names.get(c.direction),
                partner: names.get(c.partner),
                remote_country: names.get(c.country),
                remote_asn: c.asn,
                sampling_mode: &self.stamp.sampling_mode,
                dscp: r.dscp as u64,
                app_class,
                ..Record::default()
            };
            self.batch
                .add(&rec, (c.partner, c.direction, self.link), &self.hs_bounds);
            seq += 1;
        }
    }
}

/// Parse and meter every complete record of `buf`.
fn pump(
    core: &mut Core,
    rd: &mut Reader,
    buf: &[u8],
    eof: bool,
    err: &Mutex<Option<PyErr>>,
) -> PyResult<()> {
    rd.each_frame(buf, eof, |ts, lt, frame, wire| {
        core.feed(ts, lt, frame, wire)
    });
    if let Some(e) = err.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    Ok(())
}

/// OSError(errno, message), so Python sees errno (EPERM, ENODEV...) as from any system call.
fn os_error(e: RingError) -> PyErr {
    pyo3::exceptions::PyOSError::new_err((e.errno, e.msg))
}

fn not_begun() -> PyErr {
    PyRuntimeError::new_err("no capture file begun")
}

impl Engine {
    fn pump_pending(&mut self, eof: bool) -> PyResult<()> {
        let Engine {
            core,
            reader,
            pending,
            oracle_err,
            ..
        } = self;
        let rd = reader.as_mut().ok_or_else(not_begun)?;
        let r = pump(core, rd, pending, eof, oracle_err);
        let used = rd.consumed();
        pending.drain(..used);
        r
    }
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (*, idle_ns, active_ns, grace_ns, tick_ns, ooo_ns, max_flows, max_pending_ts,
        max_pending_echo, frag_max, frag_timeout_ns, decap_gre, decap_vxlan, decap_gtp, vxlan_port, gtp_port,
        bucket_thresholds, fields, agent_id, link_id, sampling_rate, sampling_mode, rules, apps, handshake_bounds,
        sides=None, classify=None, address_cache=ORACLE_CACHE_MAX, anon_key=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        idle_ns: i64,
        active_ns: i64,
        grace_ns: i64,
        tick_ns: i64,
        ooo_ns: i64,
        max_flows: usize,
        max_pending_ts: usize,
        max_pending_echo: usize,
        frag_max: usize,
        frag_timeout_ns: i64,
        decap_gre: bool,
        decap_vxlan: bool,
        decap_gtp: bool,
        vxlan_port: u32,
        gtp_port: u32,
        bucket_thresholds: Vec<u64>,
        fields: Vec<String>,
        agent_id: String,
        link_id: String,
        sampling_rate: u64,
        sampling_mode: String,
        rules: Rules,
        apps: AppArgs,
        handshake_bounds: Vec<f64>,
        sides: Option<Py<PyAny>>,
        classify: Option<Py<PyAny>>,
        address_cache: usize,
        anon_key: Option<Vec<u8>>,
    ) -> PyResult<Self> {
        check_fields(&fields)?;
        let anon = anon::from_key(anon_key, address_cache).map_err(PyValueError::new_err)?;
        if idle_ns <= 0
            || active_ns <= 0
            || grace_ns <= 0
            || tick_ns <= 0
            || ooo_ns < 0
            || frag_timeout_ns <= 0
        {
            return Err(PyValueError::new_err("timeouts must be > 0"));
        }
        if max_flows < 1 || max_pending_ts < 1 || max_pending_echo < 1 || frag_max < 1 {
            return Err(PyValueError::new_err("table sizes must be >= 1"));
        }
        if bucket_thresholds.len() >= u16::MAX as usize {
            // bucket numbers are u16 and a flow's count of distinct buckets must fit one too
            return Err(PyValueError::new_err("too many histogram buckets"));
        }
        let apps = Apps::new(&apps).map_err(PyValueError::new_err)?;
        let err = Arc::new(Mutex::new(None));
        let cfg = MeterConfig {
            idle_ns,
            active_ns,
            grace_ns,
            tick_ns,
            ooo_ns,
            max_flows,
            max_pending_ts,
            max_pending_echo,
            frag_max,
            frag_timeout_ns,
        };
        let dcfg = DecodeConfig {
            decap_gre,
            decap_vxlan,
            decap_gtp,
            vxlan_port,
            gtp_port,
        };
        let mut cls = match (sides, classify) {
            (Some(sides), None) => Classifier::cached(sides, address_cache, &rules, err.clone()),
            (None, Some(f)) => Classifier::per_flow(f, &rules, err.clone()),
            _ => {
                return Err(PyValueError::new_err(
                    "give exactly one of sides and classify",
                ))
            }
        };
        let link = cls.names.id(&link_id);
        let cls = Arc::new(Mutex::new(cls));
        let oc = cls.clone();
        // the meter asks at a flow's start which side opened it (latency attribution)
        let oracle: meter::Oracle = Box::new(move |src: &[u8; 16], dst: &[u8; 16], v6: bool| {
            oc.lock()
                .unwrap_or_else(|p| p.into_inner())
                .remote_is_initiator(src, dst, v6)
        });
        Ok(Engine {
            core: Core::new(cfg, dcfg, bucket_thresholds, oracle),
            reader: None,
            pending: Vec::new(),
            oracle_err: err,
            live: None,
            records: Records {
                cls,
                stamp: Stamp {
                    agent_id,
                    link_id,
                    sampling_rate,
                    sampling_mode,
                },
                link,
                apps,
                hs_bounds: handshake_bounds,
                batch: Batch::default(),
                scratch: Scratch::default(),
                anon,
            },
        })
    }

    /// Start a capture stream; `limit` stops after that many frames.
    #[pyo3(signature = (compressed, limit=None))]
    fn begin(&mut self, compressed: bool, limit: Option<u64>) {
        let mut r = Reader::new(compressed);
        if let Some(l) = limit {
            r.limit = l;
        }
        self.reader = Some(r);
        self.pending.clear();
    }

    /// Process the next bytes of the stream.
    fn push(&mut self, data: &[u8]) -> PyResult<()> {
        self.pending.extend_from_slice(data);
        self.pump_pending(false)
    }

    /// Meter a whole uncompressed file, mapped into memory (no copy of its bytes).
    fn push_file(&mut self, path: &str) -> PyResult<()> {
        let f = File::open(path).map_err(|e| PyRuntimeError::new_err(format!("{path}: {e}")))?;
        let empty = f.metadata().map(|m| m.len() == 0).unwrap_or(false);
        let map = if empty {
            None
        } else {
            // SAFETY: the file is only read; a capture truncated by a writer meanwhile can fault (as in any reader).
            let m = unsafe { memmap2::Mmap::map(&f) }
                .map_err(|e| PyRuntimeError::new_err(format!("{path}: {e}")))?;
            let _ = m.advise(memmap2::Advice::Sequential);
            Some(m)
        };
        let buf: &[u8] = map.as_deref().unwrap_or(&[]);
        let Engine {
            core,
            reader,
            pending,
            oracle_err,
            ..
        } = self;
        let rd = reader.as_mut().ok_or_else(not_begun)?;
        if !pending.is_empty() {
            return Err(PyRuntimeError::new_err("push_file after push"));
        }
        let r = pump(core, rd, buf, true, oracle_err);
        rd.consumed();
        r
    }

    /// Meter frames handed over one by one (paced replay reads and paces them): (time ns, link type, bytes,
    /// wire length) each, in order.
    fn feed(&mut self, frames: Vec<(i64, u32, Vec<u8>, u64)>) -> PyResult<()> {
        for (ts, lt, data, wire) in &frames {
            self.core.feed(*ts, *lt, data, *wire);
        }
        if let Some(e) = self
            .oracle_err
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(e);
        }
        Ok(())
    }

    /// End of stream: returns (frames, skipped_bad_timestamp, skipped_blocks, error, over_snaplen) with error
    /// (reason, record number or None, byte offset or None) or None.
    fn end<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.pump_pending(true)?;
        self.pending = Vec::new();
        let rd = self.reader.take().ok_or_else(not_begun)?;
        let err = match &rd.error {
            None => py.None().into_bound(py),
            Some(e) => (e.reason.clone(), e.record_no, e.offset).into_bound_py_any(py)?,
        };
        (
            rd.frames,
            rd.skipped_bad_timestamp,
            rd.skipped_blocks,
            err,
            rd.over_snaplen,
        )
            .into_pyobject(py)
    }

    /// Open a TPACKET_V3 ring on interface `ifindex` with the encoded classic BPF `filter` (its return value is
    /// the snap length); `fanout_group` joins a PACKET_FANOUT_HASH group shared with other engines (0: a new group
    /// whose id the kernel picks unique in the network namespace). Returns the ring's fanout group id.
    #[pyo3(signature = (*, ifindex, linktype, filter, block_size, block_count, block_timeout_ms,
        fanout_group=None, fanout_defrag=true, promisc=true, loopback=false))]
    #[allow(clippy::too_many_arguments)]
    fn open_ring(
        &mut self,
        ifindex: i32,
        linktype: u32,
        filter: &[u8],
        block_size: u32,
        block_count: u32,
        block_timeout_ms: u32,
        fanout_group: Option<u16>,
        fanout_defrag: bool,
        promisc: bool,
        loopback: bool,
    ) -> PyResult<Option<u16>> {
        let cfg = RingConfig {
            ifindex,
            block_size,
            block_count,
            block_timeout_ms,
            filter: filter.to_vec(),
            fanout_group,
            fanout_defrag,
            promisc,
            ignore_outgoing: loopback,
        };
        self.live = None; // the old ring is unmapped and closed first
        let ring = Ring::open(&cfg).map_err(os_error)?;
        let group = ring.fanout_group;
        self.live = Some(Live {
            ring,
            lt: linktype,
            skip_outgoing: loopback,
            scratch: Vec::with_capacity(256),
        });
        Ok(group)
    }

    /// Meter the ring's ready blocks (at most `max_blocks`), waiting up to `timeout_ms` for the first, without
    /// the GIL. Returns (frames, blocks).
    fn poll_ring(
        &mut self,
        py: Python<'_>,
        timeout_ms: i32,
        max_blocks: usize,
    ) -> PyResult<(u64, usize)> {
        let Engine {
            core,
            live,
            oracle_err,
            ..
        } = self;
        let live = live
            .as_mut()
            .ok_or_else(|| PyRuntimeError::new_err("no ring open"))?;
        let r = py.detach(|| live.meter(core, timeout_ms, max_blocks));
        if let Some(e) = oracle_err.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        r.map_err(os_error)
    }

    /// Read the ring's ready blocks and count their frames without metering them (the benchmark's baseline: what
    /// reading the ring costs by itself). Returns (frames, blocks).
    fn skim_ring(
        &mut self,
        py: Python<'_>,
        timeout_ms: i32,
        max_blocks: usize,
    ) -> PyResult<(u64, usize)> {
        let live = self
            .live
            .as_mut()
            .ok_or_else(|| PyRuntimeError::new_err("no ring open"))?;
        let ring = &mut live.ring;
        let mut frames = 0u64;
        let mut sum = 0u64;
        let blocks = py
            .detach(|| {
                ring.read_blocks(timeout_ms, max_blocks, |b| {
                    parse_block(b, |f| {
                        frames += 1;
                        sum = sum.wrapping_add(f.wire); // touch each header, as metering does
                    });
                })
            })
            .map_err(os_error)?;
        std::hint::black_box(sum);
        Ok((frames, blocks))
    }

    /// Kernel and ring counters since the ring was opened: (packets, drops, freeze_q_cnt, link_down,
    /// damaged_blocks); the kernel's own counters are read (and reset there) on each call.
    fn ring_stats(&mut self) -> PyResult<(u64, u64, u64, u64, u64)> {
        let live = self
            .live
            .as_mut()
            .ok_or_else(|| PyRuntimeError::new_err("no ring open"))?;
        let r = &mut live.ring;
        let s = r.read_stats().map_err(os_error)?;
        Ok((
            s.packets,
            s.drops,
            s.freeze_q_cnt,
            r.link_down,
            r.damaged_blocks,
        ))
    }

    fn close_ring(&mut self) {
        self.live = None;
    }

    fn advance(&mut self, now_ns: i64) -> PyResult<()> {
        self.core.advance(now_ns);
        Ok(())
    }

    fn flush(&mut self) {
        self.core.flush();
    }

    /// Finished flows since the last call, in export order, classified and encoded with sequence numbers from
    /// `first_seq`: (count, keys, values, traffic, handshake), see `batch::Batch::take`.
    fn take<'py>(&mut self, py: Python<'py>, first_seq: u64) -> PyResult<Bound<'py, PyTuple>> {
        let recs = std::mem::take(&mut self.core.out);
        self.records.add(&recs, first_seq);
        if let Some(e) = self
            .oracle_err
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            self.records.batch.discard();
            return Err(e);
        }
        let cls = self.records.cls.lock().unwrap_or_else(|p| p.into_inner());
        self.records.batch.take(py, &cls.names)
    }

    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.core.counters;
        let d = PyDict::new(py);
        d.set_item("packets_seen", c.packets_seen)?;
        d.set_item("wire_bytes_seen", c.wire_bytes)?;
        d.set_item("packets_decoded", c.decoded)?;
        d.set_item("ip_bytes_decoded", c.ip_bytes)?;
        let rej = PyDict::new(py);
        for (i, n) in c.rejected.iter().enumerate() {
            if *n > 0 {
                rej.set_item(REJECT_NAMES[i], n)?;
            }
        }
        d.set_item("rejected", rej)?;
        let exp = PyDict::new(py);
        for (i, n) in c.exported.iter().enumerate() {
            if *n > 0 {
                exp.set_item(REASON_NAMES[i], n)?;
            }
        }
        d.set_item("exported", exp)?;
        d.set_item("records", c.records)?;
        d.set_item("meter_packets", c.meter_packets)?;
        d.set_item("meter_bytes", c.meter_bytes)?;
        d.set_item("flows_created", c.flows_created)?;
        d.set_item("evicted", c.evicted)?;
        d.set_item("reoriented", c.reoriented)?;
        d.set_item("out_of_order", c.out_of_order)?;
        d.set_item("active", self.core.active())?;
        d.set_item("frag_first", c.frag_first)?;
        d.set_item("frag_attributed", c.frag_attributed)?;
        d.set_item("frag_orphans", c.frag_orphans)?;
        d.set_item("frag_expired", c.frag_expired)?;
        d.set_item("frag_evicted", c.frag_evicted)?;
        let cls = self.records.cls.lock().unwrap_or_else(|p| p.into_inner());
        d.set_item("address_lookups", cls.lookups)?;
        d.set_item("address_misses", cls.misses)?;
        d.set_item("address_cache_clears", cls.clears)?;
        d.set_item("address_cache_size", cls.cache_len())?;
        Ok(d)
    }

    /// Heap bytes held by the flow table and per-flow state (allocation accounting).
    fn table_bytes(&self) -> usize {
        self.core.table_bytes()
    }

    /// `table_bytes` by component (flows, free_list, index, timers, tcp, latency, handshake, pending, histogram).
    fn table_breakdown<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.core.table_breakdown() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }
}

/// (key, value) of one record given as the values of FLOW_RECORD_FIELDS in order (histograms as (b, c) pairs):
/// the encoder on values of any origin, for its tests.
#[pyfunction]
fn encode_record<'py>(
    py: Python<'py>,
    v: &Bound<'py, PyTuple>,
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    if v.len() != record::FIELDS.len() {
        return Err(PyValueError::new_err("one value per field"));
    }
    // every value as text where it is one, so the record can borrow them
    let strs: Vec<Option<String>> = (0..v.len())
        .map(|i| Ok(v.get_item(i)?.extract::<String>().ok()))
        .collect::<PyResult<_>>()?;
    let s = |i: usize| -> PyResult<&str> {
        strs[i]
            .as_deref()
            .ok_or_else(|| PyValueError::new_err(format!("{} must be a str", record::FIELDS[i])))
    };
    let u = |i: usize| -> PyResult<u64> { v.get_item(i)?.extract() };
    let n = |i: usize| -> PyResult<i64> { v.get_item(i)?.extract() };
    let o = |i: usize| -> PyResult<Option<i64>> { v.get_item(i)?.extract() };
    let hists: Vec<Vec<(u64, u64)>> = [30, 35, 40]
        .iter()
        .map(|&i| v.get_item(i)?.extract())
        .collect::<PyResult<_>>()?;
    let sum = |k: usize| -> PyResult<record::Summary<'_>> {
        let i = 26 + 5 * k;
        Ok(record::Summary {
            count: u(i)?,
            min_us: o(i + 1)?,
            max_us: o(i + 2)?,
            sum_us: n(i + 3)?,
            hist: &hists[k],
        })
    };
    let r = Record {
        schema_version: u(0)?,
        agent_id: s(1)?,
        seq: u(2)?,
        link_id: s(3)?,
        sampling_rate: u(4)?,
        ip_version: u(5)?,
        src_ip: s(6)?,
        src_port: u(7)?,
        dst_ip: s(8)?,
        dst_port: u(9)?,
        protocol: u(10)?,
        vlan: u(11)?,
        first_ns: n(12)?,
        last_ns: n(13)?,
        export_ns: n(14)?,
        end_reason: s(15)?,
        bytes_fwd: u(16)?,
        packets_fwd: u(17)?,
        bytes_rev: u(18)?,
        packets_rev: u(19)?,
        tcp_flags_fwd: u(20)?,
        tcp_flags_rev: u(21)?,
        retrans_fwd: u(22)?,
        retrans_rev: u(23)?,
        hs_rtt_ext_us: o(24)?,
        hs_rtt_int_us: o(25)?,
        sums: [sum(0)?, sum(1)?, sum(2)?],
        direction: s(41)?,
        partner: s(42)?,
        remote_country: s(43)?,
        remote_asn: u(44)?,
        sampling_mode: s(45)?,
        exporter: s(46)?,
        in_if: u(47)?,
        out_if: u(48)?,
        src_asn: u(49)?,
        dst_asn: u(50)?,
        next_hop: s(51)?,
        one_way: u(52)?,
        dscp: u(53)?,
        app_class: s(54)?,
    };
    let (mut key, mut value) = (Vec::new(), Vec::new());
    record::key(&mut key, &r);
    record::encode(&mut value, &r);
    Ok((PyBytes::new(py, &key), PyBytes::new(py, &value)))
}

/// Text of a packed 4- or 16-byte address as the records write it (inet_ntop's form), for tests.
#[pyfunction]
fn address_text(a: &[u8]) -> PyResult<String> {
    if a.len() != 4 && a.len() != 16 {
        return Err(PyValueError::new_err("an address is 4 or 16 bytes"));
    }
    let mut s = String::new();
    record::ip_text(&mut s, a);
    Ok(s)
}

#[pymodule]
fn gwtel_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_class::<export::py::Collector>()?;
    m.add_function(wrap_pyfunction!(encode_record, m)?)?;
    m.add_function(wrap_pyfunction!(address_text, m)?)?;
    m.add("ABI", 9)?;
    Ok(())
}
