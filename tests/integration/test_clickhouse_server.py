"""The embedded ClickHouse server through clickhouse-connect, as the loader and reports use it.

Ground truth is computed in the test (the rows it generated), never read back from the server alone.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from clickhouse_connect.driver.exceptions import DatabaseError

from gwtel.config import GwtelConfig, LocalConfig, LocalPorts
from gwtel.services.clickhouse import REPO_ROOT, ClickHouseService
from tests.ports import free_port

pytestmark = pytest.mark.integration

Row = tuple[int, str, dt.datetime, float, str, int | None]

TABLE_DDL = (
    "CREATE TABLE {name} (id UInt64, partner String, ts DateTime, rtt_ms Float64, "
    "link LowCardinality(String), retrans Nullable(Int32)) "
    "ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 100"
)


def make_rows(n: int, start: int = 0) -> list[Row]:
    base = dt.datetime(2025, 3, 1, 8, 0, 0)
    partners = ("japan", "korea", "belt_and_road", "other", "日本")
    return [
        (
            i,
            partners[i % len(partners)],
            base + dt.timedelta(seconds=i),
            (i % 997) / 8.0,
            f"qd-link-{i % 4}",
            None if i % 3 == 0 else i % 50,
        )
        for i in range(start, start + n)
    ]


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        return exc.code, dict(exc.headers), body


def query_url(svc: ClickHouseService, sql: str, **params: str) -> str:
    return f"{svc.endpoint()}/?{urllib.parse.urlencode({'query': sql, **params})}"


def test_ping_root_and_health(clickhouse_service: ClickHouseService) -> None:
    for path in ("/ping", "/"):
        status, _, body = http_get(clickhouse_service.endpoint() + path)
        assert (status, body) == (200, b"Ok.\n")
    health = clickhouse_service.health()
    assert health.ok, health.detail


def test_compressed_native_insert_reads_back_equal(clickhouse_client: Any) -> None:
    client = clickhouse_client
    assert client.write_compression == "lz4"  # the default: inserts go out as lz4-compressed Native
    client.command(TABLE_DDL.format(name="flows"))
    rows = make_rows(100_000)
    summary = client.insert("flows", rows, column_names=["id", "partner", "ts", "rtt_ms", "link", "retrans"])
    assert summary.written_rows == 100_000
    back = client.query("SELECT id, partner, ts, rtt_ms, link, retrans FROM flows ORDER BY id").result_rows
    assert back == rows
    # An aggregate computed by the engine agrees with the same aggregate computed here.
    got = client.query("SELECT partner, count(), sum(rtt_ms) FROM flows GROUP BY partner ORDER BY partner")
    expected: dict[str, tuple[int, float]] = {}
    for r in rows:
        c, s = expected.get(r[1], (0, 0.0))
        expected[r[1]] = (c + 1, s + r[3])
    assert {p: c for p, c, _ in got.result_rows} == {p: c for p, (c, _) in expected.items()}
    for p, _, s in got.result_rows:
        assert s == pytest.approx(expected[p][1])


@pytest.mark.parametrize("method", ["zstd", "gzip"])
def test_other_insert_compressions(clickhouse_service: ClickHouseService, clickhouse_db: str, method: str) -> None:
    import clickhouse_connect

    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=clickhouse_service.port, database=clickhouse_db, compress=method
    )
    try:
        client.command(TABLE_DDL.format(name="t"))
        rows = make_rows(5_000, start=7)
        client.insert("t", rows)
        assert client.query("SELECT * FROM t ORDER BY id").result_rows == rows
    finally:
        client.close()


def _post(svc: ClickHouseService, body: bytes | Iterator[bytes], headers: dict[str, str]) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=120)
    try:
        conn.request("POST", "/", body=body, headers=headers, encode_chunked=not isinstance(body, bytes))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("chunked", [False, True])
def test_large_insert_with_its_statement_in_the_body(
    clickhouse_service: ClickHouseService, clickhouse_db: str, chunked: bool
) -> None:
    """A body of ~20 MB (read in 8 MiB pieces, the statement found in its first bytes): every row stored once,
    multi-byte text cut by a piece's end included."""
    client = clickhouse_service.client()
    try:
        client.command(f"CREATE TABLE {clickhouse_db}.big (id UInt64, partner String) ENGINE = MergeTree ORDER BY id")
        names = ("japan", "korea", "日本", "한국", "belt_and_road")
        rows = [(i, names[i % 5] * (1 + i % 7)) for i in range(1_000_000)]
        data = "".join(f"{i}\t{p}\n" for i, p in rows).encode()
        head = f"INSERT INTO {clickhouse_db}.big FORMAT TabSeparated\n".encode()
        whole = head + data
        assert len(whole) > 2 * (8 << 20)  # three pieces at least
        body: bytes | Iterator[bytes] = (
            iter([whole[i : i + 3_000_001] for i in range(0, len(whole), 3_000_001)]) if chunked else whole
        )
        status, reply = _post(clickhouse_service, body, {})
        assert status == 200, reply[:500]
        sql = "SELECT count(), sum(id), sum(lengthUTF8(partner)), countIf(partner LIKE '%日本%') FROM {}.big"
        got = client.query(sql.format(clickhouse_db)).result_rows[0]
        assert got == (
            len(rows),
            sum(i for i, _ in rows),
            sum(len(p) for _, p in rows),
            sum("日本" in p for _, p in rows),
        )
    finally:
        client.close()


