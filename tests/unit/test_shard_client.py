"""The loader's shard router: each batch, its retries and its outcome reach the shard of its Kafka partition."""

from __future__ import annotations

from typing import Any

import pytest

from gwtel.config import ClickHouseConfig, ConfigError, load_config
from processors.batcher import dedup_token
from processors.landing import raw_token
from processors.loader_setup import clickhouse_for_loader
from processors.shard_client import ShardRouter, token_partition


class FakeShard:
    def __init__(self, name: str, log: list[tuple[str, str, Any]]) -> None:
        self.name, self.log, self.closed = name, log, False

    def insert(self, table: str, data: Any, *, settings: Any, **kwargs: Any) -> None:
        self.log.append((self.name, "insert", settings["insert_deduplication_token"]))

    def raw_insert(self, table: str, *, settings: Any, **kwargs: Any) -> None:
        self.log.append((self.name, "raw_insert", settings["insert_deduplication_token"]))

    def query(self, sql: str, *, parameters: Any) -> str:
        self.log.append((self.name, "query", parameters["partition"]))
        return self.name

    def close(self) -> None:
        self.closed = True


def test_token_partition_reads_both_token_formats() -> None:
    assert token_partition(dedup_token("gwtel.aggregates.v1", 7, 10, 20)) == 7
    assert token_partition(raw_token("gwtel.flows.v1", 12, 0, 5, 1_700_000_000_000_000_000)) == 12
    with pytest.raises(ValueError):
        token_partition("not-a-token")


def test_batches_and_outcomes_go_to_the_partitions_shard() -> None:
    log: list[tuple[str, str, Any]] = []
    made: list[FakeShard] = []

    def factory(name: str) -> Any:
        def make() -> FakeShard:
            made.append(FakeShard(name, log))
            return made[-1]

        return make

    router = ShardRouter([factory("a"), factory("b"), factory("c")])
    for p in range(6):
        router.insert("bandwidth_window", [], settings={"insert_deduplication_token": dedup_token("t", p, 0, 9)})
        router.raw_insert(
            "flows_in", insert_block=b"", settings={"insert_deduplication_token": raw_token("t", p, 0, 9, 0)}
        )
        assert router.query("SELECT 1", parameters={"partition": p}) == "abc"[p % 3]
    assert [(s, kind) for s, kind, _ in log if kind != "query"] == [
        (s, k) for p in range(6) for s, k in (("abc"[p % 3], "insert"), ("abc"[p % 3], "raw_insert"))
    ]
    assert len(made) == 3  # one connection per shard, kept
    with pytest.raises(ValueError, match="name the partition"):
        router.query("SELECT 1", parameters={})
    router.close()
    assert all(s.closed for s in made)


def test_shard_urls_need_a_cluster_and_build_a_router(tmp_path: Any) -> None:
    ok = tmp_path / "ok.yaml"
    ok.write_text("clickhouse:\n  cluster: gw\n  shard_urls: [http://s0:8123/, http://s1:8123]\n")
    ch = load_config(ok).clickhouse
    assert ch.shard_urls == ("http://s0:8123", "http://s1:8123")
    assert ch.read_database() == "gwtel_all"
    router = clickhouse_for_loader(ch)
    assert isinstance(router, ShardRouter) and router.shards == 2
    assert ClickHouseConfig().read_database() == "gwtel"
    for bad in ("  shard_urls: [http://s0:8123]\n", "  cluster: gw\n  shard_urls: [http://a:1, http://a:1]\n",
                "  cluster: gw\n  shard_urls: [tcp://s0:9000]\n"):  # fmt: skip
        path = tmp_path / "bad.yaml"
        path.write_text("clickhouse:\n" + bad)
        with pytest.raises(ConfigError, match="clickhouse"):
            load_config(path)
