"""The report's queries answer the same on a two-shard layout as on one node (embedded ClickHouse).

No second server or Keeper runs here, and the embedded engine cannot open a `Distributed` table (it has no
TCP port for the shards to be local to). What it can run is ClickHouse's own shard fan-out: `remote()` with two
local addresses is a two-shard query, and `shardNum()` tells each shard which database holds its local tables.
So each shard's local tables are a database migrated with the single-node migrations (a replicated table
differs only in where its replicas agree), the rows are split between the two, every rollup view fires on
its own shard, and `<db>_all` (the Distributed tables' database in cluster mode) holds, for each Distributed
table of processors.cluster, a view reading both shards through `remote()`. The queries then run unchanged
against `<db>` (everything on one node) and `<db>_all`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gwtel.services.clickhouse import ClickHouseService
from processors.asymmetry import link_pairs
from processors.cluster import ClusterSchema, distributed_database
from processors.config import LoaderConfig
from processors.migrate import Migrator, discover, params_from, render
from processors.queries import (
    bandwidth_series,
    handshake_rtt,
    late_traffic,
    latency_quantiles,
    partner_latency,
    partner_traffic,
    percentile_95,
    time_range,
    top_countries,
    top_hosts,
)
from tests.integration.queries_data import (
    FLOW_BASE_NS,
    MIN,
    T0,
    RttSample,
    bandwidth_fixture,
    insert_bandwidth,
    insert_flows,
    insert_rtts,
    lognormal_rtts,
)

pytestmark = pytest.mark.integration
SHARDS = 2


def stored_tables(db: str) -> list[str]:
    """The tables that have a Distributed counterpart in cluster mode, from the cluster schema itself."""
    schema = ClusterSchema("emulated", db)
    schema.learn(s for m in discover() for s in render(m, params_from(db, LoaderConfig())))
    return sorted(schema.stored)


@pytest.fixture
def layout(clickhouse_service: ClickHouseService, clickhouse_db: str) -> Iterator[tuple[Any, str, list[str]]]:
    """(client, the one-node database, the shards' databases); `<db>_all` reads the shards."""
    client = clickhouse_service.client()
    single = clickhouse_db
    shards = [f"{single}_s{i}" for i in range(1, SHARDS + 1)]
    fan_in, dist = f"{single}_local", distributed_database(single)
    made = [*shards, fan_in, dist]
    try:
        for db in made:
            client.command(f"CREATE DATABASE {db}")
        for db in (single, *shards):
            Migrator(client, db).run()
        for table in stored_tables(single):
            cols = ", ".join(
                f"`{c}`"
                for (c,) in client.query(
                    "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} "
                    "ORDER BY position",
                    parameters={"db": single, "t": table},
                ).result_rows
            )
            # Shard i reads its own database: the view a Distributed table's shards would each hold locally.
            per_shard = " UNION ALL ".join(
                f"SELECT {cols} FROM {db}.{table} WHERE shardNum() = {i}" for i, db in enumerate(shards, start=1)
            )
            client.command(f"CREATE VIEW {fan_in}.{table} AS {per_shard}")
            hosts = ",".join(["127.0.0.1"] * SHARDS)
            client.command(f"CREATE VIEW {dist}.{table} AS SELECT {cols} FROM remote('{hosts}', {fan_in}, {table})")
        yield client, single, shards
    finally:
        for db in made:
            client.command(f"DROP DATABASE IF EXISTS {db}")
        client.close()


def split(items: list[Any]) -> list[list[Any]]:
    return [items[i::SHARDS] for i in range(SHARDS)]


def test_queries_answer_the_same_on_one_node_and_on_two_shards(layout: tuple[Any, str, list[str]]) -> None:
    client, single, shards = layout
    dist = distributed_database(single)
    windows = bandwidth_fixture(client, single)
    for db, part in zip(shards, split(windows), strict=True):
        insert_bandwidth(client, db, part)

    rng = random.Random(5)
    samples = [
        RttSample(T0 + rng.randrange(120) * MIN, partner, direction, link, us)
        for partner, median in (("japan", 30_000), ("korea", 60_000))
        for direction in ("egress", "ingress")
        for link in ("l1", "l2")
        for us in lognormal_rtts(rng, 300, median)
    ]
    insert_rtts(client, single, samples, "hs_rtt_ext")
    for db, part in zip(shards, split(samples), strict=True):
        insert_rtts(client, db, part, "hs_rtt_ext")  # the same window's buckets on both shards: they must add

    flows = []
    for i in range(400):
        first = FLOW_BASE_NS + i * 10**7
        flows.append(dict(partner=("japan", "korea", "belt_and_road")[i % 3], first_ns=first, last_ns=first + 10**9,
                          remote_country=("SG", "MY", "KR", "TH")[i % 4], dst_ip=f"203.0.113.{i % 50}",
                          bytes_fwd=1000 + i, bytes_rev=50 * i, hs_rtt_ext_us=20_000 + 37 * i,
                          hs_rtt_int_us=100 + i, direction=("egress", "ingress")[i % 2]))  # fmt: skip
    late = [dict(f, sampling_rate=2) for f in flows[:40]]
    insert_flows(client, single, flows)
    insert_flows(client, single, late, late=True)
    for db, part, late_part in zip(shards, split(flows), split(late), strict=True):
        insert_flows(client, db, part)
        insert_flows(client, db, late_part, late=True)  # late rows add to each shard's windows and rollups

    end = T0 + 120 * MIN
    questions: dict[str, Callable[[str], Any]] = {
        "time_range": lambda db: time_range(client, db, 60),
        "partner_traffic": lambda db: partner_traffic(client, db, T0, end, 60),
        "partner_latency": lambda db: partner_latency(client, db, T0, end, 60),
        "series_windows": lambda db: bandwidth_series(client, db, T0, end, 60, 60),
        "series_5m": lambda db: bandwidth_series(client, db, T0, end, 300, 60),
        "series_1h": lambda db: bandwidth_series(client, db, T0, end, 3600, 60),
        "latency_quantiles": lambda db: latency_quantiles(client, db, T0, end, 60, step_s=600),
        "handshake_rtt": lambda db: handshake_rtt(client, db, T0, end),
        "percentile_95": lambda db: percentile_95(client, db, T0, end),
        "top_countries": lambda db: top_countries(client, db, "belt_and_road", T0, end),
        "top_hosts": lambda db: top_hosts(client, db, "japan", T0, end),
        "late_traffic": lambda db: late_traffic(client, db, T0, end),
        "link_pairs": lambda db: link_pairs(client, db, T0, end),
    }
    for name, ask in questions.items():
        one_node, two_shards = ask(single), ask(dist)
        assert one_node, f"{name}: the fixture gave the query nothing to answer"
        assert two_shards == one_node, name
    # Both shards hold rows: the answers really were assembled from two places.
    for db in shards:
        assert int(client.command(f"SELECT count() FROM {db}.bandwidth_5m")) > 0
        assert int(client.command(f"SELECT count() FROM {db}.flows_raw")) == len(flows) // SHARDS
