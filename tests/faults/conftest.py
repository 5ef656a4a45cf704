"""Fault suite: the real services of the integration tests, reused (a missing service fails, never skips)."""

from tests.corpus.conftest import corpus_dir
from tests.integration.fixtures_clickhouse import clickhouse_client, clickhouse_db, clickhouse_service
from tests.integration.fixtures_kafka import (
    flink_runtime,
    kafka_bootstrap,
    kafka_config,
    kafka_home,
    kafka_service,
    kafka_topic,
)

__all__ = [
    "clickhouse_client",
    "clickhouse_db",
    "clickhouse_service",
    "corpus_dir",
    "flink_runtime",
    "kafka_bootstrap",
    "kafka_config",
    "kafka_home",
    "kafka_service",
    "kafka_topic",
]
