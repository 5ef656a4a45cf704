"""One HTTP request's statement, run on the engine: query text + body + parameters -> a reply.

Kept apart from the HTTP plumbing so the rules (INSERT data splitting, per-request settings, sessions,
GET is read-only) are in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from gwtel.chserver.body import Body
from gwtel.chserver.encoding import decode_body, is_identity
from gwtel.chserver.engine import Engine, Result
from gwtel.chserver.errors import ChError, Codes
from gwtel.chserver.params import RequestParams, settings_clause
from gwtel.chserver.sessions import Session, Sessions
from gwtel.chserver.sqltext import MODIFYING_HEADS, Kind, classify, lex, parse_set, parse_use, plan_insert, render

log = logging.getLogger("gwtel.chserver")

DEFAULT_FORMAT = "TabSeparated"


@dataclass(frozen=True)
class Reply:
    kind: str  # metrics label: select | insert | command
    body: bytes
    fmt: str | None  # output format, only for statements that return a result set
    result: Result


def _concat(*parts: Iterator[bytes] | bytes) -> Iterator[bytes]:
    for part in parts:
        if isinstance(part, bytes):
            if part:
                yield part
        else:
            yield from part


# An insert whose statement is in the body has it in the first bytes; only these are decoded and lexed, and
# the data after them (often tens of MB) goes to the engine in the pieces it was read in (body.py says why).
_HEAD_BYTES = 64 << 10


def _split_insert(body: Body) -> tuple[str, int, str] | None:
    """(header text, data offset, format) of a body holding `INSERT ... FORMAT f` (or `VALUES`) and its data;
    None for any other statement (`INSERT ... SELECT` too), which runs as text.

    The statement is looked for in the first `_HEAD_BYTES`; only when it does not end there (a long comment
    before it, say) is the whole body decoded.
    """
    size = len(body)
    for limit in (_HEAD_BYTES, size) if size > _HEAD_BYTES else (size,):
        text = body.head(limit).decode("latin-1")  # latin-1: string offsets are byte offsets
        whole = limit == size
        try:
            kind, _ = classify(text)
            if kind != Kind.INSERT:
                return None
            located = plan_insert(text, "")
        except ChError:
            if whole:
                raise
            continue  # e.g. a comment or a literal cut at the prefix's end
        if located.fmt is None:
            return None
        # In a prefix the data's first byte must follow the format name, or where the data starts is not known.
        if whole or located.data_start < len(text):
            return body.head(located.data_start).decode("utf-8"), located.data_start, located.fmt
    raise AssertionError("the whole body is always judged")


class Executor:
    def __init__(self, engine: Engine, sessions: Sessions) -> None:
        self.engine = engine
        self.sessions = sessions

    def execute(self, rp: RequestParams, body: Body, content_encoding: str | None, method: str) -> Reply:
        if rp.compress or rp.decompress:
            raise ChError(
                Codes.NOT_IMPLEMENTED,
                "compress=1 / decompress=1 (ClickHouse native block compression) is not supported by this "
                "server; use HTTP compression instead (Content-Encoding / enable_http_compression=1)",
            )
        ctx: AbstractContextManager[Session | None] = (
            self.sessions.use(rp.session_id, rp.session_timeout_s, rp.session_check) if rp.session_id else nullcontext()
        )
        with ctx as sess:
            return self._run(rp, body, content_encoding, method, sess)

    def _run(self, rp: RequestParams, body: Body, encoding: str | None, method: str, sess: Session | None) -> Reply:
        settings: dict[str, str] = dict(sess.settings) if sess else {}
        settings.update(rp.settings)
        database = rp.database or (sess.database if sess else None)
        clause = settings_clause(settings)

        if rp.query is not None and rp.query.strip():
            kind, head = classify(rp.query)
            if kind == Kind.INSERT:
                self._check_method(method, head, rp)
                plan = plan_insert(rp.query, clause)
                inline = rp.query[plan.data_start :].encode()
                return self._insert(
                    plan.header, plan.fmt, plan.statement, _concat(inline, decode_body(body, encoding)), database, rp
                )
            text = rp.query + b"".join(decode_body(body, encoding)).decode("utf-8", errors="strict")
        else:
            if not is_identity(encoding):
                body = Body.of(b"".join(decode_body(body, encoding)))
            split = _split_insert(body)
            if split is not None:
                header_text, data_start, fmt = split
                self._check_method(method, "INSERT", rp)
                plan = plan_insert(header_text, clause)
                return self._insert(plan.header, fmt, plan.statement, body.tail(data_start), database, rp)
            text = body.whole().decode("utf-8")
            kind, head = classify(text)
        self._check_method(method, head, rp)
        return self._statement(text, kind, head, clause, database, rp, sess)

    @staticmethod
    def _check_method(method: str, head: str, rp: RequestParams) -> None:
        if rp.readonly and (head in MODIFYING_HEADS or head == "SET"):
            raise ChError(Codes.READONLY, f"{rp.user}: Cannot execute query in readonly mode")
        if method == "GET" and head in MODIFYING_HEADS:
            raise ChError(
                Codes.READONLY,
                "Cannot execute query in readonly mode. For queries over HTTP, method GET implies readonly. "
                "You should use method POST for modifying queries",
            )

    def _insert(
        self,
        header: str,
        fmt: str | None,
        statement: str,
        data: Iterator[bytes],
        database: str | None,
        rp: RequestParams,
    ) -> Reply:
        if fmt is None:  # INSERT ... SELECT: a plain statement, no data
            for _ in data:
                pass
            res = self.engine.query(statement, DEFAULT_FORMAT, database, rp.bind)
        else:
            res = self.engine.insert(header, fmt, data, database)
        return Reply("insert", b"", None, res)

    def _statement(
        self,
        text: str,
        kind: Kind,
        head: str,
        clause: str,
        database: str | None,
        rp: RequestParams,
        sess: Session | None,
    ) -> Reply:
        if kind == Kind.SET:
            pairs = parse_set(text)
            # Validate names and values in the engine without keeping them on its connection.
            probe = "SELECT 1 FORMAT Null SETTINGS " + ", ".join(f"{k} = {v}" for k, v in pairs)
            self.engine.query(probe, "Null", database)
            if sess is not None:
                sess.settings.update(pairs)
            return Reply("command", b"", None, Result(b""))
        if kind == Kind.USE:
            db = parse_use(text)
            self.engine.check_database(db)
            if sess is not None:
                sess.database = db
            return Reply("command", b"", None, Result(b""))
        toks = [t.upper for t, _ in zip(lex(text), range(3), strict=False)]
        if head == "CREATE" and "TEMPORARY" in toks[1:3]:
            raise ChError(
                Codes.NOT_IMPLEMENTED,
                "Temporary tables are not supported by this server (its engine connections are shared by all "
                "clients); create a regular table in a per-client database instead",
            )
        if kind == Kind.BARE and clause:
            log.debug("settings not applicable to %s statements are ignored", head)
            clause = ""
        rendered = render(text, kind, rp.default_format or DEFAULT_FORMAT, clause)
        res = self.engine.query(rendered.sql, rendered.fmt or DEFAULT_FORMAT, database, rp.bind)
        return Reply("select" if kind == Kind.RESULT else "command", res.body, rendered.fmt, res)
