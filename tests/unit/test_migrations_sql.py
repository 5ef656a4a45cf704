"""The migration files: order, idempotent statements, columns that agree with the record definitions,
deduplication on every table the loader writes, sort keys, TTL parameters, and the rollup source."""

from __future__ import annotations

import re

import pytest

from processors.config import LoaderConfig
from processors.migrate import (
    TTL_PARAMS,
    Migration,
    MigrationError,
    discover,
    params_from,
    render,
    split_statements,
)
from processors.tables import AGG_TABLES, ALL_TABLES, FLOWS_LATE, FLOWS_RAW, KAFKA_COLUMNS, not_null
from schemas.aggregate import AGGREGATE_FIELDS
from schemas.flow_record import FLOW_RECORD_FIELDS

MIGRATIONS = discover()
PARAMS = params_from("gw", LoaderConfig())
STATEMENTS = [s for m in MIGRATIONS for s in render(m, PARAMS)]
_CREATE_RE = re.compile(r"^CREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS gw\.(\w+)")
# A column added later: ALTER TABLE gw.T ADD COLUMN IF NOT EXISTS `c` type DEFAULT value AFTER `prev`
_ADD_RE = re.compile(r"^ALTER TABLE gw\.(\w+) ADD COLUMN IF NOT EXISTS `(\w+)` (.+?) DEFAULT \S+ AFTER `(\w+)`$")
# A view or a Null landing table made again by a later landing version (processors/landing.py)
_DROP_RE = re.compile(r"^DROP (VIEW|TABLE) IF EXISTS gw\.(\w+)$")
# Columns whose type changes (addresses to IPv6, 0013): a guarded UPDATE that rewrites only values not yet in the
# new type's text, then MODIFY COLUMN; both are no-ops when run again.
_UPDATE_RE = re.compile(r"^ALTER TABLE gw\.(\w+) UPDATE .+ WHERE .+$")
_MODIFY = r"MODIFY COLUMN `(\w+)` (\w+)(?: DEFAULT [\w(':)]+)?"
_MODIFY_RE = re.compile(rf"^ALTER TABLE gw\.(\w+) ((?:{_MODIFY}(?:, )?)+)$")


def _creates() -> tuple[dict[str, str], list[tuple[str, str, str, str]], int]:
    out: dict[str, str] = {}
    adds: list[tuple[str, str, str, str]] = []
    dropped: set[str] = set()
    n = 0
    for stmt in STATEMENTS:
        if (u := _UPDATE_RE.match(stmt)) is not None:
            assert u.group(1) in out, stmt[:80]
            continue
        if (mod := _MODIFY_RE.match(stmt)) is not None:
            assert mod.group(1) in out, stmt[:80]
            for col, col_type in re.findall(_MODIFY, mod.group(2)):
                MODIFIED[(mod.group(1), col)] = col_type
            continue
        a = _ADD_RE.match(stmt)
        if a is not None:
            assert a.group(1) in out, f"column added to a table not created before: {stmt[:80]}"
            adds.append((a.group(1), a.group(2), a.group(3), a.group(4)))
            continue
        d = _DROP_RE.match(stmt)
        if d is not None:
            # Only what keeps no rows: a materialised view or a Null table.
            made = out.pop(d.group(2))
            assert made.startswith("CREATE MATERIALIZED VIEW") or "\nENGINE = Null" in made, stmt
            dropped.add(d.group(2))
            continue
        m = _CREATE_RE.match(stmt)
        assert m is not None, f"not an idempotent CREATE, ADD COLUMN or DROP: {stmt[:80]}"
        assert m.group(2) not in out or out[m.group(2)] == stmt, f"{m.group(2)} created twice, differently"
        out[m.group(2)] = stmt
        n += 1
    assert dropped <= set(out), f"dropped and not made again: {dropped - set(out)}"
    return out, adds, n


MODIFIED: dict[tuple[str, str], str] = {}  # (table, column) -> its type after every migration
CREATES, ADDED, N_CREATES = _creates()
TABLES = {name: s for name, s in CREATES.items() if s.startswith("CREATE TABLE")}
VIEWS = {name: s for name, s in CREATES.items() if s.startswith("CREATE MATERIALIZED VIEW")}
# The landing path's tables keep nothing (Null engine): no deduplication, no TTL (processors/landing.py).
NULL_TABLES = {name for name, s in TABLES.items() if "\nENGINE = Null" in s}
ROLLUP_VIEWS = {name: s for name, s in VIEWS.items() if not name.startswith("flows_")}


