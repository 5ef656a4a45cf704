"""The ClickHouse cluster schema (processors.cluster): every statement parsed by the engine (chDB), every
single-node table and view with its cluster counterpart, replicated deduplication, and the migrator's cluster
mode. No Keeper or second server runs here: what needs one is in docs/scaling.md."""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from chdb import session as chdb_session

from gwtel.config import ConfigError, GwtelConfig, load_config
from processors.cluster import ClusterSchema, ClusterSchemaError, distributed_database, shard_of
from processors.config import LoaderConfig
from processors.migrate import Migrator, discover, params_from, render

DB = "gw"
CLUSTER = "gwc"
SINGLE = [s for m in discover() for s in render(m, params_from(DB, LoaderConfig()))]
_new_session: Any = chdb_session.Session


def cluster_statements() -> list[str]:
    schema = ClusterSchema(CLUSTER, DB)
    return schema.bootstrap() + schema.all_statements(SINGLE)


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """chDB with the single-node schema applied: the ground truth of which tables and engines exist."""
    session = _new_session(str(tmp_path_factory.mktemp("chdb-cluster")))
    session.query(f"CREATE DATABASE {DB}")
    for stmt in SINGLE:
        session.query(stmt)
    yield session
    session.close()


def rows(ch: Any, sql: str) -> list[list[Any]]:
    out = ch.query(sql, "JSONCompact").bytes()
    return list(orjson.loads(out)["data"]) if out else []


def ast(ch: Any, stmt: str) -> str:
    return "\n".join(r[0] for r in rows(ch, f"EXPLAIN AST {stmt}"))


def test_every_cluster_statement_parses_in_the_engine(ch: Any) -> None:
    stmts = cluster_statements()
    assert len(stmts) > len(SINGLE)
    for stmt in stmts:
        tree = ast(ch, stmt)  # raises on a syntax error
        assert tree.startswith(("CreateQuery", "AlterQuery", "DropQuery")), tree[:80]
        # The formatted statement keeps ON CLUSTER: the engine read it as a distributed DDL.
        formatted = rows(ch, f"SELECT formatQuery({_literal(stmt)})")[0][0]
        assert f" ON CLUSTER {CLUSTER}" in formatted, formatted[:120]


def test_every_single_node_table_and_view_has_its_cluster_counterpart(ch: Any) -> None:
    single = {str(n): str(e) for n, e in rows(ch, f"SELECT name, engine FROM system.tables WHERE database = '{DB}'")}
    assert len(single) >= 30
    created: dict[tuple[str, str], str] = {}
    for stmt in cluster_statements():
        m = re.match(r"^CREATE (?:TABLE|MATERIALIZED VIEW) IF NOT EXISTS (\w+)\.(\w+) ON CLUSTER (\w+)", stmt)
        if m is not None:
            assert m.group(3) == CLUSTER
            created[(m.group(1), m.group(2))] = stmt
    dist_db = distributed_database(DB)
    for name, engine in single.items():
        assert (DB, name) in created, f"{name} ({engine}) has no cluster statement"
        local = created[(DB, name)]
        if engine.endswith("MergeTree"):
            assert f"\nENGINE = Replicated{engine}('/clickhouse/tables/{{shard}}/{DB}/{name}', '{{replica}}')" in local
            dist = created[(dist_db, name)]
            assert f"AS {DB}.{name}\nENGINE = Distributed({CLUSTER}, {DB}, {name}" in dist
        else:
            assert engine in ("Null", "MaterializedView"), engine
            assert (dist_db, name) not in created  # written locally, never read across shards
    # Nothing in the cluster schema that the single-node one lacks (besides the Distributed tables).
    # (The migration ledger, which the migrator itself creates, is replicated across the whole cluster.)
    assert {n for d, n in created if d == DB} == set(single) | {"schema_migrations"}
    assert {n for d, n in created if d == dist_db} == {n for n, e in single.items() if e.endswith("MergeTree")}


def test_cluster_statements_differ_from_single_node_ones_only_where_they_must() -> None:
    schema = ClusterSchema(CLUSTER, DB)
    for stmt in SINGLE:
        local = schema.statements(stmt)[0]
        back = local.replace(f" ON CLUSTER {CLUSTER}", "", 1)
        back = re.sub(r"ENGINE = Replicated(\w*MergeTree)\('[^']*', '\{replica\}'\)", r"ENGINE = \1", back)
        back = back.replace("replicated_deduplication_window", "non_replicated_deduplication_window")
        assert back == stmt


def test_deduplication_holds_on_every_replicated_table() -> None:
    """The depth of the single-node window, now in Keeper: a retried token is dropped by any replica."""
    schema = ClusterSchema(CLUSTER, DB)
    replicated = 0
    for stmt in SINGLE:
        local = schema.statements(stmt)[0]
        if "ENGINE = Replicated" not in local:
            continue
        replicated += 1
        depth = re.search(r"non_replicated_deduplication_window = (\d+)", stmt)
        assert depth is not None, f"single-node table without deduplication: {stmt[:80]}"
        assert "non_replicated_deduplication_window" not in local
        assert f"replicated_deduplication_window = {depth.group(1)}" in local
    assert replicated >= 16


