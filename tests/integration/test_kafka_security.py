"""Kafka over SASL_SSL: records go agent producer -> broker -> loader -> ClickHouse with TLS and a SCRAM login;
a wrong password, an untrusted CA or a missing password stop the client in seconds with the setting named.

The broker is the module's own (free ports, its own data, the session's jars) with an extra SASL_SSL listener:
its certificates come from deploy/local/kafka/make-certs.sh and its SCRAM user from the broker's admin API,
as `gwtel up` makes them. The shared broker on 9092 is not touched.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry

from gwtel.agent_run import open_output
from gwtel.config import ConfigError, GwtelConfig
from gwtel.errors import UserError
from gwtel.preflight import check, kafka_security_problem
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.flink import FlinkRuntime
from gwtel.services.kafka import KafkaService
from ingest.agent import Agent
from ingest.classify import PartnerClassifier
from ingest.replay import replay_files
from ingest.synth import SynthConfig, generate
from processors import stop_offsets
from processors.chclient import make_client
from processors.loader_setup import build_loader, migrate
from tests.faults import support as s
from tests.ports import free_port
from tests.records import sample_flow
from tests.services import running

pytestmark = [pytest.mark.integration, *(pytest.mark.filterwarnings(w) for w in s.KAFKA_WARNINGS)]

USER = "gwtel-test"
PASSWORD_ENV = "GWTEL_TEST_KAFKA_PASSWORD"
PASSWORD = f"pw-{uuid.uuid4().hex}"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "local" / "kafka"


def _security(broker_dir: Path, **changes: object) -> dict[str, object]:
    return {
        "protocol": "SASL_SSL",
        "mechanism": "SCRAM-SHA-512",
        "username": USER,
        "password_env": PASSWORD_ENV,
        "ca_file": str(broker_dir / "tls" / "ca.pem"),
        **changes,
    }


@pytest.fixture(scope="module")
def broker(
    kafka_config: GwtelConfig, kafka_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaService]:
    os.environ[PASSWORD_ENV] = PASSWORD
    home = tmp_path_factory.mktemp("sasl-broker")
    (home / "lib").symlink_to(kafka_home / "lib", target_is_directory=True)
    ports = {**kafka_config.local.ports.model_dump(), "kafka": free_port(), "kafka_controller": free_port(),
             "kafka_sasl_ssl": free_port()}  # fmt: skip
    cfg = GwtelConfig.model_validate({"local": {"ports": ports}, "kafka": {"security": _security(home / "kafka")}})
    with running(KafkaService(cfg, home), "the test's SASL_SSL broker") as svc:
        yield svc


def _config(broker: KafkaService, ch_url: str, tag: str, **security: object) -> GwtelConfig:
    base = s.fault_config(GwtelConfig(), bootstrap=str(broker.sasl_ssl_endpoint()), ch_url=ch_url, tag=tag)
    raw = base.model_dump()
    raw["kafka"]["security"] = _security(broker.dir, **security)
    raw["agent"]["spool_dir"] = str(broker.home / f"spool-{tag}")
    return GwtelConfig.model_validate(raw)


def test_records_travel_producer_broker_loader_over_sasl_ssl(
    broker: KafkaService, clickhouse_service: ClickHouseService
) -> None:
    tag = s.new_tag()
    cfg = _config(broker, clickhouse_service.endpoint(), tag)
    s.ensure_topics(broker, list(cfg.kafka.topics.model_dump().values()))  # admin: the node's own listener
    check(cfg, None, kafka=True)  # the authenticated preflight passes
    now = time.time_ns() - 600 * 10**9
    records = [
        dataclasses.replace(
            sample_flow(),
            agent_id=f"sec-{tag}",
            seq=i,
            first_ns=now + i,
            last_ns=now + i + 10**9,
            export_ns=now + i + 2 * 10**9,
            bytes_fwd=1000 + i,
        )
        for i in range(200)
    ]
    with ExitStack() as stack:  # the agent's and collector's own output path
        _sink, producer = open_output(cfg, "kafka", stack)
        assert producer is not None
        for rec in records:
            producer.send(rec)
        producer.close(timeout=60)
    assert producer.acked == len(records) and producer.spooled == 0

    # Offsets over SASL_SSL through kafka-python, as the Flink job's bounded runs read them.
    ends = stop_offsets.end_offsets(cfg.kafka.kafka_python(), cfg.kafka.topics.flows)
    assert sum(ends.values()) == len(records)

    migrate(cfg)
    loader = build_loader(cfg, CollectorRegistry())
    client = make_client(cfg.clickhouse)
    try:
        deadline = time.monotonic() + 120
        stored: tuple[int, ...] = (0, 0)
        while time.monotonic() < deadline:
            loader.step(100)
            stored = tuple(client.query("SELECT count(), sum(bytes_fwd) FROM flows_raw").result_rows[0])
            if stored[0] >= len(records):
                break
        assert stored == (len(records), sum(r.bytes_fwd for r in records))
    finally:
        loader.close()
        client.command(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")
        client.close()


def test_whole_pipeline_over_sasl_ssl_equals_the_truth(
    broker: KafkaService, clickhouse_service: ClickHouseService, flink_runtime: FlinkRuntime, tmp_path: Path
) -> None:
    """Agent -> broker -> Flink job (source and transactional sinks) -> broker -> loader, all over SASL_SSL."""
    tag = s.new_tag()
    cfg = _config(broker, clickhouse_service.endpoint(), tag)
    s.ensure_topics(broker, list(cfg.kafka.topics.model_dump().values()))
    truth = generate(SynthConfig(seed=21, flows=300, duration_s=30), tmp_path / "in.pcap", tmp_path / "in.json")
    with ExitStack() as stack:
        _sink, producer = open_output(cfg, "kafka", stack)
        assert producer is not None
        agent = Agent(cfg.agent, PartnerClassifier(cfg.partners), producer.send)
        result = replay_files(agent, [tmp_path / "in.pcap"])
        n = agent.counters.records_emitted
        producer.close(timeout=60)
    assert result.errors == [] and n > 0 and producer.acked == n
    try:
        s.aggregate_load_and_check(cfg, truth, n)
    finally:
        client = make_client(cfg.clickhouse, database="")
        client.command(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")
        client.close()


def _refused_quickly(cfg: GwtelConfig) -> str:
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        check(cfg, None, kafka=True)
    assert time.monotonic() - started < 15, "the refusal took too long"
    return str(err.value)


def test_wrong_password_names_the_password_setting(broker: KafkaService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GWTEL_TEST_WRONG_PASSWORD", "not-the-password")
    cfg = _config(broker, "http://127.0.0.1:1", s.new_tag(), password_env="GWTEL_TEST_WRONG_PASSWORD")
    msg = _refused_quickly(cfg)
    assert "kafka.security.password" in msg and USER in msg and "$GWTEL_TEST_WRONG_PASSWORD" in msg
    assert "not-the-password" not in msg


def test_agent_output_stops_on_a_refused_login(broker: KafkaService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GWTEL_TEST_WRONG_PASSWORD", "not-the-password")
    cfg = _config(broker, "http://127.0.0.1:1", s.new_tag(), password_env="GWTEL_TEST_WRONG_PASSWORD")
    started = time.monotonic()
    with ExitStack() as stack, pytest.raises(ConfigError, match=r"kafka\.security\.password"):
        open_output(cfg, "kafka", stack)
    assert time.monotonic() - started < 15


def test_untrusted_ca_names_the_ca_setting(broker: KafkaService, tmp_path: Path) -> None:
    other = tmp_path / "other-ca"
    subprocess.run(["bash", str(DEPLOY / "make-certs.sh"), str(other)], check=True, capture_output=True)
    cfg = _config(broker, "http://127.0.0.1:1", s.new_tag(), ca_file=str(other / "ca.pem"))
    msg = _refused_quickly(cfg)
    assert "kafka.security.ca_file" in msg and str(other / "ca.pem") in msg


def test_missing_password_is_refused_before_connecting(broker: KafkaService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GWTEL_TEST_UNSET_PASSWORD", raising=False)
    cfg = _config(broker, "http://127.0.0.1:1", s.new_tag(), password_env="GWTEL_TEST_UNSET_PASSWORD")
    with pytest.raises(UserError, match=r"\$GWTEL_TEST_UNSET_PASSWORD"):
        kafka_security_problem(cfg.kafka)


def test_password_file_is_read(broker: KafkaService, clickhouse_service: ClickHouseService, tmp_path: Path) -> None:
    secret = tmp_path / "kafka.pw"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    cfg = _config(broker, clickhouse_service.endpoint(), s.new_tag(), password_file=str(secret),
                  password_env="GWTEL_TEST_UNSET_PASSWORD")  # fmt: skip
    assert kafka_security_problem(cfg.kafka) is None
    consumer = KafkaConsumer(**cfg.kafka.kafka_python(), enable_auto_commit=False)
    try:
        assert consumer.topics() is not None
    finally:
        consumer.close()
