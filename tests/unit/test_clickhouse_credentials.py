"""The ClickHouse client side of authentication: which user and password each client logs in with, TLS
options for https URLs, and Grafana's datasource on the read-only user."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gwtel.config import GwtelConfig
from gwtel.errors import UserError
from gwtel.observability.grafana import datasources_provisioning
from processors.chclient import client_args


def cfg(**clickhouse: object) -> GwtelConfig:
    return GwtelConfig.model_validate({"clickhouse": clickhouse})


def test_default_is_the_open_local_default_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GWTEL_CLICKHOUSE_PASSWORD", raising=False)
    args = client_args(cfg().clickhouse)
    assert (args["username"], args["password"], args["secure"]) == ("default", "", False)
    assert "verify" not in args and "ca_cert" not in args


def test_read_only_clients_use_the_read_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GWTEL_CLICKHOUSE_PASSWORD", "w")
    pw = tmp_path / "r"
    pw.write_text("r-from-file\n", encoding="utf-8")
    c = cfg(user="loader", read_user="grafana", read_password_file=str(pw)).clickhouse
    assert (client_args(c)["username"], client_args(c)["password"]) == ("loader", "w")
    ro = client_args(c, read_only=True)
    assert (ro["username"], ro["password"]) == ("grafana", "r-from-file")
    # Without read_user, read-only work uses the one user.
    assert client_args(cfg(user="loader").clickhouse, read_only=True)["username"] == "loader"


def test_https_with_a_ca(tmp_path: Path) -> None:
    args = client_args(cfg(url="https://ch.example:8443", ca_file="/etc/ca.pem").clickhouse)
    assert (args["secure"], args["port"], args["verify"], args["ca_cert"]) == (True, 8443, True, "/etc/ca.pem")
    assert client_args(cfg(url="https://ch.example", verify=False).clickhouse)["verify"] is False


def test_unreadable_password_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"clickhouse\.password_file"):
        client_args(cfg(password_file=str(tmp_path / "absent")).clickhouse)


def test_grafana_reads_as_the_read_only_user() -> None:
    doc = yaml.safe_load(datasources_provisioning(cfg(user="loader", read_user="grafana")))
    [ch] = [d for d in doc["datasources"] if d["type"] == "grafana-clickhouse-datasource"]
    assert ch["jsonData"]["username"] == "grafana"
    assert ch["secureJsonData"]["password"] == "$GWTEL_CLICKHOUSE_READ_PASSWORD"
