"""The local ClickHouse server with users (local.clickhouse_users): clickhouse-connect logs in with the
configured password, a wrong one is refused, the read-only user reads (and `gwtel report` runs as it) but
cannot insert or create. A server of the test's own, so the shared one on 8123 keeps its open default user.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from gwtel.cli import main
from gwtel.config import GwtelConfig
from gwtel.services.clickhouse import ClickHouseService
from processors.chclient import make_client
from processors.loader_setup import migrate
from tests.ports import free_port
from tests.services import running

pytestmark = pytest.mark.integration

WRITER_PW = f"w-{uuid.uuid4().hex}"
READER_PW = f"r-{uuid.uuid4().hex}"


def _config(port: int, metrics_port: int, **clickhouse: object) -> GwtelConfig:
    return GwtelConfig.model_validate(
        {
            "local": {
                "ports": {"clickhouse": port, "clickhouse_metrics": metrics_port},
                "clickhouse_users": [
                    {"name": "loader", "password_env": "T_CH_WRITER_PW"},
                    {"name": "grafana", "password_env": "T_CH_READER_PW", "readonly": True},
                ],
            },
            "clickhouse": {
                "url": f"http://127.0.0.1:{port}",
                "database": f"auth_{uuid.uuid4().hex[:8]}",
                "user": "loader",
                "password_env": "T_CH_WRITER_PW",
                "read_user": "grafana",
                "read_password_env": "T_CH_READER_PW",
                **clickhouse,
            },
        }
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GwtelConfig]:
    mp = pytest.MonkeyPatch()
    mp.setenv("T_CH_WRITER_PW", WRITER_PW)
    mp.setenv("T_CH_READER_PW", READER_PW)
    cfg = _config(free_port(), free_port())
    home = tmp_path_factory.mktemp("ch-auth")
    with running(ClickHouseService(cfg, home), "the test's ClickHouse server with users") as svc:
        users = (svc.dir / "users.yaml").read_text(encoding="utf-8")
        assert WRITER_PW not in users and READER_PW not in users  # hashes only
        assert (svc.dir / "users.yaml").stat().st_mode & 0o077 == 0
        yield cfg
    mp.undo()


def test_writer_migrates_and_inserts_reader_only_reads(server: GwtelConfig, tmp_path: Path) -> None:
    cfg = server
    migrate(cfg)
    writer = make_client(cfg.clickhouse)
    reader = make_client(cfg.clickhouse, read_only=True)
    try:
        db = cfg.clickhouse.database
        writer.command(f"CREATE TABLE {db}.t (x UInt32) ENGINE = MergeTree ORDER BY x")
        writer.insert(f"{db}.t", [[1], [2], [3]], column_names=["x"])
        assert reader.command(f"SELECT sum(x) FROM {db}.t") == 6
        with pytest.raises(DatabaseError, match=r"Code: 164.*readonly"):
            reader.insert(f"{db}.t", [[4]], column_names=["x"])
        with pytest.raises(DatabaseError, match="Code: 164"):
            reader.command(f"CREATE TABLE {db}.u (x UInt32) ENGINE = Memory")
        with pytest.raises(DatabaseError, match="Code: 164"):
            reader.command(f"DROP TABLE {db}.t")
        assert writer.command(f"SELECT sum(x) FROM {db}.t") == 6
        # `gwtel report` runs as the read-only user: it reads the (empty) aggregates and says so.
        config_file = tmp_path / "gwtel.yaml"
        config_file.write_text(cfg.model_dump_json(), encoding="utf-8")
        assert main(["--config", str(config_file), "report"]) == 0
    finally:
        writer.command(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")
        writer.close()
        reader.close()


def test_wrong_password_and_unknown_user_are_refused(server: GwtelConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_CH_WRONG", "not-it")
    port = server.local.ports.clickhouse
    for user in ("loader", "nobody"):
        cfg = _config(port, server.local.ports.clickhouse_metrics, user=user, password_env="T_CH_WRONG")
        with pytest.raises(DatabaseError) as err:
            make_client(cfg.clickhouse, database="")
        assert "Code: 516" in str(err.value) and "AUTHENTICATION_FAILED" in str(err.value)
        assert "not-it" not in str(err.value)
    # No credentials at all: the server has no open default user.
    cfg = _config(port, server.local.ports.clickhouse_metrics, user="default", password_env="T_CH_UNSET")
    with pytest.raises(DatabaseError, match="Code: 516"):
        make_client(cfg.clickhouse, database="")


def test_password_file(server: GwtelConfig, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(WRITER_PW + "\n", encoding="utf-8")
    cfg = _config(
        server.local.ports.clickhouse, server.local.ports.clickhouse_metrics, password_env="T_CH_UNSET",
        password_file=str(secret),
    )  # fmt: skip
    client = make_client(cfg.clickhouse, database="")
    try:
        assert client.command("SELECT currentUser() = currentUser()") == 1
    finally:
        client.close()
