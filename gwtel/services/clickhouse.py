"""The embedded ClickHouse: `python -m gwtel.chserver` owning `<home>/clickhouse/data`, on the HTTP interface.

Clients reach it with clickhouse-connect exactly as a real ClickHouse server (production points the same
`clickhouse.url` at one). Health is asked of the server itself: `GET /ping` and a `SELECT 1` through
clickhouse-connect.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import clickhouse_connect
import yaml
from clickhouse_connect.driver.exceptions import ClickHouseError

from gwtel.chserver.auth import password_sha256_hex
from gwtel.config import GwtelConfig
from gwtel.errors import ServiceError
from gwtel.services.base import Health, ProcessService, port_open

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
REPO_ROOT = Path(__file__).resolve().parents[2]


class ClickHouseService(ProcessService):
    name = "clickhouse"

    def __init__(self, cfg: GwtelConfig, home: Path) -> None:
        super().__init__(home)
        self.cfg = cfg
        self.home = home
        self.port = cfg.local.ports.clickhouse
        self.metrics_port = cfg.local.ports.clickhouse_metrics
        self.data_dir = self.dir / "data"

    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    def client(self, database: str | None = None) -> Any:
        """A clickhouse-connect client for this server (the library has no type hints)."""
        return clickhouse_connect.get_client(
            host=HOST,
            port=self.port,
            database=database or "__default__",
            connect_timeout=5,
            query_retries=0,
            username=self.cfg.clickhouse.user,
            password=self.cfg.clickhouse.password(),
        )

    def health(self) -> Health:
        url = f"{self.endpoint()}/ping"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            return Health(False, f"{url}: HTTP {exc.code}")
        except (urllib.error.URLError, OSError) as exc:
            return Health(False, f"{url}: {getattr(exc, 'reason', exc)}")
        if body != b"Ok.\n":
            return Health(False, f"{url}: unexpected answer {body[:60]!r}")
        try:
            client = self.client()
            try:
                one = client.command("SELECT 1")
                version = client.server_version
            finally:
                client.close()
        except (ClickHouseError, OSError) as exc:
            return Health(False, f"{self.endpoint()}: SELECT 1 failed: {exc}")
        if one != 1:
            return Health(False, f"{self.endpoint()}: SELECT 1 returned {one!r}")
        return Health(True, f"{self.endpoint()}: ClickHouse {version} (chDB), data {self.data_dir}")

    def _start(self) -> None:
        for port in (self.port, self.metrics_port):
            if port_open(HOST, port):
                raise ServiceError(
                    f"port {port} is already in use by a process gwtel did not start; stop it or set "
                    "local.ports.clickhouse / local.ports.clickhouse_metrics (and clickhouse.url) to free ports"
                )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        users = self._write_users()
        self.spawn(
            [
                sys.executable,
                "-m",
                "gwtel.chserver",
                "--data",
                str(self.data_dir),
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--metrics-port",
                str(self.metrics_port),
                "--announce-home",
                str(self.home),
                "--max-body-mib",
                str(self.cfg.local.clickhouse_max_body_mib),
                *(["--users", str(users)] if users is not None else []),
            ],
            env={"PYTHONPATH": _pythonpath()},
            cwd=self.dir,
        )
        self.wait_healthy(START_TIMEOUT_S)

    def _write_users(self) -> Path | None:
        """The server's users file from `local.clickhouse_users` (hashes only, owner-only); None: no users."""
        path = self.dir / "users.yaml"
        users = self.cfg.local.clickhouse_users
        if not users:
            path.unlink(missing_ok=True)
            return None
        doc = {
            "users": {
                u.name: {"password_sha256_hex": password_sha256_hex(u.password()), "readonly": int(u.readonly)}
                for u in users
            }
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yaml.safe_dump(doc, out)
        return path


def _pythonpath() -> str:
    """The project root first, so the server runs this checkout's code (the package is not installed)."""
    rest = os.environ.get("PYTHONPATH", "")
    return f"{REPO_ROOT}{os.pathsep}{rest}" if rest else str(REPO_ROOT)
