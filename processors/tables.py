"""The ClickHouse tables the loader writes: their columns in insert order, with ClickHouse types.

They derive from the record definitions (`FLOW_RECORD_FIELDS`, `AGGREGATE_FIELDS`), so the loader's insert
column list cannot drift from the records; `tests/unit/test_migrations_sql.py` proves the migrations create
exactly these columns. Every table ends with the Kafka coordinates of the record the row came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from schemas.aggregate import AGGREGATE_FIELDS, LATE_FIELDS
from schemas.flow_record import FLOW_RECORD_FIELDS, FieldSpec

KAFKA_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("kafka_topic", "LowCardinality(String)"),
    ("kafka_partition", "UInt32"),
    ("kafka_offset", "UInt64"),
)


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, ClickHouse type), in insert order

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]

    @property
    def column_types(self) -> list[str]:
        return [t for _, t in self.columns]


def not_null(ch_type: str) -> str:
    """`Nullable(T)` -> `T`, `LowCardinality(Nullable(T))` -> `LowCardinality(T)`: kind tables are dense."""
    if ch_type.startswith("Nullable(") and ch_type.endswith(")"):
        return ch_type[len("Nullable(") : -1]
    if ch_type.startswith("LowCardinality(Nullable(") and ch_type.endswith("))"):
        return "LowCardinality(" + ch_type[len("LowCardinality(Nullable(") : -2] + ")"
    return ch_type


_AGG: Final = {f.name: f for f in AGGREGATE_FIELDS}
# Columns every aggregate kind carries; `schema_version` and `kind` are implied by the table.
AGG_KEY_FIELDS: Final = ("window_s", "window_start_ms", "partner", "direction", "link_id", "app_class")
# Per kind: the value columns, and which of them may stay null (min/max of a window without samples).
AGG_KIND_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "bandwidth": (
        "sampling_rate", "bytes", "packets", "retrans", "flows", "flows_ended", "remote_hosts",
        "bytes_scaled", "packets_scaled", "retrans_scaled", "bits_per_s", "packets_per_s",
    ),
    "latency": ("metric", "samples", "min_us", "max_us", "sum_us"),
    "latency_bucket": ("metric", "bucket", "samples"),
}  # fmt: skip
AGG_KIND_NULLABLE: Final[dict[str, frozenset[str]]] = {
    "bandwidth": frozenset(),
    "latency": frozenset({"min_us", "max_us"}),
    "latency_bucket": frozenset(),
}
AGG_KIND_TABLE: Final = {
    "bandwidth": "bandwidth_window",
    "latency": "latency_window",
    "latency_bucket": "latency_hist_window",
}


def _agg_columns(kind: str) -> tuple[tuple[str, str], ...]:
    cols: list[tuple[str, str]] = []
    for name in (*AGG_KEY_FIELDS, *AGG_KIND_FIELDS[kind]):
        spec: FieldSpec = _AGG[name]
        cols.append((name, spec.clickhouse if name in AGG_KIND_NULLABLE[kind] else not_null(spec.clickhouse)))
    return (*cols, *KAFKA_COLUMNS)


FLOWS_RAW: Final = TableSpec("flows_raw", (*((f.name, f.clickhouse) for f in FLOW_RECORD_FIELDS), *KAFKA_COLUMNS))
# The late topic carries FlowRecords too (schemas.aggregate.LATE_FIELDS): same columns, their own table.
FLOWS_LATE: Final = TableSpec("flows_late", (*((f.name, f.clickhouse) for f in LATE_FIELDS), *KAFKA_COLUMNS))
AGG_TABLES: Final[dict[str, TableSpec]] = {
    kind: TableSpec(table, _agg_columns(kind)) for kind, table in AGG_KIND_TABLE.items()
}
ALL_TABLES: Final[tuple[TableSpec, ...]] = (FLOWS_RAW, FLOWS_LATE, *AGG_TABLES.values())
