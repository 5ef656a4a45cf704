"""The one configuration file, validated at start-up.

Every section has embedded local defaults, so ``gwtel`` runs with no file at all. A file given with
``--config`` (or ``$GWTEL_CONFIG``) overrides them; unknown keys, bad values and bad types stop the process
before any data moves, with a message naming the file, the key and what to do. Secrets never live in the
file: ``password_env`` names the environment variable that holds a password (or ``password_file`` a file),
read only when a client is built (gwtel.secrets).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gwtel.kafka_security import KafkaSecurity
from gwtel.secrets import ENV_NAME, read_secret
from ingest.applications import ApplicationsConfig
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
    # TLS and SASL of every client (docs/security.md); the default is the local broker's plain listener.
    security: KafkaSecurity = KafkaSecurity()

    @field_validator("bootstrap")
    @classmethod
    def _host_port(cls, v: str) -> str:
        for part in v.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"{part!r} is not host:port (example: 127.0.0.1:9092)")
        return v

    def librdkafka(self) -> dict[str, Any]:
        """Brokers and security for a confluent-kafka client (each adds its own settings)."""
        return {"bootstrap.servers": self.bootstrap, **self.security.librdkafka()}

    def kafka_python(self) -> dict[str, Any]:
        """Brokers and security as kafka-python keyword arguments."""
        return {"bootstrap_servers": self.bootstrap, **self.security.kafka_python()}


class ClickHouseConfig(Strict):
    url: str = "http://127.0.0.1:8123"
    database: str = "gwtel"
    user: str = "default"
    # The password is read from password_file (first line) if set, else from this environment variable.
    password_env: str = Field(default="GWTEL_CLICKHOUSE_PASSWORD", pattern=ENV_NAME)
    password_file: str | None = None
    # A read-only user (readonly=1 on the server) for `gwtel report` and Grafana; None: `user` for everything.
    read_user: str | None = None
    read_password_env: str = Field(default="GWTEL_CLICKHOUSE_READ_PASSWORD", pattern=ENV_NAME)
    read_password_file: str | None = None
    # https:// URLs: the CA (PEM) that signed the server's certificate (default: the system store).
    ca_file: str | None = None
    verify: bool = True
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
        """The password of `user` ("" when none is set: the local default user has none)."""
        return read_secret(key="clickhouse", env=self.password_env, file=self.password_file, required=False)

    def read_credentials(self) -> tuple[str, str]:
        """(user, password) for read-only work: `read_user` if set, else `user`."""
        if self.read_user is None:
            return self.user, self.password()
        password = read_secret(
            key="clickhouse.read", env=self.read_password_env, file=self.read_password_file, required=False
        )
        return self.read_user, password


class PrometheusConfig(Strict):
    url: str = "http://127.0.0.1:9090"
    # The address the agent's, collector's and loader's /metrics endpoints listen on: loopback unless a
    # Prometheus on another host scrapes them (e.g. 0.0.0.0 in a pod). They serve metrics only, no secrets.
    metrics_host: str = "127.0.0.1"


class LocalPorts(Strict):
    kafka: int = Field(default=9092, ge=1, le=65535)
    kafka_controller: int = Field(default=9093, ge=1, le=65535)
    # A SASL_SSL listener of the single local broker (certificates and users made at start); 0: none.
    kafka_sasl_ssl: int = Field(default=0, ge=0, le=65535)
    clickhouse: int = Field(default=8123, ge=1, le=65535)
    prometheus: int = Field(default=9090, ge=1, le=65535)
    clickhouse_metrics: int = Field(default=9471, ge=1, le=65535)


class LocalClickHouseUser(Strict):
    """A user of the local embedded ClickHouse server (its password hash is written at each start)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    password_env: str = Field(pattern=ENV_NAME)
    password_file: str | None = None
    readonly: bool = False

    def password(self) -> str:
        key = f"local.clickhouse_users[{self.name}]"
        return read_secret(key=key, env=self.password_env, file=self.password_file, required=True)


class LocalConfig(Strict):
    """Where `gwtel up` keeps binaries, data and logs of the local services."""

    home: str = ".gwtel"
    ports: LocalPorts = LocalPorts()
    # 3: `gwtel up` starts a three-node KRaft cluster (replication factor 3, min.insync.replicas 2) instead of
    # the single broker; node N listens on ports.kafka + 10 N (gwtel/services/kafka_cluster.py).
    kafka_brokers: Literal[1, 3] = 1
    # Users the local ClickHouse server enforces; empty: `default` without a password, on loopback only.
    clickhouse_users: tuple[LocalClickHouseUser, ...] = ()
    # Request bodies above this get HTTP 413 from the local ClickHouse server.
    clickhouse_max_body_mib: int = Field(default=4096, ge=1)

    def home_path(self) -> Path:
        return Path(os.environ.get("GWTEL_HOME", self.home)).expanduser().resolve()


class GwtelConfig(Strict):
    kafka: KafkaConfig = KafkaConfig()
    clickhouse: ClickHouseConfig = ClickHouseConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
    local: LocalConfig = LocalConfig()
    agent: AgentConfig = AgentConfig()
    partners: PartnersConfig = Field(default_factory=PartnersConfig.default)
    applications: ApplicationsConfig = ApplicationsConfig()
    job: JobConfig = JobConfig()
    loader: LoaderConfig = LoaderConfig()
    collector: CollectorConfig = CollectorConfig()

    @model_validator(mode="after")
    def _objectives_name_classes(self) -> GwtelConfig:
        # Once `applications.rules` are given, an objective of a class no rule (nor the default) produces would
        # never be judged: refuse it. Without rules, every flow is in the default class (docs/classes.md).
        if not self.applications.rules:
            return self
        classes = self.applications.classes()
        problems = [
            f"partners.groups.{name}.slo.{cls}: no application class {cls!r} (classes: {', '.join(classes)}): "
            "add a rule for it under applications.rules or remove the objective"
            for name, group in self.partners.groups.items()
            for cls in group.slo
            if cls not in classes
        ]
        if problems:
            raise ValueError("\n  ".join(problems))
        return self


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
