//! Python face of the collector: whole datagrams in (one framed batch per call), record tuples out.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use pyo3::IntoPyObjectExt;

use hashbrown::HashMap;
use std::sync::{Arc, Mutex};

use super::records::{Builder, ExporterMap};
use super::{Addr, Collector as Core, ExpRec, Limits, LinkCounter, KIND_NAMES, REASONS};
use crate::apps::{AppArgs, Apps};
use crate::batch::Batch;
use crate::check_fields;
use crate::classify::{Classifier, Rules};
use crate::decode::DecodeConfig;

fn addr_from(b: &[u8]) -> PyResult<Addr> {
    match b.len() {
        4 => Ok(Addr::v4(b)),
        16 => Ok(Addr::v6(b)),
        _ => Err(PyValueError::new_err("an address is 4 or 16 bytes")),
    }
}

fn rec_obj<'py>(py: Python<'py>, r: &ExpRec) -> PyResult<Bound<'py, PyTuple>> {
    let items: Vec<Bound<'py, PyAny>> = vec![
        KIND_NAMES[r.kind as usize].into_bound_py_any(py)?,
        PyBytes::new(py, r.exporter.bytes()).into_any(),
        r.domain.into_bound_py_any(py)?,
        (if r.src.v6 { 6 } else { 4 }).into_bound_py_any(py)?,
        PyBytes::new(py, r.src.bytes()).into_any(),
        PyBytes::new(py, r.dst.bytes()).into_any(),
        r.sport.into_bound_py_any(py)?,
        r.dport.into_bound_py_any(py)?,
        r.proto.into_bound_py_any(py)?,
        r.tos.into_bound_py_any(py)?,
        r.tcp_flags.into_bound_py_any(py)?,
        r.bytes.into_bound_py_any(py)?,
        r.pkts.into_bound_py_any(py)?,
        r.bytes_rev.into_bound_py_any(py)?,
        r.pkts_rev.into_bound_py_any(py)?,
        r.first_ns.into_bound_py_any(py)?,
        r.last_ns.into_bound_py_any(py)?,
        r.in_if.into_bound_py_any(py)?,
        r.out_if.into_bound_py_any(py)?,
        r.src_as.into_bound_py_any(py)?,
        r.dst_as.into_bound_py_any(py)?,
        PyBytes::new(
            py,
            if r.next_hop == Addr::default() {
                &[]
            } else {
                r.next_hop.bytes()
            },
        )
        .into_any(),
        r.sampling.into_bound_py_any(py)?,
        r.vlan.into_bound_py_any(py)?,
        r.flow_dir.into_bound_py_any(py)?,
        r.biflow.into_bound_py_any(py)?,
    ];
    PyTuple::new(py, items)
}

fn link_obj<'py>(py: Python<'py>, l: &LinkCounter) -> PyResult<Bound<'py, PyTuple>> {
    (
        PyBytes::new(py, l.exporter.bytes()),
        l.if_index,
        l.in_octets,
        l.out_octets,
        l.in_pkts,
        l.out_pkts,
        l.speed,
        l.recv_ns,
        l.seq,
    )
        .into_pyobject(py)
}

#[pyclass(module = "gwtel_native", name = "Collector")]
pub struct Collector {
    core: Core,
    records: Option<Builder>,
    /// How many of `core.out`'s records `take_records` has taken already.
    taken: usize,
    batch: Batch,
    err: Arc<Mutex<Option<PyErr>>>,
}

/// An exporter of the configuration: packed address, sampling rate, interfaces (ifIndex, link, faces the partner).
type ExporterArg = (Vec<u8>, Option<u64>, Vec<(u32, String, bool)>);

#[pymethods]
impl Collector {
    #[new]
    #[pyo3(signature = (*, max_templates_per_exporter=4096, max_exporters=10000))]
    fn new(max_templates_per_exporter: usize, max_exporters: usize) -> PyResult<Self> {
        if max_templates_per_exporter < 1 || max_exporters < 1 {
            return Err(PyValueError::new_err("limits must be >= 1"));
        }
        let dcfg = DecodeConfig {
            decap_gre: false,
            decap_vxlan: false,
            decap_gtp: false,
            vxlan_port: 4789,
            gtp_port: 2152,
        };
        Ok(Collector {
            core: Core::new(
                Limits {
                    max_templates_per_exporter,
                    max_exporters,
                },
                dcfg,
            ),
            records: None,
            taken: 0,
            batch: Batch::default(),
            err: Arc::new(Mutex::new(None)),
        })
    }

