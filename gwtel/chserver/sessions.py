"""HTTP sessions (`session_id`): what `SET` and `USE` leave behind for the next request of the same session.

The engine's connections are shared by every client, so a session is emulated here: its settings are merged into
each of its requests' SETTINGS clauses and its database is switched to per request. Temporary tables are not
session-scoped (they would be shared by every client) and are refused. As on a server, one session runs one
query at a time, and an idle session expires after its `session_timeout` (default 60 s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from gwtel.chserver.errors import ChError, Codes


@dataclass
class Session:
    id: str
    timeout_s: float
    database: str | None = None
    settings: dict[str, str] = field(default_factory=dict)  # name -> SQL literal text
    last_used: float = field(default_factory=time.monotonic)
    busy: bool = False


class Sessions:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def _expire(self, now: float) -> None:
        for sid in [s.id for s in self._sessions.values() if not s.busy and now - s.last_used > s.timeout_s]:
            del self._sessions[sid]

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    @contextmanager
    def use(self, session_id: str, timeout_s: float, check: bool) -> Iterator[Session]:
        """The session, held exclusively for one request; created unless `check` asks that it exist."""
        if len(session_id) > 256:
            raise ChError(Codes.BAD_ARGUMENTS, "Session id is too long (at most 256 characters)")
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            sess = self._sessions.get(session_id)
            if sess is None:
                if check:
                    raise ChError(Codes.SESSION_NOT_FOUND, f"Session {session_id} not found")
                sess = Session(session_id, timeout_s)
                self._sessions[session_id] = sess
            if sess.busy:
                raise ChError(
                    Codes.SESSION_IS_LOCKED,
                    f"Session {session_id} is locked by a concurrent client",
                )
            sess.busy = True
            sess.timeout_s = timeout_s
        try:
            yield sess
        finally:
            with self._lock:
                sess.busy = False
                sess.last_used = time.monotonic()
