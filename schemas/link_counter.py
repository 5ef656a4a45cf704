"""LinkCounter v1: one direction of one sFlow generic interface counter sample, as the collector exports it.

A router's counter sample carries the interface's cumulative ifInOctets/ifOutOctets (64-bit) and packet counts
(sums of the 32-bit unicast, multicast and broadcast counters); the collector sends it as two records, `in` and
`out`, to the counters topic. They are kept raw (cumulative, as sent): increases, wraps and restarts are the
report's business (processors.link_counters), so nothing is lost when a sample arrives out of order.

``LINK_COUNTER_FIELDS`` is the single definition (names and ClickHouse types); the dataclass lists the same
fields in the same order. Wire format: one JSON object per Kafka record, field names exactly as below.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import Any, Final

import orjson

from schemas import addresses
from schemas.codec import RecordError

LINK_COUNTER_SCHEMA_VERSION: Final = 1
LINK_COUNTERS_TOPIC: Final = "gwtel.counters.v1"
COUNTER_DIRECTIONS: Final = ("in", "out")

# (name, ClickHouse type)
LINK_COUNTER_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("schema_version", "UInt8"),
    ("agent_id", "LowCardinality(String)"),  # the collector that received the sample
    # the sFlow agent address, as text: it leads the table's sort key, which ClickHouse cannot retype in place
    # (docs/clickhouse.md); readers compare it as an address (toIPv6), so it is checked as ClickHouse reads one
    ("exporter", "String"),
    ("source_id", "UInt32"),  # the interface's ifIndex
    ("direction", "LowCardinality(String)"),  # in | out
    ("sample_ns", "Int64"),  # when the collector received the sample
    ("octets", "UInt64"),  # cumulative ifInOctets / ifOutOctets
    ("packets", "UInt64"),  # cumulative unicast + multicast + broadcast packets
    ("speed_bps", "UInt64"),  # ifSpeed
    ("sequence", "UInt32"),  # the counter sample's sequence number (restarts with the agent)
)

_UINT_MAX: Final = {"UInt8": 2**8 - 1, "UInt32": 2**32 - 1, "UInt64": 2**64 - 1, "Int64": 2**63 - 1}


@dataclass(frozen=True, slots=True)
class LinkCounter:
    schema_version: int
    agent_id: str
    exporter: str
    source_id: int
    direction: str
    sample_ns: int
    octets: int
    packets: int
    speed_bps: int
    sequence: int


def encode(rec: LinkCounter) -> bytes:
    return orjson.dumps(dict(zip((n for n, _ in LINK_COUNTER_FIELDS), astuple(rec), strict=True)))


def key(rec: LinkCounter) -> bytes:
    """One interface's samples share a partition, so they stay in order."""
    return f"{rec.exporter}|{rec.source_id}".encode()


def decode(value: bytes) -> LinkCounter:
    """A counters-topic value -> LinkCounter, or RecordError (reason for the dead-letter topic)."""
    try:
        d: Any = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RecordError("not_json", str(exc)) from None
    if not isinstance(d, dict):
        raise RecordError("not_json", "not a JSON object")
    names = [n for n, _ in LINK_COUNTER_FIELDS]
    if missing := [n for n in names if n not in d]:
        raise RecordError("missing_field", f"missing {missing}")
    if extra := sorted(set(d) - set(names)):
        raise RecordError("bad_value", f"unknown {extra}")
    for name, ch in LINK_COUNTER_FIELDS:
        v = d[name]
        if "String" in ch:
            if not isinstance(v, str):
                raise RecordError("bad_type", f"field {name!r} must be a string")
        elif not isinstance(v, int) or isinstance(v, bool):
            raise RecordError("bad_type", f"field {name!r} must be an integer")
        elif not 0 <= v <= _UINT_MAX[ch]:
            raise RecordError("out_of_range", f"field {name!r}={v} does not fit {ch}")
    if d["schema_version"] != LINK_COUNTER_SCHEMA_VERSION:
        raise RecordError("wrong_version", f"schema_version {d['schema_version']}")
    if d["direction"] not in COUNTER_DIRECTIONS:
        raise RecordError("bad_value", f"direction {d['direction']!r} is not in or out")
    if addresses.parse(d["exporter"], 4) is None and addresses.parse(d["exporter"], 6) is None:
        raise RecordError("bad_value", f"exporter {d['exporter']!r} is not an address")
    return LinkCounter(**d)
