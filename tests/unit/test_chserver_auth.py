"""The embedded server's users: credentials read the ClickHouse ways, refused before any body is read, request
size limit (413), read-only users, and no passwordless listening beyond loopback.

The HTTP server runs here on a stand-in engine that records what reaches it: authentication and size checks
must stop a request before the engine is touched.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gwtel.chserver.auth import Users, credentials, password_sha256_hex
from gwtel.chserver.body import Body
from gwtel.chserver.engine import Result
from gwtel.chserver.errors import ChError, Codes
from gwtel.chserver.executor import Executor
from gwtel.chserver.handler import ChHTTPServer
from gwtel.chserver.metrics import ServerMetrics
from gwtel.chserver.params import RequestParams
from gwtel.chserver.sessions import Sessions
from gwtel.errors import UserError


class FakeEngine:
    version = "26.9.0"
    timezone = "UTC"

    def __init__(self) -> None:
        self.queries: list[str] = []

    def query(self, sql: str, fmt: str, database: str | None, bind: Any = None) -> Result:
        self.queries.append(sql)
        return Result(b"1\n")

    def insert(self, header: str, fmt: str | None, data: Iterator[bytes], database: str | None) -> Result:
        self.queries.append(header)
        for _ in data:
            pass
        return Result(b"")


def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.yaml"
    path.write_text(
        "users:\n"
        f"  writer: {{password_sha256_hex: {hashlib.sha256(b'w-secret').hexdigest()}}}\n"
        f"  grafana: {{password_sha256_hex: {password_sha256_hex('r-secret')}, readonly: 1}}\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ChHTTPServer, FakeEngine]]:
    engine = FakeEngine()
    srv = ChHTTPServer(("127.0.0.1", 0), engine, ServerMetrics(), Users.load(users_file(tmp_path)), 1024)  # type: ignore[arg-type]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv, engine
    srv.shutdown()
    srv.server_close()


def request(
    srv: ChHTTPServer, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/?query=SELECT%201", basic("writer", "w-secret")),
        ("/?query=SELECT%201", {"X-ClickHouse-User": "writer", "X-ClickHouse-Key": "w-secret"}),
        ("/?query=SELECT%201&user=writer&password=w-secret", {}),
    ],
)
def test_each_credential_form_is_accepted(
    server: tuple[ChHTTPServer, FakeEngine], path: str, headers: dict[str, str]
) -> None:
    srv, engine = server
    status, body = request(srv, "GET", path, headers=headers)
    assert (status, body) == (200, b"1\n")
    assert len(engine.queries) == 1


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/?query=SELECT%201", basic("writer", "wrong")),
        ("/?query=SELECT%201", {"X-ClickHouse-User": "writer", "X-ClickHouse-Key": "wrong"}),
        ("/?query=SELECT%201&user=writer&password=wrong", {}),
        ("/?query=SELECT%201&user=nobody&password=w-secret", {}),
        ("/?query=SELECT%201", {}),  # no credentials: `default`, which this file does not define
        ("/?query=SELECT%201&user=writer&password=w-secret", basic("writer", "w-secret")),  # two methods at once
    ],
)
def test_wrong_or_missing_credentials_are_refused_with_516(
    server: tuple[ChHTTPServer, FakeEngine], path: str, headers: dict[str, str]
) -> None:
    srv, engine = server
    status, body = request(srv, "POST", path, body=b"x" * 100, headers=headers)
    assert status == 403
    assert body.startswith(b"Code: 516. DB::Exception: ") and b"(AUTHENTICATION_FAILED)" in body
    assert b"w-secret" not in body and b"wrong" not in body
    assert engine.queries == []


def test_ping_needs_no_credentials(server: tuple[ChHTTPServer, FakeEngine]) -> None:
    srv, _ = server
    assert request(srv, "GET", "/ping") == (200, b"Ok.\n")


def test_body_over_the_limit_gets_413_unread(server: tuple[ChHTTPServer, FakeEngine]) -> None:
    srv, engine = server
    status, body = request(
        srv, "POST", "/?query=INSERT%20INTO%20t%20FORMAT%20TSV", body=b"1\n" * 600, headers=basic("writer", "w-secret")
    )
    assert status == 413 and b"larger than 1024 bytes" in body
    assert engine.queries == []
    status, _ = request(
        srv, "POST", "/?query=INSERT%20INTO%20t%20FORMAT%20TSV", body=b"1\n" * 100, headers=basic("writer", "w-secret")
    )
    assert status == 200 and len(engine.queries) == 1


def test_readonly_user_reads_but_cannot_write(server: tuple[ChHTTPServer, FakeEngine]) -> None:
    srv, engine = server
    ro = basic("grafana", "r-secret")
    assert request(srv, "POST", "/", body=b"SELECT 1", headers=ro) == (200, b"1\n")
    for sql in (b"INSERT INTO t FORMAT TSV\n1\n", b"CREATE TABLE t (x UInt8) ENGINE = Memory", b"DROP TABLE t",
                b"SET max_threads = 1", b"ALTER TABLE t DELETE WHERE 1"):  # fmt: skip
        status, body = request(srv, "POST", "/", body=sql, headers=ro)
        assert status == 403 and b"Code: 164." in body and b"grafana: Cannot execute query in readonly mode" in body
    assert len(engine.queries) == 1
    # The writer may do what the reader may not.
    assert (
        request(srv, "POST", "/", body=b"INSERT INTO t FORMAT TSV\n1\n", headers=basic("writer", "w-secret"))[0] == 200
    )


def test_executor_readonly_applies_to_inserts_in_the_query_string() -> None:
    ex = Executor(FakeEngine(), Sessions())  # type: ignore[arg-type]
    rp = RequestParams(query="INSERT INTO t FORMAT TSV", user="grafana", readonly=True)
    with pytest.raises(ChError) as err:
        ex.execute(rp, Body.of(b"1\n"), None, "POST")
    assert err.value.code == Codes.READONLY


def test_credentials_parsing() -> None:
    assert credentials({}, {}) == ("default", "")
    assert credentials(basic("u", "p:with:colons"), {}) == ("u", "p:with:colons")
    assert credentials({"X-ClickHouse-User": "u"}, {}) == ("u", "")
    with pytest.raises(ChError):
        credentials({"Authorization": "Bearer abc"}, {})
    with pytest.raises(ChError):
        credentials({"Authorization": "Basic !!!"}, {})


def test_passwordless_users_listen_on_loopback_only(tmp_path: Path) -> None:
    Users.open_default().require_passwords("127.0.0.1")
    Users.open_default().require_passwords("::1")
    with pytest.raises(UserError, match="without a password"):
        Users.open_default().require_passwords("0.0.0.0")
    Users.load(users_file(tmp_path)).require_passwords("0.0.0.0")


@pytest.mark.parametrize(
    "text",
    ["users: {}\n", "users:\n  a: {password: x}\n", "users:\n  a: {password_sha256_hex: abc}\n", "[1]\n"],
)
def test_bad_users_files_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "u.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError):
        Users.load(path)
