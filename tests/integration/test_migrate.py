"""Migrations against the embedded ClickHouse: from empty and from every earlier version to the same schema,
re-runs that change nothing, retention changes, and rollups that merge exactly (and deduplicate retries)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from gwtel.services.clickhouse import ClickHouseService
from processors.config import LoaderConfig
from processors.counter_rows import LINK_COUNTERS
from processors.landing import INPUT_SETTINGS, LANDING, raw_token
from processors.loader import INSERT_SETTINGS_FIXED
from processors.migrate import STATEMENT_SETTINGS, VERSION_TABLE, MigrationError, Migrator, discover, render
from processors.tables import AGG_TABLES, ALL_TABLES, FLOWS_LATE
from schemas import codec
from schemas.histogram import RTT_GAMMA
from tests.records import sample_flow

pytestmark = pytest.mark.integration

LAST = len(discover())


@pytest.fixture
def client(clickhouse_service: ClickHouseService) -> Iterator[Any]:
    c = clickhouse_service.client()
    yield c
    c.close()


@pytest.fixture
def fresh_db(client: Any) -> Iterator[str]:
    """A unique database name that does not exist yet (dropped afterwards)."""
    name = f"test_mig_{uuid.uuid4().hex[:10]}"
    yield name
    client.command(f"DROP DATABASE IF EXISTS {name}")


def schema(client: Any, db: str) -> dict[str, Any]:
    """What a migration decides: tables, engines, full DDL and columns (database name neutralised)."""
    tables = client.query(
        "SELECT name, engine, replaceAll(create_table_query, {db:String}, 'DB') FROM system.tables "
        "WHERE database = {db:String} ORDER BY name",
        parameters={"db": db},
    ).result_rows
    columns = client.query(
        "SELECT table, name, type, default_kind, default_expression FROM system.columns "
        "WHERE database = {db:String} ORDER BY table, position",
        parameters={"db": db},
    ).result_rows
    versions = client.query(f"SELECT version, name, checksum FROM {db}.{VERSION_TABLE} ORDER BY version").result_rows
    return {"tables": tables, "columns": columns, "versions": versions}


def state(client: Any, db: str) -> dict[str, Any]:
    """`schema` plus what a needless re-run would change: modification times and version rows."""
    out = schema(client, db)
    out["mtimes"] = client.query(
        "SELECT name, metadata_modification_time FROM system.tables WHERE database = {db:String} ORDER BY name",
        parameters={"db": db},
    ).result_rows
    out["version_rows"] = client.command(f"SELECT count() FROM {db}.{VERSION_TABLE}")
    return out


def test_from_empty_creates_every_table_with_the_loader_columns(client: Any, fresh_db: str) -> None:
    applied, altered = Migrator(client, fresh_db).run()
    assert applied == list(range(1, LAST + 1))
    assert altered == []
    s = schema(client, fresh_db)
    names = {t[0] for t in s["tables"]}
    for spec in ALL_TABLES:
        stored = [(c[1], c[2]) for c in s["columns"] if c[0] == spec.name and c[3] != "MATERIALIZED"]
        assert stored == list(spec.columns), spec.name
    rollups = {f"{fam}_{lvl}" for fam in ("bandwidth", "latency", "latency_hist") for lvl in ("5m", "1h", "1d")}
    assert rollups | {f"{r}_mv" for r in rollups} | {"flows_raw", VERSION_TABLE} <= names
    engines = dict((t[0], t[1]) for t in s["tables"])
    assert engines["bandwidth_1h"] == "SummingMergeTree"
    assert engines["latency_1h"] == "AggregatingMergeTree"
    assert engines["latency_hist_1d_mv"] == "MaterializedView"


def test_migrating_an_existing_empty_database(client: Any, clickhouse_db: str) -> None:
    assert Migrator(client, clickhouse_db).migrate() == list(range(1, LAST + 1))


@pytest.mark.parametrize("start", range(LAST))
def test_from_each_earlier_version_reaches_the_same_schema(client: Any, fresh_db: str, start: int) -> None:
    reference = f"{fresh_db}_ref"
    try:
        Migrator(client, reference).run()
        m = Migrator(client, fresh_db)
        assert m.migrate(target=start) == list(range(1, start + 1))
        assert m.current_version() == start
        applied, _ = m.run()
        assert applied == list(range(start + 1, LAST + 1))
        assert schema(client, fresh_db) == schema(client, reference)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {reference}")


def test_rerun_changes_nothing(client: Any, fresh_db: str) -> None:
    Migrator(client, fresh_db).run()
    before = state(client, fresh_db)
    assert Migrator(client, fresh_db).run() == ([], [])
    assert Migrator(client, fresh_db).run() == ([], [])
    assert state(client, fresh_db) == before
    assert before["version_rows"] == LAST


def test_interrupted_migration_completes_on_rerun(client: Any, fresh_db: str) -> None:
    reference = f"{fresh_db}_ref"
    try:
        Migrator(client, reference).run()
        m = Migrator(client, fresh_db)
        m.migrate(target=LAST - 1)
        # As if a run died after the first statements of the last migration, before recording its version.
        for stmt in render(discover()[LAST - 1], m.params)[:3]:
            client.command(stmt)
        assert m.current_version() == LAST - 1
        assert m.run()[0] == [LAST]
        assert schema(client, fresh_db) == schema(client, reference)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {reference}")


def test_retention_follows_configuration(client: Any, fresh_db: str) -> None:
    Migrator(client, fresh_db).run()
    ttls = Migrator(client, fresh_db).table_ttls()
    assert ttls["flows_raw"] == ("ts", 15)
    assert ttls["bandwidth_5m"] == ("ts", 400)
    changed = LoaderConfig(ttl_flows_raw_days=20, ttl_1h_days=800)
    applied, altered = Migrator(client, fresh_db, changed).run()
    assert applied == []
    assert altered == [
        "bandwidth_1h", "flows_batches", "flows_late", "flows_quarantine", "flows_raw", "latency_1h", "latency_hist_1h",
        "link_counters",
    ]  # fmt: skip
    ttls = Migrator(client, fresh_db).table_ttls()
    assert ttls["flows_raw"] == ("ts", 20) and ttls["latency_hist_1h"] == ("ts", 800)
    assert ttls["latency_hist_window"] == ("window_start", 15)
    assert Migrator(client, fresh_db, changed).run() == ([], [])


def test_edited_migration_is_refused(client: Any, fresh_db: str) -> None:
    Migrator(client, fresh_db).run()
    rows = [[m.version, m.name, "x" if m.version == 2 else m.checksum] for m in discover()]
    client.command(f"TRUNCATE TABLE {fresh_db}.{VERSION_TABLE}")
    client.insert(VERSION_TABLE, rows, column_names=["version", "name", "checksum"], database=fresh_db)
    with pytest.raises(MigrationError, match="0002_aggregate_windows was changed"):
        Migrator(client, fresh_db).run()


def test_other_rollup_window_is_refused(client: Any, fresh_db: str) -> None:
    Migrator(client, fresh_db).run()
    with pytest.raises(MigrationError, match="rollup_window_s=10"):
        Migrator(client, fresh_db, LoaderConfig(rollup_window_s=10)).run()


# -- rollups ------------------------------------------------------------------------------------------------


def _ms(t: dt.datetime) -> int:
    return int(t.replace(tzinfo=dt.UTC).timestamp() * 1000)


def _insert(client: Any, db: str, kind: str, rows: list[list[Any]], token: str) -> None:
    spec = AGG_TABLES[kind]
    # rows as the job writes them: the key, then the class (the rollups sum classes together), then the values
    full = [[*r[:5], "default" if i % 2 else "vr", *r[5:], "test", 0, i] for i, r in enumerate(rows)]
    client.insert(
        spec.name,
        full,
        column_names=spec.column_names,
        column_type_names=spec.column_types,
        database=db,
        settings={**INSERT_SETTINGS_FIXED, "insert_deduplication_token": token},
    )


def test_histograms_merge_exactly_across_time_links_and_partners(client: Any, fresh_db: str) -> None:
    Migrator(client, fresh_db).run()
    day = dt.datetime.now(dt.UTC).replace(tzinfo=None).date() - dt.timedelta(days=1)
    t0 = dt.datetime.combine(day, dt.time(10, 0))

    def at(minutes: int) -> int:
        return _ms(t0 + dt.timedelta(minutes=minutes))

    rows = [
        [60, at(0), "japan", "egress", "jp-1", "ts_rtt", 100, 4],
        [60, at(0), "japan", "egress", "jp-2", "ts_rtt", 100, 1],
        [60, at(1), "japan", "egress", "jp-1", "ts_rtt", 120, 2],
        [60, at(5), "japan", "egress", "jp-1", "ts_rtt", 100, 3],
        [60, at(5), "korea", "egress", "kr-1", "ts_rtt", 200, 5],
        [10, at(5), "korea", "egress", "kr-1", "ts_rtt", 200, 99],  # the job's other size: not rolled up
    ]
    _insert(client, fresh_db, "latency_bucket", rows[:3], "a")
    _insert(client, fresh_db, "latency_bucket", rows[3:], "b")
    _insert(client, fresh_db, "latency_bucket", rows[:3], "a")  # a retry: stored nowhere twice

    def hist(table: str) -> list[tuple[Any, ...]]:
        return [
            tuple(r)
            for r in client.query(
                f"SELECT toString(ts), partner, bucket, sum(samples) FROM {fresh_db}.{table} "
                "GROUP BY ts, partner, bucket ORDER BY ts, partner, bucket"
            ).result_rows
        ]

    def t(h: int, m: int) -> str:
        return f"{day} {h:02d}:{m:02d}:00"

    assert hist("latency_hist_5m") == [
        (t(10, 0), "japan", 100, 5), (t(10, 0), "japan", 120, 2),
        (t(10, 5), "japan", 100, 3), (t(10, 5), "korea", 200, 5),
    ]  # fmt: skip
    assert hist("latency_hist_1h") == [
        (t(10, 0), "japan", 100, 8), (t(10, 0), "japan", 120, 2), (t(10, 0), "korea", 200, 5),
    ]  # fmt: skip
    assert hist("latency_hist_1d") == [
        (t(0, 0), "japan", 100, 8), (t(0, 0), "japan", 120, 2), (t(0, 0), "korea", 200, 5),
    ]  # fmt: skip
    assert client.command(f"SELECT sum(samples) FROM {fresh_db}.latency_hist_window") == 114

    # All partners and links merged: buckets {100: 8, 120: 2, 200: 5}, 15 samples. The q-quantile is the
    # first bucket whose cumulative count reaches q * 15: p50 -> 100 (8 >= 7.5), p60 -> 120 (10 >= 9),
    # p90 -> 200 (15 >= 13.5); reported as the bucket's geometric midpoint.
    q = client.query(
        "SELECT quantileExactWeighted(0.5)(bucket, samples), quantileExactWeighted(0.6)(bucket, samples), "
        f"quantileExactWeighted(0.9)(bucket, samples) FROM {fresh_db}.latency_hist_1d WHERE metric = 'ts_rtt'"
    ).result_rows[0]
    assert tuple(q) == (100, 120, 200)
    mid = client.command(
        f"SELECT round(pow({RTT_GAMMA}, quantileExactWeighted(0.9)(bucket, samples) - 0.5), 3) "
        f"FROM {fresh_db}.latency_hist_1h"
    )
    assert float(mid) == pytest.approx(RTT_GAMMA**199.5, abs=1e-3)


def test_latency_summary_keeps_extremes(client: Any, fresh_db: str) -> None:
    Migrator(client, fresh_db).run()
    day = dt.datetime.now(dt.UTC).replace(tzinfo=None).date() - dt.timedelta(days=1)
    t0 = dt.datetime.combine(day, dt.time(7, 0))

    def at(minutes: int) -> int:
        return _ms(t0 + dt.timedelta(minutes=minutes))

    _insert(client, fresh_db, "latency", [[60, at(0), "japan", "egress", "jp-1", "hs_rtt_ext", 2, 30, 50, 80]], "x")
    _insert(client, fresh_db, "latency", [[60, at(1), "japan", "egress", "jp-1", "hs_rtt_ext", 0, None, None, 0]], "y")
    _insert(client, fresh_db, "latency", [[60, at(2), "japan", "egress", "jp-2", "hs_rtt_ext", 1, 20, 20, 20]], "z")
    row = client.query(
        f"SELECT sum(samples), min(min_us), max(max_us), sum(sum_us), sum(windows) FROM {fresh_db}.latency_5m "
        "WHERE partner = 'japan'"
    ).result_rows[0]
    assert tuple(row) == (3, 20, 50, 100, 3)


def _land(client: Any, db: str, records: list[dict[str, Any]], token: str) -> None:
    """Records through the landing path as the loader sends them (one JSONEachRow insert with its token)."""
    settings = {**INSERT_SETTINGS_FIXED, **INPUT_SETTINGS, "insert_deduplication_token": token}
    data = b"\n".join(orjson.dumps(r) for r in records)
    client.raw_insert(f"`{db}`.`{LANDING}`", insert_block=data, fmt="JSONEachRow", settings=settings)


def test_application_classes_keep_what_was_stored_before(client: Any, fresh_db: str) -> None:
    # A database as it was before application classes (0009), holding a flow, a late flow and window rows;
    # migrated to the last version, every row is kept and reads the default class, and new records land with theirs.
    before = next(m.version for m in discover() if m.name == "app_classes") - 1
    m = Migrator(client, fresh_db)
    m.migrate(target=before)
    now = time.time_ns()
    old = codec.to_dict(sample_flow(first_ns=now - 3 * 10**9, last_ns=now - 2 * 10**9, export_ns=now))
    for name in ("dscp", "app_class"):
        old.pop(name)  # a record of the version before: the fields did not exist
    _land(client, fresh_db, [old], raw_token("t.mig", 0, 0, 0, now + 10**10))
    late = {k: v for k, v in old.items() if k in {c for c, _ in FLOWS_LATE.columns}}
    client.insert(f"{fresh_db}.flows_late", [list(late.values())], column_names=list(late))
    window = {"window_s": 10, "window_start_ms": now // 10**6 // 10_000 * 10_000, "partner": "japan",
              "direction": "egress", "link_id": "l1", "metric": "hs_rtt_ext", "bucket": 7, "samples": 3}  # fmt: skip
    client.insert(f"{fresh_db}.latency_hist_window", [list(window.values())], column_names=list(window))
    m.run()
    assert m.current_version() == LAST
    got = client.query(f"SELECT seq, dscp, app_class, bytes_fwd FROM {fresh_db}.flows_raw").result_rows
    assert got == [(old["seq"], 0, "default", old["bytes_fwd"])]
    assert client.query(f"SELECT seq, dscp, app_class FROM {fresh_db}.flows_late").result_rows == [
        (old["seq"], 0, "default")
    ]
    assert client.query(f"SELECT bucket, samples, app_class FROM {fresh_db}.latency_hist_window").result_rows == [
        (7, 3, "default")
    ]
    new = {**old, "seq": old["seq"] + 1, "dscp": 46, "app_class": "trading"}
    _land(client, fresh_db, [new], raw_token("t.mig", 0, 1, 1, now + 10**10))
    got = client.query(f"SELECT seq, dscp, app_class FROM {fresh_db}.flows_raw ORDER BY seq").result_rows
    assert got == [(old["seq"], 0, "default"), (new["seq"], 46, "trading")]


def _v6(text: str) -> ipaddress.IPv6Address:
    """What an address text is, as IPv6 (Python's reading; IPv4 mapped, "" unspecified)."""
    if text == "":
        return ipaddress.IPv6Address("::")
    ip = ipaddress.ip_address(text)
    return ipaddress.IPv6Address(f"::ffff:{ip}") if ip.version == 4 else ipaddress.IPv6Address(ip)


def test_addresses_become_ipv6_and_every_row_is_kept(client: Any, fresh_db: str) -> None:
    # A database at the version before (0012) holding IPv4 and IPv6 flows, a late flow, a row stored before
    # the address checks existed, and counter samples; migrated, every row is kept with its addresses.
    before = next(m.version for m in discover() if m.name == "addresses_ipv6") - 1
    m = Migrator(client, fresh_db)
    m.migrate(target=before)
    now = time.time_ns()
    times = {"first_ns": now - 3 * 10**9, "last_ns": now - 2 * 10**9, "export_ns": now}
    cases = [  # (ip_version, src, dst, exporter, next hop)
        (4, "10.1.2.3", "198.51.100.7", "", ""),
        (6, "2001:DB8::1", "2001:db8:0:0:1:0:0:1", "192.0.2.1", "2001:db8::fe"),
        (6, "::ffff:192.0.2.4", "fe80::1", "2001:db8::9", "0.0.0.0"),
    ]
    records = [
        codec.to_dict(sample_flow(seq=i, ip_version=v, src_ip=s, dst_ip=d, exporter=x, next_hop=h, **times))
        for i, (v, s, d, x, h) in enumerate(cases)
    ]
    _land(client, fresh_db, records, raw_token("t.addr", 0, 0, len(records) - 1, now + 10**10))
    legacy = {**records[0], "seq": 99, "src_ip": "999.1.2.3"}  # as stored before the checks: never an address
    late = {**records[1], "seq": 7}
    for table, rec in (("flows_raw", legacy), ("flows_late", late)):
        cols = [c for c, _ in FLOWS_LATE.columns if c in rec]
        client.insert(f"{fresh_db}.{table}", [[rec[c] for c in cols]], column_names=cols)
    samples = [[1, "col-1", x, 7, "in", now, 1000, 10, 10**9, 3, "t.counters", 0, i]
               for i, x in enumerate(("192.0.2.1", "2001:db8::2"))]  # fmt: skip
    client.insert(f"{fresh_db}.link_counters", samples, column_names=[c for c, _ in LINK_COUNTERS.columns])

    m.run()
    assert m.current_version() == LAST
    sql = (
        "SELECT seq, src_ip, dst_ip, exporter, next_hop, toTypeName(src_ip), toTypeName(exporter) FROM {} ORDER BY seq"
    )
    want = [(i, _v6(s), _v6(d), _v6(x), _v6(h), "IPv6", "IPv6") for i, (_, s, d, x, h) in enumerate(cases)]
    assert client.query(sql.format(f"{fresh_db}.flows_raw")).result_rows == [
        *want,
        (99, _v6("::"), _v6("198.51.100.7"), _v6(""), _v6(""), "IPv6", "IPv6"),
    ]
    assert client.query(sql.format(f"{fresh_db}.flows_late")).result_rows == [(7, *want[1][1:])]
    # link_counters keeps its exporter as text (its sort key's first column): rows as they were.
    got = client.query(f"SELECT kafka_offset, exporter FROM {fresh_db}.link_counters ORDER BY kafka_offset").result_rows
    assert got == [(0, "192.0.2.1"), (1, "2001:db8::2")]
    # Addresses compare as addresses: the mapped and the dotted spelling are one address.
    assert client.command(f"SELECT count() FROM {fresh_db}.flows_raw WHERE src_ip = '192.0.2.4'") == 1

    new = {**records[0], "seq": 100, "src_ip": "203.0.113.5", "exporter": "::ffff:1.2.3.04"}
    _land(client, fresh_db, [new], raw_token("t.addr", 0, 3, 3, now + 10**10))
    got = client.query(f"SELECT src_ip, exporter FROM {fresh_db}.flows_raw WHERE seq = 100").result_rows
    assert got == [(_v6("203.0.113.5"), _v6("1.2.3.4"))]
    # Run again (as after an interruption), the migration's statements keep every row once.
    for stmt in render(discover()[LAST - 1], m.params):
        client.command(stmt, settings=STATEMENT_SETTINGS)
    assert client.command(f"SELECT count() FROM {fresh_db}.flows_raw") == 5
    assert client.query(f"SELECT src_ip FROM {fresh_db}.flows_raw ORDER BY seq").result_rows[-1] == (
        _v6("203.0.113.5"),
    )
