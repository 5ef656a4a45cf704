"""A statement that ends with its own SETTINGS clause, sent with request settings, through the embedded server.

clickhouse-connect always sends settings of its own with a query, so every such statement meets both clauses.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_describe_and_show_with_own_settings(clickhouse_client: Any) -> None:
    clickhouse_client.command("CREATE TABLE t (a UInt8, b String) ENGINE = MergeTree ORDER BY a")
    rows = clickhouse_client.query("DESCRIBE TABLE t SETTINGS max_threads = 1", settings={"max_block_size": 100})
    assert [(r[0], r[1]) for r in rows.result_rows] == [("a", "UInt8"), ("b", "String")]
    ddl = clickhouse_client.query("SHOW CREATE TABLE t SETTINGS max_threads = 1").result_rows[0][0]
    assert "ENGINE = MergeTree" in ddl
    exists = clickhouse_client.query("EXISTS TABLE t SETTINGS max_threads = 1;").result_rows
    assert exists == [(1,)]


def test_own_settings_win_over_request_settings(clickhouse_client: Any) -> None:
    sql = "SELECT getSetting('max_block_size') SETTINGS max_block_size = 1234"
    assert clickhouse_client.query(sql, settings={"max_block_size": 777}).result_rows == [(1234,)]
    # Without its own clause the request setting applies.
    plain = clickhouse_client.query("SELECT getSetting('max_block_size')", settings={"max_block_size": 777})
    assert plain.result_rows == [(777,)]


def test_settings_inside_a_union_are_not_taken_for_the_trailing_clause(clickhouse_client: Any) -> None:
    sql = "SELECT 1 SETTINGS max_threads = 1 UNION ALL SELECT 2"
    assert sorted(clickhouse_client.query(sql, settings={"max_block_size": 100}).result_rows) == [(1,), (2,)]


def test_insert_with_own_settings_keeps_them(clickhouse_client: Any) -> None:
    clickhouse_client.command("CREATE TABLE s (v UInt64) ENGINE = MergeTree ORDER BY v")
    clickhouse_client.command(
        "INSERT INTO s SETTINGS max_block_size = 4321 SELECT getSetting('max_block_size')",
        settings={"max_block_size": 777},
    )
    assert clickhouse_client.query("SELECT v FROM s").result_rows == [(4321,)]
