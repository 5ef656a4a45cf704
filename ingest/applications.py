"""Application classes (the `applications:` section): ordered rules, first match wins, else the default class.

A rule matches a flow when every condition it gives matches (an omitted condition matches anything), and a
condition matches when any of its values does: ``protocols`` (names or numbers), ``server_ports`` (the
responder's port, single ports or ``lo-hi`` ranges; TCP, UDP, SCTP and UDP-Lite only), ``dscp`` (the DSCP of
the flow's first packet: numbers 0-63 or names EF, AF11-AF43, CS0-CS7, BE), ``domestic_prefixes`` and
``remote_prefixes`` (the flow's domestic and remote ends, as the partner classification decides which is which),
``asns`` (the remote AS number) and ``links`` (the agent's link id). docs/classes.md explains how to write them.

The native engine evaluates the rules per flow (`engine_rules` is what it is given); `AppClassifier.classify`
is the reference it is tested against (tests/engines.py).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ingest.partners import Asn, IPNetwork, LinkId, cidr_network
from schemas.checks import CLASS_NAME_RE
from schemas.flow_record import DEFAULT_CLASS

MAX_CLASSES: Final = 32  # classes key the job's windows and the tables: their number must stay small

_NAME_RE: Final = re.compile(CLASS_NAME_RE)
_PROTOCOLS: Final = {"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "icmpv6": 58, "sctp": 132, "udplite": 136}
PORT_PROTOCOLS: Final = frozenset({6, 17, 132, 136})  # protocols whose records carry a server port
_DSCP_NAMES: Final = {
    "BE": 0,
    "EF": 46,
    "VA": 44,
    **{f"CS{i}": 8 * i for i in range(8)},
    **{f"AF{c}{d}": 8 * c + 2 * d for c in range(1, 5) for d in range(1, 4)},
}


def _protocol(v: Any) -> int:
    if isinstance(v, str):
        name = v.strip().lower()
        if name in _PROTOCOLS:
            return _PROTOCOLS[name]
        if not name.isdigit():
            raise ValueError(f"{v!r} is not a protocol: use a number 0-255 or one of {', '.join(_PROTOCOLS)}")
        v = int(name)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255:
        raise ValueError(f"{v!r} is not a protocol: use a number 0-255 or one of {', '.join(_PROTOCOLS)}")
    return v


def _port_range(v: Any) -> tuple[int, int]:
    text = str(v).strip()
    m = re.fullmatch(r"(\d{1,5})(?:\s*-\s*(\d{1,5}))?", text)
    if isinstance(v, bool) or m is None:
        raise ValueError(f"{v!r} is not a port or port range: write 443 or '9000-9099'")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) is not None else lo
    if not 0 <= lo <= hi <= 65535:
        raise ValueError(f"{text!r}: ports are 0-65535 and a range is written low-high, e.g. '9000-9099'")
    return lo, hi


def _dscp(v: Any) -> int:
    if isinstance(v, str):
        name = v.strip().upper()
        if name in _DSCP_NAMES:
            return _DSCP_NAMES[name]
        if not name.isdigit():
            raise ValueError(f"{v!r} is not a DSCP value: use 0-63 or a name such as EF, AF41, CS5")
        v = int(name)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 63:
        hint = " (that looks like a whole ToS byte: the DSCP is ToS >> 2)" if isinstance(v, int) and v < 256 else ""
        raise ValueError(f"{v!r} is not a DSCP value: use 0-63 or a name such as EF, AF41, CS5{hint}")
    return v


def _prefix(v: Any) -> IPNetwork:
    return cidr_network(str(v).strip())


Protocol = Annotated[int, BeforeValidator(_protocol)]
PortRange = Annotated[tuple[int, int], BeforeValidator(_port_range)]
Dscp = Annotated[int, BeforeValidator(_dscp)]
Prefix = Annotated[IPNetwork, BeforeValidator(_prefix)]


def class_name_problem(name: str) -> str | None:
    if _NAME_RE.match(name):
        return None
    return f"{name!r} is not a class name: use lower-case letters, digits and _ (up to 32), e.g. 'trading'"


class AppRule(BaseModel):
    """One rule: the class of the flows every given condition matches."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    app_class: str = Field(alias="class")
    protocols: list[Protocol] = Field(default_factory=list)
    server_ports: list[PortRange] = Field(default_factory=list)
    dscp: list[Dscp] = Field(default_factory=list)
    domestic_prefixes: list[Prefix] = Field(default_factory=list)
    remote_prefixes: list[Prefix] = Field(default_factory=list)
    asns: list[Asn] = Field(default_factory=list)
    links: list[LinkId] = Field(default_factory=list)

    @field_validator("app_class")
    @classmethod
    def _name(cls, v: str) -> str:
        problem = class_name_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _sound(self) -> AppRule:
        if not (
            self.protocols
            or self.server_ports
            or self.dscp
            or self.domestic_prefixes
            or self.remote_prefixes
            or self.asns
            or self.links
        ):
            raise ValueError(
                f"the rule for class {self.app_class!r} has no condition and would claim every flow: give at least "
                "one of protocols, server_ports, dscp, domestic_prefixes, remote_prefixes, asns, links "
                "(or set `default` to make it the class of unmatched flows)"
            )
        if self.server_ports and self.protocols and not set(self.protocols) & PORT_PROTOCOLS:
            raise ValueError(
                f"the rule for class {self.app_class!r} gives server_ports but only protocols without ports "
                f"{sorted(self.protocols)}: add tcp or udp, or remove server_ports"
            )
        return self


