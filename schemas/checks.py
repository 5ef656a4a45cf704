"""What makes a FlowRecord v1 acceptable: one table of field bounds and record rules, read by every checker.

The loader checks records in ClickHouse (`clickhouse_problem_sql`, the expression of the landing views in
migrations 0007 and 0009, by `LANDING_VERSIONS`), and in Python only for a batch ClickHouse refused to parse
(`checked`, used by `schemas.codec`); the Flink job with its record format's options (`flink_format_options`)
and `flink_rule_sql`. All are generated from
`INT_BOUNDS`, `BIN_BOUNDS` and `RECORD_RULES` below, in the same order, so they name the same reason for the
same record; tests/unit/test_landing.py feeds the same records to ClickHouse and Python, test_aggregate.py to
the job; test_address_checks.py compares the codec's reading of an address with ClickHouse's, and
test_flow_format.py the job's (its record format reads every address) with the codec's.

Reasons are short labels fit for a metric: `missing_field` (absent or null), `bad_type`, `bad_value`,
`out_of_range` (fits the record's meaning but not its ClickHouse column), plus `not_json` and
`wrong_version` from the codec.

Integers may also arrive as quoted decimal strings ("12"): ClickHouse's JSONEachRow and Flink's JSON format
the job's record format read them as numbers, so every stage takes them (ClickHouse also reads "" as 0, and
so do `checked` and the job).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from schemas import addresses
from schemas.flow_record import DEFAULT_CLASS, FLOW_RECORD_FIELDS, FLOW_SCHEMA_VERSION, SAMPLING_MODES

MIN_NS: Final = 946_684_800 * 10**9  # 2000-01-01
MAX_NS: Final = 4_102_444_800 * 10**9  # 2100-01-01
MAX_COUNTER: Final = 2**63 - 1
MAX_BUCKET_INDEX: Final = 2**16 - 1  # a histogram bin's `b` is a UInt16 column

_COLUMN_MAX: Final = {"UInt8": 2**8 - 1, "UInt16": 2**16 - 1, "UInt32": 2**32 - 1, "UInt64": 2**64 - 1,
                      "Int64": 2**63 - 1}  # fmt: skip
_TIMESTAMPS: Final = frozenset({"first_ns", "last_ns", "export_ns"})
_LOWER: Final = {"sampling_rate": 1, **dict.fromkeys(_TIMESTAMPS, MIN_NS)}
# Fields an absent (or null) value defaults for, instead of being refused.
DEFAULTS: Final[Mapping[str, int | str]] = {
    "remote_asn": 0,
    "sampling_mode": "packet",
    **dict.fromkeys(("exporter", "next_hop"), ""),
    **dict.fromkeys(("in_if", "out_if", "src_asn", "dst_asn", "one_way"), 0),
    "dscp": 0,
    "app_class": DEFAULT_CLASS,
}
# Integer fields whose meaning ends below their column's maximum (a value above is `bad_value`).
_UPPER: Final = {"one_way": 1, "dscp": 63}


def _base(ch_type: str) -> tuple[str, bool]:
    t = ch_type.removeprefix("LowCardinality(").removesuffix(")") if ch_type.startswith("LowCardinality(") else ch_type
    if t.startswith("Nullable("):
        return t[len("Nullable(") : -1], True
    return t, False


@dataclass(frozen=True, slots=True)
class IntBound:
    """An integer field: `lo <= v <= hi`; below is `bad_value`, above is `above` (the column or the meaning)."""

    name: str
    lo: int
    hi: int
    above: str
    nullable: bool


def _int_bound(name: str, ch_type: str) -> IntBound:
    base, nullable = _base(ch_type)
    col_max = _COLUMN_MAX[base]
    if name in _TIMESTAMPS:
        return IntBound(name, MIN_NS, MAX_NS, "bad_value", nullable)
    if name in _UPPER:
        return IntBound(name, _LOWER.get(name, 0), _UPPER[name], "bad_value", nullable)
    hi, above = (col_max, "out_of_range") if col_max < MAX_COUNTER else (MAX_COUNTER, "bad_value")
    return IntBound(name, _LOWER.get(name, 0), hi, above, nullable)


def _kind(ch_type: str) -> str:
    base, _ = _base(ch_type)
    if base.startswith("Array("):
        return "hist"
    # an address travels as text; it is stored as IPv6 (schemas.addresses)
    return "str" if base in ("String", addresses.STORED_TYPE) else "int"


FIELD_KINDS: Final[tuple[tuple[str, str], ...]] = tuple((f.name, _kind(f.clickhouse)) for f in FLOW_RECORD_FIELDS)
INT_BOUNDS: Final[Mapping[str, IntBound]] = {
    f.name: _int_bound(f.name, f.clickhouse) for f in FLOW_RECORD_FIELDS if _kind(f.clickhouse) == "int"
}
# Fields a record must carry (absent or null: `missing_field`). Not a histogram (ClickHouse reads a missing
# list as empty, so every stage does), not a nullable one, not one with a default.
REQUIRED: Final[tuple[str, ...]] = tuple(
    name
    for name, kind in FIELD_KINDS
    if name not in DEFAULTS and (kind == "str" or (kind == "int" and not INT_BOUNDS[name].nullable))
)
BIN_BOUNDS: Final = (IntBound("b", 0, MAX_BUCKET_INDEX, "out_of_range", False),
                     IntBound("c", 0, MAX_COUNTER, "bad_value", False))  # fmt: skip


@dataclass(frozen=True, slots=True)
class RecordRule:
    """A rule across fields, checked after every field passed; `sql` is the same test on the landing row."""

    field: str
    ok: Callable[[Mapping[str, Any], int | None], bool]
    sql: str
    detail: str
    flink: str  # the same test in the Flink job's SQL (`{latest}`: its bound, now + the allowed skew)
    sql9: str = ""  # the landing test from landing version 9 on, when it differs from `sql`
    sql13: str = ""  # from landing version 13 on, when it differs from `sql9`


# ClickHouse's isIPv6String also reads a `:::` inside an address ("1:::2"); no other reader does.
CLICKHOUSE_NO_TRIPLE_COLON: Final = "position({x}, ':::') = 0"


# It also reads `::` standing for no group at all ("::0:0:0:0:0:0:0:0", "1::2:3:4:5:6:7:8"): with a `::`, at most
# seven groups are written (a dotted tail counts two). Guarded from landing version 13 on.
CLICKHOUSE_GAP_HAS_A_GROUP: Final = (
    "(position({x}, '::') = 0 OR "
    "arrayCount(g -> g != '', splitByChar(':', assumeNotNull({x}))) + (position({x}, '.') > 0) <= 7)"
)


def _ch_ipv6(x: str) -> str:
    return f"(isIPv6String({x}) AND {CLICKHOUSE_NO_TRIPLE_COLON.format(x=x)})"


def clickhouse_ipv6_sql(x: str) -> str:
    """The loader's reading of an IPv6 address `x` (landing version 13): ClickHouse's, with both guards."""
    return (
        f"(isIPv6String({x}) AND {CLICKHOUSE_NO_TRIPLE_COLON.format(x=x)} AND {CLICKHOUSE_GAP_HAS_A_GROUP.format(x=x)})"
    )


def ip_ok(text: str, version: int) -> bool:
    """`text` is an address of IP `version` as ClickHouse's isIPv4String / isIPv6String read it."""
    return addresses.parse(text, version) is not None


