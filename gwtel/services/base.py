"""What every local service shares: a folder under GWTEL_HOME, a pid file, a log, start/stop/health.

Services run as detached processes (own session) so they outlive the `gwtel up` that started them; the pid
file is the only handle `down` and `status` need. Readiness is always checked by asking the service itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gwtel.errors import ServiceError


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log yet)"
    return "\n".join("    " + line for line in text[-lines:])


class ProcessService:
    """A service backed by one long-running process, tracked by `<dir>/<name>.pid`."""

    name = "service"

    def __init__(self, home: Path) -> None:
        self.dir = home / self.name
        self.log_path = home / "logs" / f"{self.name}.log"
        self.pid_path = self.dir / f"{self.name}.pid"

    # -- to be provided by each service -------------------------------------------------------------
    def fetch(self) -> None:
        """Make binaries/jars available (idempotent; may download from a package registry)."""

    def endpoint(self) -> str:
        raise NotImplementedError

    def health(self) -> Health:
        raise NotImplementedError

    def _start(self) -> None:
        raise NotImplementedError

    # -- shared mechanics ---------------------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        # A zombie left by our own process would still answer signal 0.
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                return None
        except OSError:
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        """Start unless already running and healthy; raise ServiceError with the log tail on failure."""
        if self.running() and self.health().ok:
            return
        if self.running():
            self.stop()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.fetch()
        self._start()

    def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
            )
        self.pid_path.write_text(str(proc.pid))
        return proc.pid

    def wait_healthy(self, timeout_s: float) -> None:
        def ok() -> bool:
            if not self.running():
                raise ServiceError(
                    f"{self.name} exited during start-up; last lines of {self.log_path}:\n{tail(self.log_path)}"
                )
            return self.health().ok

        if not wait_until(ok, timeout_s):
            detail = self.health().detail
            raise ServiceError(
                f"{self.name} did not become healthy within {timeout_s:.0f}s ({detail}); "
                f"last lines of {self.log_path}:\n{tail(self.log_path)}"
            )

    def stop(self, timeout_s: float = 20.0) -> None:
        pid = self.pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        if not wait_until(lambda: not self.running(), timeout_s):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            wait_until(lambda: not self.running(), 5.0)
        self.pid_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the service (fault tests)."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            wait_until(lambda: not self.running(), 10.0)
