"""Start-up checks that the configured endpoints answer, before any data moves.

A command that needs Kafka or ClickHouse calls `check` right after loading its configuration: an endpoint
that does not answer stops it with a message naming the configuration file, the key and the fix, instead of
a client traceback after the agent has already spooled records or the loader has joined its group.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request

from gwtel.config import ConfigError, GwtelConfig

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
    if clickhouse and (why := clickhouse_problem(cfg.clickhouse.url)) is not None:
        problems.append(
            f"  clickhouse.url: ClickHouse does not answer at {cfg.clickhouse.url} ({why}): start it (`gwtel up` "
            "for the local one) or set clickhouse.url to its HTTP interface"
        )
    if problems:
        raise ConfigError("\n".join([f"{source}: endpoints unreachable, nothing was sent or stored", *problems]))
