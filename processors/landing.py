"""The landing path: FlowRecord bytes parsed and checked by ClickHouse, valid rows to `flows_raw`, the rest aside.

The loader inserts a batch of Kafka values, joined by newlines, as JSONEachRow into `flows_in` (Null engine:
nothing is kept there). Three materialised views read each inserted block:

- `flows_in_raw_mv` -> `flows_raw`: the rows without a problem (`schemas.checks.clickhouse_problem_sql`);
- `flows_in_bad_mv` -> `flows_quarantine`: the others, with the reason and the field, for the dead-letter path;
- `flows_in_batch_mv` -> `flows_batches`: per batch, rows stored and their packets (the delivery ledger).

The Kafka coordinates come from the insert's deduplication token, `topic:partition:first-last:latest_ns`
(`raw_token`): row `i` of the block is offset `first + i`, so the loader sends only batches of consecutive
offsets. `latest_ns` is the latest plausible `last_ns` (the batch's newest Kafka timestamp plus the allowed
clock skew). The views read the token with `getSetting`, so they run on any ClickHouse server, no
configuration needed. `deduplicate_blocks_in_dependent_materialized_views = 1` makes a retried batch store
nothing twice in any of them (tests/unit/test_landing.py checks it in chDB).

Each landing migration (`MIGRATIONS`: 0007, then 0009 with nullable histogram bin elements, then 0010 with the
application class fields, added to `flows_raw` and `flows_late` first with their defaults, then 0013 storing
addresses as IPv6, the stored tables' address columns retyped after the views: `processors.address_types`, then
0014 counting each block's rows against its token's offsets before any view stores a row) is
this module's `migration_sql(version=...)` written out; tests/unit/test_landing.py proves every file and the
generator agree, so the checks have one owner (schemas/checks.py) and released SQL never changes. A later version
drops the landing tables and their views (the tables are Null: they hold nothing) and creates them again, keeping
the quarantine and batch tables and their rows.
"""

from __future__ import annotations

from typing import Final

from processors.address_types import retype_sql
from processors.tables import KAFKA_COLUMNS
from schemas import addresses
from schemas.checks import (
    DEFAULTS,
    FIELD_SINCE,
    LANDING_VERSION,
    clickhouse_problem_sql,
    in_landing,
    landing_fields,
    landing_type,
)
from schemas.flow_record import FLOW_RECORD_FIELDS

LANDING: Final = "flows_in"
CHECKED: Final = "flows_checked"
QUARANTINE: Final = "flows_quarantine"
BATCHES: Final = "flows_batches"
# The views number a batch's rows with rowNumberInBlock(), so a batch must reach them as one block: ClickHouse
# cuts parsed input every `max_insert_block_size` rows (1,048,449 by default; a server profile may set less), so
# each landing insert sets it above the largest batch the loader may form (loader.batch_rows <= MAX_BATCH_ROWS).
MAX_BATCH_ROWS: Final = 1_000_000
# landing version -> its migration: this module's `migration_sql(version=...)`, written out
MIGRATIONS: Final = {
    7: "0007_landing.sql",
    9: "0009_landing_nullable_bins.sql",
    10: "0010_app_classes.sql",
    13: "0013_addresses_ipv6.sql",
    14: "0014_landing_row_count.sql",
}
MIGRATION: Final = MIGRATIONS[LANDING_VERSION]
_VIEWS: Final = ("flows_in_check_mv", "flows_checked_raw_mv", "flows_checked_bad_mv", "flows_checked_batch_mv")

# Parser settings that make ClickHouse refuse what the record codec calls `bad_type` (the batch then takes
# the slow path, where Python names the record): defaults would read `true` as 1 or "true", 5 as "5", drop unknown
# keys of a histogram bin or fill a missing one with 0.
INPUT_SETTINGS: Final = {
    "input_format_json_read_bools_as_numbers": 0,
    "input_format_json_read_bools_as_strings": 0,
    "input_format_json_read_numbers_as_strings": 0,
    "input_format_json_read_objects_as_strings": 0,
    "input_format_json_read_arrays_as_strings": 0,
    "input_format_json_ignore_unknown_keys_in_named_tuple": 0,
    "input_format_json_defaults_for_missing_elements_in_named_tuple": 0,
    "input_format_skip_unknown_fields": 1,
    # A repeated key refuses the batch (the slow path then reads the record, where the last one counts, as in the
    # Flink job): by default the reader skips the rest of an object once every column is seen, so a record naming
    # every field and then one again was stored with the first value and refused by the job.
    "input_format_json_ignore_unnecessary_fields": 0,
    "max_insert_block_size": MAX_BATCH_ROWS + 1,
    # One parsing thread: on the shared cores the parallel parser's threads only contend (landing inserts alone,
    # 200k rows, 3 alternating runs at load average 12: 1.2x the inserts' rate), and a batch is parsed in order.
    "input_format_parallel_parsing": 0,
    "max_threads": 1,
}

