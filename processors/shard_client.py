"""The loader's ClickHouse client in cluster mode: each batch goes to the shard of its Kafka partition.

The loader stays unaware of shards. It hands this object everything it sends: inserts carry the batch's
deduplication token (`topic:partition:first-last`, processors.batcher; the landing path appends `:latest_ns`,
processors.landing), and the landing outcome query carries the partition as a parameter. Both name the
partition, so both reach shard `partition % shards` (processors.cluster.shard_of, the Distributed tables' own
rule), on the same node for a batch, its retries and its outcome. A retry after a rebalance, by another
loader, lands on the same shard too, where Keeper remembers the token: exactly once holds across loaders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from processors.cluster import shard_of


def token_partition(token: str) -> int:
    """The Kafka partition named by a batch's deduplication token."""
    parts = token.split(":")
    if len(parts) < 3 or not parts[1].isdigit():
        raise ValueError(f"not a batch token: {token!r}")
    return int(parts[1])


class ShardRouter:
    """The subset of a clickhouse-connect client the loader uses, spread over one client per shard."""

    def __init__(self, factories: Sequence[Callable[[], Any]]) -> None:
        if not factories:
            raise ValueError("a shard router needs at least one shard")
        self._factories = list(factories)
        self._clients: dict[int, Any] = {}

    @property
    def shards(self) -> int:
        return len(self._factories)

    def client(self, partition: int) -> Any:
        """The (lazily connected) client of the shard that stores `partition`."""
        shard = shard_of(partition, self.shards)
        if shard not in self._clients:
            self._clients[shard] = self._factories[shard]()
        return self._clients[shard]

    def insert(self, table: str, data: Any, *, settings: Mapping[str, Any], **kwargs: Any) -> Any:
        part = token_partition(str(settings["insert_deduplication_token"]))
        return self.client(part).insert(table, data, settings=settings, **kwargs)

    def raw_insert(self, table: str, *, settings: Mapping[str, Any], **kwargs: Any) -> Any:
        part = token_partition(str(settings["insert_deduplication_token"]))
        return self.client(part).raw_insert(table, settings=settings, **kwargs)

    def query(self, sql: str, *, parameters: Mapping[str, Any]) -> Any:
        """A query about one partition's rows (the landing outcome): asked where they were stored."""
        if "partition" not in parameters:
            raise ValueError("in cluster mode the loader's queries name the partition they are about")
        return self.client(int(parameters["partition"])).query(sql, parameters=parameters)

    def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()
