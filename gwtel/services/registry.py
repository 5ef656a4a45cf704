"""The local services in start order, built from the configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from gwtel.config import GwtelConfig
from gwtel.services.base import Health


class LocalService(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def running(self) -> bool: ...

    def health(self) -> Health: ...

    def endpoint(self) -> str: ...


SERVICE_NAMES = ("kafka", "flink", "clickhouse", "prometheus")


def build(cfg: GwtelConfig, home: Path | None = None) -> list[LocalService]:
    """Every local service, in the order `up` starts them (`down` stops them in reverse)."""
    # Imported here so `gwtel --help` stays fast and does not load service modules.
    from gwtel.services.clickhouse import ClickHouseService
    from gwtel.services.flink import FlinkRuntime
    from gwtel.services.kafka import KafkaService
    from gwtel.services.kafka_cluster import KafkaCluster
    from gwtel.services.prometheus import PrometheusService

    root = home or cfg.local.home_path()
    return [
        KafkaCluster(cfg, root) if cfg.local.kafka_brokers > 1 else KafkaService(cfg, root),
        FlinkRuntime(cfg, root),
        ClickHouseService(cfg, root),
        PrometheusService(cfg, root),
    ]


def select(services: list[LocalService], names: list[str] | None) -> list[LocalService]:
    if not names:
        return services
    unknown = sorted(set(names) - {s.name for s in services})
    if unknown:
        from gwtel.errors import UserError

        raise UserError(f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICE_NAMES)}")
    return [s for s in services if s.name in names]
