"""FlowRecord v1: one finished (or timed-out slice of a) bidirectional flow, as the agent exports it.

``FLOW_RECORD_FIELDS`` is the single definition. The Python dataclass below must list the same fields in the
same order (``tests/unit/test_schemas.py`` proves it), and the Flink source DDL and ClickHouse columns are
generated from the table, so the three cannot drift apart silently.

Counters are biflow-style relative to the flow's initiator: ``*_fwd`` is initiator -> responder, ``*_rev``
the reverse. ``direction`` is the direction of the initiator's traffic at the gateway (``egress``: a domestic
host opened the flow toward a partner; ``ingress``: a partner host opened it toward the domestic side), so the
bytes that crossed the gateway toward the partner are ``bytes_fwd`` of egress flows plus ``bytes_rev`` of
ingress flows. Byte counts are IP-layer octets (IP header + payload, as IPFIX octetDeltaCount).

Wire format: one JSON object per Kafka record (orjson), field names exactly as below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

FLOW_SCHEMA_VERSION: Final = 1
FLOW_TOPIC: Final = "gwtel.flows.v1"

Direction = Literal["egress", "ingress", "domestic", "transit", "unknown"]
EndReason = Literal["idle", "active", "fin", "rst", "evicted", "flush"]
SamplingMode = Literal["packet", "flow"]
SAMPLING_MODES: Final[tuple[SamplingMode, ...]] = ("packet", "flow")
DEFAULT_CLASS: Final = "default"  # application class of flows no rule claims, and of records older than classes


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One column of a record, with its type in each system that stores or reads it."""

    name: str
    flink: str
    clickhouse: str
    doc: str


# A latency histogram travels as a sparse list of {"b": bucket index, "c": count} (see schemas.histogram).
_HIST_FLINK = "ARRAY<ROW<b INT, c BIGINT>>"
_HIST_CH = "Array(Tuple(b UInt16, c UInt64))"


def _rtt_summary(prefix: str, what: str) -> list[FieldSpec]:
    return [
        FieldSpec(f"{prefix}_count", "BIGINT", "UInt32", f"number of {what} samples"),
        FieldSpec(f"{prefix}_min_us", "BIGINT", "Nullable(UInt32)", f"smallest {what} sample, us"),
        FieldSpec(f"{prefix}_max_us", "BIGINT", "Nullable(UInt32)", f"largest {what} sample, us"),
        FieldSpec(f"{prefix}_sum_us", "BIGINT", "UInt64", f"sum of {what} samples, us"),
        FieldSpec(f"{prefix}_hist", _HIST_FLINK, _HIST_CH, f"sparse log-bucket histogram of {what} samples"),
    ]