_TOKEN = "splitByChar(':', getSetting('insert_deduplication_token'))"
# Constant folding evaluates these when a view is created, without a token: the *OrZero forms keep that legal.
_FIRST = f"toUInt64OrZero(splitByChar('-', {_TOKEN}[3])[1])"
_LATEST = f"toInt128OrZero({_TOKEN}[4])"
_LAST = f"toUInt64OrZero(splitByChar('-', {_TOKEN}[3])[2])"
# From version 9 a block with more rows than its token's offsets is refused whole (the loader then takes the
# slow path, where the codec reads each value): a value holding two objects ({...}{...}) is one line that
# JSONEachRow reads as two rows, which would shift every later row's offset and store a record twice.
_ROWS_MATCH = (
    f"throwIf(getSetting('insert_deduplication_token') != '' AND rowNumberInBlock() > {_LAST} - {_FIRST}, "
    "'the block has more rows than the offsets of its token')"
)


# From version 14 the check view counts the block's rows instead (a window over the block, before any view stores
# a row): a value ending inside a string swallows the next line, so JSONEachRow reads one row for two records and
# every later row would take the next record's offset. `_ROWS_MATCH` caught only more rows than records.
_COUNT_MATCH = (
    f"count() OVER () + throwIf(getSetting('insert_deduplication_token') != '' AND count() OVER () != "
    f"{_LAST} - {_FIRST} + 1, 'the block does not hold the records of its token')"
)
_COUNT_SINCE: Final = 14


def raw_token(topic: str, partition: int, first: int, last: int, latest_ns: int) -> str:
    """The deduplication token of a landing batch: the batch's coordinates, then the skew bound it used."""
    if first < 0 or last < first or ":" in topic:
        raise ValueError(f"bad batch {topic}:{partition}:{first}-{last}")
    return f"{topic}:{partition}:{first}-{last}:{latest_ns}"


def _landing_columns(version: int) -> str:
    return ",\n".join(f"    `{name}` {landing_type(name, kind, version)}" for name, kind in landing_fields(version))


def _stored_value(name: str, kind: str, ch_type: str, version: int) -> str:
    if name in addresses.ADDRESS_FIELDS:
        if version < addresses.STORED_SINCE:
            ch_type = addresses.TEXT_TYPES_BEFORE[name]
        else:
            return f"{addresses.stored_sql(name)} AS `{name}`"
    if name in DEFAULTS:
        return f"CAST(coalesce(`{name}`, {_default_literal(name)}) AS {ch_type}) AS `{name}`"
    if ch_type.startswith("Nullable(") or kind == "hist":
        return f"CAST(`{name}` AS {ch_type}) AS `{name}`"
    return f"CAST(assumeNotNull(`{name}`) AS {ch_type}) AS `{name}`"


def _default_literal(name: str) -> str:
    default = DEFAULTS[name]
    return f"'{default}'" if isinstance(default, str) else str(default)


def _added_columns(db: str, version: int) -> str:
    """The record fields `version` adds, as columns of the stored tables: each with its default, so that rows
    stored before read as it. They come first: the store view created next names them."""
    names = [f.name for f in FLOW_RECORD_FIELDS]
    lines = [
        f"ALTER TABLE {db}.{table} ADD COLUMN IF NOT EXISTS `{f.name}` {f.clickhouse} "
        f"DEFAULT {_default_literal(f.name)} AFTER `{names[names.index(f.name) - 1]}`;\n"
        for table in ("flows_raw", "flows_late")
        for f in FLOW_RECORD_FIELDS
        if FIELD_SINCE.get(f.name) == version
    ]
    return "".join(lines) + ("\n" if lines else "")


def _replaces(db: str, version: int) -> str:
    """The statements that remove an earlier version's landing tables and views (none for the first)."""
    if version == min(MIGRATIONS):
        return ""
    views = "".join(f"DROP VIEW IF EXISTS {db}.{v};\n" for v in _VIEWS)
    return f"""-- Landing version {version}: the views and the Null landing tables (they keep nothing) are made again.
-- A loader inserting during the migration may see a batch refused; it retries the batch with its token.
{views}DROP TABLE IF EXISTS {db}.{LANDING};
DROP TABLE IF EXISTS {db}.{CHECKED};

"""


