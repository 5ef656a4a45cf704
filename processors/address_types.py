"""The stored tables' address columns retyped from text to IPv6 (landing version 13, `schemas.addresses`),
every row kept: the end of migration 0013, rendered by `processors.landing.migration_sql`.

Every statement may run again (the migration runner repeats an interrupted migration from its start) and ends
in the same state.
"""

from __future__ import annotations

from typing import Final

from processors.counter_rows import LINK_COUNTERS
from schemas import addresses
from schemas.flow_record import FLOW_RECORD_FIELDS

_FLOW_TABLES: Final = ("flows_raw", "flows_late")
# link_counters keys its rows by exporter, a column ClickHouse cannot retype in place: it is copied into a new
# table, which then takes its name.
_NEW: Final = "link_counters_ipv6"
_OLD: Final = "link_counters_0012"


def _flows_sql(db: str) -> list[str]:
    """A text column converts to IPv6 only if every value parses (one that does not leaves the table's conversion
    stuck), so an UPDATE first rewrites each value that is not canonical IPv6 text yet: "" (not known) as `::`,
    IPv4 as `::ffff:a.b.c.d`, and a text no check takes (stored before the checks) as `::` too. Run again, the
    UPDATE finds no row and MODIFY finds the type it sets. Both wait for their mutation."""
    names = [f.name for f in FLOW_RECORD_FIELDS if f.name in addresses.ADDRESS_FIELDS]
    canonical = {n: f"IPv6NumToString(toIPv6OrZero(toString(`{n}`)))" for n in names}
    sets = ", ".join(f"`{n}` = {canonical[n]}" for n in names)
    where = " OR ".join(f"toString(`{n}`) != {canonical[n]}" for n in names)
    # an optional address has the text default '' (0006): `::` is its IPv6 form
    modify = ", ".join(
        f"MODIFY COLUMN `{n}` {addresses.STORED_TYPE}"
        + (" DEFAULT toIPv6('::')" if n in addresses.OPTIONAL_ADDRESS_FIELDS else "")
        for n in names
    )
    out = []
    for table in _FLOW_TABLES:
        out.append(f"ALTER TABLE {db}.{table} UPDATE {sets} WHERE {where} SETTINGS mutations_sync = 2;")
        out.append(f"ALTER TABLE {db}.{table} {modify} SETTINGS mutations_sync = 2;")
    return out


def _link_counters_sql(db: str) -> list[str]:
    """A copy with `exporter` as IPv6 (same sort key, retention and deduplication setting), renamed into place.
    A view forwards samples inserted while the copy runs; the copy skips rows it already holds (a rerun). A run
    after the rename copies the new table again, to the same rows. Retried counter batches whose first insert
    was before the migration are not recognised by the new table's deduplication window."""
    names = [n for n, _ in LINK_COUNTERS.columns]
    # toString: the column is IPv6 already when the copy runs again after the rename
    exporter = "toIPv6OrZero(toString(`exporter`)) AS `exporter`"
    select = ", ".join(exporter if n == "exporter" else f"`{n}`" for n in names)
    coords = "(kafka_topic, kafka_partition, kafka_offset)"
    return [
        f"DROP TABLE IF EXISTS {db}.{_OLD};",
        f"""CREATE TABLE IF NOT EXISTS {db}.{_NEW}
(
{_columns()}
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (exporter, source_id, direction, sample_ns)
TTL ts + INTERVAL ${{ttl_flows_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;""",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{_NEW}_mv TO {db}.{_NEW} AS\n"
        f"SELECT {select}\nFROM {db}.link_counters;",
        f"INSERT INTO {db}.{_NEW} ({', '.join(f'`{n}`' for n in names)})\nSELECT {select}\n"
        f"FROM {db}.link_counters\nWHERE {coords} NOT IN (SELECT {coords} FROM {db}.{_NEW});",
        f"DROP VIEW IF EXISTS {db}.{_NEW}_mv;",
        f"RENAME TABLE {db}.link_counters TO {db}.{_OLD}, {db}.{_NEW} TO {db}.link_counters;",
        f"DROP TABLE IF EXISTS {db}.{_OLD};",
    ]


def _columns() -> str:
    """link_counters' columns (schemas.link_counter, the Kafka coordinates) and its time column."""
    lines = [f"    `{n}` {t}" for n, t in LINK_COUNTERS.columns]
    # `ts` before the coordinates, as 0012 made it
    ts = "    `ts` DateTime('UTC') MATERIALIZED toDateTime(intDiv(sample_ns, 1000000000), 'UTC')"
    lines.insert(len(LINK_COUNTERS.columns) - 3, ts)
    return ",\n".join(lines)


def retype_sql(db: str) -> str:
    """The statements, with a heading comment."""
    head = "\n-- Addresses stored as IPv6 (IPv4 mapped, unknown as ::), every row kept (processors/address_types.py).\n"
    return head + "\n".join([*_flows_sql(db), *_link_counters_sql(db)]) + "\n"
