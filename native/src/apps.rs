//! Application classes: the `applications:` rules evaluated per flow, first match wins, else the default class.
//! `ingest.applications.AppClassifier.classify` is the reference (tests/engines.py compares both); the rules
//! arrive validated, as `AppClassifier.engine_rules()` gives them.

/// (class, protocols, server port ranges, DSCP values, domestic prefixes, remote prefixes, ASNs, links);
/// prefixes as (packed network address, length).
pub type RuleArgs = (
    String,
    Vec<u8>,
    Vec<(u16, u16)>,
    Vec<u8>,
    Vec<(Vec<u8>, u8)>,
    Vec<(Vec<u8>, u8)>,
    Vec<u64>,
    Vec<String>,
);
/// (default class, rules in order).
pub type AppArgs = (String, Vec<RuleArgs>);

const PORT_PROTOCOLS: [u8; 4] = [6, 17, 132, 136];

/// One prefix: the network's 16 bytes (an IPv4 one in the first 4), its length and family.
struct Prefix {
    net: [u8; 16],
    len: u8,
    v6: bool,
}

impl Prefix {
    fn new(packed: &[u8], len: u8) -> Result<Self, String> {
        let v6 = match packed.len() {
            4 if len <= 32 => false,
            16 if len <= 128 => true,
            _ => return Err(format!("bad prefix ({} bytes, /{len})", packed.len())),
        };
        let mut net = [0u8; 16];
        net[..packed.len()].copy_from_slice(packed);
        Ok(Prefix { net, len, v6 })
    }

    fn contains(&self, a: &[u8; 16], v6: bool) -> bool {
        if v6 != self.v6 {
            return false;
        }
        let (whole, bits) = ((self.len / 8) as usize, self.len % 8);
        if a[..whole] != self.net[..whole] {
            return false;
        }
        bits == 0 || (a[whole] ^ self.net[whole]) >> (8 - bits) == 0
    }
}

struct Rule {
    class: usize,
    protocols: Vec<u8>,
    ports: Vec<(u16, u16)>,
    dscp: u64, // bit d: DSCP value d matches (0 = any)
    domestic: Vec<Prefix>,
    remote: Vec<Prefix>,
    asns: Vec<u64>,
    links: Vec<String>,
}

/// What a flow offers the rules.
pub struct FlowFacts<'a> {
    pub protocol: u8,
    pub server_port: u32,
    pub dscp: u8,
    pub src: &'a [u8; 16],
    pub dst: &'a [u8; 16],
    pub v6: bool,
    pub remote_is_initiator: bool,
    pub remote_asn: u64,
    pub link: &'a str,
}

pub struct Apps {
    classes: Vec<String>,
    default: usize,
    rules: Vec<Rule>,
}

impl Default for Apps {
    fn default() -> Self {
        Apps {
            classes: vec!["default".to_owned()],
            default: 0,
            rules: Vec::new(),
        }
    }
}

impl Apps {
    pub fn new(args: &AppArgs) -> Result<Self, String> {
        let (default, rule_args) = args;
        let mut classes: Vec<String> = Vec::new();
        let mut id = |name: &str| match classes.iter().position(|c| c == name) {
            Some(i) => i,
            None => {
                classes.push(name.to_owned());
                classes.len() - 1
            }
        };
        let default = id(default);
        let mut rules = Vec::with_capacity(rule_args.len());
        for (class, protocols, ports, dscp, domestic, remote, asns, links) in rule_args {
            let mut mask = 0u64;
            for &d in dscp {
                if d > 63 {
                    return Err(format!("DSCP {d} is above 63"));
                }
                mask |= 1 << d;
            }
            let prefixes = |v: &[(Vec<u8>, u8)]| -> Result<Vec<Prefix>, String> {
                v.iter().map(|(p, l)| Prefix::new(p, *l)).collect()
            };
            rules.push(Rule {
                class: id(class),
                protocols: protocols.clone(),
                ports: ports.clone(),
                dscp: mask,
                domestic: prefixes(domestic)?,
                remote: prefixes(remote)?,
                asns: asns.clone(),
                links: links.clone(),
            });
        }
        Ok(Apps {
            classes,
            default,
            rules,
        })
    }

