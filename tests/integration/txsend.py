"""The transmit-ring sender (`native/src/bin/gwtel-send.rs`): built with cargo on demand, run in a network namespace.

Used by the live capture tests and by bench/capture.py. The tests take the debug build (what `cargo test` already
compiled); the benchmark takes the release build.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

NATIVE = Path(__file__).resolve().parents[2] / "native"


def sender_binary(release: bool = False) -> Path:
    """Build (if its sources changed) and return the sender; a build failure raises with cargo's message."""
    env = {**os.environ, "PATH": f"{Path.home() / '.cargo' / 'bin'}:{os.environ.get('PATH', '')}"}
    argv = ["cargo", "build", "--locked", "--quiet", "--manifest-path", str(NATIVE / "Cargo.toml")]
    argv += ["--bin", "gwtel-send"]
    proc = subprocess.run(
        [*argv, "--release"] if release else argv, capture_output=True, text=True, env=env, timeout=900, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cargo build of gwtel-send failed: {proc.stderr.strip()}")
    return NATIVE / "target" / ("release" if release else "debug") / "gwtel-send"


def offer(
    binary: Path,
    netns: str,
    iface: str,
    pcap: Path,
    *,
    loops: int = 1,
    pps: int | None = None,
    threads: int = 1,
    cpus: str | None = None,
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """Send ``pcap`` ``loops`` times from ``iface`` inside ``netns`` (as fast as it goes, or ``pps`` frames/s);
    returns the sender's report: sent, seconds, pps, skipped, cpu_user_s, cpu_sys_s."""
    argv = ["ip", "netns", "exec", netns, str(binary), "--iface", iface, "--pcap", str(pcap), "--loops", str(loops)]
    argv += ["--threads", str(threads)]
    if pps is not None:
        argv += ["--pps", str(pps)]
    if cpus is not None:
        argv += ["--cpus", cpus]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"gwtel-send failed ({proc.returncode}): {proc.stderr.strip()}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report
