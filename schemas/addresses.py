"""FlowRecord addresses as ClickHouse stores and prints them: one owner for their reading, storage and text.

A record carries addresses as text (`src_ip`, `dst_ip`, and `exporter`, `next_hop` that may be "" when not
known). From landing version 13 (migration 0013) `flows_raw` and `flows_late` store them as ClickHouse `IPv6`
(`link_counters.exporter` stays text: it leads that table's sort key; readers apply `toIPv6` to it): an IPv4 address as
its mapped form `::ffff:a.b.c.d`, "" as `::` (the unspecified address, which no flow, exporter or next hop
has). Readers print a stored address with `text_sql`: IPv4 (mapped) as a dotted quad, IPv6 in ClickHouse's short
form (RFC 5952: lower case, the longest run of zero groups as `::`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

# The record fields that hold an address, and those of them that may be "" (not known).
ADDRESS_FIELDS: Final = ("src_ip", "dst_ip", "exporter", "next_hop")
OPTIONAL_ADDRESS_FIELDS: Final = frozenset({"exporter", "next_hop"})
STORED_TYPE: Final = "IPv6"
# Landing version (and migration) from which the stored tables hold `IPv6`; before it, these text types.
STORED_SINCE: Final = 13
TEXT_TYPES_BEFORE: Final = {"src_ip": "String", "dst_ip": "String", "exporter": "LowCardinality(String)",
                            "next_hop": "String"}  # fmt: skip
UNSPECIFIED: Final = ipaddress.IPv6Address("::")
UNSPECIFIED_SQL: Final = "toIPv6('::')"  # an unknown exporter or next hop, in a query

# ClickHouse takes leading zeros in the dotted tail of an IPv6 address, up to four digits an octet
# (::ffff:1.2.3.04, ::0.0.0.0255); Python not.
_DOTTED_TAIL: Final = re.compile(r"[0-9]{1,4}(\.[0-9]{1,4}){3}")


def parse(text: str, version: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`text` as an address of IP `version`, read as ClickHouse's isIPv4String / isIPv6String read it; None if
    it is not one."""
    try:
        if version == 4:
            return ipaddress.IPv4Address(text)
        if "%" in text:
            return None  # a scope id: ClickHouse refuses it
        head, colon, tail = text.rpartition(":")
        if colon and "." in tail and _DOTTED_TAIL.fullmatch(tail):
            text = head + ":" + ".".join(str(int(o)) for o in tail.split("."))
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def stored(text: str) -> ipaddress.IPv6Address:
    """The `IPv6` value of an address the checks accepted (`schemas.checks`): IPv4 mapped, "" as `::`.

    The same value as the landing view's `stored_sql`; a text no check accepts raises ValueError."""
    if text == "":
        return UNSPECIFIED
    v4 = parse(text, 4)
    if v4 is not None:
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + v4.packed)
    v6 = parse(text, 6)
    if v6 is None:
        raise ValueError(f"{text!r} is not an address")
    return v6  # type: ignore[return-value]


def text(value: ipaddress.IPv6Address) -> str:
    """The text of a stored address as `text_sql` prints it: a mapped IPv4 address as its dotted quad, an
    IPv4-compatible one (`::a.b.c.d`, the first 96 bits zero, the seventh group not) with a dotted tail as
    ClickHouse writes it, any other in RFC 5952 short form (Python's and ClickHouse's agree there)."""
    if value.ipv4_mapped is not None:
        return str(value.ipv4_mapped)
    packed = value.packed
    if packed[:12] == bytes(12) and packed[12:14] != bytes(2):
        return "::" + str(ipaddress.IPv4Address(packed[12:]))
    return str(value)


def stored_sql(name: str) -> str:
    """The landing view's `IPv6` value of address field `name` (a checked, nullable text column)."""
    if name in OPTIONAL_ADDRESS_FIELDS:
        # "" or absent is `::`, which the OrZero form gives without a branch: any other value passed the checks,
        # so it parses (and the OrZero form hides nothing)
        return f"toIPv6OrZero(coalesce(`{name}`, ''))"
    return f"toIPv6(assumeNotNull(`{name}`))"  # reads both families, IPv4 as mapped


def text_sql(expr: str) -> str:
    """The text of a stored address: a mapped IPv4 address as its dotted quad, any other in IPv6 short form."""
    return f"replaceRegexpOne(IPv6NumToString({expr}), '^::ffff:([0-9.]+)$', '\\\\1')"


def optional_text_sql(expr: str) -> str:
    """`text_sql` of an `exporter` or `next_hop`: `::` (not known) as ""."""
    return f"if({expr} = {UNSPECIFIED_SQL}, '', {text_sql(expr)})"
