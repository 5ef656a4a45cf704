"""The one place that turns `cfg.clickhouse` into a clickhouse-connect client.

The password never lives in the configuration file: `password_env` names the environment variable that holds
it. The same code talks to the embedded server locally and to a ClickHouse server or cluster in production.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect

from gwtel.config import ClickHouseConfig


def client_args(cfg: ClickHouseConfig, database: str | None = None) -> dict[str, Any]:
    """Keyword arguments for `clickhouse_connect.get_client` (separate so it is testable without a server)."""
    parts = urlsplit(cfg.url)
    secure = parts.scheme == "https"
    port = parts.port or (8443 if secure else 8123)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": port,
        "secure": secure,
        "username": cfg.user,
        "password": cfg.password(),
        "database": database if database is not None else cfg.database,
        # One client may be used from more than one thread (loader metrics, tests): a shared session id
        # would make concurrent queries fail with "session is locked".
        "autogenerate_session_id": False,
    }


def make_client(
    cfg: ClickHouseConfig,
    *,
    database: str | None = None,
    connect_timeout_s: float = 10.0,
    timeout_s: float = 300.0,
) -> Any:
    """A clickhouse-connect client for `cfg` (``database=""`` selects the server default, for bootstrapping)."""
    args = client_args(cfg, database)
    if args["database"] == "":
        args["database"] = None
    return clickhouse_connect.get_client(**args, connect_timeout=connect_timeout_s, send_receive_timeout=timeout_s)
