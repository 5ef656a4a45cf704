"""The chDB engine behind the server: a pool of connections to one data directory, one statement each.

chDB runs statements on different connections of one process in parallel (the call releases the GIL; measured
in bench/chdb_threads.py), while one connection runs one statement at a time. So the engine keeps a pool of
connections and each statement takes one for its duration. A connection's current database is its own state,
so a statement first switches its connection to the database the request asked for; nothing else about a
request (settings, formats) is left on a connection. Statements with bound parameters run one at a time: the
chDB bindings do not promise that parameter state is kept apart between connections running at once. A lock
file in the data directory keeps a second server process off the same directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from chdb import _chdb

from gwtel.chserver.errors import ChError, Codes, from_engine
from gwtel.errors import UserError

LOCK_NAME = "gwtel-chserver.lock"


@dataclass(frozen=True)
class Result:
    body: bytes
    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    elapsed_s: float = 0.0


def _result(res: Any, body: bytes | None = None) -> Result:
    return Result(
        body=bytes(res.bytes() or b"") if body is None else body,
        read_rows=int(res.rows_read()),
        read_bytes=int(res.bytes_read()),
        written_rows=int(res.rows_written()),
        written_bytes=int(res.bytes_written()),
        elapsed_s=float(res.elapsed()),
    )


def _quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class DataDirLock:
    """An exclusive flock on `<data>/gwtel-chserver.lock`, held for the life of the process."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fh: TextIO | None = None

    def acquire(self) -> None:
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the process lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            owner = fh.read().strip() or "unknown"
            fh.close()
            raise UserError(
                f"data directory {self.path.parent} is in use by another ClickHouse server process "
                f"(pid {owner}); stop it first or choose another --data directory"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


# Statements run at once by default: two cores' worth of parsing plus room for a select beside the inserts.
DEFAULT_CONNECTIONS = 4


class _Conn:
    """One chDB connection and the database it is switched to."""

    def __init__(self, raw: Any, database: str) -> None:
        self.raw = raw
        self.database = database

    def use(self, database: str) -> None:
        if database != self.database:
            try:
                self.raw.query(f"USE {_quote_ident(database)}", "TabSeparated")
            except RuntimeError as exc:
                raise from_engine(str(exc)) from None
            self.database = database


class Engine:
    def __init__(
        self,
        data_dir: Path,
        on_wait: Callable[[float], None] | None = None,
        connections: int = DEFAULT_CONNECTIONS,
    ) -> None:
        if connections < 1:
            raise UserError(f"the engine needs at least one connection, not {connections}")
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self._on_wait = on_wait
        self._closed = False
        self._dir_lock = DataDirLock(data_dir)
        self._dir_lock.acquire()
        self._free: list[_Conn] = []
        self._all: list[_Conn] = []
        self._cond = threading.Condition()
        self._bind_lock = threading.Lock()
        try:
            for _ in range(connections):
                raw = _chdb.connect(str(data_dir))  # type: ignore[attr-defined]
                self._all.append(_Conn(raw, ""))
            info = self._all[0].raw.query("SELECT version(), timezone(), currentDatabase()", "TabSeparated").bytes()
        except RuntimeError as exc:
            self._close_all()
            self._dir_lock.release()
            raise UserError(f"cannot open the chDB data directory {data_dir}: {exc}") from None
        self.version, self.timezone, self.default_db = info.decode().rstrip("\n").split("\t")
        for conn in self._all:
            conn.database = self.default_db
        self._free = list(self._all)
        self.connections = connections

    @contextlib.contextmanager
    def _turn(self, database: str | None) -> Iterator[_Conn]:
        """A free connection switched to `database`, held for one statement; the wait is recorded."""
        t0 = time.monotonic()
        with self._cond:
            while not self._free and not self._closed:
                self._cond.wait()
            if self._closed:
                raise ChError(Codes.UNKNOWN_EXCEPTION, "Server is shutting down")
            conn = self._free.pop()
        if self._on_wait is not None:
            self._on_wait(time.monotonic() - t0)
        try:
            conn.use(database or self.default_db)
            yield conn
        finally:
            with self._cond:
                self._free.append(conn)
                self._cond.notify_all()

    def query(self, sql: str, fmt: str, database: str | None, bind: Mapping[str, str] | None = None) -> Result:
        # The parameter lock is taken before a connection, so statements waiting for it hold none.
        with self._bind_lock if bind else contextlib.nullcontext(), self._turn(database) as conn:
            try:
                res = conn.raw.query(sql, fmt, params=dict(bind or {}))
            except RuntimeError as exc:
                raise from_engine(str(exc)) from None
            return _result(res)

    def check_database(self, database: str) -> None:
        """Raise UNKNOWN_DATABASE unless `database` exists (for `USE` without running it on the connection)."""
        with self._turn(database):
            pass

    def insert(self, header: str, fmt: str, chunks: Iterable[bytes], database: str | None) -> Result:
        """Stream FORMAT-encoded `chunks` into `header` (INSERT INTO t [(cols)] [SETTINGS ...])."""
        start = time.monotonic()
        with self._turn(database) as conn:
            try:
                handle = conn.raw.send_insert(header, fmt)
            except RuntimeError as exc:
                raise from_engine(str(exc)) from None
            try:
                for chunk in chunks:
                    if chunk:
                        conn.raw.insert_append(handle, chunk)
                res = conn.raw.insert_done(handle)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    conn.raw.insert_cancel(handle)
                if isinstance(exc, RuntimeError):
                    raise from_engine(str(exc)) from None
                raise
        out = _result(res, b"")
        return Result(b"", out.read_rows, out.read_bytes, out.written_rows, out.written_bytes, time.monotonic() - start)

    def _close_all(self) -> None:
        for conn in self._all:
            with contextlib.suppress(Exception):
                conn.raw.close()
        self._all = []

    def close(self) -> None:
        """Refuse new statements, wait for those running, then close every connection and the directory lock."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            while len(self._free) < len(self._all):
                self._cond.wait()
            self._free = []
        self._close_all()
        self._dir_lock.release()