def test_server_runs_with_its_allocator_settings(clickhouse_service: ClickHouseService) -> None:
    from gwtel.allocator import ALLOCATOR_ENV

    pid = clickhouse_service.pid()
    assert pid is not None
    environ = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    # the server's own settings, except any the environment that started it had set; glibc rewrites
    # GLIBC_TUNABLES in place as it reads it at start, so only that it was there is visible
    expected = {**ALLOCATOR_ENV, **{k: os.environ[k] for k in ALLOCATOR_ENV if k in os.environ}}
    assert environ.get("JE_MALLOC_CONF") == expected["JE_MALLOC_CONF"]
    assert environ.get("GLIBC_TUNABLES", "").split(":")[0] == expected["GLIBC_TUNABLES"].split(":")[0]


def test_dedup_token_retry_stored_once_other_token_twice(clickhouse_client: Any) -> None:
    client = clickhouse_client
    client.command(TABLE_DDL.format(name="agg"))
    batch = make_rows(1_000)
    ids = sum(r[0] for r in batch)

    def totals() -> tuple[int, int]:
        count, total = client.query("SELECT count(), sum(id) FROM agg").result_rows[0]
        return int(count), int(total)

    client.insert("agg", batch, settings={"insert_deduplication_token": "gwtel.aggregates.v1:0:0-999"})
    client.insert("agg", batch, settings={"insert_deduplication_token": "gwtel.aggregates.v1:0:0-999"})
    assert totals() == (1_000, ids)
    client.insert("agg", batch, settings={"insert_deduplication_token": "gwtel.aggregates.v1:1:0-999"})
    assert totals() == (2_000, 2 * ids)
    # Without a token, a block identical to one already stored is dropped by its hash (documented behaviour
    # of non_replicated_deduplication_window > 0), whichever insert first stored it.
    client.insert("agg", batch)
    client.insert("agg", batch)
    assert totals() == (3_000, 3 * ids)


