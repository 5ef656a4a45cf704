"""The one configuration file, validated at start-up.

Every section has embedded local defaults, so ``gwtel`` runs with no file at all. A file given with
``--config`` (or ``$GWTEL_CONFIG``) overrides them; unknown keys, bad values and bad types stop the process
before any data moves, with a message naming the file, the key and what to do. Secrets never live in the
file: ``clickhouse.password_env`` names the environment variable that holds the password.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ingest.collect.config import CollectorConfig
from ingest.config import AgentConfig
from ingest.partners import PartnersConfig
from processors.cluster import check_name, distributed_database
from processors.config import JobConfig, LoaderConfig
from schemas.link_counter import LINK_COUNTERS_TOPIC


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicsConfig(Strict):
    flows: str = "gwtel.flows.v1"
    aggregates: str = "gwtel.aggregates.v1"
    late: str = "gwtel.late.v1"
    counters: str = LINK_COUNTERS_TOPIC  # sFlow interface counter samples (schemas.link_counter)
    dead_letter: str = "gwtel.deadletter.v1"


class KafkaConfig(Strict):
    bootstrap: str = "127.0.0.1:9092"
    topics: TopicsConfig = TopicsConfig()
    partitions: int = Field(default=2, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)

    @field_validator("bootstrap")
    @classmethod
    def _host_port(cls, v: str) -> str:
        for part in v.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"{part!r} is not host:port (example: 127.0.0.1:9092)")
        return v


class ClickHouseConfig(Strict):
    url: str = "http://127.0.0.1:8123"
    database: str = "gwtel"
    user: str = "default"
    password_env: str = "GWTEL_CLICKHOUSE_PASSWORD"
    # A cluster name from the servers' remote_servers: migrations run ON CLUSTER with replicated tables and
    # Distributed tables in `<database>_all` (docs/scaling.md). None: one server, plain MergeTree tables.
    cluster: str | None = None
    # With `cluster`: one node's URL per shard, in the cluster's shard order. The loader writes each Kafka
    # partition's batches to shard `partition % len(shard_urls)`; empty: everything to `url` (one shard).
    shard_urls: tuple[str, ...] = ()

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} must start with http:// or https:// (the ClickHouse HTTP interface)")
        return v.rstrip("/")

    @field_validator("shard_urls")
    @classmethod
    def _shard_http(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(cls._http(u) for u in v)

    @model_validator(mode="after")
    def _shards_need_a_cluster(self) -> ClickHouseConfig:
        if self.shard_urls and self.cluster is None:
            raise ValueError("shard_urls needs clickhouse.cluster (the tables are sharded only in cluster mode)")
        if len(set(self.shard_urls)) != len(self.shard_urls):
            raise ValueError("shard_urls lists a node twice: one URL per shard")
        return self

    def read_database(self) -> str:
        """The database queries read: the Distributed tables' in cluster mode, else the tables' own."""
        return self.database if self.cluster is None else distributed_database(self.database)

    @field_validator("cluster")
    @classmethod
    def _cluster_name(cls, v: str | None) -> str | None:
        return None if v is None else check_name("cluster name", v)

    def password(self) -> str:
        return os.environ.get(self.password_env, "")


class PrometheusConfig(Strict):
    url: str = "http://127.0.0.1:9090"


class LocalPorts(Strict):
    kafka: int = Field(default=9092, ge=1, le=65535)
    kafka_controller: int = Field(default=9093, ge=1, le=65535)
    clickhouse: int = Field(default=8123, ge=1, le=65535)
    prometheus: int = Field(default=9090, ge=1, le=65535)
    clickhouse_metrics: int = Field(default=9471, ge=1, le=65535)


class LocalConfig(Strict):
    """Where `gwtel up` keeps binaries, data and logs of the local services."""

    home: str = ".gwtel"
    ports: LocalPorts = LocalPorts()
    # 3: `gwtel up` starts a three-node KRaft cluster (replication factor 3, min.insync.replicas 2) instead of
    # the single broker; node N listens on ports.kafka + 10 N (gwtel/services/kafka_cluster.py).
    kafka_brokers: Literal[1, 3] = 1

    def home_path(self) -> Path:
        return Path(os.environ.get("GWTEL_HOME", self.home)).expanduser().resolve()


class GwtelConfig(Strict):
    kafka: KafkaConfig = KafkaConfig()
    clickhouse: ClickHouseConfig = ClickHouseConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
    local: LocalConfig = LocalConfig()
    agent: AgentConfig = AgentConfig()
    partners: PartnersConfig = Field(default_factory=PartnersConfig.default)
    job: JobConfig = JobConfig()
    loader: LoaderConfig = LoaderConfig()
    collector: CollectorConfig = CollectorConfig()


class ConfigError(Exception):
    """A configuration problem a person can act on; the CLI prints it without a traceback."""


def _format_errors(path: str, exc: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key: remove it or check its spelling against docs/configuration.md"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike[str] | None = None) -> GwtelConfig:
    """Load and validate the configuration; ``None`` means ``$GWTEL_CONFIG`` or the embedded defaults."""
    chosen = path if path is not None else os.environ.get("GWTEL_CONFIG")
    if chosen is None:
        return GwtelConfig()
    p = Path(chosen)
    try:
        raw: Any = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the configuration file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections (kafka:, clickhouse:, ...)")
    try:
        return GwtelConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(str(p), exc)) from None
