"""The chDB engine behind the server: one connection to one data directory, one statement at a time.

A chDB connection runs one statement at a time, and its current database is connection state, so every
call takes the engine lock and first switches to the database the request asked for. Nothing else about a
request (settings, formats) is left on the connection. A lock file in the data directory keeps a second
server process off the same directory.
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


class Engine:
    def __init__(self, data_dir: Path, on_wait: Callable[[float], None] | None = None) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self._on_wait = on_wait
        self._closed = False
        self._dir_lock = DataDirLock(data_dir)
        self._dir_lock.acquire()
        self._lock = threading.Lock()
        try:
            self._conn: Any = _chdb.connect(str(data_dir))  # type: ignore[attr-defined]
            info = self._conn.query("SELECT version(), timezone(), currentDatabase()", "TabSeparated").bytes()
        except RuntimeError as exc:
            self._dir_lock.release()
            raise UserError(f"cannot open the chDB data directory {data_dir}: {exc}") from None
        self.version, self.timezone, self._current_db = info.decode().rstrip("\n").split("\t")
        self.default_db = self._current_db

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """Hold the engine for one statement, recording how long the wait was."""
        t0 = time.monotonic()
        with self._lock:
            if self._on_wait is not None:
                self._on_wait(time.monotonic() - t0)
            if self._closed:
                raise ChError(Codes.UNKNOWN_EXCEPTION, "Server is shutting down")
            yield

    def _use(self, database: str | None) -> None:
        wanted = database or self.default_db
        if wanted != self._current_db:
            try:
                self._conn.query(f"USE {_quote_ident(wanted)}", "TabSeparated")
            except RuntimeError as exc:
                raise from_engine(str(exc)) from None
            self._current_db = wanted

    def query(self, sql: str, fmt: str, database: str | None, bind: Mapping[str, str] | None = None) -> Result:
        with self._turn():
            self._use(database)
            try:
                res = self._conn.query(sql, fmt, params=dict(bind or {}))
            except RuntimeError as exc:
                raise from_engine(str(exc)) from None
            return _result(res)

    def check_database(self, database: str) -> None:
        """Raise UNKNOWN_DATABASE unless `database` exists (for `USE` without running it on the connection)."""
        with self._turn():
            saved = self._current_db
            self._use(database)
            self._use(saved)

    def insert(self, header: str, fmt: str, chunks: Iterable[bytes], database: str | None) -> Result:
        """Stream FORMAT-encoded `chunks` into `header` (INSERT INTO t [(cols)] [SETTINGS ...])."""
        start = time.monotonic()
        with self._turn():
            self._use(database)
            try:
                handle = self._conn.send_insert(header, fmt)
            except RuntimeError as exc:
                raise from_engine(str(exc)) from None
            try:
                for chunk in chunks:
                    if chunk:
                        self._conn.insert_append(handle, chunk)
                res = self._conn.insert_done(handle)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    self._conn.insert_cancel(handle)
                if isinstance(exc, RuntimeError):
                    raise from_engine(str(exc)) from None
                raise
        out = _result(res, b"")
        return Result(b"", out.read_rows, out.read_bytes, out.written_rows, out.written_bytes, time.monotonic() - start)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(Exception):
                self._conn.close()
            self._dir_lock.release()