    fn matches(r: &Rule, f: &FlowFacts<'_>) -> bool {
        let (remote, local) = if f.remote_is_initiator {
            (f.src, f.dst)
        } else {
            (f.dst, f.src)
        };
        (r.protocols.is_empty() || r.protocols.contains(&f.protocol))
            && (r.ports.is_empty()
                || (PORT_PROTOCOLS.contains(&f.protocol)
                    && r.ports.iter().any(|&(lo, hi)| {
                        (lo as u32) <= f.server_port && f.server_port <= hi as u32
                    })))
            && (r.dscp == 0 || (f.dscp < 64 && r.dscp >> f.dscp & 1 == 1))
            && (r.domestic.is_empty() || r.domestic.iter().any(|p| p.contains(local, f.v6)))
            && (r.remote.is_empty() || r.remote.iter().any(|p| p.contains(remote, f.v6)))
            && (r.asns.is_empty() || r.asns.contains(&f.remote_asn))
            && (r.links.is_empty() || r.links.iter().any(|l| l == f.link))
    }

    /// The class of a flow.
    pub fn class(&self, f: &FlowFacts<'_>) -> &str {
        let i = self
            .rules
            .iter()
            .find(|r| Self::matches(r, f))
            .map_or(self.default, |r| r.class);
        &self.classes[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut o = [0u8; 16];
        o[..4].copy_from_slice(&a);
        o
    }

    #[test]
    fn first_match_wins_and_default() {
        let apps = Apps::new(&(
            "bulk".into(),
            vec![
                (
                    "trading".into(),
                    vec![6],
                    vec![(9000, 9099)],
                    vec![46],
                    vec![],
                    vec![(vec![203, 0, 113, 0], 25)],
                    vec![],
                    vec![],
                ),
                (
                    "vr".into(),
                    vec![17],
                    vec![(40000, 40999)],
                    vec![],
                    vec![],
                    vec![],
                    vec![],
                    vec![],
                ),
                (
                    "ef".into(),
                    vec![],
                    vec![],
                    vec![46],
                    vec![],
                    vec![],
                    vec![],
                    vec![],
                ),
            ],
        ))
        .unwrap();
        let (dom, rem, far) = (
            v4([10, 0, 0, 1]),
            v4([203, 0, 113, 5]),
            v4([203, 0, 113, 200]),
        );
        let f = |proto, port, dscp, src, dst, rii| FlowFacts {
            protocol: proto,
            server_port: port,
            dscp,
            src,
            dst,
            v6: false,
            remote_is_initiator: rii,
            remote_asn: 0,
            link: "link-0",
        };
        assert_eq!(apps.class(&f(6, 9000, 46, &dom, &rem, false)), "trading");
        // the remote end is the initiator: the prefix is looked up on src
        assert_eq!(apps.class(&f(6, 9099, 46, &rem, &dom, true)), "trading");
        // outside the /25, or another DSCP: falls through to the EF rule or the default
        assert_eq!(apps.class(&f(6, 9000, 46, &dom, &far, false)), "ef");
        assert_eq!(apps.class(&f(6, 9000, 0, &dom, &rem, false)), "bulk");
        assert_eq!(apps.class(&f(17, 40999, 0, &dom, &far, false)), "vr");
        assert_eq!(apps.class(&f(17, 41000, 0, &dom, &far, false)), "bulk");
        // ICMP's "port" (type<<8|code) is no port
        assert_eq!(apps.class(&f(1, 40000, 0, &dom, &far, false)), "bulk");
    }

    #[test]
    fn prefixes_compare_bits_of_one_family() {
        let p = Prefix::new(&[10, 128, 0, 0], 9).unwrap();
        assert!(p.contains(&v4([10, 255, 1, 1]), false));
        assert!(!p.contains(&v4([10, 127, 1, 1]), false));
        assert!(!p.contains(&v4([10, 255, 1, 1]), true));
        let all = Prefix::new(&[0; 16], 0).unwrap();
        assert!(all.contains(&[7; 16], true));
        assert!(Prefix::new(&[1, 2, 3, 4], 33).is_err());
    }
}
