"""Kafka broker faults: killed (SIGKILL) mid-replay and restarted; an agent restarted with a full spool.

The broker is the test module's own (free ports, its own data; the jars of the session home), so killing it
disturbs no other test. Truth: the (agent id, seq) range the agent assigned, and the generator's truth for
the aggregates (which the end-to-end test proves equal to the fault-free run).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gwtel.config import GwtelConfig
from gwtel.errors import ServiceError
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.flink import FlinkRuntime
from gwtel.services.kafka import KafkaService
from ingest.agent import Agent
from ingest.classify import PartnerClassifier
from ingest.producer import FlowProducer
from ingest.replay import replay_files
from ingest.synth import SynthConfig, generate
from schemas.flow_record import FlowRecord
from tests.faults import support as s

pytestmark = [pytest.mark.integration, pytest.mark.slow, *(pytest.mark.filterwarnings(w) for w in s.KAFKA_WARNINGS)]


@pytest.fixture(scope="module")
def broker(
    kafka_config: GwtelConfig, kafka_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaService]:
    svc = s.private_kafka(kafka_config, tmp_path_factory.mktemp("broker-home"), kafka_home)
    try:
        svc.start()
    except ServiceError as exc:
        pytest.fail(f"the test's own Kafka broker did not start: {exc}", pytrace=False)
    yield svc
    svc.stop()


def _drop(cfg: GwtelConfig) -> None:
    from processors.chclient import make_client

    client = make_client(cfg.clickhouse, database="")
    try:
        client.command(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")
    finally:
        client.close()


def test_broker_killed_mid_replay_every_record_once_and_totals_exact(
    broker: KafkaService,
    clickhouse_service: ClickHouseService,
    flink_runtime: FlinkRuntime,
    kafka_config: GwtelConfig,
    tmp_path: Path,
) -> None:
    cfg = s.fault_config(kafka_config, bootstrap=broker.endpoint(), ch_url=clickhouse_service.endpoint(),
                         tag=s.new_tag())  # fmt: skip
    s.ensure_topics(broker, list(cfg.kafka.topics.model_dump().values()))
    truth = generate(SynthConfig(seed=13, flows=600, duration_s=60), tmp_path / "in.pcap", tmp_path / "in.json")
    producer = FlowProducer(broker.endpoint(), cfg.kafka.topics.flows, spool_dir=tmp_path / "spool",
                            spool_max_bytes=64 << 20, spill_after_s=1.0, linger_ms=5)  # fmt: skip
    restart = threading.Thread(target=s.restart, args=(broker,), daemon=True)
    sent = 0

    def sink(rec: FlowRecord) -> None:
        nonlocal sent
        producer.send(rec)
        sent += 1
        if sent == 150:
            broker.kill()  # SIGKILL while records are in flight; it comes back while the replay goes on
            restart.start()

    agent = Agent(cfg.agent, PartnerClassifier(cfg.partners), sink)
    result = replay_files(agent, [tmp_path / "in.pcap"])
    n = agent.counters.records_emitted
    assert result.errors == [] and n == sent > 150
    restart.join(120)
    assert broker.health().ok
    s.wait_for(lambda: producer.acked == n, 180, f"all {n} records acknowledged (acked={producer.acked})")
    s.wait_for(lambda: producer.spool_pending == 0 and not producer.spooling, 60, "the spool to drain")
    producer.close(30)
    print(f"broker kill: produced {n}, spooled {producer.spooled}, replayed {producer.replayed}, "
          f"send errors {producer.send_errors}, dropped {producer.dropped}")  # fmt: skip
    assert (producer.produced, producer.acked, producer.dropped, producer.spool_pending) == (n, n, 0, 0)
    assert producer.spooled > 0 and producer.replayed == producer.spooled
    s.assert_exactly_once(s.topic_records(broker.endpoint(), cfg.kafka.topics.flows), cfg.agent.agent_id, range(n))

    try:
        s.aggregate_load_and_check(cfg, truth, n)
    finally:
        _drop(cfg)


_SUMMARY = re.compile(r"records (\d[\d,]*),.*?kafka acked (\d[\d,]*), spooled (\d[\d,]*), pending in spool (\d[\d,]*)",
                      re.S)  # fmt: skip


def _summary(stderr: str) -> tuple[int, int, int, int]:
    m = _SUMMARY.search(stderr)
    assert m is not None, stderr[-2000:]
    records, acked, spooled, pending = (int(g.replace(",", "")) for g in m.groups())
    return records, acked, spooled, pending


def test_agent_restarted_with_a_full_spool_sends_it_once(
    broker: KafkaService, kafka_config: GwtelConfig, tmp_path: Path
) -> None:
    cfg = s.fault_config(kafka_config, bootstrap=broker.endpoint(), ch_url="http://127.0.0.1:1", tag=s.new_tag())
    s.ensure_topics(broker, [cfg.kafka.topics.flows])
    config = s.write_config(cfg, tmp_path / "config.yaml")
    truth = generate(SynthConfig(seed=17, flows=300, duration_s=30), tmp_path / "in.pcap", tmp_path / "in.json")
    broker.kill()
    try:
        first = s.run_gwtel(["replay", str(tmp_path / "in.pcap")], config, 180)
    finally:
        s.restart(broker)
    assert first.returncode == 0 and "Traceback" not in first.stderr, first.stderr[-2000:]
    records, acked, spooled, pending = _summary(first.stderr)
    assert records > 0 and (acked, spooled, pending) == (0, records, records)

    empty = s.REPO / "tests" / "faults" / "data" / "empty.pcap"
    second = s.run_gwtel(["replay", str(empty)], config, 180)
    assert second.returncode == 0 and "Traceback" not in second.stderr, second.stderr[-2000:]
    assert _summary(second.stderr) == (0, records, 0, 0)

    got = s.topic_records(broker.endpoint(), cfg.kafka.topics.flows)
    s.assert_exactly_once(got, cfg.agent.agent_id, range(records))
    assert sum(r.packets_fwd + r.packets_rev for r in got) == truth["packets"]
