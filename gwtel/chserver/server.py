"""Run the server: open the engine (taking the data-directory lock), serve HTTP and metrics, stop on SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from gwtel.chserver.auth import Users
from gwtel.chserver.engine import DEFAULT_CONNECTIONS, Engine
from gwtel.chserver.handler import MAX_BODY_BYTES, ChHTTPServer
from gwtel.chserver.metrics import ServerMetrics
from gwtel.errors import UserError
from gwtel.metrics_http import serve_metrics

log = logging.getLogger("gwtel.chserver")


def serve(
    data_dir: Path,
    host: str,
    port: int,
    metrics_port: int | None = None,
    announce_home: Path | None = None,
    users_file: Path | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    connections: int = DEFAULT_CONNECTIONS,
) -> None:
    """Serve until SIGTERM or SIGINT; the engine is closed (data flushed, lock released) before returning.

    With `metrics_port`, Prometheus metrics are served there and, with `announce_home`, announced to the local
    Prometheus through a target file under that home (see gwtel.metrics_http). `users_file`: the users and
    their password hashes (gwtel.chserver.auth); without it, `default` without a password, loopback only.
    `connections`: statements the engine runs at once (gwtel.chserver.engine).
    """
    users = Users.load(users_file) if users_file is not None else Users.open_default()
    users.require_passwords(host)
    metrics = ServerMetrics()
    engine = Engine(data_dir.resolve(), on_wait=metrics.engine_wait.observe, connections=connections)
    try:
        try:
            server = ChHTTPServer((host, port), engine, metrics, users, max_body_bytes)
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}; is another server using it?") from None
        endpoint = None
        if metrics_port:
            try:
                endpoint = serve_metrics(
                    "clickhouse", f"{host}:{port}", metrics_port, announce_home, metrics.registry, host=host
                )
            except UserError:
                server.server_close()
                raise

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s: shutting down", signal.Signals(signum).name)
            # shutdown() waits for serve_forever to return, so it cannot run on the serving thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        log.info(
            "ClickHouse HTTP interface on http://%s:%d (engine %s, %d connections, data %s, metrics port %s)",
            host,
            port,
            engine.version,
            engine.connections,
            engine.data_dir,
            metrics_port or "off",
        )
        try:
            server.serve_forever(poll_interval=0.25)
        finally:
            server.server_close()
            if endpoint is not None:
                endpoint.close()
    finally:
        engine.close()
        log.info("stopped")
