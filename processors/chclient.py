"""The one place that turns `cfg.clickhouse` into a clickhouse-connect client.

The password never lives in the configuration file: `password_env` names the environment variable that holds
it (or `password_file` a file). `read_only=True` logs in as `read_user` when one is configured. The same code
talks to the embedded server locally and to a ClickHouse server or cluster in production.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect

from gwtel.config import ClickHouseConfig


def client_args(cfg: ClickHouseConfig, database: str | None = None, *, read_only: bool = False) -> dict[str, Any]:
    """Keyword arguments for `clickhouse_connect.get_client` (separate so it is testable without a server)."""
    parts = urlsplit(cfg.url)
    secure = parts.scheme == "https"
    port = parts.port or (8443 if secure else 8123)
    user, password = cfg.read_credentials() if read_only else (cfg.user, cfg.password())
    tls: dict[str, Any] = {"verify": cfg.verify, **({"ca_cert": cfg.ca_file} if cfg.ca_file else {})} if secure else {}
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": port,
        "secure": secure,
        **tls,
        "username": user,
        "password": password,
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
    read_only: bool = False,
) -> Any:
    """A clickhouse-connect client for `cfg` (``database=""`` selects the server default, for bootstrapping).

    ``read_only``: as the read-only user (`clickhouse.read_user`) when one is configured."""
    args = client_args(cfg, database, read_only=read_only)
    if args["database"] == "":
        args["database"] = None
    return clickhouse_connect.get_client(**args, connect_timeout=connect_timeout_s, send_receive_timeout=timeout_s)
