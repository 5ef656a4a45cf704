//! Flow classification in the engine: `PartnerClassifier`'s per-flow rule applied here, over what Python says
//! of each address (`Side`), cached (bounded: cleared when full, counted). The addresses of a whole take of
//! records that the cache does not hold are asked about in one call (`pair_sides`): a Python call per address
//! cost as much as the answer itself. A classifier that is not a PartnerClassifier is called once per flow
//! instead (the slow, general path).

use hashbrown::HashMap;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

pub const EGRESS: u32 = 0;
pub const INGRESS: u32 = 1;
pub const DOMESTIC_DIR: u32 = 2;
pub const TRANSIT: u32 = 3;
pub const UNKNOWN: u32 = 4;
const DIRECTIONS: [&str; 5] = ["egress", "ingress", "domestic", "transit", "unknown"];

/// Interned strings (directions, partner groups, countries, links): records refer to them by index.
#[derive(Default)]
pub struct Names {
    v: Vec<String>,
    idx: HashMap<String, u32>,
}

impl Names {
    fn new() -> Self {
        let mut n = Names::default();
        for d in DIRECTIONS {
            n.id(d);
        }
        n
    }
    pub fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.idx.get(s) {
            return i;
        }
        let i = self.v.len() as u32;
        self.v.push(s.to_owned());
        self.idx.insert(s.to_owned(), i);
        i
    }
    pub fn get(&self, i: u32) -> &str {
        &self.v[i as usize]
    }
}

/// What one address is (see ingest.classify.Side).
#[derive(Clone, Copy)]
pub struct Side {
    domestic: bool,
    country: u32,
    group: Option<u32>,
    asn: u64,
}

/// One flow's classification: direction, partner and country (indexes into `Names`), remote AS number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cls {
    pub direction: u32,
    pub partner: u32,
    pub country: u32,
    pub asn: u64,
    pub remote_is_initiator: bool,
}

/// The per-flow rule's configuration, as `PartnerClassifier.engine_rules()` gives it: (fallback, domestic group,
/// unknown country, by link, by country, by AS number).
pub type Rules = (
    String,
    String,
    String,
    Vec<(String, String)>,
    Vec<(String, String)>,
    Vec<(u64, String)>,
);

/// The sides of a flow's (source, destination); None: not classifiable.
pub type PairSides = [Option<Side>; 2];

enum Mode {
    /// `sides(packed IPv4 addresses, packed IPv6 addresses) -> (distinct answers (domestic, country, group |
    /// None, asn), an answer index per address as native u32, IPv4 first)`, asked about the addresses not
    /// cached; the answers are cached per address.
    Cached {
        sides: Py<PyAny>,
        /// per family, keyed by the address as one integer (hashed in a couple of multiplications)
        cache: Cache,
        max: usize,
    },
    /// `classify(packed src, packed dst) -> (direction, partner, country, asn, remote_is_initiator)` per flow.
    PerFlow { classify: Py<PyAny> },
}

#[derive(Default)]
struct Cache {
    v4: HashMap<u32, Option<Side>>,
    v6: HashMap<u128, Option<Side>>,
}

impl Cache {
    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    #[inline]
    fn get(&self, a: &[u8; 16], v6: bool) -> Option<&Option<Side>> {
        if v6 {
            self.v6.get(&u128::from_be_bytes(*a))
        } else {
            self.v4.get(&u32::from_be_bytes([a[0], a[1], a[2], a[3]]))
        }
    }

    fn insert(&mut self, a: &[u8; 16], v6: bool, s: Option<Side>) {
        if v6 {
            self.v6.insert(u128::from_be_bytes(*a), s);
        } else {
            self.v4
                .insert(u32::from_be_bytes([a[0], a[1], a[2], a[3]]), s);
        }
    }

    fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
    }
}

pub struct Classifier {
    mode: Mode,
    pub names: Names,
    fallback: u32,
    domestic: u32,
    unknown_country: u32,
    by_link: HashMap<u32, u32>,
    by_country: HashMap<u32, u32>,
    by_asn: HashMap<u64, u32>,
    pub lookups: u64,
    pub misses: u64,
    pub clears: u64,
    err: Arc<Mutex<Option<PyErr>>>,
}

impl Classifier {
    fn with_mode(mode: Mode, rules: &Rules, err: Arc<Mutex<Option<PyErr>>>) -> Self {
        let (fallback, domestic, unknown_country, by_link, by_country, by_asn) = rules;
        let mut names = Names::new();
        let fallback = names.id(fallback);
        let domestic = names.id(domestic);
        let unknown_country = names.id(unknown_country);
        let mut pairs = |v: &[(String, String)]| -> HashMap<u32, u32> {
            v.iter().map(|(k, g)| (names.id(k), names.id(g))).collect()
        };
        let by_link = pairs(by_link);
        let by_country = pairs(by_country);
        let by_asn = by_asn.iter().map(|(a, g)| (*a, names.id(g))).collect();
        Classifier {
            mode,
            names,
            fallback,
            domestic,
            unknown_country,
            by_link,
            by_country,
            by_asn,
            lookups: 0,
            misses: 0,
            clears: 0,
            err,
        }
    }

