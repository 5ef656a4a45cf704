"""Session fixture for the embedded ClickHouse server, and a unique database per test (imported by conftest.py).

The server starts once per test session in `$GWTEL_HOME` (or a fresh temporary home) on the configured
ports (`$GWTEL_CONFIG` or the defaults). One already running there (`gwtel up`) is reused and left running;
one started here is stopped at the end. A server that does not start fails the tests, never skips them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gwtel.config import load_config
from gwtel.errors import ServiceError
from gwtel.services.clickhouse import ClickHouseService


@pytest.fixture(scope="session")
def clickhouse_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseService]:
    env = os.environ.get("GWTEL_HOME")
    home = Path(env).expanduser().resolve() if env else tmp_path_factory.mktemp("gwtel-home")
    svc = ClickHouseService(load_config(), home)
    already_running = svc.running() and svc.health().ok
    try:
        svc.start()
    except ServiceError as exc:
        pytest.fail(f"the embedded ClickHouse server did not start: {exc}", pytrace=False)
    yield svc
    if not already_running:
        svc.stop()


@pytest.fixture
def clickhouse_db(clickhouse_service: ClickHouseService) -> Iterator[str]:
    """A fresh database `test_<uuid>`, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = clickhouse_service.client()
    admin.command(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        admin.command(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


@pytest.fixture
def clickhouse_client(clickhouse_service: ClickHouseService, clickhouse_db: str) -> Iterator[Any]:
    """A clickhouse-connect client whose default database is the test's own."""
    client = clickhouse_service.client(clickhouse_db)
    try:
        yield client
    finally:
        client.close()