class ApplicationsConfig(BaseModel):
    """The `applications:` section: ``rules`` in order (first match wins) and the ``default`` class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str = DEFAULT_CLASS
    rules: list[AppRule] = Field(default_factory=list)

    @field_validator("default")
    @classmethod
    def _default(cls, v: str) -> str:
        problem = class_name_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _bounded(self) -> ApplicationsConfig:
        if len(self.classes()) > MAX_CLASSES:
            raise ValueError(
                f"{len(self.classes())} classes: at most {MAX_CLASSES} (each keys windows and tables): merge some"
            )
        return self

    def classes(self) -> list[str]:
        """Every class a flow can get: the rules' classes in first-use order, then the default."""
        out = list(dict.fromkeys(r.app_class for r in self.rules))
        if self.default not in out:
            out.append(self.default)
        return out


def _packed_prefixes(nets: list[IPNetwork]) -> list[tuple[bytes, int]]:
    return [(n.network_address.packed, n.prefixlen) for n in nets]


EngineAppRule = tuple[
    str, list[int], list[tuple[int, int]], list[int], list[tuple[bytes, int]], list[tuple[bytes, int]], list[int],
    list[str],
]  # fmt: skip
EngineApps = tuple[str, list[EngineAppRule]]


def _in(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, nets: list[IPNetwork]) -> bool:
    return any(addr.version == n.version and addr in n for n in nets)


class AppClassifier:
    """The rules' reference evaluation (the engine's is native/src/apps.rs)."""

    def __init__(self, cfg: ApplicationsConfig) -> None:
        self.cfg = cfg

    def engine_rules(self) -> EngineApps:
        """The rules as the native engine takes them: (default, [(class, protocols, port ranges, dscp values,
        domestic prefixes, remote prefixes, asns, links)]), prefixes as (packed network, length)."""
        rules = [
            (
                r.app_class,
                list(r.protocols),
                list(r.server_ports),
                list(r.dscp),
                _packed_prefixes(r.domestic_prefixes),
                _packed_prefixes(r.remote_prefixes),
                list(r.asns),
                list(r.links),
            )
            for r in self.cfg.rules
        ]
        return self.cfg.default, rules

    def classify(
        self,
        *,
        protocol: int,
        server_port: int,
        dscp: int,
        src_ip: str,
        dst_ip: str,
        remote_is_initiator: bool,
        remote_asn: int,
        link_id: str,
    ) -> str:
        """The class of a flow from its initiator (src) to its responder (dst)."""
        if not self.cfg.rules:
            return self.cfg.default
        src, dst = ipaddress.ip_address(src_ip), ipaddress.ip_address(dst_ip)
        remote, local = (src, dst) if remote_is_initiator else (dst, src)
        for r in self.cfg.rules:
            if r.protocols and protocol not in r.protocols:
                continue
            if r.server_ports and not (
                protocol in PORT_PROTOCOLS and any(lo <= server_port <= hi for lo, hi in r.server_ports)
            ):
                continue
            if r.dscp and dscp not in r.dscp:
                continue
            if r.domestic_prefixes and not _in(local, r.domestic_prefixes):
                continue
            if r.remote_prefixes and not _in(remote, r.remote_prefixes):
                continue
            if r.asns and remote_asn not in r.asns:
                continue
            if r.links and link_id not in r.links:
                continue
            return r.app_class
        return self.cfg.default


NO_CLASSES: Final = AppClassifier(ApplicationsConfig())
"""No rules: every flow in the default class (what a caller that gives no `applications:` gets)."""
