"""Start-up checks that the configured endpoints answer, before any data moves.

A command that needs Kafka or ClickHouse calls `check` right after loading its configuration: an endpoint
that does not answer stops it with a message naming the configuration file, the key and the fix, instead of
a client traceback after the agent has already spooled records or the loader has joined its group.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from gwtel.config import ConfigError, GwtelConfig, KafkaConfig
from gwtel.kafka_security import KafkaSecurity

_TIMEOUT_S = 5.0


def config_source(path: str | None) -> str:
    """Where the configuration came from, as the messages name it."""
    chosen = path if path is not None else os.environ.get("GWTEL_CONFIG")
    return chosen if chosen is not None else "built-in configuration (no --config, no $GWTEL_CONFIG)"


def kafka_problem(bootstrap: str) -> str | None:
    """None when one of the bootstrap servers accepts a TCP connection, else what went wrong."""
    errors = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=_TIMEOUT_S):
                return None
        except OSError as exc:
            errors.append(f"{part.strip()}: {exc.strerror or exc}")
    return "; ".join(errors)


def kafka_security_problem(kafka: KafkaConfig, timeout_s: float = 10.0, *, refused_only: bool = False) -> str | None:
    """None when a metadata request over the configured TLS/SASL succeeds, else which setting is wrong.

    librdkafka retries a failed handshake or login for ever; this stops at the first such error (or after
    `timeout_s`) and names the setting, so a wrong password or an untrusted CA fails in seconds.
    `refused_only`: report only a refused login or certificate, not a broker that does not answer (an
    agent spools until it does).
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    if kafka.security.protocol == "PLAINTEXT":
        return None
    errors: list[Any] = []
    # log_level 0: the failure is reported once, below, not logged by librdkafka on every retry.
    conf = {**kafka.librdkafka(), "error_cb": errors.append, "log_level": 0, "socket.connection.setup.timeout.ms": 5000}
    admin = AdminClient(conf)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=1.0)
            return None
        except KafkaException as exc:
            errors.append(exc.args[0] if exc.args else exc)
        admin.poll(0.2)  # serves error_cb
        fatal = [e for e in errors if isinstance(e, KafkaError) and e.code() in _SECURITY_CODES]
        if fatal:
            return security_message(kafka.security, kafka.bootstrap, fatal[0].str())
    if refused_only:
        return None
    last = (errors[-1].str() if isinstance(errors[-1], KafkaError) else str(errors[-1])) if errors else "no answer"
    return security_message(kafka.security, kafka.bootstrap, last)


def _security_codes() -> frozenset[int]:
    from confluent_kafka import KafkaError

    return frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED})


_SECURITY_CODES = _security_codes()


def security_message(sec: KafkaSecurity, bootstrap: str, error: str) -> str:
    """The setting an authentication or TLS error points at, with the client's own words."""
    lowered = error.lower()
    if "certificate verify failed" in lowered or "ssl handshake failed" in lowered:
        trust = sec.ca_file if sec.ca_file is not None else "the system CA store"
        return (
            f"kafka.security.ca_file: the certificate of the broker at {bootstrap} is not trusted by {trust} ({error})"
        )
    if "authentication" in lowered or "sasl" in lowered:
        return (
            f"kafka.security.password: the broker at {bootstrap} refused {sec.mechanism} login as "
            f"kafka.security.username {sec.username!r} with the password from {sec.password_source()} ({error})"
        )
    return (
        f"kafka.security.protocol: no {sec.protocol} connection to {bootstrap} ({error}); check that the "
        "listener at kafka.bootstrap speaks that protocol"
    )


def check_kafka_login(kafka: KafkaConfig, timeout_s: float = 10.0) -> None:
    """For clients that wait out an absent broker (agent, collector, Flink job): stop at once on a refused
    TLS or SASL login instead, naming the setting."""
    if (why := kafka_security_problem(kafka, timeout_s, refused_only=True)) is not None:
        raise ConfigError(f"Kafka refused this client: {why}")


def clickhouse_problem(url: str) -> str | None:
    """None when the ClickHouse HTTP interface answers /ping, else what went wrong."""
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=_TIMEOUT_S) as resp:
            body = resp.read(64)
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"HTTP {exc.code} from {url}/ping"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url}/ping: {reason}"
    if not body.startswith(b"Ok."):
        return f"{url}/ping answered {body!r}, not a ClickHouse server"
    return None


def check(cfg: GwtelConfig, path: str | None, *, kafka: bool = False, clickhouse: bool = False) -> None:
    """Raise ConfigError naming the file, key and fix for each endpoint that does not answer."""
    source = config_source(path)
    problems = []
    if kafka and (why := kafka_problem(cfg.kafka.bootstrap)) is not None:
        problems.append(
            f"  kafka.bootstrap: no broker answers at {cfg.kafka.bootstrap} ({why}): start it (`gwtel up` "
            "for the local one) or set kafka.bootstrap to the brokers' host:port"
        )
    elif kafka and (why := kafka_security_problem(cfg.kafka)) is not None:
        problems.append(f"  {why}")
    if clickhouse and (why := clickhouse_problem(cfg.clickhouse.url)) is not None:
        problems.append(
            f"  clickhouse.url: ClickHouse does not answer at {cfg.clickhouse.url} ({why}): start it (`gwtel up` "
            "for the local one) or set clickhouse.url to its HTTP interface"
        )
    if problems:
        raise ConfigError("\n".join([f"{source}: endpoints unreachable, nothing was sent or stored", *problems]))
