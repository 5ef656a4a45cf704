"""Partner definitions (the `partners:` section): groups of countries, prefixes, ASNs and links, validated.

The packaged default lives in ``ingest/data/partners.yaml``; ``docs/partners.md`` documents every key and
where the Belt and Road country list comes from. Everything that would make classification ambiguous is
rejected at start-up: a country, link id or ASN in two groups, prefixes of two groups that overlap, a bad
CIDR or country code, an empty group. Each message names the key and says how to fix it.
"""

from __future__ import annotations

import ipaddress
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gwtel.errors import UserError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DOMESTIC: Final = "domestic"
"""Partner label of flows whose both ends are domestic; reserved, cannot name a group."""

# ISO 3166-1 alpha-2 officially assigned codes (from the tz database's iso3166.tab, ISO/TC 46 N1108, 2023).
_ISO_TEXT: Final = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT
    BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH
    ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT
    HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS
    LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI
    NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG
    SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG
    UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
ISO_3166_ALPHA2: Final = frozenset(_ISO_TEXT.split())

_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_MAX_ASN: Final = 2**32 - 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _country(code: str) -> str:
    if code not in ISO_3166_ALPHA2:
        hint = f" (did you mean {code.upper()!r}?)" if code.upper() in ISO_3166_ALPHA2 else ""
        raise ValueError(
            f"{code!r} is not an ISO 3166-1 alpha-2 country code{hint}: use two capital letters, e.g. 'JP'"
        )
    return code


def cidr_network(text: str) -> IPNetwork:
    """A CIDR prefix, or ValueError saying how to write one (for every section that takes prefixes)."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(
            f"{text!r} is not a valid CIDR prefix ({exc}): write network/length with the host bits zero, "
            "e.g. 203.0.113.0/24 or 2001:db8::/32"
        ) from None


def _link(link: str) -> str:
    if not link.strip():
        raise ValueError("an empty link id: remove it or write the agent's link_id")
    return link


def _asn(asn: int) -> int:
    if not 1 <= asn <= _MAX_ASN:
        raise ValueError(f"ASN {asn} is out of range: use a number from 1 to {_MAX_ASN}")
    return asn


# Validated per item so that an error's key carries the list index.
CountryCode = Annotated[str, AfterValidator(_country)]
LinkId = Annotated[str, AfterValidator(_link)]
Asn = Annotated[int, AfterValidator(_asn)]


class PrefixEntry(_Strict):
    """One explicit prefix; ``asn`` (optional) becomes the flow's ``remote_asn`` when the prefix matches."""

    prefix: str
    asn: int = Field(default=0, ge=0, le=_MAX_ASN)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        # A bare string is the common case: `- 203.0.113.0/24`.
        return {"prefix": v} if isinstance(v, str) else v

    @field_validator("prefix")
    @classmethod
    def _valid(cls, v: str) -> str:
        return str(cidr_network(v.strip()))

    def network(self) -> IPNetwork:
        return ipaddress.ip_network(self.prefix)


class PartnerGroup(_Strict):
    """A partner group: the remote side of a flow belongs to it by prefix, link id or country."""

    description: str = ""
    source: str = ""  # where the membership comes from (free text, shown in docs and reports)
    countries: list[CountryCode] = Field(default_factory=list)
    prefixes: list[PrefixEntry] = Field(default_factory=list)
    asns: list[Asn] = Field(default_factory=list)
    links: list[LinkId] = Field(default_factory=list)
    # Application class -> p95 latency objective in ms (used by alerting and reports, not by classification).
    slo: dict[str, float] = Field(default_factory=dict)
    # Contracted capacity per direction, bits/s (0 = no contract): utilisation in reports and alerts.
    capacity_bps: int = Field(default=0, ge=0, le=10**15)

    @field_validator("slo")
    @classmethod
    def _slo(cls, v: dict[str, float]) -> dict[str, float]:
        for name, ms in v.items():
            if not _NAME_RE.match(name):
                raise ValueError(f"application class {name!r}: use lower-case letters, digits and _, e.g. 'vr'")
            if not ms > 0:
                raise ValueError(f"slo.{name}={ms}: the p95 objective must be a positive number of ms")
        return v

    def is_empty(self) -> bool:
        return not (self.countries or self.prefixes or self.asns or self.links)


class DomesticConfig(_Strict):
    """What counts as the domestic side: countries (by allocation, via iptocc) and explicit prefixes."""

    countries: list[CountryCode] = Field(default_factory=lambda: ["CN"])
    prefixes: list[PrefixEntry] = Field(default_factory=list)


