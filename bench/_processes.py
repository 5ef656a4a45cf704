"""The streaming job and the loader as their own processes, as deployed: for bench/e2e.py and bench/stream.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from gwtel.config import GwtelConfig


def config_file(cfg: GwtelConfig, tmp: Path) -> Path:
    """The run's configuration as a file for the job and loader processes: the user's file plus the overrides."""
    raw: dict[str, Any] = {}
    if os.environ.get("GWTEL_CONFIG"):
        raw = yaml.safe_load(Path(os.environ["GWTEL_CONFIG"]).read_text()) or {}
    for section in ("kafka", "clickhouse", "job", "loader", "agent"):
        raw[section] = {**raw.get(section, {}), **json.loads(getattr(cfg, section).model_dump_json())}
    path = tmp / "stream.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


_LOAD = ["load", "--no-migrate", "--metrics-port", "0"]


def start_pipeline(cfg: GwtelConfig, tmp: Path, log_prefix: str) -> tuple[list[subprocess.Popen[bytes]], Path]:
    """`gwtel aggregate` and `gwtel load` on `cfg`; returns them and the folder of their logs."""
    return _start(cfg, tmp, log_prefix, [("aggregate", ["aggregate"]), ("load", _LOAD)])


def start_loaders(cfg: GwtelConfig, tmp: Path, log_prefix: str, count: int) -> list[subprocess.Popen[bytes]]:
    """`count` `gwtel load` processes on `cfg`, one consumer group (migrations already applied)."""
    return _start(cfg, tmp, log_prefix, [(f"load{i}", _LOAD) for i in range(count)])[0]


def _start(
    cfg: GwtelConfig, tmp: Path, log_prefix: str, commands: list[tuple[str, list[str]]]
) -> tuple[list[subprocess.Popen[bytes]], Path]:
    conf = config_file(cfg, tmp)
    logs = cfg.local.home_path() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for name, args in commands:
        with open(logs / f"{log_prefix}-{name}.log", "wb") as log:
            cmd = [sys.executable, "-m", "gwtel.cli", "--config", str(conf), *args]
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=log))
    return procs, logs


def stop_pipeline(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
