"""The ClickHouse HTTP interface: `/ping`, `/` and queries by GET `?query=` or POST body.

Responses carry the headers clickhouse-connect reads (X-ClickHouse-Query-Id, -Format, -Timezone, -Summary,
-Server-Display-Name, -Exception-Code). Results are produced whole before the response starts
(`wait_end_of_query` is therefore always in effect), so an error is never sent after a 200 status line.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import socket
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gwtel.chserver.auth import Users, credentials
from gwtel.chserver.body import PIECE, Body
from gwtel.chserver.encoding import choose_encoding, encode
from gwtel.chserver.engine import Engine, Result
from gwtel.chserver.errors import ChError, Codes
from gwtel.chserver.executor import Executor, Reply
from gwtel.chserver.metrics import ServerMetrics
from gwtel.chserver.params import parse_params
from gwtel.chserver.sessions import Sessions

log = logging.getLogger("gwtel.chserver")

# The default limit of a request body; larger ones are refused with 413 before they are read.
MAX_BODY_BYTES = 4 << 30
# Responses this small are not worth compressing.
_MIN_COMPRESS = 256

_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": "text/csv; charset=UTF-8; header=present",
}


class ChHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        addr: tuple[str, int],
        engine: Engine,
        metrics: ServerMetrics,
        users: Users | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        super().__init__(addr, ChRequestHandler)
        self.users = users if users is not None else Users.open_default()
        self.max_body_bytes = max_body_bytes
        self.engine = engine
        self.metrics = metrics
        self.sessions = Sessions()
        self.executor = Executor(engine, self.sessions)
        self.display_name = socket.gethostname()
        metrics.track_sessions(lambda: len(self.sessions))


class _BodyTooLargeError(Exception):
    pass


class ChRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ClickHouse-gwtel"
    timeout = 600  # idle keep-alive connections are dropped after this
    server: ChHTTPServer
    # The request being served was counted in the metrics (`_observe`).
    _observed = False

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- body ---------------------------------------------------------------------------------------
    def _read_body(self) -> Body:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        body = Body()
        if "chunked" in te:
            total = 0
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("client closed during a chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return body
                total += size
                if total > self.server.max_body_bytes:
                    raise _BodyTooLargeError
                body.pieces.append(self.rfile.read(size))
                self.rfile.readline(3)
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.server.max_body_bytes:
            raise _BodyTooLargeError
        while length > 0:
            piece = self.rfile.read(min(length, PIECE))
            if not piece:
                raise ConnectionError("client closed during the body")
            body.pieces.append(piece)
            length -= len(piece)
        return body

    def _form_fields(self, body: bytes) -> dict[str, str]:
        """Fields of a multipart/form-data body (clickhouse-connect sends long bind parameters this way)."""
        ctype = self.headers.get("Content-Type", "")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + body
        )
        fields: dict[str, str] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                raise ChError(Codes.NOT_IMPLEMENTED, "External data (file parts) is not supported by this server")
            if isinstance(name, str):
                payload = part.get_payload(decode=True)
                fields[name] = payload.decode("utf-8") if isinstance(payload, bytes) else ""
        return fields

    # -- responses ----------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, headers: dict[str, str], head_only: bool = False) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("X-ClickHouse-Server-Display-Name", self.server.display_name)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close" if self.close_connection else "Keep-Alive")
        self.end_headers()
        if not head_only and body:
            self.wfile.write(body)

    def _text(self, status: int, text: str, head_only: bool = False) -> None:
        self._send(status, text.encode(), {"Content-Type": "text/plain; charset=UTF-8"}, head_only)

    @staticmethod
    def _summary(res: Result, result_bytes: int) -> str:
        return json.dumps(
            {
                "read_rows": str(res.read_rows),
                "read_bytes": str(res.read_bytes),
                "written_rows": str(res.written_rows),
                "written_bytes": str(res.written_bytes),
                "total_rows_to_read": str(res.read_rows),
                "result_bytes": str(result_bytes),
                "elapsed_ns": str(int(res.elapsed_s * 1e9)),
            },
            separators=(",", ":"),
        )

    # -- dispatch -----------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/ping"):
            self._text(200, "Ok.\n", head_only=True)
        else:
            self._text(404, f"There is no handle {path}\n", head_only=True)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        start = time.monotonic()
        metrics = self.server.metrics
        url = urlsplit(self.path)
        raw = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = raw.get("query_id") or str(uuid.uuid4())
        kind = "invalid"
        self._observed = False
        try:
            is_ping = url.path == "/ping" or (url.path == "/" and method == "GET" and "query" not in raw)
            user = None
            if not is_ping and url.path in ("/", ""):
                # Before the body is read: an unknown client's upload is never taken in.
                try:
                    user = self.server.users.authenticate(*credentials(self.headers, raw))
                except ChError:
                    self.close_connection = True
                    raise
            try:
                body = self._read_body()
            except _BodyTooLargeError:
                self.close_connection = True
                limit = self.server.max_body_bytes
                raise ChError(Codes.TOO_LARGE_REQUEST, f"Request body is larger than {limit} bytes") from None
            except ValueError:
                self.close_connection = True
                raise ChError(Codes.BAD_ARGUMENTS, "Malformed chunked request body") from None
            if is_ping:
                kind = "ping"
                self._observe(kind, 200, start)
                self._text(200, "Ok.\n")
                return
            if url.path not in ("/", ""):
                self._observe(kind, 404, start)
                self._text(404, f"There is no handle {url.path}\n\nUse / or /ping for health checks.\n")
                return
            ctype = self.headers.get("Content-Type", "")
            if method == "POST" and ctype.startswith("multipart/form-data"):
                raw.update(self._form_fields(body.whole()))
                body = Body()
            rp = parse_params(raw)
            if user is not None:
                rp.user, rp.readonly = user.name, user.readonly
            reply = self.server.executor.execute(rp, body, self.headers.get("Content-Encoding"), method)
            kind = reply.kind
            if reply.kind == "insert":
                metrics.inserted_rows.inc(reply.result.written_rows)
                metrics.inserted_bytes.inc(len(body))
            self._reply(reply, rp.http_compression, query_id, start)
        except ChError as exc:
            self._error(exc, query_id, kind, start)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            if not self._observed:  # the client left before its response was ready
                metrics.requests.labels(kind=kind, status="499").inc()
        except Exception as exc:
            log.error("internal error serving %s: %s", self.path[:200], traceback.format_exc())
            self._error(ChError(Codes.UNKNOWN_EXCEPTION, f"Internal server error: {exc}"), query_id, kind, start)

    def _reply(self, reply: Reply, http_compression: bool, query_id: str, start: float) -> None:
        headers = {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.server.engine.timezone,
            "X-ClickHouse-Summary": self._summary(reply.result, len(reply.body)),
            "Content-Type": _CONTENT_TYPES.get(reply.fmt or "", "application/octet-stream")
            if reply.fmt
            else "text/plain; charset=UTF-8",
        }
        if reply.fmt:
            headers["X-ClickHouse-Format"] = reply.fmt
        body = reply.body
        enc = choose_encoding(self.headers.get("Accept-Encoding")) if http_compression else None
        if enc and len(body) >= _MIN_COMPRESS:
            body = encode(body, enc)
            headers["Content-Encoding"] = enc
        self._observe(reply.kind, 200, start)
        self._send(200, body, headers)

    def _error(self, exc: ChError, query_id: str, kind: str, start: float) -> None:
        status = exc.http_status()
        self.server.metrics.errors.labels(code=str(exc.code)).inc()
        log.info("query %s failed: Code %s %s", query_id, exc.code, exc.message[:300])
        if not self._observed:  # not when a reply already counted failed to go out
            self._observe(kind, status, start)
        try:
            self._send(
                status,
                exc.body(self.server.engine.version).encode(),
                {
                    "Content-Type": "text/plain; charset=UTF-8",
                    "X-ClickHouse-Query-Id": query_id,
                    "X-ClickHouse-Exception-Code": str(exc.code),
                    "X-ClickHouse-Timezone": self.server.engine.timezone,
                },
            )
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _observe(self, kind: str, status: int, start: float) -> None:
        """Count a request once its response is ready, before it is sent: a client that reads the metrics right
        after its response sees its request counted."""
        self._observed = True
        m = self.server.metrics
        m.requests.labels(kind=kind, status=str(status)).inc()
        m.duration.labels(kind=kind).observe(time.monotonic() - start)
