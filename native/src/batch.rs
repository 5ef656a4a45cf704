//! A batch of encoded FlowRecords for Python: Kafka keys and values (newline-terminated, so Python splits them
//! in one C call and never handles a record by itself) and the per-partner aggregates the agent's metrics need
//! (ingest.agent_metrics.PartnerTally: traffic per partner, direction and link; handshake RTT histograms).
//! Shared by the capture engine and the router collector.

use hashbrown::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::IntoPyObjectExt;

use crate::classify::{Names, EGRESS, INGRESS};
use crate::record::{self, Record};

/// What every record of one engine carries unchanged.
pub struct Stamp {
    pub agent_id: String,
    pub link_id: String,
    pub sampling_rate: u64,
    pub sampling_mode: String,
}

#[derive(Default)]
pub struct Batch {
    pub count: u64,
    pub keys: Vec<u8>,
    pub values: Vec<u8>,
    /// (partner, direction, link) -> (octets, packets), scaled by the sampling rate.
    traffic: HashMap<(u32, u32, u32), (u128, u128)>,
    /// (partner, direction) -> (per-bucket counts, last one +Inf; sum of the totals in seconds).
    handshake: HashMap<(u32, u32, u32), (Vec<u64>, f64)>, // (partner, direction, class)
    classes: Vec<String>, // application classes met, by index (a few: the configuration bounds them)
    /// partner -> records
    records: HashMap<u32, u64>,
    secs: record::Seconds,
}

fn opposite(d: u32) -> u32 {
    match d {
        EGRESS => INGRESS,
        INGRESS => EGRESS,
        d => d,
    }
}

impl Batch {
    /// Encode `r` (key and value) and count it, with the indexes of its partner, direction and link.
    pub fn add(&mut self, r: &Record<'_>, ids: (u32, u32, u32), hs_bounds: &[f64]) {
        record::key(&mut self.keys, r);
        self.keys.push(b'\n');
        record::encode_with(&mut self.values, r, &mut self.secs);
        self.values.push(b'\n');
        self.count += 1;
        let (partner, direction, link) = ids;
        *self.records.entry(partner).or_default() += 1;
        let rate = r.sampling_rate.max(1) as u128;
        if r.packets_fwd != 0 {
            let t = self.traffic.entry((partner, direction, link)).or_default();
            t.0 += r.bytes_fwd as u128 * rate;
            t.1 += r.packets_fwd as u128 * rate;
        }
        if r.packets_rev != 0 {
            let t = self
                .traffic
                .entry((partner, opposite(direction), link))
                .or_default();
            t.0 += r.bytes_rev as u128 * rate;
            t.1 += r.packets_rev as u128 * rate;
        }
        if let (Some(ext), Some(int)) = (r.hs_rtt_ext_us, r.hs_rtt_int_us) {
            let class = match self.classes.iter().position(|c| c == r.app_class) {
                Some(i) => i,
                None => {
                    self.classes.push(r.app_class.to_owned());
                    self.classes.len() - 1
                }
            } as u32;
            let h = self
                .handshake
                .entry((partner, direction, class))
                .or_insert_with(|| (vec![0; hs_bounds.len() + 1], 0.0));
            // the same float arithmetic as Python's Histogram.observe((ext + int) / 1e6): first bound >= value
            let v = (ext + int) as f64 / 1e6;
            let i = hs_bounds.partition_point(|&b| b < v);
            h.0[i] += 1;
            h.1 += v;
        }
    }

    /// (count, keys, values, traffic [(partner, direction, link, octets, packets)],
    ///  handshake [(partner, direction, counts, sum_s)], records [(partner, n)]); leaves the batch empty.
    pub fn take<'py>(&mut self, py: Python<'py>, names: &Names) -> PyResult<Bound<'py, PyTuple>> {
        let traffic: Vec<Bound<'py, PyTuple>> = self
            .traffic
            .drain()
            .map(|((p, d, l), (o, n))| {
                (names.get(p), names.get(d), names.get(l), o, n).into_pyobject(py)
            })
            .collect::<PyResult<_>>()?;
        let handshake: Vec<Bound<'py, PyTuple>> = self
            .handshake
            .drain()
            .map(|((p, d, k), (c, s))| {
                (names.get(p), names.get(d), &self.classes[k as usize], c, s).into_pyobject(py)
            })
            .collect::<PyResult<_>>()?;
        let records: Vec<(&str, u64)> = self
            .records
            .drain()
            .map(|(p, n)| (names.get(p), n))
            .collect();
        let out = (
            self.count,
            PyBytes::new(py, &self.keys),
            PyBytes::new(py, &self.values),
            traffic,
            handshake,
            records,
        )
            .into_bound_py_any(py)?
            .cast_into::<PyTuple>()?;
        // the buffers keep their capacity: the next batch writes into pages already mapped
        self.count = 0;
        self.keys.clear();
        self.values.clear();
        Ok(out)
    }

    /// Forget what was added since the last take (an error stopped the batch).
    pub fn discard(&mut self) {
        self.count = 0;
        self.keys.clear();
        self.values.clear();
        self.traffic.clear();
        self.handshake.clear();
        self.records.clear();
    }
}
