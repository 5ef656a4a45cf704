//! gwtel_native: the agent's per-packet work (capture reading, decoding, fragments, flow table, RTT) in one
//! batch call per chunk of a capture file, with exactly the semantics of the Python reference in `ingest/`.
//! Python keeps classification, record building and transport; it sees finished flows only, as tuples.

mod decode;
mod export;
mod latency;
mod meter;
#[cfg(test)]
mod proptests;
mod reader;
mod ring;

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use pyo3::IntoPyObjectExt;

use decode::{DecodeConfig, REJECT_NAMES};
use latency::{ns_to_us, NONE};
use meter::{Core, MeterConfig, Rec, SumOut, REASON_NAMES};
use reader::Reader;
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

fn addr_bytes(a: &[u8; 16], v6: bool) -> &[u8] {
    if v6 {
        &a[..]
    } else {
        &a[..4]
    }
}

/// remote_is_initiator from a per-address "is domestic" callable (cached here), or a per-flow callable.
fn make_oracle(
    domestic: Option<Py<PyAny>>,
    pair: Option<Py<PyAny>>,
    err: Arc<Mutex<Option<PyErr>>>,
) -> meter::Oracle {
    let mut cache: HashMap<([u8; 16], bool), bool> = HashMap::new();
    Box::new(move |src: &[u8; 16], dst: &[u8; 16], v6: bool| -> bool {
        Python::attach(|py| {
            let call1 = |f: &Py<PyAny>, args: Vec<&[u8]>| -> bool {
                let t: Vec<Bound<PyBytes>> = args.iter().map(|a| PyBytes::new(py, a)).collect();
                let r = PyTuple::new(py, t)
                    .and_then(|t| f.call1(py, t))
                    .and_then(|v| v.is_truthy(py));
                match r {
                    Ok(b) => b,
                    Err(e) => {
                        err.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        false
                    }
                }
            };
            if let Some(f) = &domestic {
                let mut dom = |a: &[u8; 16]| -> bool {
                    if let Some(&d) = cache.get(&(*a, v6)) {
                        return d;
                    }
                    let d = call1(f, vec![addr_bytes(a, v6)]);
                    if cache.len() >= ORACLE_CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert((*a, v6), d);
                    d
                };
                let s = dom(src);
                let d = dom(dst);
                !s && d
            } else if let Some(f) = &pair {
                call1(f, vec![addr_bytes(src, v6), addr_bytes(dst, v6)])
            } else {
                false
            }
        })
    })
}

fn sum_obj<'py>(py: Python<'py>, s: &Option<SumOut>) -> PyResult<Bound<'py, PyAny>> {
    match s {
        None => Ok(py.None().into_bound(py)),
        Some(s) => {
            let hist = PyTuple::new(py, s.hist.iter().map(|&(b, c)| (b, c)))?;
            (s.count, s.min_us, s.max_us, s.sum_us, hist).into_bound_py_any(py)
        }
    }
}

fn opt_us<'py>(py: Python<'py>, ns: i64) -> PyResult<Bound<'py, PyAny>> {
    if ns == NONE {
        Ok(py.None().into_bound(py))
    } else {
        ns_to_us(ns).into_bound_py_any(py)
    }
}

fn rec_obj<'py>(py: Python<'py>, r: &Rec) -> PyResult<Bound<'py, PyTuple>> {
    let items: Vec<Bound<'py, PyAny>> = vec![
        REASON_NAMES[r.reason as usize].into_bound_py_any(py)?,
        r.export_ns.into_bound_py_any(py)?,
        (if r.v6 { 6 } else { 4 }).into_bound_py_any(py)?,
        PyBytes::new(py, addr_bytes(&r.src, r.v6)).into_any(),
        r.sport.into_bound_py_any(py)?,
        PyBytes::new(py, addr_bytes(&r.dst, r.v6)).into_any(),
        r.dport.into_bound_py_any(py)?,
        r.proto.into_bound_py_any(py)?,
        r.vlan.into_bound_py_any(py)?,
        r.first_ns.into_bound_py_any(py)?,
        r.last_ns.into_bound_py_any(py)?,
        r.bytes_f.into_bound_py_any(py)?,
        r.pkts_f.into_bound_py_any(py)?,
        r.bytes_r.into_bound_py_any(py)?,
        r.pkts_r.into_bound_py_any(py)?,
        r.flags_f.into_bound_py_any(py)?,
        r.flags_r.into_bound_py_any(py)?,
        r.retrans_f.into_bound_py_any(py)?,
        r.retrans_r.into_bound_py_any(py)?,
        opt_us(py, r.hs_resp_ns)?,
        opt_us(py, r.hs_init_ns)?,
        sum_obj(py, &r.sums[0])?,
        sum_obj(py, &r.sums[1])?,
        sum_obj(py, &r.sums[2])?,
    ];
    PyTuple::new(py, items)
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
        bucket_thresholds, domestic=None, remote_is_initiator=None))]
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
        domestic: Option<Py<PyAny>>,
        remote_is_initiator: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
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
        let oracle = make_oracle(domestic, remote_is_initiator, err.clone());
        Ok(Engine {
            core: Core::new(cfg, dcfg, bucket_thresholds, oracle),
            reader: None,
            pending: Vec::new(),
            oracle_err: err,
            live: None,
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
        if let Some(e) = self.oracle_err.lock().unwrap_or_else(|p| p.into_inner()).take() {
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

    /// Finished flows since the last call, in export order.
    fn take<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let recs = std::mem::take(&mut self.core.out);
        let items: Vec<Bound<'py, PyTuple>> = recs
            .iter()
            .map(|r| rec_obj(py, r))
            .collect::<PyResult<_>>()?;
        PyList::new(py, items)
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

#[pymodule]
fn gwtel_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_class::<export::py::Collector>()?;
    m.add("ABI", 4)?;
    Ok(())
}