FLOW_RECORD_FIELDS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec("schema_version", "INT", "UInt8", "record schema version, 1"),
    # observation
    FieldSpec("agent_id", "STRING", "LowCardinality(String)", "agent that metered the flow"),
    FieldSpec("seq", "BIGINT", "UInt64", "per-agent record sequence number (delivery accounting)"),
    FieldSpec("link_id", "STRING", "LowCardinality(String)", "interconnect link the agent watches"),
    FieldSpec("sampling_rate", "BIGINT", "UInt32", "1:N packet sampling rate (1 = every packet)"),
    # flow key
    FieldSpec("ip_version", "INT", "UInt8", "4 or 6"),
    FieldSpec("src_ip", "STRING", "IPv6", "initiator address"),
    FieldSpec("src_port", "INT", "UInt16", "initiator port (ICMP: 0)"),
    FieldSpec("dst_ip", "STRING", "IPv6", "responder address"),
    FieldSpec("dst_port", "INT", "UInt16", "responder port (ICMP: type<<8|code of the first packet)"),
    FieldSpec("protocol", "INT", "UInt8", "IP protocol number"),
    FieldSpec("vlan", "INT", "UInt16", "outer 802.1Q VLAN id, 0 when untagged"),
    # timing
    FieldSpec("first_ns", "BIGINT", "Int64", "first packet, ns since the Unix epoch"),
    FieldSpec("last_ns", "BIGINT", "Int64", "last packet, ns since the Unix epoch"),
    FieldSpec("export_ns", "BIGINT", "Int64", "when the agent exported the record, ns"),
    FieldSpec("end_reason", "STRING", "LowCardinality(String)", "idle, active, fin, rst, evicted or flush"),
    # counters
    FieldSpec("bytes_fwd", "BIGINT", "UInt64", "IP octets initiator -> responder"),
    FieldSpec("packets_fwd", "BIGINT", "UInt64", "packets initiator -> responder"),
    FieldSpec("bytes_rev", "BIGINT", "UInt64", "IP octets responder -> initiator"),
    FieldSpec("packets_rev", "BIGINT", "UInt64", "packets responder -> initiator"),
    FieldSpec("tcp_flags_fwd", "INT", "UInt8", "OR of TCP flags initiator -> responder"),
    FieldSpec("tcp_flags_rev", "INT", "UInt8", "OR of TCP flags responder -> initiator"),
    FieldSpec("retrans_fwd", "BIGINT", "UInt32", "retransmitted TCP segments initiator -> responder"),
    FieldSpec("retrans_rev", "BIGINT", "UInt32", "retransmitted TCP segments responder -> initiator"),
    # latency
    FieldSpec("hs_rtt_ext_us", "BIGINT", "Nullable(UInt32)", "handshake RTT beyond the observation point, us"),
    FieldSpec("hs_rtt_int_us", "BIGINT", "Nullable(UInt32)", "handshake RTT on the domestic side, us"),
    *_rtt_summary("ts_rtt", "TCP-timestamp RTT"),
    *_rtt_summary("icmp_rtt", "ICMP echo RTT"),
    *_rtt_summary("dns_rtt", "DNS query/response time"),
    # enrichment
    FieldSpec("direction", "STRING", "LowCardinality(String)", "egress, ingress, domestic, transit, unknown"),
    FieldSpec("partner", "STRING", "LowCardinality(String)", "partner group of the remote side"),
    FieldSpec("remote_country", "STRING", "LowCardinality(String)", "ISO 3166 alpha-2 of the remote side"),
    FieldSpec("remote_asn", "BIGINT", "UInt32", "AS number of the remote side, 0 when unknown"),
    # observation, added later (at the end, with a default, so older records stay valid)
    FieldSpec(
        "sampling_mode",
        "STRING",
        "LowCardinality(String)",
        "packet (each packet kept 1:N at random) or flow (whole flows kept 1:N by a symmetric flow hash)",
    ),
    # router flow export (gwtel collect); a capture agent leaves them at their defaults
    FieldSpec("exporter", "STRING", "IPv6", "address of the exporting router, '' when captured"),
    FieldSpec("in_if", "BIGINT", "UInt32", "exporter's input interface index (ifIndex/SNMP), 0 when unknown"),
    FieldSpec("out_if", "BIGINT", "UInt32", "exporter's output interface index, 0 when unknown"),
    FieldSpec("src_asn", "BIGINT", "UInt32", "source AS number as exported (BGP), 0 when unknown"),
    FieldSpec("dst_asn", "BIGINT", "UInt32", "destination AS number as exported (BGP), 0 when unknown"),
    FieldSpec("next_hop", "STRING", "IPv6", "IP next hop as exported, '' when unknown"),
    FieldSpec("one_way", "INT", "UInt8", "1: the record counts one direction only (rev counters unknown), else 0"),
    # application classes (docs/classes.md); older records read as the defaults (0, DEFAULT_CLASS)
    FieldSpec("dscp", "INT", "UInt8", "DSCP of the flow's first packet (a collector: the exported ToS >> 2)"),
    FieldSpec("app_class", "STRING", "LowCardinality(String)", "application class of the `applications:` rules"),
)


@dataclass(frozen=True, slots=True)
class HistBin:
    """One non-empty bucket of a sparse latency histogram."""

    b: int
    c: int


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """Python face of FLOW_RECORD_FIELDS (same names, same order)."""

    schema_version: int
    agent_id: str
    seq: int
    link_id: str
    sampling_rate: int
    ip_version: int
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    protocol: int
    vlan: int
    first_ns: int
    last_ns: int
    export_ns: int
    end_reason: str
    bytes_fwd: int
    packets_fwd: int
    bytes_rev: int
    packets_rev: int
    tcp_flags_fwd: int
    tcp_flags_rev: int
    retrans_fwd: int
    retrans_rev: int
    hs_rtt_ext_us: int | None
    hs_rtt_int_us: int | None
    ts_rtt_count: int
    ts_rtt_min_us: int | None
    ts_rtt_max_us: int | None
    ts_rtt_sum_us: int
    ts_rtt_hist: tuple[HistBin, ...]
    icmp_rtt_count: int
    icmp_rtt_min_us: int | None
    icmp_rtt_max_us: int | None
    icmp_rtt_sum_us: int
    icmp_rtt_hist: tuple[HistBin, ...]
    dns_rtt_count: int
    dns_rtt_min_us: int | None
    dns_rtt_max_us: int | None
    dns_rtt_sum_us: int
    dns_rtt_hist: tuple[HistBin, ...]
    direction: str
    partner: str
    remote_country: str
    remote_asn: int = field(default=0)
    sampling_mode: str = field(default="packet")
    exporter: str = field(default="")
    in_if: int = field(default=0)
    out_if: int = field(default=0)
    src_asn: int = field(default=0)
    dst_asn: int = field(default=0)
    next_hop: str = field(default="")
    one_way: int = field(default=0)
    dscp: int = field(default=0)
    app_class: str = field(default=DEFAULT_CLASS)


def flink_columns_ddl() -> str:
    """Column list for a Flink SQL ``CREATE TABLE`` over the JSON records."""
    return ",\n".join(f"  `{f.name}` {f.flink}" for f in FLOW_RECORD_FIELDS)


def clickhouse_columns_ddl() -> str:
    """Column list for a ClickHouse ``CREATE TABLE`` holding raw FlowRecords."""
    return ",\n".join(f"    `{f.name}` {f.clickhouse}" for f in FLOW_RECORD_FIELDS)
