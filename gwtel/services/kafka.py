"""Local Apache Kafka broker: one KRaft node (broker and controller) from Maven Central jars.

Layout under GWTEL_HOME: `lib/kafka/` (jars), `kafka/server.properties` (rendered at each start from
`deploy/local/kafka/server.properties.tmpl`), `kafka/data/` (log dirs; kept across restarts),
`logs/kafka.log`. The storage is formatted once, on first start, with a fresh cluster id that the
format step writes into `kafka/data/meta.properties`.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import subprocess
import uuid
from pathlib import Path
from string import Template
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from gwtel.config import GwtelConfig
from gwtel.errors import ServiceError
from gwtel.services.base import Health, ProcessService, port_open, tail
from gwtel.services.java import DEPLOY_LOCAL, jars_present, maven_copy_dependencies, require_tool

KAFKA_VERSION = "4.2.0"
HOST = "127.0.0.1"
_DEPLOY = DEPLOY_LOCAL / "kafka"
_START_TIMEOUT_S = 90.0
# Without this, a failed connection attempt in health() logs an error per poll.
_QUIET_LOGGERS = ("kafka", "kafka.conn", "kafka.client", "kafka.net", "kafka.admin")


def _quiet_client_logs() -> None:
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (what `random-uuid` prints).

    Kafka rejects ids that start with '-' on the command line, so such draws are skipped.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cid.startswith("-"):
            return cid


def local_sasl_ssl_settings(cfg: GwtelConfig, key_store: Path) -> str:
    """Broker settings of the SASL_SSL listener: its PEM key store and both mechanisms' login modules.

    SCRAM users live in the cluster metadata (`add_scram_user`); a PLAIN user is declared here, so with
    mechanism PLAIN the configured user and password are written into the (owner-only) properties file.
    """
    lines = [
        "sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN",
        "listener.name.sasl_ssl.ssl.keystore.type=PEM",
        f"listener.name.sasl_ssl.ssl.keystore.location={key_store}",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    ]
    sec = cfg.kafka.security
    plain_users = ""
    if sec.sasl and sec.mechanism == "PLAIN":
        plain_users = f' user_{sec.username}="{_properties_escape(sec.password())}"'
    lines.append(
        "listener.name.sasl_ssl.plain.sasl.jaas.config="
        f"org.apache.kafka.common.security.plain.PlainLoginModule required{plain_users};"
    )
    return "\n".join(lines)


def _properties_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def add_scram_user(bootstrap: str, user: str, password: str, timeout_s: float = 30.0) -> None:
    """Create or update a SCRAM-SHA-512 user with the broker's own admin API (what kafka-configs does)."""
    # The classes of confluent_kafka.admin, from where they are defined (the re-export is untyped).
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._scram import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    admin = AdminClient({"bootstrap.servers": bootstrap})
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode("utf-8")
    )
    futures = admin.alter_user_scram_credentials([upsert], request_timeout=timeout_s)
    try:
        for future in futures.values():
            future.result(timeout=timeout_s)
    except Exception as exc:  # the client's own error types; the message below is what the operator needs
        raise ServiceError(f"could not create the Kafka SCRAM user {user!r} at {bootstrap}: {exc}") from None