    /// Build and encode FlowRecords in the engine (`take_records`), as `ingest.collect.records.RecordBuilder`
    /// does: `sides` answers about the addresses of a take not cached here (one call), `rules` the per-flow
    /// rule's tables.
    #[pyo3(signature = (*, fields, agent_id, default_link_id, exporters, rules, apps, handshake_bounds, sides,
        address_cache=1 << 20, anon_key=None))]
    #[allow(clippy::too_many_arguments)]
    fn configure_records(
        &mut self,
        fields: Vec<String>,
        agent_id: String,
        default_link_id: String,
        exporters: Vec<ExporterArg>,
        rules: Rules,
        apps: AppArgs,
        handshake_bounds: Vec<f64>,
        sides: Py<PyAny>,
        address_cache: usize,
        anon_key: Option<Vec<u8>>,
    ) -> PyResult<()> {
        check_fields(&fields)?;
        let anon = crate::anon::from_key(anon_key, address_cache).map_err(PyValueError::new_err)?;
        let apps = Apps::new(&apps).map_err(PyValueError::new_err)?;
        let mut cls = Classifier::cached(sides, address_cache, &rules, self.err.clone());
        let default_link = cls.names.id(&default_link_id);
        let mut map = HashMap::new();
        for (addr, sampling, ifs) in exporters {
            let interfaces = ifs
                .iter()
                .map(|(i, link, ext)| (*i, (cls.names.id(link), *ext)))
                .collect();
            map.insert(
                addr_from(&addr)?,
                ExporterMap {
                    sampling,
                    interfaces,
                },
            );
        }
        let mut b = Builder::new(cls, agent_id, default_link, map, apps, handshake_bounds);
        b.anon = anon;
        self.records = Some(b);
        Ok(())
    }

    /// Flow records decoded and not yet taken, built and encoded with sequence numbers from `first_seq`, at
    /// most `max_records` of them (0: all): (batch as `Engine.take` returns it, records so far whose exporter or
    /// interfaces the map does not name). Taking a large decode in bounded pieces keeps the encoded bytes in
    /// the CPU's cache until Python has them (one big batch is bound by memory traffic).
    #[pyo3(signature = (first_seq, export_ns, max_records=0))]
    fn take_records<'py>(
        &mut self,
        py: Python<'py>,
        first_seq: u64,
        export_ns: i64,
        max_records: usize,
    ) -> PyResult<(Bound<'py, PyTuple>, u64)> {
        let b = self
            .records
            .as_mut()
            .ok_or_else(|| PyRuntimeError::new_err("configure_records first"))?;
        let out = &mut self.core.out;
        let end = if max_records == 0 {
            out.len()
        } else {
            out.len().min(self.taken + max_records)
        };
        b.add(&mut self.batch, &out[self.taken..end], first_seq, export_ns);
        self.taken = end;
        if end == out.len() {
            out.clear();
            self.taken = 0;
        }
        if let Some(e) = self.err.lock().unwrap_or_else(|p| p.into_inner()).take() {
            self.batch.discard();
            return Err(e);
        }
        Ok((self.batch.take(py, &b.cls.names)?, b.unmapped))
    }

    /// Decode a batch of framed datagrams (see `ingest.collect.frames`); returns how many it held.
    fn feed(&mut self, py: Python<'_>, batch: &[u8]) -> PyResult<usize> {
        let core = &mut self.core;
        py.detach(|| core.batch(batch))
            .map_err(PyRuntimeError::new_err)
    }

    /// Flow records decoded and not yet taken.
    fn take<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let recs = std::mem::take(&mut self.core.out);
        let items: Vec<Bound<'py, PyTuple>> = recs[std::mem::take(&mut self.taken)..]
            .iter()
            .map(|r| rec_obj(py, r))
            .collect::<PyResult<_>>()?;
        PyList::new(py, items)
    }

    /// sFlow interface counter samples since the last call.
    fn take_links<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let links = std::mem::take(&mut self.core.links);
        let items: Vec<Bound<'py, PyTuple>> = links
            .iter()
            .map(|l| link_obj(py, l))
            .collect::<PyResult<_>>()?;
        PyList::new(py, items)
    }

    /// sFlow flow samples' octets x sampling rate since the last call: (exporter, ifIndex, "in" | "out", octets).
    fn take_flow_octets(&mut self) -> Vec<(Vec<u8>, u32, &'static str, u64)> {
        std::mem::take(&mut self.core.flow_octets)
            .into_iter()
            .map(|((a, i, entering), n)| {
                (
                    a.bytes().to_vec(),
                    i,
                    if entering { "in" } else { "out" },
                    n,
                )
            })
            .collect()
    }

    /// {"datagrams": {kind: n}, "records": {kind: n}, "errors": [(exporter, reason, n)], "templates": n}
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let dg = PyDict::new(py);
        let rc = PyDict::new(py);
        for (i, k) in KIND_NAMES.iter().enumerate() {
            dg.set_item(k, self.core.datagrams[i])?;
            rc.set_item(k, self.core.records[i])?;
        }
        d.set_item("datagrams", dg)?;
        d.set_item("records", rc)?;
        let mut errs: Vec<(&Addr, u8, u64)> = self
            .core
            .errors
            .iter()
            .map(|((a, r), n)| (a, *r, *n))
            .collect();
        errs.sort_by_key(|e| (e.0.b, e.1));
        let e: Vec<Bound<'py, PyTuple>> = errs
            .iter()
            .map(|(a, r, n)| {
                (PyBytes::new(py, a.bytes()), REASONS[*r as usize], *n).into_pyobject(py)
            })
            .collect::<PyResult<_>>()?;
        d.set_item("errors", PyList::new(py, e)?)?;
        d.set_item("templates", self.core.templates.templates.len())?;
        Ok(d)
    }

    /// Exporters that have templates or sampling state (to persist).
    fn exporters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut v: Vec<Addr> = self.core.templates.per_exporter.keys().copied().collect();
        for k in self.core.templates.domains.keys() {
            v.push(k.0);
        }
        v.sort_by_key(|a| (a.v6, a.b));
        v.dedup();
        PyList::new(py, v.iter().map(|a| PyBytes::new(py, a.bytes())))
    }

    fn save_templates<'py>(
        &self,
        py: Python<'py>,
        exporter: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(
            py,
            &self.core.templates.save(addr_from(exporter)?),
        ))
    }

    /// Restore an exporter's saved templates; returns how many the data held.
    fn load_templates(&mut self, exporter: &[u8], data: &[u8]) -> PyResult<usize> {
        let lim = self.core.limits.max_templates_per_exporter;
        self.core
            .templates
            .load(addr_from(exporter)?, data, lim)
            .map_err(PyValueError::new_err)
    }
}
