"""The ClickHouse cluster schema (`clickhouse.cluster`), derived from the single-node migrations.

The single-node statements stay the one definition of every table and view; this module only transforms each
rendered statement, so the two schemas cannot drift:

- every `CREATE`, `ALTER` and `DROP` (of a view or a landing table) runs `ON CLUSTER`, so each node gets the
  same local objects (an `ALTER ... UPDATE` rewrites rows: the local tables only, not their Distributed ones);
- a `*MergeTree` table becomes `Replicated*MergeTree` (one replica set per shard, in Keeper under the shard's
  macro), and `non_replicated_deduplication_window` becomes `replicated_deduplication_window` with the same
  depth: the loader's `insert_deduplication_token` (`topic:partition:first-last`) is then remembered in Keeper
  for the shard, so a retried batch is dropped by whichever replica of that shard receives it;
- `Null` landing tables and materialised views stay local: a batch, its checks and its rollups all run on the
  node that received the insert, and reach the other replicas through the replicated target tables;
- every stored table gets a `Distributed` counterpart of the same name in `<db>_all`, over the local tables
  of every shard. Queries read `<db>_all`; nothing writes through it. Its sharding key, where the table has
  one, is `kafka_partition`, which sends a row to shard `kafka_partition % shards` (weights 1): the rule the
  loader follows when it writes a batch to a shard itself (`shard_of`).

Why the loader writes to the shards and not through the Distributed table: a landing batch must stay one
block on one node. Its Kafka offsets are `first + rowNumberInBlock()` from the token, its outcome is read back
from `flows_batches` on the node that took it, and its token only deduplicates within one shard: a
Distributed insert splits the block by shard (or, sent asynchronously, drops the token's meaning altogether).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

DIST_DATABASE_SUFFIX: Final = "_all"
VERSION_TABLE_PATH: Final = "/clickhouse/tables/{database}/schema_migrations"
_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CREATE_TABLE_RE: Final = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)\.(\w+)(?=\s*\()")
_CREATE_VIEW_RE: Final = re.compile(r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\.(\w+)(?= TO )")
_ALTER_RE: Final = re.compile(r"^ALTER TABLE (\w+)\.(\w+)(?= )")
# ALTER TABLE db.t UPDATE ...: rows of the local tables change; a Distributed table holds none
_UPDATE_RE: Final = re.compile(r" UPDATE ")
_DROP_RE: Final = re.compile(r"^DROP (?:VIEW|TABLE) IF EXISTS (\w+)\.(\w+)$")
# `ENGINE = SummingMergeTree` or `ENGINE = MergeTree(args)`: the family prefix and any engine arguments.
_MERGE_TREE_RE: Final = re.compile(r"\nENGINE = (\w*)MergeTree(?:\(([^)]*)\))?(?=\s)")
_ENGINE_RE: Final = re.compile(r"\nENGINE = (\w+)")
_DEDUP_RE: Final = re.compile(r"\bnon_replicated_deduplication_window\b")


class ClusterSchemaError(ValueError):
    """A single-node statement this module has no cluster form for (a new kind of migration statement)."""


def check_name(kind: str, value: str) -> str:
    """`value` when it is a plain ClickHouse identifier (cluster and database names are put into DDL)."""
    if not _NAME_RE.match(value):
        raise ValueError(f"{kind} {value!r} must be letters, digits and underscores, not starting with a digit")
    return value


def distributed_database(database: str) -> str:
    """Where the Distributed tables of `database` live: the database that queries read in cluster mode."""
    return f"{database}{DIST_DATABASE_SUFFIX}"


def shard_of(partition: int, shards: int) -> int:
    """The shard (0-based) that stores a Kafka partition's rows: the Distributed tables' sharding rule."""
    if shards < 1:
        raise ValueError(f"a cluster has at least one shard, got {shards}")
    return partition % shards


def replica_path(database: str, table: str) -> str:
    """The Keeper path of a shard's replicas of `table` (macros filled in by each server)."""
    return f"/clickhouse/tables/{{shard}}/{database}/{table}"