# The job's record format reads every address field (`flink_format_options`, "addresses") as the loader does and
# hands it on in its canonical text, or null when it is not an address (of the record's ip_version for src_ip and
# dst_ip, of either family or "" for exporter and next_hop).
_JOB_READ_AN_ADDRESS: Final = "`{name}` IS NOT NULL"


def flink_address_spec() -> str:
    """The format's `addresses` option: `name|ip-version-field` per address field, no version field for one of
    either family that may be "" (not known)."""
    return ";".join(f"{n}|{'' if n in addresses.OPTIONAL_ADDRESS_FIELDS else 'ip_version'}"
                    for n in addresses.ADDRESS_FIELDS)  # fmt: skip


def _address_rule(name: str) -> RecordRule:
    return RecordRule(
        name,
        lambda d, _latest: ip_ok(d[name], d["ip_version"]),
        f"if(ip_version = 4, isIPv4String({name}), isIPv6String({name}))",
        f"{name} is not an address of ip_version",
        _JOB_READ_AN_ADDRESS.format(name=name),
        f"if(ip_version = 4, isIPv4String({name}), {_ch_ipv6(name)})",
        f"if(ip_version = 4, isIPv4String({name}), {clickhouse_ipv6_sql(name)})",
    )


def _optional_address_rule(name: str) -> RecordRule:
    """`name` is "" (not known) or an address of either family: an exporter or next hop need not share the
    flow's IP version (an IPv4 router exporting IPv6 flows, an IPv6 next hop for IPv4 routes)."""
    value = f"coalesce({name}, '')"
    return RecordRule(
        name,
        lambda d, _latest: d[name] == "" or ip_ok(d[name], 4) or ip_ok(d[name], 6),
        f"{value} = '' OR isIPv4String({value}) OR isIPv6String({value})",
        f"{name} is neither empty nor an address",
        _JOB_READ_AN_ADDRESS.format(name=name),
        f"{value} = '' OR isIPv4String({value}) OR {_ch_ipv6(value)}",
        f"{value} = '' OR isIPv4String({value}) OR {clickhouse_ipv6_sql(value)}",
    )