def test_two_clients_in_parallel(clickhouse_service: ClickHouseService, clickhouse_db: str) -> None:
    setup = clickhouse_service.client(clickhouse_db)
    setup.command(TABLE_DDL.format(name="par"))
    setup.close()
    errors: list[BaseException] = []
    batches = 8
    size = 2_000

    def worker(k: int) -> None:
        client = clickhouse_service.client(clickhouse_db)
        try:
            for b in range(batches):
                start = (k * batches + b) * size
                client.insert("par", make_rows(size, start=start))
                mine = client.query(
                    "SELECT count() FROM par WHERE id >= {lo:UInt64} AND id < {hi:UInt64}",
                    parameters={"lo": k * batches * size, "hi": (k + 1) * batches * size},
                ).result_rows[0][0]
                assert mine == (b + 1) * size
        except BaseException as exc:  # collected and re-raised by the main thread
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    check = clickhouse_service.client(clickhouse_db)
    count, total = check.query("SELECT count(), sum(id) FROM par").result_rows[0]
    check.close()
    n = 2 * batches * size
    assert (count, total) == (n, n * (n - 1) // 2)


def test_request_setting_does_not_leak(clickhouse_service: ClickHouseService, clickhouse_client: Any) -> None:
    client = clickhouse_client
    sql = "SELECT getSetting('max_block_size')"
    default = client.query(sql).result_rows[0][0]
    assert default != 1234
    assert client.query(sql, settings={"max_block_size": 1234}).result_rows[0][0] == 1234
    assert client.query(sql).result_rows[0][0] == default
    # The same through plain HTTP, from another connection: a URL setting applies to its request only.
    _, _, with_setting = http_get(query_url(clickhouse_service, sql, max_block_size="777"))
    _, _, without = http_get(query_url(clickhouse_service, sql))
    assert (with_setting, without) == (b"777\n", f"{default}\n".encode())
    # SET outside a session has no lasting effect, inside one it lasts for that session only.
    client.command("SET max_block_size = 4321")
    assert client.query(sql).result_rows[0][0] == 4321
    other = clickhouse_service.client()
    try:
        assert other.query(sql).result_rows[0][0] == default
    finally:
        other.close()
    _, _, sessionless = http_get(query_url(clickhouse_service, sql))
    assert sessionless == f"{default}\n".encode()


def test_database_of_one_request_does_not_leak(clickhouse_service: ClickHouseService, clickhouse_db: str) -> None:
    _, _, first = http_get(query_url(clickhouse_service, "SELECT currentDatabase()", database=clickhouse_db))
    _, _, second = http_get(query_url(clickhouse_service, "SELECT currentDatabase()"))
    assert (first, second) == (f"{clickhouse_db}\n".encode(), b"default\n")


def test_bad_query_raises_clickhouse_error(clickhouse_client: Any, clickhouse_service: ClickHouseService) -> None:
    with pytest.raises(DatabaseError) as syntax:
        clickhouse_client.query("SELEC 1")
    assert "Code: 62. DB::Exception: Syntax error" in str(syntax.value)
    assert syntax.value.code == 62
    with pytest.raises(DatabaseError) as missing:
        clickhouse_client.command("SELECT * FROM no_such_table")
    assert "Code: 60." in str(missing.value) and "UNKNOWN_TABLE" in str(missing.value)
    status, headers, body = http_get(query_url(clickhouse_service, "SELECT * FROM no_such_table"))
    assert status == 404
    assert headers["X-ClickHouse-Exception-Code"] == "60"
    assert body.startswith(b"Code: 60. DB::Exception: ")
    # The server is still there for the next request.
    assert clickhouse_client.command("SELECT 1") == 1


def test_response_compression_and_headers(clickhouse_service: ClickHouseService) -> None:
    sql = "SELECT number FROM numbers(100000) FORMAT TabSeparated"
    status, headers, body = http_get(
        query_url(clickhouse_service, sql, enable_http_compression="1", query_id="qid-" + uuid.uuid4().hex),
        headers={"Accept-Encoding": "zstd"},
    )
    assert status == 200
    assert headers["Content-Encoding"] == "zstd"
    assert headers["X-ClickHouse-Format"] == "TabSeparated"
    assert headers["X-ClickHouse-Query-Id"].startswith("qid-")
    assert headers["X-ClickHouse-Timezone"]
    plain = zstandard.ZstdDecompressor().stream_reader(body).read()
    assert plain == "".join(f"{i}\n" for i in range(100_000)).encode()


def test_query_df_and_arrow(clickhouse_client: Any) -> None:
    client = clickhouse_client
    client.command(TABLE_DDL.format(name="f"))
    rows = make_rows(300)
    client.insert("f", rows)
    df = client.query_df("SELECT id, partner FROM f ORDER BY id")
    assert list(df["id"]) == [r[0] for r in rows] and list(df["partner"]) == [r[1] for r in rows]
    table = client.query_arrow("SELECT id, rtt_ms FROM f ORDER BY id")
    assert table.column("rtt_ms").to_pylist() == [r[3] for r in rows]


def test_metrics_count_requests_and_rows(clickhouse_service: ClickHouseService, clickhouse_client: Any) -> None:
    def scrape() -> dict[str, float]:
        with urllib.request.urlopen(clickhouse_service.metrics_url(), timeout=10) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    clickhouse_client.command(TABLE_DDL.format(name="m"))
    before = scrape()
    clickhouse_client.insert("m", make_rows(1_234))
    after = scrape()
    assert after["gwtel_clickhouse_inserted_rows_total"] - before["gwtel_clickhouse_inserted_rows_total"] == 1_234
    key = 'gwtel_clickhouse_http_requests_total{kind="insert",status="200"}'
    assert after[key] - before.get(key, 0.0) == 1
    assert 'gwtel_clickhouse_http_request_duration_seconds_count{kind="insert"}' in after


@pytest.fixture
def private_service(tmp_path: Path) -> Iterator[ClickHouseService]:
    """A server of its own (own home and ports), for restarts without disturbing the shared one."""
    cfg = GwtelConfig(local=LocalConfig(ports=LocalPorts(clickhouse=free_port(), clickhouse_metrics=free_port())))
    svc = ClickHouseService(cfg, tmp_path / "home")
    try:
        yield svc
    finally:
        svc.stop()


def test_data_survives_restart_and_dir_is_locked(private_service: ClickHouseService) -> None:
    svc = private_service
    svc.start()
    client = svc.client()
    client.command("CREATE DATABASE keep")
    client.command(TABLE_DDL.format(name="keep.t"))
    rows = make_rows(2_500)
    client.insert("keep.t", rows)
    client.close()

    # A second server on the same data directory refuses to start, and says why.
    proc = subprocess.run(
        [sys.executable, "-m", "gwtel.chserver", "--data", str(svc.data_dir), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )
    assert proc.returncode == 2
    assert "in use by another ClickHouse server process" in proc.stderr

    pid = svc.pid()
    svc.stop()  # SIGTERM: a clean shutdown
    assert pid is not None and not svc.running()
    assert "stopped" in svc.log_path.read_text()
    svc.start()
    client = svc.client()
    try:
        assert client.query("SELECT * FROM keep.t ORDER BY id").result_rows == rows
    finally:
        client.close()
