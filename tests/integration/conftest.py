"""Real local services for integration tests, started once per session (reused when `gwtel up` already runs them).

A service that does not start makes its tests fail, never skip.
"""

from tests.integration.fixtures_clickhouse import clickhouse_client, clickhouse_db, clickhouse_service
from tests.integration.fixtures_kafka import (
    flink_runtime,
    kafka_bootstrap,
    kafka_config,
    kafka_home,
    kafka_service,
    kafka_topic,
)
from tests.integration.fixtures_prometheus import metrics_port, prometheus
from tests.integration.fixtures_replay import shared_run

__all__ = [
    "clickhouse_client",
    "clickhouse_db",
    "clickhouse_service",
    "flink_runtime",
    "kafka_bootstrap",
    "kafka_config",
    "kafka_home",
    "kafka_service",
    "kafka_topic",
    "metrics_port",
    "prometheus",
    "shared_run",
]