def columns_of(stmt: str) -> list[tuple[str, str]]:
    """(name, type) of each column of a table after every migration (its CREATE TABLE, then the columns
    ADD COLUMN put after others), MATERIALIZED ones included with their marker."""
    body = stmt[stmt.index("(\n") + 2 : stmt.index("\n)\nENGINE")]
    cols = []
    for line in body.splitlines():
        m = re.match(r"^\s*`(\w+)` (.+?),?$", line)
        assert m is not None, line
        cols.append((m.group(1), m.group(2)))
    table = _CREATE_RE.match(stmt)
    for name, col, col_type, after in ADDED:
        if table is not None and table.group(2) == name:
            cols.insert([c[0] for c in cols].index(after) + 1, (col, col_type))
    if table is not None:
        cols = [(c, MODIFIED.get((table.group(2), c), t)) for c, t in cols]
    return cols


def test_versions_are_contiguous_and_named() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert [m.name for m in MIGRATIONS][:3] == ["flows_raw", "aggregate_windows", "rollups"]


def test_every_statement_is_idempotent_and_fully_substituted() -> None:
    # every statement is a CREATE ... IF NOT EXISTS, an ADD COLUMN IF NOT EXISTS or a DROP ... IF EXISTS of
    # what is made again (checked above)
    drops = [s for s in STATEMENTS if _DROP_RE.match(s)]
    retypes = [s for s in STATEMENTS if _UPDATE_RE.match(s) or _MODIFY_RE.match(s)]
    assert len(STATEMENTS) == N_CREATES + len(ADDED) + len(drops) + len(retypes)
    for stmt in STATEMENTS:
        assert "${" not in stmt and not stmt.endswith(";")


def test_flows_raw_columns_agree_with_the_flow_record() -> None:
    cols = columns_of(TABLES["flows_raw"])
    stored = [c for c in cols if "MATERIALIZED" not in c[1]]
    assert stored == list(FLOWS_RAW.columns)
    assert stored[: len(FLOW_RECORD_FIELDS)] == [(f.name, f.clickhouse) for f in FLOW_RECORD_FIELDS]
    assert stored[len(FLOW_RECORD_FIELDS) :] == list(KAFKA_COLUMNS)
    assert ("ts", "DateTime('UTC') MATERIALIZED toDateTime(intDiv(first_ns, 1000000000), 'UTC')") in cols


def test_flows_late_has_the_columns_of_flows_raw() -> None:
    # The late topic carries FlowRecords: the same columns, sort key and retention setting as flows_raw.
    assert columns_of(TABLES["flows_late"]) == columns_of(TABLES["flows_raw"])
    assert [c for c in columns_of(TABLES["flows_late"]) if "MATERIALIZED" not in c[1]] == list(FLOWS_LATE.columns)
    assert TABLES["flows_late"].split("\nENGINE")[1] == TABLES["flows_raw"].split("\nENGINE")[1]


@pytest.mark.parametrize("kind", sorted(AGG_TABLES))
def test_window_tables_agree_with_the_aggregate_record(kind: str) -> None:
    spec = AGG_TABLES[kind]
    stored = [c for c in columns_of(TABLES[spec.name]) if "MATERIALIZED" not in c[1]]
    assert stored == list(spec.columns)
    record_types = {f.name: f.clickhouse for f in AGGREGATE_FIELDS}
    for name, ch_type in stored[: -len(KAFKA_COLUMNS)]:
        # Same type as the record's field, or its non-null form (a kind table is dense).
        assert ch_type in (record_types[name], not_null(record_types[name])), name


def test_loader_tables_deduplicate_and_every_table_is_mergetree_family() -> None:
    for spec in ALL_TABLES:
        assert re.search(r"non_replicated_deduplication_window = [1-9]\d*", TABLES[spec.name]), spec.name
    assert {"flows_in", "flows_checked"} == NULL_TABLES
    for name, stmt in TABLES.items():
        if name in NULL_TABLES:
            continue
        # Rollup targets deduplicate too: a retried insert must not reach them twice through their view.
        assert "non_replicated_deduplication_window = 10000" in stmt, name
        assert re.search(r"ENGINE = (Summing|Aggregating)?MergeTree\n", stmt), name


