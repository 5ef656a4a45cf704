"""The metrics endpoint of a long-running gwtel process, and its registration with the local Prometheus.

Every process calls `serve_metrics` once at start. It serves the prometheus-client registry over HTTP and
announces the endpoint by writing a file_sd target file into `<home>/prometheus/targets/`, which the local
Prometheus watches (see `gwtel.services.prometheus`). Announcing is only a file write: it needs no running
Prometheus and never stops the process; a Prometheus started later reads the files that are already there.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, REGISTRY, start_http_server
from prometheus_client.core import CollectorRegistry
from prometheus_client.registry import Collector

from gwtel.errors import UserError

log = logging.getLogger(__name__)

TARGETS_SUBDIR = Path("prometheus") / "targets"
DEFAULT_HOST = "127.0.0.1"
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9_.-]")


def targets_dir(home: Path) -> Path:
    return home / TARGETS_SUBDIR


def target_path(home: Path, job: str, instance: str) -> Path:
    """`<home>/prometheus/targets/<job>-<instance>.json`, with characters unsafe in a file name replaced."""
    stem = _UNSAFE_FILENAME.sub("_", f"{job}-{instance}")
    return targets_dir(home) / f"{stem}.json"


def target_groups(address: str, job: str, instance: str, component: str) -> list[dict[str, Any]]:
    """The file_sd document: a list of target groups, each with `targets` (host:port) and `labels`."""
    return [
        {
            "targets": [address],
            "labels": {"job": job, "instance": instance, "gwtel_component": component},
        }
    ]


def write_target_file(path: Path, groups: list[dict[str, Any]]) -> None:
    """Write atomically: Prometheus may read the folder at any moment and must never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name does not end in .json, so the `*.json` discovery glob never matches it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(groups, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def process_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry with `collectors` plus the process-wide ones (process_*, python_gc_*, python_info).

    A fresh registry per run, instead of registering into the global one, lets one process (a test, `gwtel run`)
    serve several agents one after the other without duplicate registrations.
    """
    registry = CollectorRegistry(auto_describe=False)
    for c in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, *collectors):
        registry.register(c)
    return registry


@dataclass
class MetricsEndpoint:
    """A running metrics HTTP server; `close()` withdraws its target file, then stops the server."""

    job: str
    instance: str
    host: str
    port: int
    target_file: Path | None
    _server: WSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _closed: bool = field(default=False, repr=False)

    @property
    def _local_host(self) -> str:
        """The host to reach the server at (a wildcard bind is reached on loopback)."""
        return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)

    @property
    def address(self) -> str:
        """host:port that Prometheus scrapes (a wildcard bind is announced as loopback)."""
        host = self._local_host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def _withdraw(self) -> None:
        if self.target_file is not None:
            with contextlib.suppress(OSError):
                self.target_file.unlink(missing_ok=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._withdraw)
        # Target first, so Prometheus drops it instead of recording a failed scrape.
        self._withdraw()
        self._stop_serving()
        self._server.server_close()
        self._thread.join(timeout=5.0)

    def _stop_serving(self) -> None:
        """Stop the serve loop now rather than at its next poll, every 0.5 s (each `gwtel replay` waited for it).

        The loop reads a shutdown request only when its select returns, which a connection makes it do."""
        stopper = threading.Thread(target=self._server.shutdown, daemon=True)
        stopper.start()
        while stopper.is_alive():
            with contextlib.suppress(OSError):
                socket.create_connection((self._local_host, self.port), timeout=0.2).close()
            stopper.join(0.01)

    def __enter__(self) -> MetricsEndpoint:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def serve_metrics(
    job: str,
    instance: str,
    port: int,
    home: Path | None,
    registry: Collector | None = None,
    *,
    component: str | None = None,
    host: str = DEFAULT_HOST,
) -> MetricsEndpoint:
    """Serve `registry` (default: the process-wide one) on host:port and announce it under `home`.

    `port=0` picks a free port; the endpoint's `port` is the real one. `home=None` serves without announcing
    (a deployment whose Prometheus finds targets another way). `component` (default: `job`) becomes the
    `gwtel_component` label.
    """
    if not job or not instance:
        raise UserError(f"a metrics endpoint needs a job and an instance name (got job={job!r}, instance={instance!r})")
    try:
        server, thread = start_http_server(port, addr=host, registry=registry if registry is not None else REGISTRY)
    except OSError as exc:
        raise UserError(
            f"cannot serve metrics for {job}/{instance} on {host}:{port} ({exc.strerror}); "
            "choose another port or stop the process holding it"
        ) from None
    real_port = int(server.server_port)
    endpoint = MetricsEndpoint(job, instance, host, real_port, None, server, thread)
    if home is not None:
        path = target_path(home, job, instance)
        try:
            write_target_file(path, target_groups(endpoint.address, job, instance, component or job))
        except OSError as exc:
            # Metrics stay available on the port; only discovery is lost, which must not stop the process.
            log.warning("metrics for %s/%s served on %s but not announced: %s", job, instance, endpoint.url, exc)
        else:
            endpoint.target_file = path
            # A clean exit withdraws the target even when the caller forgets close(); SIGKILL cannot.
            atexit.register(endpoint._withdraw)
    return endpoint
