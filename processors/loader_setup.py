"""Build a `Loader` from the configuration: consumer, ClickHouse client, dead-letter producer, routes."""

from __future__ import annotations

import gc
from collections.abc import Callable
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry

from gwtel.allocator import keep_freed_memory
from gwtel.config import ClickHouseConfig, GwtelConfig
from gwtel.errors import UserError
from processors.batcher import Batch
from processors.chclient import make_client
from processors.counter_rows import counter_rows
from processors.deadletter import DeadLetterSink, make_producer
from processors.loader import Decoded, Loader, Route
from processors.loader_consumer import LoaderConsumer
from processors.loader_metrics import LoaderMetrics
from processors.migrate import Migrator
from processors.rows import aggregate_rows, flow_rows, late_rows
from processors.shard_client import ShardRouter

# Fetched records wait in memory only up to one batch per partition: never ask for more per poll.
_MAX_POLL_RECORDS = 50_000
# How the loader's consumer fetches (also what bench/ measures a plain librdkafka consume with).
FETCH_SETTINGS: dict[str, Any] = {
    # Large pieces: the landing path hands a poll's records to the batches in one step (1 MiB per partition
    # is about a thousand flow records).
    "max.partition.fetch.bytes": 8 << 20,
    "fetch.max.bytes": 64 << 20,
    # Once its prefetch queue is full (64 MiB, about 60k flow records) librdkafka waits this
    # long before it fetches again; its default, 1 s, held a consumer that polls without pause at about
    # 110k records/s, against about 1M/s with 10 ms (bench/loader.py, docs/clickhouse.md).
    "fetch.queue.backoff.ms": 10,
}
# While ClickHouse is down the loader does not poll; this long a silence is tolerated before the group
# hands its partitions to another member (which then re-forms the announced batch: still no double count).
_MAX_POLL_INTERVAL_MS = 600_000


def tune_memory() -> None:
    """Collect cycles rarely, and keep freed memory for the next batch (`gwtel.allocator`).

    The loader holds a batch of objects per partition (a message object per record, more on the slow path).
    With the default thresholds (700, 10, 10) the collector walked every batch in hand many times per batch:
    the loader ran 1.4x slower. Its objects are freed by reference counting (no cycles), so fewer
    collections leave memory as it is. A young collection every million allocations rather than every 100k
    finds most of a batch's objects already freed instead of walking them once more (the loader's own CPU 0.93x
    per record, docs/clickhouse.md). Objects alive at start-up are frozen out of the collections.
    """
    keep_freed_memory()
    gc.collect()
    gc.freeze()
    gc.set_threshold(1_000_000, 20, 100)


def routes_for(cfg: GwtelConfig) -> list[Route]:
    topics = cfg.kafka.topics
    # The flows topic takes the landing path (ClickHouse parses and checks); the others are small.
    return [
        Route(topics.flows, flow_rows, raw=True),
        Route(topics.aggregates, aggregate_rows),
        Route(topics.late, late_rows),
        Route(topics.counters, counter_rows),
    ]


def make_consumer(cfg: GwtelConfig) -> LoaderConsumer:
    return LoaderConsumer(
        {
            **cfg.kafka.librdkafka(),
            "group.id": cfg.loader.group_id,
            "client.id": "gwtel-loader",
            # The aggregates topic is written in Flink transactions: never read what may still be aborted.
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            # Eager rebalances: a partition given back to the same member restarts at its committed offset.
            "partition.assignment.strategy": "range",
            **FETCH_SETTINGS,
            "max.poll.interval.ms": _MAX_POLL_INTERVAL_MS,
            # A busy host can delay heartbeats for seconds; a short session would evict the loader and
            # restart the group's rebalance over and over.
            "session.timeout.ms": 30_000,
            "heartbeat.interval.ms": 3_000,
        },
        max_records=min(_MAX_POLL_RECORDS, cfg.loader.batch_rows),
    )


def check_rollup_window(cfg: GwtelConfig) -> None:
    """The rollups read one window size: the job must emit it, or they stay empty."""
    if cfg.loader.rollup_window_s not in cfg.job.window_sizes_s:
        raise UserError(
            f"loader.rollup_window_s={cfg.loader.rollup_window_s} is not one of job.window_sizes_s "
            f"{list(cfg.job.window_sizes_s)}: the 5 min / 1 h / 1 day rollups would stay empty"
        )


def migrate(cfg: GwtelConfig) -> tuple[list[int], list[str]]:
    """Bring `cfg.clickhouse.database` to the latest migration and the configured retention."""
    check_rollup_window(cfg)
    client = make_client(cfg.clickhouse, database="")
    try:
        return Migrator(
            client,
            cfg.clickhouse.database,
            cfg.loader,
            window_sizes_s=cfg.job.window_sizes_s,
            cluster=cfg.clickhouse.cluster,
        ).run()
    finally:
        client.close()


def clickhouse_for_loader(ch: ClickHouseConfig) -> Any:
    """The loader's client: the server's, or in cluster mode with shard URLs a router to each partition's shard."""
    if not ch.shard_urls:
        return make_client(ch)
    return ShardRouter([partial(make_client, ch.model_copy(update={"url": url})) for url in ch.shard_urls])


def build_loader(
    cfg: GwtelConfig,
    registry: CollectorRegistry,
    *,
    after_insert: Callable[[Batch[Decoded]], None] | None = None,
) -> Loader:
    """A ready-to-run loader (the database must be migrated first: see `migrate`)."""
    producer = make_producer(cfg.kafka.librdkafka())
    return Loader(
        consumer=make_consumer(cfg),
        client_factory=lambda: clickhouse_for_loader(cfg.clickhouse),
        database=cfg.clickhouse.database,
        routes=routes_for(cfg),
        deadletters=DeadLetterSink(producer, cfg.kafka.topics.dead_letter),
        settings=cfg.loader,
        metrics=LoaderMetrics(registry),
        after_insert=after_insert,
        max_future_skew_s=cfg.job.max_future_skew_s,
    )