def test_raw_sort_key_starts_with_time_bucket_then_partner_and_direction() -> None:
    stmt = TABLES["flows_raw"]
    assert "ORDER BY (toStartOfFiveMinutes(ts), partner, direction" in stmt
    assert "PARTITION BY toDate(ts)" in stmt
    for name in ("bandwidth_window", "latency_window", "latency_hist_window"):
        assert "ORDER BY (toStartOfFiveMinutes(window_start), partner, direction" in TABLES[name]
    for name, stmt in TABLES.items():
        if name.endswith(("_5m", "_1h", "_1d")):
            assert "ORDER BY (ts, partner, direction, link_id" in stmt


def test_each_ttl_uses_its_own_setting() -> None:
    cfg = LoaderConfig(ttl_flows_raw_days=11, ttl_window_days=12, ttl_5m_days=13, ttl_1h_days=14, ttl_1d_days=16)
    rendered = {}
    for stmt in (s for m in MIGRATIONS for s in render(m, params_from("gw", cfg))):
        m = _CREATE_RE.match(stmt)
        if m is None:  # an ADD COLUMN
            continue
        ttl = re.search(r"\nTTL (\w+) \+ INTERVAL (\d+) DAY\n", stmt)
        if ttl:
            rendered[m.group(2)] = int(ttl.group(2))
    assert set(rendered) == set(TTL_PARAMS) == set(TABLES) - NULL_TABLES  # every table that keeps rows expires
    for table, param in TTL_PARAMS.items():
        assert rendered[table] == getattr(cfg, param), table
    assert rendered["flows_raw"] == 11 and rendered["latency_hist_1h"] == 14 and rendered["bandwidth_1d"] == 16


def test_late_rows_view_adds_them_to_every_window_size() -> None:
    stmt = VIEWS["flows_late_bandwidth_mv"]
    assert "TO gw.bandwidth_window AS" in stmt and "FROM gw.flows_late" in stmt
    assert "arrayJoin([10, 60])" in stmt  # JobConfig().window_sizes_s
    other = [s for m in MIGRATIONS for s in render(m, params_from("gw", LoaderConfig(), (10, 30, 60)))]
    assert sum("arrayJoin([10, 30, 60])" in s for s in other) == 2  # 0008's view, and 0010's that replaces it
    assert "    app_class," in stmt  # late rows count in their own class's windows


def test_rollups_read_one_window_size_into_the_right_bucket() -> None:
    assert len(ROLLUP_VIEWS) == 9
    fns = {"5m": "toStartOfFiveMinutes", "1h": "toStartOfHour", "1d": "toStartOfDay"}
    for name, stmt in ROLLUP_VIEWS.items():
        level = name.removesuffix("_mv").rsplit("_", 1)[1]
        target = name.removesuffix("_mv")
        assert f"TO gw.{target} AS" in stmt
        assert f"{fns[level]}(window_start) AS ts" in stmt
        assert "WHERE window_s = 60\n" in stmt  # LoaderConfig().rollup_window_s
    other = [s for m in MIGRATIONS for s in render(m, params_from("gw", LoaderConfig(rollup_window_s=10)))]
    assert sum("WHERE window_s = 10\n" in s for s in other) == 9


def test_default_retention() -> None:
    cfg = LoaderConfig()
    assert (cfg.ttl_flows_raw_days, cfg.ttl_5m_days) == (15, 400)  # 5 min samples outlive a billing year


def test_rollup_window_must_divide_five_minutes() -> None:
    with pytest.raises(ValueError, match="divide 300"):
        LoaderConfig(rollup_window_s=7)


def test_split_statements_drops_comments_and_keeps_text() -> None:
    sql = "-- header; with a semicolon\nCREATE TABLE a (x UInt8)\nENGINE = Memory;\n\n-- between\nSELECT 1;\n-- tail\n"
    assert split_statements(sql) == ["CREATE TABLE a (x UInt8)\nENGINE = Memory", "SELECT 1"]


def test_bad_names_and_parameters_are_refused() -> None:
    with pytest.raises(MigrationError):
        params_from("gw; DROP TABLE x", LoaderConfig())
    with pytest.raises(MigrationError, match="bad parameter"):
        render(Migration(9, "x", "CREATE TABLE ${nope}.t (a UInt8) ENGINE = Memory;"), PARAMS)


def test_checksum_follows_text() -> None:
    a = Migration(1, "x", "SELECT 1;")
    assert a.checksum == Migration(1, "x", "SELECT 1;").checksum != Migration(1, "x", "SELECT 2;").checksum
