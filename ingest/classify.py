"""PartnerClassifier: which side of a flow is remote, which way it goes, and which partner group it is.

Per address (memoized in a bounded LRU cache, since the same hosts recur across flows):
1. the longest configured prefix (domestic or a group's) decides;
2. private/reserved space (no allocation country) is domestic when ``private_is_domestic``;
3. otherwise the RIR allocation country from ``iptocc`` decides: in ``domestic.countries`` -> domestic.
Per flow: exactly one side domestic -> the other is remote (``egress`` if the initiator is domestic,
``ingress`` if the remote side initiated); both -> ``domestic``; neither -> ``transit`` (remote = responder).
The remote side's partner: its explicit prefix, else the link id's group, else its country's group, else
the fallback.

Longest-prefix match uses one hash table per configured prefix length, probed from the longest length down:
a handful of probes for any realistic config, no per-lookup allocation beyond the address integer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import iptocc

from ingest.classification import Classification
from ingest.partners import DOMESTIC, IPNetwork, PartnersConfig

UNKNOWN_COUNTRY: Final = "ZZ"
"""``remote_country`` when there is none (private space, unallocated): ISO's user-assigned "unknown"."""


@dataclass(frozen=True, slots=True)
class _Owner:
    group: str  # DOMESTIC or a partner group name
    asn: int


@dataclass(frozen=True, slots=True)
class Side:
    """What one address is, independent of the flow it appears in."""

    domestic: bool
    country: str
    group: str | None  # partner group from an explicit prefix; None when no prefix matched
    asn: int


class PrefixTable:
    """Longest-prefix match over a fixed set of prefixes of one IP version."""

    def __init__(self, bits: int) -> None:
        self._bits = bits
        self._by_len: dict[int, dict[int, _Owner]] = {}
        self._lengths: tuple[int, ...] = ()

    def add(self, net: IPNetwork, owner: _Owner) -> None:
        plen = net.prefixlen
        self._by_len.setdefault(plen, {})[int(net.network_address) >> (self._bits - plen)] = owner
        self._lengths = tuple(sorted(self._by_len, reverse=True))

    def lookup(self, addr: int) -> _Owner | None:
        for plen in self._lengths:
            owner = self._by_len[plen].get(addr >> (self._bits - plen))
            if owner is not None:
                return owner
        return None


def _has_no_country(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # is_global is False for RFC 1918, CGNAT 100.64/10, loopback, link-local, ULA, documentation, reserved.
    return not ip.is_global or ip.is_multicast


class PartnerClassifier:
    """Implements ``ingest.classification.Classifier`` from a validated ``PartnersConfig``."""

    def __init__(
        self,
        cfg: PartnersConfig,
        *,
        cache_size: int = 1 << 16,
        country_of: Callable[[str], str | None] = iptocc.country_code,
    ) -> None:
        self._cfg = cfg
        self._country_of = country_of
        self._v4 = PrefixTable(32)
        self._v6 = PrefixTable(128)
        for p in cfg.domestic.prefixes:
            self._table(p.network()).add(p.network(), _Owner(DOMESTIC, p.asn))
        self._by_link: dict[str, str] = {}
        self._by_country: dict[str, str] = {}
        self._by_asn: dict[int, str] = {}
        for name, group in cfg.groups.items():
            for p in group.prefixes:
                self._table(p.network()).add(p.network(), _Owner(name, p.asn))
            self._by_link.update(dict.fromkeys(group.links, name))
            self._by_country.update(dict.fromkeys(group.countries, name))
            self._by_asn.update(dict.fromkeys(group.asns, name))
        self._domestic_countries = frozenset(cfg.domestic.countries)
        self.side = lru_cache(maxsize=cache_size)(self._side)

    def _table(self, net: IPNetwork) -> PrefixTable:
        return self._v4 if net.version == 4 else self._v6

    def _side(self, addr: str) -> Side | None:
        """Resolve one address; None when it is not an IP address."""
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        owner = (self._v4 if ip.version == 4 else self._v6).lookup(int(ip))
        country = self._country_of(str(ip)) or UNKNOWN_COUNTRY
        if owner is not None:
            is_domestic = owner.group == DOMESTIC
            return Side(is_domestic, country, None if is_domestic else owner.group, owner.asn)
        if _has_no_country(ip):
            return Side(self._cfg.private_is_domestic, UNKNOWN_COUNTRY, None, 0)
        return Side(country in self._domestic_countries, country, None, 0)

    def classify(self, src_ip: str, dst_ip: str, ip_version: int, link_id: str) -> Classification:
        """Classify a flow from its initiator (src) and responder (dst); the text gives the IP version."""
        src = self.side(src_ip)
        dst = self.side(dst_ip)
        if src is None or dst is None:
            return Classification("unknown", self._cfg.fallback, UNKNOWN_COUNTRY, 0, False)
        if src.domestic and dst.domestic:
            return Classification("domestic", DOMESTIC, dst.country, dst.asn, False)
        if src.domestic:
            direction, remote, remote_is_initiator = "egress", dst, False
        elif dst.domestic:
            direction, remote, remote_is_initiator = "ingress", src, True
        else:
            direction, remote, remote_is_initiator = "transit", dst, False
        partner = (
            remote.group or self._by_link.get(link_id) or self._by_country.get(remote.country) or self._cfg.fallback
        )
        return Classification(direction, partner, remote.country, remote.asn, remote_is_initiator)

    def partner_of_asn(self, asn: int) -> str | None:
        """Group that lists ``asn`` (for flow sources that carry AS numbers, e.g. IPFIX), else None."""
        return self._by_asn.get(asn)
