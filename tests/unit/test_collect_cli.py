"""`gwtel collect` as a process: listens where --listen says, writes JSON lines, stops after --duration."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.exports import netflow5


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_collect_writes_records_and_reports(tmp_path: Path) -> None:
    cfg = tmp_path / "gwtel.yaml"
    cfg.write_text("collector:\n  metrics_port: 0\n  agent_id: cli-test\n")
    out = tmp_path / "records.jsonl"
    port = _free_udp_port()
    env = {**os.environ, "GWTEL_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "gwtel.cli", "--config", str(cfg), "collect"]
    cmd += ["--listen", f"netflow://127.0.0.1:{port}", "--to", f"jsonl:{out}", "--duration", "4"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "listening on netflow://127.0.0.1" in line, line
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(netflow5([("192.0.2.7", "198.51.100.1", 1234, 80, 6, 3, 180)] * 2), ("127.0.0.1", port))
        s.sendto(b"\x00\x07garbage", ("127.0.0.1", port))
    rest = proc.stderr.read()
    assert proc.wait(timeout=30) == 0, rest
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["agent_id"], r["seq"], r["src_ip"], r["bytes_fwd"]) for r in records] == [
        ("cli-test", 0, "192.0.2.7", 180),
        ("cli-test", 1, "192.0.2.7", 180),
    ]
    assert "records sent 2" in rest and "decode errors 1 kinds" in rest, rest
    assert (tmp_path / "home" / "collector" / "cli-test.seq").is_file()
