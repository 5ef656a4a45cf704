"""Aggregate records the Flink job writes (schema_version 1), and the job's late and dead-letter records.

``AGGREGATE_FIELDS`` is the single definition of an aggregate record: the Flink sink DDL
(``flink_columns_ddl``) and the ClickHouse columns (``clickhouse_columns_ddl``) are generated from it.

Every record describes one tumbling event-time window (``window_start_ms``, ``window_s`` long) of one
``partner`` x ``direction`` x ``link_id`` x ``app_class``, and ``kind`` says which family of columns it fills;
the others are null:

- ``bandwidth`` (also keyed by ``sampling_rate``): raw counters ``bytes``, ``packets``, ``retrans``,
  ``flows``, ``flows_ended``, ``remote_hosts``, plus ``*_scaled`` = SUM(counter * sampling_rate) and the
  rates ``bits_per_s``/``packets_per_s`` computed from the scaled totals over the window length. Raw
  counters and the rate are both stored, so any other scaling can still be done at query time.
- ``latency`` (keyed by ``metric``): ``samples``, ``min_us``, ``max_us``, ``sum_us`` of one RTT metric.
- ``latency_bucket`` (keyed by ``metric`` and ``bucket``): ``samples`` in one log bucket of
  ``schemas.histogram``; summing buckets merges histograms exactly across windows, links and partners.

One topic carries all three kinds so a consumer reads one ordered stream per partition and deduplicates
with one token scheme; topic names carry the schema version.
"""

from __future__ import annotations

from typing import Final, Literal

from schemas.flow_record import FLOW_RECORD_FIELDS, FieldSpec

AGGREGATE_SCHEMA_VERSION: Final = 1
AGGREGATES_TOPIC: Final = "gwtel.aggregates.v1"
LATE_TOPIC: Final = "gwtel.late.v1"
DEAD_LETTER_TOPIC: Final = "gwtel.deadletter.v1"

Kind = Literal["bandwidth", "latency", "latency_bucket"]
KINDS: Final[tuple[Kind, ...]] = ("bandwidth", "latency", "latency_bucket")

# RTT metrics, named after their FlowRecord columns without the `_us` suffix. The first two carry one
# value per flow; the last three carry a sparse histogram plus count/min/max/sum per flow.
SINGLE_VALUE_METRICS: Final = ("hs_rtt_ext", "hs_rtt_int")
HISTOGRAM_METRICS: Final = ("ts_rtt", "icmp_rtt", "dns_rtt")
METRICS: Final = SINGLE_VALUE_METRICS + HISTOGRAM_METRICS

AGGREGATE_FIELDS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec("schema_version", "INT", "UInt8", "aggregate record schema version, 1"),
    FieldSpec("kind", "STRING", "LowCardinality(String)", "bandwidth, latency or latency_bucket"),
    FieldSpec("window_s", "INT", "UInt32", "window length, seconds"),
    FieldSpec("window_start_ms", "BIGINT", "Int64", "window start, ms since the Unix epoch (UTC)"),
    FieldSpec("partner", "STRING", "LowCardinality(String)", "partner group"),
    FieldSpec("direction", "STRING", "LowCardinality(String)", "egress, ingress, domestic, transit, unknown"),
    FieldSpec("link_id", "STRING", "LowCardinality(String)", "interconnect link"),
    FieldSpec("app_class", "STRING", "LowCardinality(String)", "application class of the flows (docs/classes.md)"),
    # bandwidth
    FieldSpec("sampling_rate", "BIGINT", "Nullable(UInt32)", "bandwidth: 1:N sampling rate of the counted records"),
    FieldSpec("bytes", "BIGINT", "Nullable(UInt64)", "bandwidth: raw IP octets that crossed in this direction"),
    FieldSpec("packets", "BIGINT", "Nullable(UInt64)", "bandwidth: raw packets in this direction"),
    FieldSpec("retrans", "BIGINT", "Nullable(UInt64)", "bandwidth: raw retransmitted TCP segments"),
    FieldSpec("flows", "BIGINT", "Nullable(UInt64)", "bandwidth: flow records, counted in the initiator's direction"),
    FieldSpec("flows_ended", "BIGINT", "Nullable(UInt64)", "bandwidth: flows that ended (end_reason not active)"),
    FieldSpec("remote_hosts", "BIGINT", "Nullable(UInt64)", "bandwidth: distinct remote addresses with packets"),
    FieldSpec("bytes_scaled", "BIGINT", "Nullable(UInt64)", "bandwidth: SUM(bytes * sampling_rate)"),
    FieldSpec("packets_scaled", "BIGINT", "Nullable(UInt64)", "bandwidth: SUM(packets * sampling_rate)"),
    FieldSpec("retrans_scaled", "BIGINT", "Nullable(UInt64)", "bandwidth: SUM(retrans * sampling_rate)"),
    FieldSpec("bits_per_s", "DOUBLE", "Nullable(Float64)", "bandwidth: bytes_scaled * 8 / window_s"),
    FieldSpec("packets_per_s", "DOUBLE", "Nullable(Float64)", "bandwidth: packets_scaled / window_s"),
    # latency
    FieldSpec("metric", "STRING", "LowCardinality(Nullable(String))", "latency: RTT metric (see METRICS)"),
    FieldSpec("bucket", "INT", "Nullable(UInt16)", "latency_bucket: log bucket index (schemas.histogram)"),
    FieldSpec("samples", "BIGINT", "Nullable(UInt64)", "latency: samples in the window (or in the bucket)"),
    FieldSpec("min_us", "BIGINT", "Nullable(UInt32)", "latency: smallest sample, us"),
    FieldSpec("max_us", "BIGINT", "Nullable(UInt32)", "latency: largest sample, us"),
    FieldSpec("sum_us", "BIGINT", "Nullable(UInt64)", "latency: sum of samples, us"),
)  # fmt: skip

# Late records are the FlowRecord itself (same JSON, so the FlowRecord codec reads them back), written
# when the flow's end time was at or behind the watermark on arrival: nothing late is silently dropped.
LATE_FIELDS: Final[tuple[FieldSpec, ...]] = FLOW_RECORD_FIELDS

# A record of the flows topic that is not a valid FlowRecord v1, with the first reason found.
DEAD_LETTER_FIELDS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec("stage", "STRING", "LowCardinality(String)", "who rejected it: aggregate (the Flink job)"),
    FieldSpec("reason", "STRING", "LowCardinality(String)", "the loader's reason (schemas.checks), e.g. bad_type"),
    FieldSpec("field", "STRING", "String", "the field the reason is about ('' for the whole value)"),
    FieldSpec("value", "STRING", "String", "the record's text, or (a record rule) agent_id, seq and link_id as JSON"),
    FieldSpec("line", "INT", "UInt32", "the record's line in its Kafka value (0: the first or only one)"),
)


def flink_columns_ddl(fields: tuple[FieldSpec, ...] = AGGREGATE_FIELDS) -> str:
    """Column list for a Flink SQL ``CREATE TABLE`` (the aggregates sink by default)."""
    return ",\n".join(f"  `{f.name}` {f.flink}" for f in fields)


def clickhouse_columns_ddl(fields: tuple[FieldSpec, ...] = AGGREGATE_FIELDS) -> str:
    """Column list for a ClickHouse ``CREATE TABLE`` holding aggregate records as they arrive."""
    return ",\n".join(f"    `{f.name}` {f.clickhouse}" for f in fields)