def _packaged_raw() -> dict[str, Any]:
    text = resources.files("ingest.data").joinpath("partners.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise TypeError("ingest/data/partners.yaml must be a mapping")
    return raw


def _default_groups() -> dict[str, PartnerGroup]:
    groups = _packaged_raw().get("groups", {})
    return {name: PartnerGroup.model_validate(g) for name, g in groups.items()}


class PartnersConfig(_Strict):
    """The `partners:` section. Omitting ``groups`` keeps the packaged default groups; giving it replaces them
    all."""

    domestic: DomesticConfig = Field(default_factory=DomesticConfig)
    groups: dict[str, PartnerGroup] = Field(default_factory=_default_groups)
    fallback: str = "other"  # partner label of a remote side that no group claims
    # Private and reserved space has no allocation country. Gateway captures see public space on the wire,
    # while test captures are often made in private space: treat it as domestic unless told otherwise.
    private_is_domestic: bool = True

    @classmethod
    def default(cls) -> PartnersConfig:
        """The packaged default (``ingest/data/partners.yaml``)."""
        return cls.model_validate(_packaged_raw())

    @field_validator("fallback")
    @classmethod
    def _fallback(cls, v: str) -> str:
        if not _NAME_RE.match(v) or v == DOMESTIC:
            raise ValueError(f"{v!r}: use lower-case letters, digits and _ (and not {DOMESTIC!r}), e.g. 'other'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PartnersConfig:
        problems: list[str] = []
        for name, group in self.groups.items():
            if not _NAME_RE.match(name):
                problems.append(f"groups.{name}: use lower-case letters, digits and _ for group names, e.g. 'japan'")
            if name in (DOMESTIC, self.fallback):
                problems.append(
                    f"groups.{name}: {name!r} is reserved (domestic flows / the fallback): rename the group"
                )
            if group.is_empty():
                problems.append(
                    f"groups.{name}: the group is empty: add countries, prefixes, asns or links, or remove it"
                )
        problems += _unique("countries", self._members("countries"))
        problems += _unique("links", self._members("links"))
        problems += _unique("asns", self._members("asns"))
        problems += _overlaps(self._prefix_owners())
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def _members(self, attr: str) -> list[tuple[str, str, object]]:
        """(owner key, owner label, value) for every entry of a list attribute, domestic included."""
        out: list[tuple[str, str, object]] = []
        if attr == "countries":
            out += [(f"domestic.countries[{i}]", DOMESTIC, c) for i, c in enumerate(self.domestic.countries)]
        for name, group in self.groups.items():
            out += [(f"groups.{name}.{attr}[{i}]", name, v) for i, v in enumerate(getattr(group, attr))]
        return out

    def _prefix_owners(self) -> list[tuple[IPNetwork, str, str]]:
        out = [
            (p.network(), DOMESTIC, f"domestic.prefixes[{i}]={p.prefix}") for i, p in enumerate(self.domestic.prefixes)
        ]
        for name, group in self.groups.items():
            out += [
                (p.network(), name, f"groups.{name}.prefixes[{i}]={p.prefix}") for i, p in enumerate(group.prefixes)
            ]
        return out


def _unique(what: str, members: list[tuple[str, str, object]]) -> list[str]:
    seen: dict[object, tuple[str, str]] = {}
    problems = []
    for key, owner, value in members:
        if value in seen and seen[value][1] != owner:
            first_key, first_owner = seen[value]
            problems.append(
                f"{key}: {value!r} is already in {first_key} ({first_owner}); "
                f"{what} may belong to one group only: remove one of them"
            )
        seen.setdefault(value, (key, owner))
    return problems


def _overlaps(owned: list[tuple[IPNetwork, str, str]]) -> list[str]:
    """Prefixes of different owners that overlap (CIDRs either nest or are disjoint): a sorted sweep."""
    problems: list[str] = []
    for version in (4, 6):
        nets = sorted(
            (o for o in owned if o[0].version == version),
            key=lambda o: (int(o[0].network_address), -int(o[0].broadcast_address)),
        )
        stack: list[tuple[IPNetwork, str, str]] = []  # enclosing prefixes of the current one
        for net, owner, key in nets:
            while stack and int(stack[-1][0].broadcast_address) < int(net.network_address):
                stack.pop()
            for _outer, outer_owner, outer_key in stack:
                if outer_owner != owner:
                    problems.append(
                        f"{key} overlaps {outer_key} (group {owner!r} vs {outer_owner!r}): a prefix may "
                        "belong to one group only: remove or split one of them"
                    )
            stack.append((net, owner, key))
    return problems


def load_partners(path: str | Path) -> PartnersConfig:
    """Load a stand-alone partners file (same keys as the `partners:` section); errors name file and key."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{p}: cannot read the partners file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{p}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{p}: the top level must be a mapping (domestic:, groups:, ...)")
    try:
        return PartnersConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_errors(str(p), exc)) from None


def format_errors(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid partner configuration"]
    for err in exc.errors():
        key = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key: remove it or check its spelling against docs/partners.md"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)