def _not_ahead(d: Mapping[str, Any], latest: int | None) -> bool:
    return latest is None or d["last_ns"] <= latest


# Application class names (ingest.applications validates the configured ones the same way): they key windows.
CLASS_NAME_RE: Final = "^[a-z][a-z0-9_]{0,31}$"
_CLASS_RE: Final = re.compile(CLASS_NAME_RE)
# Java's `$` also matches before a final line break ("vr\n"): the job's regular expression ends at `\z` instead.
_CLASS_RE_JAVA: Final = CLASS_NAME_RE.removesuffix("$") + "\\z"
_MODES: Final = "(" + ", ".join(f"'{m}'" for m in SAMPLING_MODES) + ")"

# In SQL, `{latest}` is the bound of the batch (0: none, a batch without Kafka timestamps).
RECORD_RULES: Final[tuple[RecordRule, ...]] = (
    RecordRule("last_ns", lambda d, _l: d["last_ns"] >= d["first_ns"], "last_ns >= first_ns",
               "last_ns is before first_ns", "`last_ns` >= `first_ns`"),
    RecordRule("packets_fwd", lambda d, _l: d["packets_fwd"] + d["packets_rev"] > 0,
               "packets_fwd + packets_rev > 0", "flow has no packets", "`packets_fwd` + `packets_rev` > 0"),
    RecordRule("ip_version", lambda d, _l: d["ip_version"] in (4, 6), "ip_version IN (4, 6)",
               "ip_version is neither 4 nor 6", "`ip_version` IN (4, 6)"),
    RecordRule("sampling_mode", lambda d, _l: d["sampling_mode"] in SAMPLING_MODES,
               f"coalesce(sampling_mode, '{DEFAULTS['sampling_mode']}') IN {_MODES}",
               "sampling_mode is neither packet nor flow", f"`sampling_mode` IS NULL OR `sampling_mode` IN {_MODES}"),
    RecordRule("app_class", lambda d, _l: _CLASS_RE.fullmatch(d["app_class"]) is not None,
               f"match(coalesce(app_class, '{DEFAULT_CLASS}'), '{CLASS_NAME_RE}')",
               "app_class is not a class name (lower-case letters, digits and _)",
               f"`app_class` IS NULL OR REGEXP(`app_class`, '{_CLASS_RE_JAVA}')"),
    _address_rule("src_ip"),
    _address_rule("dst_ip"),
    _optional_address_rule("exporter"),
    _optional_address_rule("next_hop"),
    RecordRule("last_ns", _not_ahead, "{latest} = 0 OR last_ns <= {latest}",
               "last_ns lies beyond the record's Kafka timestamp plus job.max_future_skew_s",
               "`last_ns` <= {latest}"),
)  # fmt: skip

