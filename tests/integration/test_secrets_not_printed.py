"""Secrets are never printed: every gwtel command runs with Kafka SASL and ClickHouse passwords and the address
anonymisation key set, on local services of the test's own (a SASL_SSL broker and a ClickHouse server with users),
and no secret appears in any command's output, any service log, any metrics page or any generated file. Wrong
passwords are secrets too: the refusals name the setting, never the value.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from gwtel.config import load_config
from gwtel.services import registry
from processors.chclient import make_client
from tests.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TAG = uuid.uuid4().hex[:10]
SECRETS = {
    "GWTEL_KAFKA_PASSWORD": f"kafkaSecret{TAG}",
    "GWTEL_CLICKHOUSE_PASSWORD": f"chSecret{TAG}",
    "GWTEL_CLICKHOUSE_READ_PASSWORD": f"chReadSecret{TAG}",
    "GWTEL_ANON_KEY": (TAG * 7)[:64],  # the address anonymisation key (64 hex digits)
}
WRONG = f"wrongSecret{TAG}"
GWTEL = str(Path(sys.executable).parent / "gwtel")


@dataclass
class Env:
    home: Path
    config: Path
    work: Path
    seen: list[str] = field(default_factory=list)  # every output, page and file read, to search

    def environ(self, **changes: str | None) -> dict[str, str]:
        env = {**os.environ, "GWTEL_HOME": str(self.home), "GWTEL_CONFIG": str(self.config), **SECRETS}
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def gwtel(self, *args: str, timeout: float = 300, **env: str | None) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [GWTEL, *args], capture_output=True, text=True, timeout=timeout, env=self.environ(**env), check=False,
            cwd=self.work,
        )  # fmt: skip
        self.seen.append(f"$ gwtel {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}")
        return out


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    shared = Path(os.environ.get("GWTEL_HOME", "")).expanduser()
    if not (shared / "lib").is_dir():
        pytest.fail(f"no fetched jars under $GWTEL_HOME/lib ({shared}): run `gwtel up` first", pytrace=False)
    root = tmp_path_factory.mktemp("secrets")
    home, work = root / "home", root / "work"
    home.mkdir()
    work.mkdir()
    (home / "lib").symlink_to(shared / "lib", target_is_directory=True)
    ports = {
        "kafka": free_port(), "kafka_controller": free_port(), "kafka_sasl_ssl": free_port(),
        "clickhouse": free_port(), "clickhouse_metrics": free_port(), "prometheus": free_port(),
    }  # fmt: skip
    doc = {
        "kafka": {
            "bootstrap": f"127.0.0.1:{ports['kafka_sasl_ssl']}",
            "topics": {k: f"sec.{k}.{TAG}" for k in ("flows", "aggregates", "late", "dead_letter")},
            "security": {"protocol": "SASL_SSL", "username": "gwtel", "ca_file": str(home / "kafka/tls/ca.pem")},
        },
        "clickhouse": {
            "url": f"http://127.0.0.1:{ports['clickhouse']}",
            "database": f"sec_{TAG}",
            "user": "loader",
            "read_user": "grafana",
        },
        "local": {
            "ports": ports,
            "clickhouse_users": [
                {"name": "loader", "password_env": "GWTEL_CLICKHOUSE_PASSWORD"},
                {"name": "grafana", "password_env": "GWTEL_CLICKHOUSE_READ_PASSWORD", "readonly": True},
            ],
        },
        "agent": {"agent_id": f"sec-{TAG}", "metrics_port": 0, "anonymise": {"key_env": "GWTEL_ANON_KEY"}},
        "loader": {"group_id": f"sec-loader-{TAG}", "batch_seconds": 0.5, "metrics_port": free_port()},
    }
    config = root / "gwtel.yaml"
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")
    e = Env(home, config, work)
    try:
        yield e
    finally:
        os.environ.update(SECRETS)  # stop() of the services reads the configuration, not the secrets
        cfg = load_config(config)
        for svc in reversed(registry.build(cfg, home)):
            svc.stop()
        for key in SECRETS:
            os.environ.pop(key, None)


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode("utf-8"))


def listening(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text(encoding="ascii").splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(addr)
                if width == 8:
                    found.add(".".join(str(b) for b in raw[::-1]))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    v6 = ipaddress.IPv6Address(words)
                    found.add(str(v6.ipv4_mapped or v6))  # Java listens on ::ffff:127.0.0.1
    return found


def _all_files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and "lib" not in path.relative_to(root).parts[:1]:
            yield path


def test_no_command_output_log_metric_or_file_shows_a_secret(env: Env) -> None:
    assert env.gwtel("config").returncode == 0
    up = env.gwtel("up", "kafka", "clickhouse", timeout=600)
    assert up.returncode == 0, up.stderr
    env.gwtel("status")
    assert env.gwtel("migrate").returncode == 0
    pcap, expected = env.work / "in.pcap", env.work / "expected.json"
    synth = env.gwtel("synth", "--out", str(pcap), "--flows", "200", "--duration", "20", "--expected", str(expected))
    assert synth.returncode == 0, synth.stderr
    replay = env.gwtel("replay", str(pcap))
    assert replay.returncode == 0, replay.stderr

    # The loader over SASL_SSL into ClickHouse as `loader`; its metrics page is read while it runs.
    cfg = load_config(env.config)
    os.environ.update(SECRETS)
    loader = subprocess.Popen(
        [GWTEL, "load"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env.environ(), cwd=env.work
    )
    try:
        client = make_client(cfg.clickhouse)
        deadline = time.monotonic() + 180
        stored = 0
        while time.monotonic() < deadline and stored == 0:
            time.sleep(1)
            stored = int(client.command(f"SELECT count() FROM {cfg.clickhouse.database}.flows_raw"))
        client.close()
        assert stored > 0, "the loader stored nothing over SASL_SSL"
        env.seen.append(_scrape(f"http://127.0.0.1:{cfg.loader.metrics_port}/metrics"))
        # Every endpoint of the running services and the loader listens on loopback only.
        ports = cfg.local.ports
        for port in (ports.kafka, ports.kafka_controller, ports.kafka_sasl_ssl, ports.clickhouse,
                     ports.clickhouse_metrics, cfg.loader.metrics_port):  # fmt: skip
            assert listening(port) == {"127.0.0.1"}, f"port {port} listens on {listening(port)}"
    finally:
        loader.send_signal(signal.SIGTERM)
        out, _ = loader.communicate(timeout=120)
        env.seen.append(out)
    env.seen.append(_scrape(f"http://127.0.0.1:{cfg.local.ports.clickhouse_metrics}/metrics"))

    assert env.gwtel("report").returncode == 0  # the read-only user
    env.gwtel("verify", "--database", cfg.clickhouse.database, "--expected", str(expected))
    assert env.gwtel("observability", "--out", str(env.work / "obs")).returncode == 0

    # Refusals: wrong and missing passwords, each naming its setting.
    wrong_kafka = env.gwtel("replay", str(pcap), GWTEL_KAFKA_PASSWORD=WRONG)
    assert wrong_kafka.returncode != 0 and "kafka.security.password" in wrong_kafka.stderr
    missing = env.gwtel("replay", str(pcap), GWTEL_KAFKA_PASSWORD=None)
    assert missing.returncode != 0 and "$GWTEL_KAFKA_PASSWORD" in missing.stderr
    wrong_ch = env.gwtel("report", GWTEL_CLICKHOUSE_READ_PASSWORD=WRONG)
    assert wrong_ch.returncode != 0 and "516" in wrong_ch.stderr + wrong_ch.stdout
    wrong_run = env.gwtel("run", "--flows", "50", GWTEL_KAFKA_PASSWORD=WRONG, timeout=600)
    assert wrong_run.returncode != 0 and "kafka.security.password" in wrong_run.stderr + wrong_run.stdout
    wrong_load = env.gwtel("load", GWTEL_KAFKA_PASSWORD=WRONG)
    assert wrong_load.returncode != 0 and "kafka.security.password" in wrong_load.stderr

    for path in [*_all_files(env.home), *_all_files(env.work)]:
        if path.suffix in (".pcap", ".log") or path.stat().st_size < 50 << 20:
            env.seen.append(path.read_bytes().decode("utf-8", errors="replace"))
    text = "\n".join(env.seen)
    assert "kafka.security.password" in text  # the search covers the refusals
    for secret in [*SECRETS.values(), WRONG]:
        assert secret not in text, f"a secret ({secret[:8]}...) was printed"