    pub fn cached(
        sides: Py<PyAny>,
        max: usize,
        rules: &Rules,
        err: Arc<Mutex<Option<PyErr>>>,
    ) -> Self {
        let mode = Mode::Cached {
            sides,
            cache: Cache::default(),
            max: max.max(1),
        };
        Self::with_mode(mode, rules, err)
    }

    pub fn per_flow(classify: Py<PyAny>, rules: &Rules, err: Arc<Mutex<Option<PyErr>>>) -> Self {
        Self::with_mode(Mode::PerFlow { classify }, rules, err)
    }

    pub fn cache_len(&self) -> usize {
        match &self.mode {
            Mode::Cached { cache, .. } => cache.len(),
            Mode::PerFlow { .. } => 0,
        }
    }

    fn keep_err(&self, e: PyErr) {
        self.err
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    }

    fn side(&mut self, a: &[u8; 16], v6: bool) -> Option<Side> {
        self.lookups += 1;
        let Mode::Cached { cache, .. } = &self.mode else {
            return None;
        };
        if let Some(s) = cache.get(a, v6) {
            return *s;
        }
        self.ask(&[(*a, v6)])[0]
    }

    /// The sides of every (source, destination, IPv6) of `pairs`, in order, into `out`: from the cache, and
    /// Python asked once about all the addresses it does not hold. false: this classifier is called per flow
    /// (`flow`), `out` is left empty.
    pub fn pair_sides<'a>(
        &mut self,
        pairs: impl Iterator<Item = (&'a [u8; 16], &'a [u8; 16], bool)>,
        out: &mut Vec<PairSides>,
    ) -> bool {
        out.clear();
        let Mode::Cached { cache, .. } = &self.mode else {
            return false;
        };
        let mut new: Vec<([u8; 16], bool)> = Vec::new();
        let mut at: HashMap<(u128, bool), usize> = HashMap::new();
        let mut fill: Vec<(usize, usize, usize)> = Vec::new(); // (pair, side, index in `new`)
        for (src, dst, v6) in pairs {
            let mut pair = [None, None];
            for (k, a) in [src, dst].into_iter().enumerate() {
                self.lookups += 1;
                match cache.get(a, v6) {
                    Some(s) => pair[k] = *s,
                    None => {
                        let j = *at.entry((u128::from_be_bytes(*a), v6)).or_insert_with(|| {
                            new.push((*a, v6));
                            new.len() - 1
                        });
                        fill.push((out.len(), k, j));
                    }
                }
            }
            out.push(pair);
        }
        if !new.is_empty() {
            let got = self.ask(&new);
            for (i, k, j) in fill {
                out[i][k] = got[j];
            }
        }
        true
    }

    /// One call of Python's `sides` about `addrs` (none of them cached); the answers are cached and returned in
    /// order. A failed call (kept in `err`, raised by the take) answers None for every address and caches nothing.
    fn ask(&mut self, addrs: &[([u8; 16], bool)]) -> Vec<Option<Side>> {
        let Mode::Cached { sides, cache, max } = &mut self.mode else {
            return vec![None; addrs.len()];
        };
        self.misses += addrs.len() as u64;
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (a, is6) in addrs {
            if *is6 {
                v6.extend_from_slice(a);
            } else {
                v4.extend_from_slice(&a[..4]);
            }
        }
        let n4 = v4.len() / 4;
        type Answer = (bool, String, Option<String>, u64);
        let got = Python::attach(|py| -> PyResult<(Vec<Answer>, Vec<u32>)> {
            let r = sides.call1(py, (PyBytes::new(py, &v4), PyBytes::new(py, &v6)))?;
            let (answers, codes): (Vec<Answer>, Bound<'_, PyBytes>) = r.bind(py).extract()?;
            let codes: Vec<u32> = codes
                .as_bytes()
                .chunks_exact(4)
                .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if codes.len() != addrs.len() || codes.iter().any(|&c| c as usize >= answers.len()) {
                return Err(PyValueError::new_err(format!(
                    "the classifier answered {} indexes into {} answers for {} addresses",
                    codes.len(),
                    answers.len(),
                    addrs.len()
                )));
            }
            Ok((answers, codes))
        });
        let (answers, codes) = match got {
            Ok(v) => v,
            Err(e) => {
                self.err
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e);
                // nothing cached: the next take asks about these addresses again
                return vec![None; addrs.len()];
            }
        };
        let names = &mut self.names;
        let answers: Vec<Side> = answers
            .into_iter()
            .map(|(domestic, country, group, asn)| Side {
                domestic,
                country: names.id(&country),
                group: group.map(|g| names.id(&g)),
                asn,
            })
            .collect();
        let (mut i4, mut i6) = (0, n4);
        let mut out = Vec::with_capacity(addrs.len());
        for (a, is6) in addrs {
            let i = if *is6 { &mut i6 } else { &mut i4 };
            let s = codes.get(*i).map(|&c| answers[c as usize]);
            *i += 1;
            if cache.len() >= *max {
                cache.clear();
                self.clears += 1;
            }
            cache.insert(a, *is6, s);
            out.push(s);
        }
        out
    }

    fn per_flow_call(&mut self, src: &[u8], dst: &[u8]) -> Cls {
        let Mode::PerFlow { classify } = &self.mode else {
            unreachable!()
        };
        type Out = (String, String, String, u64, bool);
        let got = Python::attach(|py| -> PyResult<Out> {
            classify
                .call1(py, (PyBytes::new(py, src), PyBytes::new(py, dst)))?
                .extract(py)
        });
        match got {
            Ok((d, p, c, asn, rii)) => Cls {
                direction: self.names.id(&d),
                partner: self.names.id(&p),
                country: self.names.id(&c),
                asn,
                remote_is_initiator: rii,
            },
            Err(e) => {
                self.keep_err(e);
                self.unknown()
            }
        }
    }

    fn unknown(&self) -> Cls {
        Cls {
            direction: UNKNOWN,
            partner: self.fallback,
            country: self.unknown_country,
            asn: 0,
            remote_is_initiator: false,
        }
    }

    fn partner_of(&self, remote: &Side, link: u32) -> u32 {
        remote
            .group
            .or_else(|| self.by_link.get(&link).copied())
            .or_else(|| self.by_country.get(&remote.country).copied())
            .unwrap_or(self.fallback)
    }

    /// PartnerClassifier.classify: the flow from its initiator (`src`) to its responder, on link `link`.
    pub fn flow(&mut self, src: &[u8; 16], dst: &[u8; 16], v6: bool, link: u32) -> Cls {
        if let Mode::PerFlow { .. } = self.mode {
            let n = if v6 { 16 } else { 4 };
            return self.per_flow_call(&src[..n], &dst[..n]);
        }
        let pair = [self.side(src, v6), self.side(dst, v6)];
        self.flow_of(pair, link)
    }

    /// `flow` of a flow whose sides `pair_sides` gave.
    pub fn flow_of(&self, pair: PairSides, link: u32) -> Cls {
        let [Some(s), Some(d)] = pair else {
            return self.unknown();
        };
        if s.domestic && d.domestic {
            return Cls {
                direction: DOMESTIC_DIR,
                partner: self.domestic,
                country: d.country,
                asn: d.asn,
                remote_is_initiator: false,
            };
        }
        let (direction, remote, rii) = if s.domestic {
            (EGRESS, d, false)
        } else if d.domestic {
            (INGRESS, s, true)
        } else {
            (TRANSIT, d, false)
        };
        Cls {
            direction,
            partner: self.partner_of(&remote, link),
            country: remote.country,
            asn: remote.asn,
            remote_is_initiator: rii,
        }
    }

    /// Which side opened the flow, as far as latency attribution needs it (the meter asks at a flow's start).
    pub fn remote_is_initiator(&mut self, src: &[u8; 16], dst: &[u8; 16], v6: bool) -> bool {
        if let Mode::PerFlow { .. } = self.mode {
            return self.flow(src, dst, v6, u32::MAX).remote_is_initiator;
        }
        let s = self.side(src, v6).is_some_and(|s| s.domestic);
        let d = self.side(dst, v6).is_some_and(|s| s.domestic);
        !s && d
    }

    /// PartnerClassifier.remote: the remote side when an interface map says which side it is; partner by AS
    /// number first (when a group lists `asn`). None: not classifiable.
    /// `s`: the address's side as `pair_sides` gave it.
    pub fn remote(&self, s: Option<Side>, link: u32, asn: u64) -> Option<Cls> {
        let s = s?;
        let partner = self
            .by_asn
            .get(&asn)
            .copied()
            .unwrap_or_else(|| self.partner_of(&s, link));
        Some(Cls {
            direction: UNKNOWN,
            partner,
            country: s.country,
            asn: if asn != 0 { asn } else { s.asn },
            remote_is_initiator: false,
        })
    }

    /// PartnerClassifier.partner_of_asn.
    pub fn partner_of_asn(&self, asn: u64) -> Option<u32> {
        self.by_asn.get(&asn).copied()
    }
}