class KafkaService(ProcessService):
    name = "kafka"

    def __init__(self, cfg: GwtelConfig, home: Path) -> None:
        super().__init__(home)
        self.cfg = cfg
        self.home = home
        self.port = cfg.local.ports.kafka
        self.controller_port = cfg.local.ports.kafka_controller
        self.lib_dir = home / "lib" / "kafka"
        self.data_dir = self.dir / "data"
        self.properties_path = self.dir / "server.properties"

    # -- files ----------------------------------------------------------------------------------------
    def fetch(self) -> None:
        maven_copy_dependencies(_DEPLOY / "pom.xml", self.lib_dir, {"kafka.version": KAFKA_VERSION})

    def jars_ready(self) -> bool:
        return jars_present(self.lib_dir, _DEPLOY / "pom.xml", {"kafka.version": KAFKA_VERSION})

    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    def cluster_id(self) -> str | None:
        """The id written by the format step, or None before the first start."""
        try:
            text = (self.data_dir / "meta.properties").read_text(encoding="utf-8")
        except OSError:
            return None
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "cluster.id":
                return value.strip()
        return None

    def sasl_ssl_endpoint(self) -> str | None:
        """host:port of the SASL_SSL listener, None when `local.ports.kafka_sasl_ssl` is 0."""
        port = self.cfg.local.ports.kafka_sasl_ssl
        return f"{HOST}:{port}" if port else None

    def ca_file(self) -> Path:
        """The CA that signed the SASL_SSL listener's certificate (clients' kafka.security.ca_file)."""
        return self.dir / "tls" / "ca.pem"

    def _render_properties(self) -> None:
        template = Template((_DEPLOY / "server.properties.tmpl").read_text(encoding="utf-8"))
        sasl_listener, sasl_settings = "", ""
        if (endpoint := self.sasl_ssl_endpoint()) is not None:
            sasl_listener = f",SASL_SSL://{endpoint}"
            sasl_settings = local_sasl_ssl_settings(self.cfg, self._make_certs())
        text = template.substitute(
            port=self.port,
            controller_port=self.controller_port,
            data_dir=str(self.data_dir),
            partitions=self.cfg.kafka.partitions,
            sasl_listener=sasl_listener,
            sasl_settings=sasl_settings,
        )
        self.properties_path.write_text(text, encoding="utf-8")
        # The file may hold a PLAIN user's password.
        self.properties_path.chmod(0o600)

    def _make_certs(self) -> Path:
        tls = self.ca_file().parent
        out = subprocess.run(
            ["bash", str(_DEPLOY / "make-certs.sh"), str(tls)], capture_output=True, text=True, timeout=60, check=False
        )
        if out.returncode != 0:
            raise ServiceError(f"making the broker's TLS certificates in {tls} failed: {out.stderr.strip()}")
        return tls / "server.pem"

    def _add_scram_user(self) -> None:
        """Create (or update) the configured SCRAM user, through the node's own plain loopback listener."""
        sec = self.cfg.kafka.security
        if self.sasl_ssl_endpoint() is None or not sec.sasl or sec.mechanism != "SCRAM-SHA-512":
            return
        add_scram_user(self.endpoint(), sec.username, sec.password())

    def _java(self, main_class: str, *args: str, heap: str = "-Xmx512m") -> list[str]:
        return [
            require_tool("java"),
            "-Xms128m",
            heap,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={_DEPLOY / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_path.parent}",
            "-cp",
            f"{self.lib_dir}/*",
            main_class,
            *args,
        ]

    def _format_storage(self) -> None:
        """Format the log dir once; a formatted dir (meta.properties present) is left alone."""
        if self.cluster_id() is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = self._java(
            "kafka.tools.StorageTool",
            "format",
            *self._format_ids(),
            "--config",
            str(self.properties_path),
            heap="-Xmx256m",
        )
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(out.stdout + out.stderr)
        if out.returncode != 0 or self.cluster_id() is None:
            raise ServiceError(
                f"formatting Kafka storage in {self.data_dir} failed (exit {out.returncode}); "
                f"last lines of {self.log_path}:\n{tail(self.log_path)}"
            )

    def _format_ids(self) -> list[str]:
        """How the format step names the cluster: a new one whose only controller is this node."""
        return ["--standalone", "--cluster-id", new_cluster_id()]

    # -- process --------------------------------------------------------------------------------------
    def _start(self) -> None:
        if port_open(HOST, self.port) or port_open(HOST, self.controller_port):
            raise ServiceError(
                f"port {self.port} or {self.controller_port} on {HOST} is already in use by another process; "
                "stop it or set local.ports.kafka / local.ports.kafka_controller in the configuration"
            )
        self._render_properties()
        self._format_storage()
        self.spawn(self._java("kafka.Kafka", str(self.properties_path)), cwd=self.dir)
        self.wait_healthy(_START_TIMEOUT_S)
        self._add_scram_user()

    def health(self) -> Health:
        if not port_open(HOST, self.port):
            return Health(False, f"nothing listens on {self.endpoint()}")
        try:
            with self.admin(timeout_ms=3000) as admin:
                meta: dict[str, Any] = admin.describe_cluster()
        except Exception as exc:  # any client failure means "not ready yet"
            return Health(False, f"broker at {self.endpoint()} does not answer yet ({type(exc).__name__})")
        brokers = meta.get("brokers") or []
        if not brokers:
            return Health(False, f"broker at {self.endpoint()} reports no registered brokers yet")
        return Health(True, f"Kafka {KAFKA_VERSION} at {self.endpoint()}, cluster {meta.get('cluster_id')}")

    # -- topics ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def admin(self, timeout_ms: int = 10_000) -> Any:
        """A KafkaAdminClient for this broker, closed on exit."""
        _quiet_client_logs()
        client = KafkaAdminClient(
            bootstrap_servers=self.endpoint(),
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            client_id="gwtel-admin",
        )
        try:
            yield client
        finally:
            client.close()

    def configured_topics(self) -> list[str]:
        t = self.cfg.kafka.topics
        return [t.flows, t.aggregates, t.late, t.counters, t.dead_letter]

    def delete_topics(self, topics: list[str]) -> list[str]:
        """Delete those of `topics` that exist; return them."""
        with self.admin() as admin:
            existing = set(admin.list_topics())
            gone = [t for t in topics if t in existing]
            if gone:
                admin.delete_topics(gone)
        return gone

    def ensure_topics(self, topics: list[str] | None = None, partitions: int | None = None) -> dict[str, int]:
        """Create missing topics (default: the configured ones); return each topic's partition count.

        Existing topics are left as they are: adding partitions would move keys to other partitions.
        """
        names = topics if topics is not None else self.configured_topics()
        count = partitions if partitions is not None else self.cfg.kafka.partitions
        with self.admin() as admin:
            existing = set(admin.list_topics())
            missing = [n for n in names if n not in existing]
            if missing:
                spec = {
                    n: {"num_partitions": count, "replication_factor": self.cfg.kafka.replication_factor}
                    for n in missing
                }
                # Another process may create the same topic between list and create: that is fine.
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics(spec, timeout_ms=30_000, wait_for_metadata=True)
            described = admin.describe_topics(names)
        return {str(t["name"]): len(t["partitions"]) for t in described}
