"""`gwtel capture` operator errors end in one line and a non-zero exit; SIGINT stops it cleanly."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gwtel.agent_run import serve_agent_metrics
from gwtel.cli import main
from gwtel.config import load_config
from gwtel.errors import UserError
from ingest.agent import Agent
from ingest.classify import PartnerClassifier

CLI = [sys.executable, "-m", "gwtel.cli"]


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("agent: {agent_id: cli-test, metrics_port: 0}\n")
    return cfg


def _run(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GWTEL_HOME": str(tmp_path / "home")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=env)


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_missing_interface(tmp_path: Path) -> None:
    proc = _run([*CLI, "capture", "--iface", "gwtel-none0", "--config", str(_config(tmp_path)), "--to", "-"], tmp_path)
    assert "interface 'gwtel-none0' does not exist" in _one_line_error(proc)


def test_without_cap_net_raw(tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed for this test"
    # Dropping CAP_NET_RAW from the bounding set removes it from the command even when run as root.
    argv = [setpriv, "--bounding-set", "-net_raw", *CLI, "--config", str(_config(tmp_path)), "capture", "--iface", "lo"]
    line = _one_line_error(_run([*argv, "--to", "-"], tmp_path))
    assert "needs CAP_NET_RAW" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--snaplen", "20"], "--snaplen 20"),
        (["--sample", "0"], "--sample 0"),
        (["--duration", "0"], "--duration 0"),
        (["--bpf", "tcp port and"], "not a valid filter"),
        (["--to", "nowhere"], "--to 'nowhere'"),
    ],
)
def test_bad_arguments(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GWTEL_HOME", str(tmp_path / "home"))
    assert main(["capture", "--iface", "lo", "--config", str(_config(tmp_path)), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gwtel capture: ") and message in err[0], err


def test_sigint_flushes_and_exits_zero(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    env = {**os.environ, "GWTEL_HOME": str(tmp_path / "home")}
    # A filter nothing on this machine matches: the capture is idle until interrupted.
    argv = [*CLI, "capture", "--iface", "lo", "--config", str(_config(tmp_path)), "--bpf", "udp port 9 and udp port 7"]
    proc = subprocess.Popen([*argv, "--to", f"jsonl:{out}"], stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert re.search(r"capturing on lo .* metrics on http://127\.0\.0\.1:\d+/metrics", first), first
    target = tmp_path / "home" / "prometheus" / "targets" / "agent-cli-test.json"
    assert target.is_file()  # announced to the local Prometheus while running
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, rest
    assert "stopped (stop)" in rest and "Traceback" not in rest
    assert out.read_text() == ""
    assert not target.exists()  # withdrawn at exit


def test_replay_goes_on_without_metrics_when_the_port_is_busy(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_config()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = cfg.model_copy(update={"agent": cfg.agent.model_copy(update={"metrics_port": port})})
        agent = Agent(cfg.agent, PartnerClassifier(cfg.partners), lambda _r: None)
        assert serve_agent_metrics(cfg, agent, None, required=False) is None
        assert "continuing without metrics" in capsys.readouterr().err
        with pytest.raises(UserError, match="cannot serve metrics"):
            serve_agent_metrics(cfg, agent, None, required=True)
