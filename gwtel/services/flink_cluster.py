"""A standalone Flink session cluster (one JobManager, one or more TaskManagers) from the distribution inside
PyFlink.

Not part of `gwtel up`: the local pipeline runs its job on an in-process MiniCluster. This is the other way
the same job runs, submitted to a cluster over REST (`job.flink` in the configuration, see
docs/processors.md), here on this machine, so that way is tested and can be tried without a cluster of
one's own. Both processes run in the foreground of one process group, so `stop` ends both.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from gwtel.errors import ServiceError
from gwtel.services.base import Health, ProcessService

_STARTUP_TIMEOUT_S = 120.0
_TASKMANAGER_MAIN = b"org.apache.flink.runtime.taskexecutor.TaskManagerRunner"


def flink_home() -> Path:
    """The Flink distribution that ships with apache-flink (bin/, lib/, plugins/, conf/)."""
    import pyflink

    home = Path(pyflink.__file__).parent
    if not (home / "bin" / "jobmanager.sh").is_file():
        raise ServiceError(f"no Flink distribution in {home} (bin/jobmanager.sh): reinstall apache-flink")
    return home


class FlinkCluster(ProcessService):
    name = "flink-cluster"

    def __init__(
        self, home: Path, *, rest_port: int = 8081, rpc_port: int = 6123, slots: int = 2, taskmanagers: int = 1
    ) -> None:
        super().__init__(home)
        self.rest_port = rest_port
        self.rpc_port = rpc_port
        self.slots = slots
        self.taskmanagers = taskmanagers
        self.conf_dir = self.dir / "conf"

    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def job_settings(self) -> dict[str, str]:
        """`job.flink` settings that submit the job to this cluster instead of an in-process MiniCluster."""
        return {"execution.target": "remote", "rest.address": "127.0.0.1", "rest.port": str(self.rest_port)}

    def _overview(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.endpoint()}/overview", timeout=2) as resp:
            data: dict[str, Any] = json.load(resp)
        return data

    def health(self) -> Health:
        try:
            view = self._overview()
        except (OSError, ValueError) as exc:
            return Health(False, f"{self.endpoint()}/overview: {exc}")
        if view.get("taskmanagers", 0) < self.taskmanagers:
            return Health(False, f"{view.get('taskmanagers', 0)} of {self.taskmanagers} TaskManagers registered")
        return Health(True, f"Flink {view.get('flink-version', '?')}, {view.get('slots-total', 0)} slots")

    def write_config(self) -> None:
        """The cluster's conf folder: PyFlink's own (its JVM options are needed on Java 17), on loopback."""
        dist = flink_home()
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        for log_conf in (dist / "conf").glob("log4j*.properties"):
            shutil.copy(log_conf, self.conf_dir / log_conf.name)
        conf = yaml.safe_load((dist / "conf" / "config.yaml").read_text(encoding="utf-8")) or {}
        conf["jobmanager"] = {
            **conf.get("jobmanager", {}),
            "bind-host": "127.0.0.1",
            "rpc": {"address": "127.0.0.1", "port": self.rpc_port},
            "memory": {"process": {"size": "1024m"}},
        }
        conf["taskmanager"] = {
            **conf.get("taskmanager", {}),
            "bind-host": "127.0.0.1",
            "host": "127.0.0.1",
            "numberOfTaskSlots": self.slots,
            "memory": {"process": {"size": "1600m"}},
        }
        conf["rest"] = {"address": "127.0.0.1", "bind-address": "127.0.0.1", "port": self.rest_port}
        # Tasks on every TaskManager (so losing one is felt by the job), and a lost one noticed in seconds
        # rather than the default 50 s.
        conf["taskmanager"]["load-balance"] = {"mode": "SLOTS"}
        conf["heartbeat"] = {"interval": 2000, "timeout": 10000}
        (self.conf_dir / "config.yaml").write_text(yaml.safe_dump(conf, sort_keys=False), encoding="utf-8")

    def _start(self) -> None:
        dist = flink_home()
        self.write_config()
        bin_dir = dist / "bin"
        # Each TaskManager with its own log file name (FLINK_IDENT_STRING is part of it).
        tms = " ".join(
            f'FLINK_IDENT_STRING=tm{i} "{bin_dir}/taskmanager.sh" start-foreground &' for i in range(self.taskmanagers)
        )
        script = f'"{bin_dir}/jobmanager.sh" start-foreground & {tms} wait'
        env = {
            "FLINK_HOME": str(dist),
            "FLINK_CONF_DIR": str(self.conf_dir),
            "FLINK_LOG_DIR": str(self.log_path.parent / self.name),
        }
        (self.log_path.parent / self.name).mkdir(parents=True, exist_ok=True)
        self.spawn(["bash", "-c", script], env=env)
        self.wait_healthy(_STARTUP_TIMEOUT_S)

    def taskmanager_pids(self) -> list[int]:
        """The TaskManager JVMs of this cluster (its process group), oldest first."""
        group = self.pid()
        if group is None:
            return []
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text()
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            pgid = int(stat.rsplit(")", 1)[1].split()[2])
            if pgid == group and _TASKMANAGER_MAIN in cmdline:
                found.append(int(proc.name))
        return sorted(found)

    def busy_taskmanager_pid(self) -> int:
        """The pid of a TaskManager that runs tasks: the one holding an allocated slot, found by the RPC port
        the JobManager knows it by."""
        with urllib.request.urlopen(f"{self.endpoint()}/taskmanagers", timeout=5) as resp:
            tms = json.load(resp)["taskmanagers"]
        busy = [tm for tm in tms if tm["freeSlots"] < tm["slotsNumber"]]
        if not busy:
            raise ServiceError("no TaskManager runs a task")
        port = int(busy[0]["path"].rsplit(":", 1)[1].split("/", 1)[0])
        inodes = _listening_inodes(port)
        for pid in self.taskmanager_pids():
            with contextlib.suppress(OSError):
                fds = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
                if any(f"socket:[{inode}]" in fds for inode in inodes):
                    return pid
        raise ServiceError(f"no TaskManager process listens on port {port}")

    def kill_taskmanager(self) -> int:
        """SIGKILL a TaskManager that runs tasks (fault tests); its pid."""
        pid = self.busy_taskmanager_pid()
        os.kill(pid, signal.SIGKILL)
        return pid


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP `port` (IPv4 or IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            for line in list(f)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    found.add(fields[9])
    return found