# ClickHouse's reading of an integer in quotes: a sign, digits, and "" as 0 (its parser's rule, kept so that a
# batch's verdict does not depend on which path it took).
_QUOTED_INT: Final = re.compile(r"[+-]?[0-9]+|")


class CheckError(ValueError):
    """Why a parsed record is not acceptable: `reason` (a metric label), `field` and `detail`."""

    def __init__(self, reason: str, field: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.field = field
        self.detail = detail


def _int(name: str, v: Any, bound: IntBound) -> int:
    if type(v) is str and _QUOTED_INT.fullmatch(v):
        v = int(v or "0")
    if type(v) is not int:
        raise CheckError("bad_type", name, f"field {name!r} must be an integer, got {type(v).__name__}")
    if v < bound.lo:
        raise CheckError("bad_value", name, f"field {name!r}={v} is below {bound.lo}")
    if v > bound.hi:
        raise CheckError(bound.above, name, f"field {name!r}={v} is above {bound.hi}")
    return v


def _bins(name: str, v: Any) -> list[tuple[int, int]]:
    if type(v) is not list:
        raise CheckError("bad_type", name, f"field {name!r} must be a list of {{b, c}} objects")
    out = []
    for item in v:
        if type(item) is not dict or set(item) != {"b", "c"}:
            raise CheckError("bad_type", name, f"field {name!r} holds an item that is not {{b, c}}")
        out.append((_int(name, item["b"], BIN_BOUNDS[0]), _int(name, item["c"], BIN_BOUNDS[1])))
    return out


def checked(d: Any, latest_ns: int | None = None) -> dict[str, Any]:
    """The record's values, typed (ints as int, bins as (b, c) tuples), or raise `CheckError`.

    ``latest_ns``: the latest plausible ``last_ns`` (a Kafka timestamp plus the allowed clock skew).
    """
    if type(d) is not dict:
        raise CheckError("bad_type", "", "record is not a JSON object")
    version = d.get("schema_version")
    if version not in (FLOW_SCHEMA_VERSION, str(FLOW_SCHEMA_VERSION)):
        raise CheckError("wrong_version", "schema_version",
                      f"schema_version={version!r}, this reader takes {FLOW_SCHEMA_VERSION}")  # fmt: skip
    out: dict[str, Any] = {}
    for name, kind in FIELD_KINDS:
        v = d.get(name)
        if v is None:
            if name in DEFAULTS:
                out[name] = DEFAULTS[name]
                continue
            if kind == "hist":
                out[name] = []  # an Array column has no null: ClickHouse reads a missing list as empty
                continue
            if kind == "int" and INT_BOUNDS[name].nullable:
                out[name] = None
                continue
            raise CheckError("missing_field", name, f"field {name!r} is missing or null")
        if kind == "int":
            out[name] = _int(name, v, INT_BOUNDS[name])
        elif kind == "str":
            if type(v) is not str:
                raise CheckError("bad_type", name, f"field {name!r} must be a string")
            out[name] = v
        else:
            out[name] = _bins(name, v)
    for rule in RECORD_RULES:
        if not rule.ok(out, latest_ns):
            raise CheckError("bad_value", rule.field, rule.detail)
    return out


# -- the same checks in ClickHouse SQL, over the landing table's columns ---------------------------------------
# The landing tables' layout: 7 as migration 0007 created it, 9 (0009) with nullable histogram bin elements,
# 10 (0010) with the application class fields, 13 (0013) storing addresses as IPv6 (schemas/addresses.py), 14
# (0014) refusing a block whose row count is not its token's (processors/landing.py).
LANDING_VERSIONS: Final = (7, 9, 10, 13, 14)
LANDING_VERSION: Final = LANDING_VERSIONS[-1]
# Record fields added after the landing path's first version, with the version that lands them: an earlier
# version's tables, views and checks (its released migration, rendered again by the tests) do not name them.
FIELD_SINCE: Final[Mapping[str, int]] = {"dscp": 10, "app_class": 10}


def in_landing(name: str, version: int) -> bool:
    """Whether landing `version` has the record field `name`."""
    return FIELD_SINCE.get(name, LANDING_VERSIONS[0]) <= version


def landing_fields(version: int = LANDING_VERSION) -> tuple[tuple[str, str], ...]:
    """(name, kind) of the record fields landing `version` has, in wire order."""
    return tuple((name, kind) for name, kind in FIELD_KINDS if in_landing(name, version))


def landing_type(name: str, kind: str, version: int = LANDING_VERSION) -> str:
    """Landing column type: wide enough that a value out of any bound still parses and is judged by the view.

    Every element may be null from version 9 on: ClickHouse's JSON reader fills a null where its column cannot
    hold one with the type's default (a bin `{"b": null, "c": null}` read as (0, 0), `[null]` as one such
    bin), so only a nullable element lets the view see the null and refuse it as the codec does."""
    if kind == "int":
        return "Nullable(Int128)"
    if kind == "str":
        return "Nullable(String)"
    if version < 9:
        return "Array(Tuple(b Int128, c Int128))"
    return "Array(Tuple(b Nullable(Int128), c Nullable(Int128)))"


def _int_sql(expr: str, name: str, bound: IntBound) -> list[tuple[str, str, str]]:
    return [(f"{expr} < {bound.lo}", "bad_value", name), (f"{expr} > {bound.hi}", bound.above, name)]


def _bins_sql(name: str, version: int) -> list[tuple[str, str, str]]:
    b, c = BIN_BOUNDS
    if version < 9:
        # Per bin in order, as `_bins` reads them: the first bad element decides the reason.
        first = f"arrayFirst(t -> t.1 < {b.lo} OR t.1 > {b.hi} OR t.2 < {c.lo} OR t.2 > {c.hi}, {name})"
        return [
            (f"{first}.1 < {b.lo} OR ({first}.1 <= {b.hi} AND {first}.2 < {c.lo})", "bad_value", name),
            (f"{first}.1 > {b.hi}", b.above, name),
            (f"{first}.2 > {c.hi}", c.above, name),
        ]
    # Each bin's first fault as a code, in the order `_bins` reads them (b, then c: null, below, above); the
    # first bin with one decides. 0: no fault (also arrayFirst's answer when no bin has one).
    faults: list[tuple[str, str]] = []
    for i, bound in ((1, b), (2, c)):
        faults += [(f"isNull(t.{i})", "bad_type"), (f"t.{i} < {bound.lo}", "bad_value"),
                   (f"t.{i} > {bound.hi}", bound.above)]  # fmt: skip
    codes = ", ".join(f"{cond}, {n}" for n, (cond, _) in enumerate(faults, start=1))
    code = f"arrayFirst(x -> x != 0, arrayMap(t -> multiIf({codes}, 0), {name}))"
    by_reason: dict[str, list[int]] = {}
    for n, (_, reason) in enumerate(faults, start=1):
        by_reason.setdefault(reason, []).append(n)
    return [(f"{code} IN ({', '.join(map(str, ns))})", reason, name) for reason, ns in by_reason.items()]


def problem_cases(latest_sql: str, version: int = LANDING_VERSION) -> list[tuple[str, str, str]]:
    """(condition, reason, field) in the order `checked` checks them; the first true one names the fault."""
    cases: list[tuple[str, str, str]] = [
        (f"isNull(schema_version) OR schema_version != {FLOW_SCHEMA_VERSION}", "wrong_version", "schema_version")
    ]
    for name, kind in landing_fields(version):
        if kind == "int":
            bound = INT_BOUNDS[name]
            if not bound.nullable and name not in DEFAULTS:
                cases.append((f"isNull({name})", "missing_field", name))
            cases.extend(_int_sql(name, name, bound))
        elif kind == "str":
            if name not in DEFAULTS:
                cases.append((f"isNull({name})", "missing_field", name))
            # orjson refuses a value with invalid UTF-8 (`not_json`); ClickHouse's parser takes any bytes.
            cases.append((f"NOT isValidUTF8({name})", "not_json", name))
        else:
            cases.extend(_bins_sql(name, version))
    for rule in (r for r in RECORD_RULES if in_landing(r.field, version)):
        sql = rule.sql13 if version >= 13 and rule.sql13 else rule.sql9 if version >= 9 and rule.sql9 else rule.sql
        cases.append((f"NOT ({_bound(sql, latest_sql)})", "bad_value", rule.field))
    return cases


def _bound(sql: str, latest_sql: str) -> str:
    return sql.replace("{latest}", latest_sql)  # not str.format: the regular expressions hold braces


# The reasons the job's record format (processors/java/gwtel/format) names, in the order it numbers them.
FORMAT_REASONS: Final = ("not_json", "wrong_version", "missing_field", "bad_type", "bad_value", "out_of_range")


def _absent(name: str, kind: str) -> str:
    """What `checked` makes of an absent or null field: a default, an empty list, null, or `missing_field`."""
    if name in DEFAULTS:
        return f"={DEFAULTS[name]}"
    if kind == "hist":
        return "empty"
    if kind == "int" and INT_BOUNDS[name].nullable:
        return "null"
    return "missing"


def flink_format_options() -> dict[str, str]:
    """The options of the job's record format `gwtel-flow` (processors/java/gwtel/format): the field table,
    the bins' bounds and the reason names above, so that its verdict on each field is `checked`'s. Fields are
    judged in this order, then the job's SQL applies `flink_rule_sql` (the record rules), as `checked` does."""
    specs = []
    for name, kind in FIELD_KINDS:
        b = INT_BOUNDS.get(name)
        lo, hi, above = (b.lo, b.hi, b.above) if b is not None else ("", "", "")
        specs.append(f"{name}|{kind}|{lo}|{hi}|{above}|{_absent(name, kind)}")
    return {
        "fields": ";".join(specs),
        "bins": ";".join(f"{b.lo}|{b.hi}|{b.above}" for b in BIN_BOUNDS),
        "reasons": ",".join(FORMAT_REASONS),
        "version-field": "schema_version",
        "version": str(FLOW_SCHEMA_VERSION),
        "addresses": flink_address_spec(),
    }


def flink_rule_sql(latest_sql: str) -> str:
    """The job's record rules (after its format accepted every field): the first rule's field a row breaks, or
    NULL. The same rules, in the same order, as `checked` and the landing views apply."""
    whens = " ".join(f"WHEN NOT ({_bound(r.flink, latest_sql)}) THEN '{r.field}'" for r in RECORD_RULES)
    return f"CASE {whens} END"


def clickhouse_problem_sql(latest_sql: str, version: int = LANDING_VERSION) -> str:
    """`(reason, field)` of a landing row, `('', '')` when it may be stored: `checked` in ClickHouse SQL, over the
    landing tables of `version`."""
    cases = problem_cases(latest_sql, version)
    whens = ",\n        ".join(f"{cond}, ('{reason}', '{field}')" for cond, reason, field in cases)
    return f"multiIf(\n        {whens},\n        ('', ''))"