def test_later_alters_reach_the_distributed_tables_too() -> None:
    schema = ClusterSchema(CLUSTER, DB)
    schema.learn(SINGLE)  # a run that starts after 0001 still knows flows_raw is stored
    alter = next(s for s in SINGLE if s.startswith(f"ALTER TABLE {DB}.flows_raw ADD COLUMN"))
    local, dist = schema.statements(alter)
    assert local.startswith(f"ALTER TABLE {DB}.flows_raw ON CLUSTER {CLUSTER} ADD COLUMN")
    assert dist.startswith(f"ALTER TABLE {DB}_all.flows_raw ON CLUSTER {CLUSTER} ADD COLUMN")
    assert local.split(" ADD COLUMN")[1] == dist.split(" ADD COLUMN")[1]


def test_a_row_update_runs_on_the_local_tables_only_and_a_retype_reaches_both() -> None:
    # 0013: the UPDATE rewrites stored rows (a Distributed table holds none and refuses UPDATE); the MODIFY
    # COLUMN that follows changes both, so their columns stay alike.
    schema = ClusterSchema(CLUSTER, DB)
    schema.learn(SINGLE)
    update = next(s for s in SINGLE if s.startswith(f"ALTER TABLE {DB}.flows_raw UPDATE"))
    assert schema.statements(update) == [update.replace(" UPDATE ", f" ON CLUSTER {CLUSTER} UPDATE ", 1)]
    modify = next(s for s in SINGLE if s.startswith(f"ALTER TABLE {DB}.flows_raw MODIFY COLUMN `src_ip` IPv6"))
    local, dist = schema.statements(modify)
    assert dist == local.replace(f"{DB}.flows_raw", f"{DB}_all.flows_raw", 1)


def test_a_statement_without_a_cluster_form_is_refused() -> None:
    schema = ClusterSchema(CLUSTER, DB)
    with pytest.raises(ClusterSchemaError, match="no cluster form"):
        schema.statements(f"DROP TABLE {DB}.flows_raw")
    with pytest.raises(ClusterSchemaError, match="another database"):
        schema.statements("CREATE TABLE IF NOT EXISTS other.t\n(\n    `a` UInt8\n)\nENGINE = MergeTree\nORDER BY a")
    with pytest.raises(ClusterSchemaError, match="only MergeTree-family and Null"):
        schema.statements(f"CREATE TABLE IF NOT EXISTS {DB}.t\n(\n    `a` UInt8\n)\nENGINE = Memory")


def test_a_landing_drop_runs_on_the_cluster_and_a_stored_table_is_never_dropped() -> None:
    schema = ClusterSchema(CLUSTER, DB)
    schema.learn(s for m in discover() for s in render(m, params_from(DB, LoaderConfig())))
    assert schema.statements(f"DROP VIEW IF EXISTS {DB}.flows_in_check_mv") == [
        f"DROP VIEW IF EXISTS {DB}.flows_in_check_mv ON CLUSTER {CLUSTER}"
    ]
    assert schema.statements(f"DROP TABLE IF EXISTS {DB}.flows_in") == [
        f"DROP TABLE IF EXISTS {DB}.flows_in ON CLUSTER {CLUSTER}"
    ]
    with pytest.raises(ClusterSchemaError, match="does not drop a stored table"):
        schema.statements(f"DROP TABLE IF EXISTS {DB}.flows_quarantine")


def test_shard_of_follows_the_distributed_sharding_rule() -> None:
    # Distributed with weights 1 sends a row to shard (key % shards): the loader's rule must be the same.
    assert [shard_of(p, 3) for p in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(ValueError):
        shard_of(0, 0)


class _Recorder:
    """A clickhouse-connect stand-in that records DDL and answers the migrator's two questions."""

    def __init__(self, ttl_days: int) -> None:
        self.commands: list[str] = []
        self.ttl_days = ttl_days

    def command(self, sql: str, parameters: Any = None, settings: Any = None) -> Any:
        self.commands.append(sql)
        return 0  # "schema_migrations does not exist yet"

    def query(self, sql: str, parameters: Any = None) -> Any:
        found = [("flows_raw", f"ReplicatedMergeTree TTL ts + toIntervalDay({self.ttl_days})")]
        return SimpleNamespace(result_rows=found if "engine_full" in sql else [])

    def insert(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_migrator_in_cluster_mode_runs_everything_on_the_cluster() -> None:
    client = _Recorder(ttl_days=3)
    Migrator(client, DB, LoaderConfig(), cluster=CLUSTER).run()
    ddl = [c for c in client.commands if not c.startswith("SELECT")]
    assert ddl[:3] == ClusterSchema(CLUSTER, DB).bootstrap()
    assert len(ddl) == 3 + len(ClusterSchema(CLUSTER, DB).all_statements(SINGLE)) + 1
    assert all(f" ON CLUSTER {CLUSTER}" in c for c in ddl)
    ttl = LoaderConfig().ttl_flows_raw_days
    assert ddl[-1] == f"ALTER TABLE {DB}.flows_raw ON CLUSTER {CLUSTER} MODIFY TTL ts + INTERVAL {ttl} DAY"
    assert not any(re.search(r"ENGINE = (Summing|Aggregating)?MergeTree\b", c) for c in ddl)


def test_config_validates_the_cluster_name(tmp_path: Any) -> None:
    assert GwtelConfig().clickhouse.cluster is None
    good = tmp_path / "good.yaml"
    good.write_text("clickhouse:\n  cluster: gateway_cluster\n")
    assert load_config(good).clickhouse.cluster == "gateway_cluster"
    bad = tmp_path / "bad.yaml"
    bad.write_text('clickhouse:\n  cluster: "gw; DROP DATABASE x"\n')
    with pytest.raises(ConfigError, match=r"clickhouse\.cluster"):
        load_config(bad)


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