def migration_sql(db: str = "${db}", version: int = LANDING_VERSION) -> str:
    """The landing migration of `version` (a key of `MIGRATIONS`)."""
    if version not in MIGRATIONS:
        raise ValueError(f"no landing version {version} (known: {sorted(MIGRATIONS)})")
    kinds = dict(landing_fields(version))
    stored = ",\n    ".join(
        _stored_value(f.name, kinds[f.name], f.clickhouse, version)
        for f in FLOW_RECORD_FIELDS
        if in_landing(f.name, version)
    )
    coords = "_topic AS kafka_topic, _partition AS kafka_partition, _offset AS kafka_offset"
    kafka_cols = ",\n".join(f"    `{n}` {t}" for n, t in KAFKA_COLUMNS)
    counted = version >= _COUNT_SINCE
    row_check = "" if version < 9 or counted else " + " + _ROWS_MATCH
    rows_col = ",\n    `_rows` UInt64" if counted else ""
    rows_expr = f",\n    {_COUNT_MATCH} AS _rows" if counted else ""
    # `$$`: migrations are string.Template text, and a regular expression of the checks may end in `$`
    problem = clickhouse_problem_sql("_latest", version).replace("\n", "\n    ").replace("$", "$$")
    return f"""-- Generated by processors.landing.migration_sql() from schemas/checks.py; tests/unit/test_landing.py
-- proves they agree. Released migrations are never edited: a change of the checks is a new migration.
-- The landing path: the loader inserts FlowRecords as JSONEachRow into flows_in (Null: keeps nothing); one
-- view checks every row once into flows_checked (Null too), whose views send it to flows_raw or, with the
-- reason, to flows_quarantine, and count the batch in flows_batches.
-- Kafka coordinates and the skew bound come from the insert's token (topic:partition:first-last:latest_ns).
{_added_columns(db, version)}{_replaces(db, version)}CREATE TABLE IF NOT EXISTS {db}.{LANDING}
(
{_landing_columns(version)}
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS {db}.{CHECKED}
(
{_landing_columns(version)},
    `_problem` Tuple(reason String, field String),
    `_topic` String,
    `_partition` UInt32,
    `_offset` UInt64{rows_col}
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS {db}.{QUARANTINE}
(
{kafka_cols},
    `reason` LowCardinality(String),
    `field` LowCardinality(String),
    `inserted_at` DateTime('UTC') DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (kafka_topic, kafka_partition, kafka_offset)
TTL inserted_at + INTERVAL ${{ttl_flows_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS {db}.{BATCHES}
(
    `token` String,
    `records` UInt64,
    `stored` UInt64,
    `packets_stored` UInt64,
    `inserted_at` DateTime('UTC') DEFAULT now()
)
ENGINE = MergeTree
ORDER BY token
TTL inserted_at + INTERVAL ${{ttl_flows_raw_days}} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flows_in_check_mv TO {db}.{CHECKED} AS
WITH {_LATEST} AS _latest
SELECT *,
    {problem} AS _problem,
    {_TOKEN}[1] AS _topic,
    toUInt32OrZero({_TOKEN}[2]) AS _partition,
    {_FIRST} + rowNumberInBlock(){row_check} AS _offset{rows_expr}
FROM {db}.{LANDING};

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flows_checked_raw_mv TO {db}.flows_raw AS
SELECT
    {stored},
    {coords}
FROM {db}.{CHECKED}
WHERE _problem.reason = '';

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flows_checked_bad_mv TO {db}.{QUARANTINE} AS
SELECT {coords}, _problem.reason AS reason, _problem.field AS field
FROM {db}.{CHECKED}
WHERE _problem.reason != '';

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flows_checked_batch_mv TO {db}.{BATCHES} AS
SELECT getSetting('insert_deduplication_token') AS token, count() AS records,
    countIf(_problem.reason = '') AS stored,
    sumIf(toUInt64(assumeNotNull(packets_fwd) + assumeNotNull(packets_rev)), _problem.reason = '') AS packets_stored
FROM {db}.{CHECKED};
{retype_sql(db) if version == addresses.STORED_SINCE else ""}"""


def outcome_sql(db: str) -> str:
    """A batch's outcome after its insert: (records, stored, packets stored) and its quarantined offsets."""
    return (
        f"SELECT (SELECT tuple(sum(records), sum(stored), sum(packets_stored)) FROM {db}.{BATCHES} "
        "WHERE token = {token:String}), "
        f"(SELECT groupArray(tuple(kafka_offset, reason, field)) FROM {db}.{QUARANTINE} "
        "WHERE kafka_topic = {topic:String} AND kafka_partition = {partition:UInt32} "
        "AND kafka_offset BETWEEN {first:UInt64} AND {last:UInt64})"
    )
