"""CPU time and page faults of a process (or one of its threads), read from Linux's /proc stat files."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _fields(stat: Path) -> list[str]:
    """The fields after the command name (which may hold spaces and parentheses) of a /proc stat file."""
    return stat.read_text().rsplit(")", 1)[1].split()


def stat_cpu_s(stat: Path) -> float:
    """User + system CPU seconds so far of the process or thread whose stat file is `stat`."""
    fields = _fields(stat)
    return (int(fields[11]) + int(fields[12])) / _TICK


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far, every thread."""
    return stat_cpu_s(Path(f"/proc/{pid}/stat"))


def minor_faults(pid: int) -> int:
    """Minor page faults of process `pid` so far (fresh memory touched: the kernel maps and zeroes a page)."""
    return int(_fields(Path(f"/proc/{pid}/stat"))[7])


def thread_cpu_s(pid: int, prefix: str) -> dict[str, float]:
    """CPU seconds of process `pid` so far: its threads whose name starts with `prefix` (`named`) and the rest
    (`other`)."""
    out = {"named": 0.0, "other": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text()
            cpu = stat_cpu_s(task / "stat")
        except OSError:  # the thread ended
            continue
        out["named" if name.startswith(prefix) else "other"] += cpu
    return out
