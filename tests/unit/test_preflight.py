"""Start-up endpoint checks against ports where nothing listens, and a listener that is not ClickHouse."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from gwtel import preflight
from gwtel.config import ConfigError, GwtelConfig


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _NotClickHouse(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"<html>hello</html>")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _NotClickHouse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_closed_ports_are_named_with_key_file_and_fix() -> None:
    k, c = _closed_port(), _closed_port()
    cfg = GwtelConfig.model_validate(
        {"kafka": {"bootstrap": f"127.0.0.1:{k}"}, "clickhouse": {"url": f"http://127.0.0.1:{c}"}}
    )
    with pytest.raises(ConfigError) as err:
        preflight.check(cfg, "site.yaml", kafka=True, clickhouse=True)
    text = str(err.value)
    assert text.startswith("site.yaml: endpoints unreachable, nothing was sent or stored")
    assert f"kafka.bootstrap: no broker answers at 127.0.0.1:{k}" in text
    assert f"clickhouse.url: ClickHouse does not answer at http://127.0.0.1:{c}" in text
    assert text.count("gwtel up") == 2


def test_only_the_requested_endpoints_are_checked() -> None:
    cfg = GwtelConfig.model_validate({"kafka": {"bootstrap": f"127.0.0.1:{_closed_port()}"}})
    preflight.check(cfg, None, clickhouse=False)  # nothing requested: no error


def test_a_web_server_that_is_not_clickhouse(web: str) -> None:
    assert preflight.clickhouse_problem(web) == f"{web}/ping answered b'<html>hello</html>', not a ClickHouse server"


def test_config_source_names_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GWTEL_CONFIG", raising=False)
    assert preflight.config_source(None).startswith("built-in configuration")
    monkeypatch.setenv("GWTEL_CONFIG", "/etc/gwtel.yaml")
    assert preflight.config_source(None) == "/etc/gwtel.yaml"
    assert preflight.config_source("x.yaml") == "x.yaml"
