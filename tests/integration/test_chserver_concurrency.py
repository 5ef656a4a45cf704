"""Concurrent clients inserting through the embedded server's HTTP interface, which runs statements at once.

Four clickhouse-connect clients insert batches with deduplication tokens into two tables; every batch of the
first table is sent by two clients (a retry racing its first attempt), each under its own token. Every row must be
stored once, and the materialised views behind each table must hold each row once.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from gwtel.services.clickhouse import ClickHouseService

pytestmark = pytest.mark.integration

BATCHES = 12
SIZE = 5_000

DDL = (
    "CREATE TABLE {t} (k UInt64, v UInt64) ENGINE = MergeTree ORDER BY k "
    "SETTINGS non_replicated_deduplication_window = 1000",
    "CREATE TABLE {t}_sums (g UInt64, v UInt64, n UInt64) ENGINE = SummingMergeTree ORDER BY g "
    "SETTINGS non_replicated_deduplication_window = 1000",
    "CREATE MATERIALIZED VIEW {t}_mv TO {t}_sums AS SELECT k % 7 AS g, v, toUInt64(1) AS n FROM {t}",
)
SETTINGS = {"insert_deduplicate": 1, "deduplicate_blocks_in_dependent_materialized_views": 1}


def rows(table: str, b: int) -> list[list[int]]:
    base = (BATCHES * SIZE if table == "two" else 0) + b * SIZE
    return [[base + i, b + 1] for i in range(SIZE)]


def test_concurrent_token_inserts_store_every_row_once(
    clickhouse_service: ClickHouseService, clickhouse_db: str
) -> None:
    setup = clickhouse_service.client(clickhouse_db)
    for table in ("one", "two"):
        for stmt in DDL:
            setup.command(stmt.format(t=table))
    errors: list[BaseException] = []
    # Clients 0 and 1 both send every batch of `one`; clients 2 and 3 share the batches of `two`.
    plans = {
        0: [("one", b) for b in range(BATCHES)],
        1: [("one", b) for b in reversed(range(BATCHES))],
        2: [("two", b) for b in range(0, BATCHES, 2)],
        3: [("two", b) for b in range(1, BATCHES, 2)],
    }

    def worker(k: int) -> None:
        client: Any = clickhouse_service.client(clickhouse_db)
        try:
            for table, b in plans[k]:
                settings = {**SETTINGS, "insert_deduplication_token": f"{table}-{b}"}
                client.insert(table, rows(table, b), column_names=["k", "v"], settings=settings)
        except BaseException as exc:  # collected and re-raised by the main thread
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    n = BATCHES * SIZE
    v_total = SIZE * sum(range(1, BATCHES + 1))
    for table, first in (("one", 0), ("two", n)):
        totals = setup.query(f"SELECT count(), uniqExact(k), sum(k), sum(v) FROM {table}").result_rows[0]
        count, uniq, ksum, vsum = totals
        assert (count, uniq, vsum) == (n, n, v_total)
        assert ksum == n * first + n * (n - 1) // 2
        per_group = setup.query(f"SELECT g, sum(v), sum(n) FROM {table}_sums GROUP BY g ORDER BY g").result_rows
        truth = setup.query(f"SELECT k % 7, sum(v), count() FROM {table} GROUP BY k % 7 ORDER BY 1").result_rows
        assert [tuple(r) for r in per_group] == [tuple(r) for r in truth]
        assert sum(r[2] for r in per_group) == n
    setup.close()
