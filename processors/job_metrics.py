"""The Flink job's metrics endpoint: the port its Prometheus reporter listens on, announced to Prometheus.

Flink's reporter serves the metrics itself (inside the JVM); this module only picks the port and writes
the file_sd target the local Prometheus watches, as `gwtel.metrics_http` does for the Python processes.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from gwtel.metrics_http import DEFAULT_HOST, target_groups, target_path, write_target_file

METRICS_JOB = "gwtel-aggregate"
COMPONENT = "flink"


def choose_port(configured: int, host: str = DEFAULT_HOST) -> int:
    """`configured`, or a port free right now when it is 0 (the reporter needs a number, not 0)."""
    if configured:
        return configured
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def announce(home: Path, port: int, host: str = DEFAULT_HOST) -> Path:
    """Write the target file for the reporter on host:port; return its path (remove it with `withdraw`)."""
    address = f"{host}:{port}"
    path = target_path(home, METRICS_JOB, address)
    write_target_file(path, target_groups(address, METRICS_JOB, address, COMPONENT))
    return path


def withdraw(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
