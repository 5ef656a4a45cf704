"""The embedded server's engine: a pool of chDB connections, one statement each, run at once.

Concurrency is shown without timing: an insert whose body is held open keeps its connection busy, and what
another thread can (or cannot) run meanwhile is the outcome. One process holds one chDB data path at a time,
so each test opens and closes its own engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gwtel.chserver.engine import Engine
from gwtel.chserver.errors import ChError, Codes
from gwtel.errors import UserError

TS = "TabSeparated"


@pytest.fixture
def engine2(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(tmp_path / "data", connections=2)
    try:
        eng.query("CREATE DATABASE a", TS, None)
        eng.query("CREATE DATABASE b", TS, None)
        for db in ("a", "b"):
            eng.query(f"CREATE TABLE {db}.t (x UInt64) ENGINE = MergeTree ORDER BY x", TS, None)
        yield eng
    finally:
        eng.close()


class HeldBody:
    """An insert body whose second chunk waits until released: its statement holds a connection meanwhile."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        yield b"1\n2\n"
        self.started.set()
        assert self.release.wait(30)
        yield b"3\n"


def hold_insert(eng: Engine, body: HeldBody, table: str = "a.t") -> threading.Thread:
    t = threading.Thread(target=eng.insert, args=(f"INSERT INTO {table}", "TSV", body, None))
    t.start()
    assert body.started.wait(30)
    return t


def count(eng: Engine, sql: str, database: str | None = None) -> int:
    return int(eng.query(sql, TS, database).body)


def run_threads(work: Callable[[int], None], n: int) -> None:
    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)


def test_a_statement_runs_while_another_is_open(engine2: Engine) -> None:
    body = HeldBody()
    t = hold_insert(engine2, body)
    # The insert has its connection; the other one answers, with the insert not yet stored.
    assert count(engine2, "SELECT count() FROM a.t") == 0
    engine2.insert("INSERT INTO b.t", "TSV", [b"7\n"], None)
    body.release.set()
    t.join(30)
    assert count(engine2, "SELECT sum(x) FROM a.t") == 6
    assert count(engine2, "SELECT sum(x) FROM b.t") == 7


def test_a_statement_waits_while_every_connection_is_busy(tmp_path: Path) -> None:
    waits: list[float] = []
    eng = Engine(tmp_path / "one", on_wait=waits.append, connections=1)
    try:
        eng.query("CREATE TABLE t (x UInt64) ENGINE = MergeTree ORDER BY x", TS, None)
        body = HeldBody()
        t = hold_insert(eng, body, "t")
        done = threading.Event()
        answer: list[int] = []

        def select() -> None:
            answer.append(count(eng, "SELECT count() FROM t"))
            done.set()

        other = threading.Thread(target=select)
        other.start()
        assert not done.wait(0.5)  # no free connection
        body.release.set()
        t.join(30)
        other.join(30)
        assert answer == [3]  # it ran after the insert
        assert max(waits) >= 0.4
    finally:
        eng.close()


def test_each_connection_keeps_its_own_database(engine2: Engine) -> None:
    body = HeldBody()
    t = hold_insert(engine2, body)
    # Both connections are switched in turn; unqualified names resolve in the database each request named.
    for _ in range(3):
        assert engine2.query("SELECT currentDatabase()", TS, "b").body == b"b\n"
        assert engine2.query("SELECT currentDatabase()", TS, None).body == b"default\n"
    body.release.set()
    t.join(30)
    for db in ("a", "b", None, "a"):
        assert engine2.query("SELECT currentDatabase()", TS, db).body == f"{db or 'default'}\n".encode()
    with pytest.raises(ChError) as err:
        engine2.query("SELECT 1", TS, "missing")
    assert err.value.code == Codes.UNKNOWN_DATABASE
    assert engine2.query("SELECT currentDatabase()", TS, None).body == b"default\n"


def test_concurrent_statements_with_parameters_keep_their_own(engine2: Engine) -> None:
    wrong: list[tuple[str, bytes]] = []

    def work(k: int) -> None:
        for i in range(40):
            v = f"{k}-{i}"
            got = engine2.query("SELECT {v:String}", TS, None, {"v": v}).body
            if got != f"{v}\n".encode():
                wrong.append((v, got))

    run_threads(work, 4)
    assert wrong == []


def test_concurrent_inserts_with_tokens_store_each_batch_once(engine2: Engine) -> None:
    engine2.query(
        "CREATE TABLE a.src (k UInt64, v UInt64) ENGINE = MergeTree ORDER BY k "
        "SETTINGS non_replicated_deduplication_window = 1000",
        TS,
        None,
    )
    engine2.query(
        "CREATE TABLE a.sums (k UInt64, v UInt64) ENGINE = SummingMergeTree ORDER BY k "
        "SETTINGS non_replicated_deduplication_window = 1000",
        TS,
        None,
    )
    engine2.query("CREATE MATERIALIZED VIEW a.mv TO a.sums AS SELECT k % 3 AS k, v FROM a.src", TS, None)
    header = (
        "INSERT INTO a.src SETTINGS insert_deduplicate = 1, deduplicate_blocks_in_dependent_materialized_views = 1, "
        "insert_deduplication_token = 'batch-{b}'"
    )
    errors: list[BaseException] = []

    def work(k: int) -> None:
        # Every batch is sent by two threads (a retry racing its first attempt) under the same token.
        try:
            for b in range(k % 2, 10, 2) if k < 2 else range(10):
                rows = b"".join(f"{b * 100 + i}\t{b}\n".encode() for i in range(100))
                engine2.insert(header.format(b=b), "TSV", [rows], None)
        except BaseException as exc:
            errors.append(exc)

    run_threads(work, 3)
    assert errors == []
    assert count(engine2, "SELECT count() FROM a.src") == 1000
    assert count(engine2, "SELECT uniqExact(k) FROM a.src") == 1000
    assert count(engine2, "SELECT sum(v) FROM a.sums") == 100 * sum(range(10))


def test_close_waits_for_running_statements_then_refuses(tmp_path: Path) -> None:
    eng = Engine(tmp_path / "c", connections=2)
    eng.query("CREATE TABLE t (x UInt64) ENGINE = MergeTree ORDER BY x", TS, None)
    body = HeldBody()
    t = hold_insert(eng, body, "t")
    closer = threading.Thread(target=eng.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive()  # the open insert is finished first
    body.release.set()
    t.join(30)
    closer.join(30)
    assert not closer.is_alive()
    with pytest.raises(ChError):
        eng.query("SELECT 1", TS, None)
    # The directory is free again and the insert was stored.
    again = Engine(tmp_path / "c", connections=1)
    try:
        assert count(again, "SELECT sum(x) FROM t") == 6
    finally:
        again.close()


def test_at_least_one_connection(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        Engine(tmp_path / "z", connections=0)
