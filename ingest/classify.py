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

import bisect
import ipaddress
import socket
import struct
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import iptocc

from ingest.classification import Classification
from ingest.partners import DOMESTIC, IPNetwork, PartnersConfig

UNKNOWN_COUNTRY: Final = "ZZ"
"""``remote_country`` when there is none (private space, unallocated): ISO's user-assigned "unknown"."""

SideTuple = tuple[bool, str, str | None, int]
# The engine's question about many addresses: (distinct answers, one answer index per address as native uint32).
PackedSides = tuple[list[SideTuple], bytes]
# (fallback, domestic group, unknown country, by link, by country, by asn): what the native engine needs to apply
# `classify`'s per-flow rule itself (native/src/classify.rs).
EngineRules = tuple[str, str, str, list[tuple[str, str]], list[tuple[str, str]], list[tuple[int, str]]]


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


# IANA special-purpose blocks (IPv4 and IPv6 registries) and multicast: boundaries for the range tables below.
# They need only include every network that ipaddress tests; the values come from ipaddress itself.
_SPECIAL_BLOCKS: Final = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.0.0/29",
    "192.0.0.8/32",
    "192.0.0.9/32",
    "192.0.0.10/32",
    "192.0.0.170/31",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001::/32",
    "2001:1::1/128",
    "2001:1::2/128",
    "2001:1::3/128",
    "2001:2::/48",
    "2001:3::/32",
    "2001:4:112::/48",
    "2001:10::/28",
    "2001:20::/28",
    "2001:30::/28",
    "2001:db8::/32",
    "2002::/16",
    "2620:4f:8000::/48",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
]


def _module_networks() -> Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Networks the running ipaddress module tests against (its lists differ between Python releases)."""
    for name in ("_IPv4Constants", "_IPv6Constants"):
        for v in vars(getattr(ipaddress, name, object)).values():
            for n in v if isinstance(v, list) else [v]:
                if isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network):
                    yield n


class _NoCountryRanges:
    """`_has_no_country` as sorted ranges of the integer address: a bisect instead of ipaddress's network scans.

    The decision is constant between consecutive boundaries of the networks it depends on, so it is evaluated
    with ipaddress once per range at construction, then merged where neighbours agree. IPv4-mapped IPv6
    addresses are not covered: the classifier maps them to IPv4 first.
    """

    def __init__(self, version: int) -> None:
        make: Callable[[int], ipaddress.IPv4Address | ipaddress.IPv6Address]
        make, top = (ipaddress.IPv4Address, 1 << 32) if version == 4 else (ipaddress.IPv6Address, 1 << 128)
        nets = [ipaddress.ip_network(b) for b in _SPECIAL_BLOCKS]
        nets += list(_module_networks())
        points = {0}
        for n in nets:
            if n.version == version:
                points.add(int(n.network_address))
                points.add(int(n.broadcast_address) + 1)
        self._starts: list[int] = []
        self._values: list[bool] = []
        for p in sorted(points - {top}):
            v = _has_no_country(make(p))
            if not self._values or self._values[-1] != v:
                self._starts.append(p)
                self._values.append(v)

    def __call__(self, addr: int) -> bool:
        return self._values[bisect.bisect_right(self._starts, addr) - 1]


_NO_COUNTRY_V4: Final = _NoCountryRanges(4)
_NO_COUNTRY_V6: Final = _NoCountryRanges(6)


class PartnerClassifier:
    """Implements ``ingest.classification.Classifier`` from a validated ``PartnersConfig``."""

    def __init__(
        self,
        cfg: PartnersConfig,
        *,
        cache_size: int = 1 << 17,  # ~260 bytes an address (key, Side, LRU link): ~34 MB when full
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
        return Side(*self._side_tuple(int(ip), ip.version == 4))

    def _side_tuple(self, n: int, v4: bool) -> SideTuple:
        """The side of address `n` (IPv4 when `v4`, IPv4-mapped IPv6 already unmapped) as a tuple: the engine's
        answer, no dataclass built per address."""
        owner = (self._v4 if v4 else self._v6).lookup(n)
        if owner is not None:
            is_domestic = owner.group == DOMESTIC
            return (is_domestic, self._country(n, v4), None if is_domestic else owner.group, owner.asn)
        if (_NO_COUNTRY_V4 if v4 else _NO_COUNTRY_V6)(n):
            return (self._cfg.private_is_domestic, UNKNOWN_COUNTRY, None, 0)
        country = self._country(n, v4)
        return (country in self._domestic_countries, country, None, 0)

    def _country(self, n: int, v4: bool) -> str:
        # inet_ntoa writes an IPv4 address as ipaddress does (dotted decimal, no leading zeros), 6x faster
        text = socket.inet_ntoa(n.to_bytes(4, "big")) if v4 else str(ipaddress.IPv6Address(n))
        return self._country_of(text) or UNKNOWN_COUNTRY

    def sides_of_packed(self, v4: bytes, v6: bytes) -> PackedSides:
        """`side` of many packed addresses at once, the native engine's question (asked once per take of records
        about the addresses it has not cached; the engine caches the answers, so this skips the LRU cache of
        `side`). `v4`: 4-byte addresses back to back, `v6`: 16-byte ones; each is read as an integer, never
        written and parsed as text. Returns the distinct answers and, per address (the IPv4 ones first), the
        index of its answer as native-order uint32 (most addresses of a take share a handful of answers)."""
        if len(v4) % 4 or len(v6) % 16:
            raise ValueError("packed addresses are 4 (v4) and 16 (v6) bytes each")
        index: dict[SideTuple, int] = {}
        codes = array("I")
        side, put = self._side_tuple, codes.append
        for n in struct.unpack(f">{len(v4) // 4}I", v4):
            t = side(n, True)
            put(index.setdefault(t, len(index)))
        for hi, lo in struct.iter_unpack(">QQ", v6):
            mapped = hi == 0 and lo >> 32 == 0xFFFF  # IPv4-mapped ::ffff:a.b.c.d, as `_side` unmaps it
            t = side(lo & 0xFFFFFFFF, True) if mapped else side(hi << 64 | lo, False)
            put(index.setdefault(t, len(index)))
        return list(index), codes.tobytes()

    def engine_rules(self) -> EngineRules:
        """The per-flow rule's tables, for the native engine (which applies `classify` and `remote` itself)."""
        return (
            self._cfg.fallback,
            DOMESTIC,
            UNKNOWN_COUNTRY,
            sorted(self._by_link.items()),
            sorted(self._by_country.items()),
            sorted(self._by_asn.items()),
        )

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

    def remote(self, addr: str, link_id: str, asn: int = 0) -> Classification | None:
        """The remote side when something else (a router's interface map) says which side is remote: its partner
        by AS number (``asn``, when a group lists it), else as ``classify`` would name it; None: not an address."""
        side = self.side(addr)
        if side is None:
            return None
        partner = (
            self._by_asn.get(asn)
            or side.group
            or self._by_link.get(link_id)
            or self._by_country.get(side.country)
            or self._cfg.fallback
        )
        return Classification("unknown", partner, side.country, asn or side.asn, False)

    def partner_of_asn(self, asn: int) -> str | None:
        """Group that lists ``asn`` (for flow sources that carry AS numbers, e.g. IPFIX), else None."""
        return self._by_asn.get(asn)