@dataclass
class ClusterSchema:
    """Turns rendered single-node statements of `database` into the statements of cluster `cluster`."""

    cluster: str
    database: str
    # Stored (MergeTree family) tables seen so far, with whether they have a `kafka_partition` column: they
    # have Distributed counterparts, which later `ALTER`s must change too.
    stored: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("cluster", self.cluster)
        check_name("database", self.database)

    @property
    def on(self) -> str:
        return f" ON CLUSTER {self.cluster}"

    @property
    def dist_database(self) -> str:
        return distributed_database(self.database)

    def learn(self, statements: Iterable[str]) -> None:
        """Note the stored tables that `statements` create, without emitting anything: a migration run that
        starts after the table's own migration still alters its Distributed counterpart."""
        for stmt in statements:
            m = _CREATE_TABLE_RE.match(stmt)
            if m is not None and m.group(1) == self.database and _MERGE_TREE_RE.search(stmt) is not None:
                self.stored[m.group(2)] = "`kafka_partition`" in stmt

    def bootstrap(self) -> list[str]:
        """The databases and the migration ledger. The ledger is one replica set across the whole cluster
        (no shard macro in its path), so every node sees which migrations ran."""
        db = self.database
        return [
            f"CREATE DATABASE IF NOT EXISTS {db}{self.on}",
            f"CREATE DATABASE IF NOT EXISTS {self.dist_database}{self.on}",
            f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations{self.on} ("
            " version UInt32, name String, checksum String,"
            " applied_at DateTime64(3, 'UTC') DEFAULT now64(3))"
            f" ENGINE = ReplicatedMergeTree('{VERSION_TABLE_PATH}', '{{replica}}') ORDER BY version",
        ]

    def statements(self, stmt: str) -> list[str]:
        """The cluster statements for one rendered single-node statement."""
        if (m := _CREATE_TABLE_RE.match(stmt)) is not None:
            return self._create_table(stmt, m)
        if (m := _CREATE_VIEW_RE.match(stmt)) is not None:
            return [self._on_cluster(stmt, m)]
        if (m := _ALTER_RE.match(stmt)) is not None:
            out = [self._on_cluster(stmt, m)]
            if m.group(2) in self.stored and not _UPDATE_RE.match(stmt, m.end()):
                # The Distributed table mirrors the columns of the local one.
                dist = f"ALTER TABLE {self.dist_database}.{m.group(2)}{self.on}" + stmt[m.end() :]
                out.append(dist)
            return out
        if (m := _DROP_RE.match(stmt)) is not None:
            # A view or a Null landing table, made again by the same migration; a stored table would need its
            # Distributed counterpart dropped too, and its rows are never dropped by a migration.
            if m.group(2) in self.stored:
                raise ClusterSchemaError(f"{m.group(2)}: a migration does not drop a stored table")
            return [self._on_cluster(stmt, m)]
        raise ClusterSchemaError(f"no cluster form for the statement `{stmt.splitlines()[0][:100]}`")

    def all_statements(self, statements: Sequence[str]) -> list[str]:
        return [out for stmt in statements for out in self.statements(stmt)]

    def _on_cluster(self, stmt: str, m: re.Match[str]) -> str:
        if m.group(1) != self.database:
            raise ClusterSchemaError(f"statement on another database than {self.database}: {stmt[:100]}")
        return stmt[: m.end()] + self.on + stmt[m.end() :]

    def _create_table(self, stmt: str, m: re.Match[str]) -> list[str]:
        local = self._on_cluster(stmt, m)
        table = m.group(2)
        engine = _MERGE_TREE_RE.search(local)
        if engine is None:
            kind = _ENGINE_RE.search(local)
            if kind is None or kind.group(1) != "Null":
                raise ClusterSchemaError(f"{table}: only MergeTree-family and Null tables have a cluster form")
            return [local]  # a landing table keeps nothing: one per node
        family, args = engine.group(1), engine.group(2)
        if family.startswith("Replicated"):
            raise ClusterSchemaError(f"{table}: the single-node schema must not be replicated already")
        replicated_args = f"'{replica_path(self.database, table)}', '{{replica}}'" + (f", {args}" if args else "")
        local = (
            local[: engine.start()]
            + f"\nENGINE = Replicated{family}MergeTree({replicated_args})"
            + local[engine.end() :]
        )
        local = _DEDUP_RE.sub("replicated_deduplication_window", local)
        has_partition = "`kafka_partition`" in stmt
        self.stored[table] = has_partition
        return [local, self.distributed(table, has_partition)]

    def distributed(self, table: str, has_partition: bool) -> str:
        key = ", kafka_partition" if has_partition else ""
        return (
            f"CREATE TABLE IF NOT EXISTS {self.dist_database}.{table}{self.on} AS {self.database}.{table}"
            f"\nENGINE = Distributed({self.cluster}, {self.database}, {table}{key})"
        )
