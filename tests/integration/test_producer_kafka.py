"""FlowProducer against a real Kafka broker that is killed mid-stream and started again.

Runs its own broker (free ports, a fresh GWTEL_HOME) so that killing it cannot disturb the session
broker other tests share.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from gwtel.config import GwtelConfig, LocalConfig, LocalPorts
from gwtel.errors import ServiceError
from gwtel.services.kafka import KafkaService
from ingest.producer import FlowProducer
from schemas import codec
from schemas.flow_record import FlowRecord
from tests.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaService]:
    cfg = GwtelConfig(local=LocalConfig(ports=LocalPorts(kafka=free_port(), kafka_controller=free_port())))
    svc = KafkaService(cfg, tmp_path_factory.mktemp("producer-kafka-home"))
    try:
        svc.start()
    except ServiceError as exc:
        pytest.fail(f"the test's own Kafka broker did not start: {exc}", pytrace=False)
    yield svc
    svc.stop()


def record(seq: int, agent: str) -> FlowRecord:
    ns = 1_700_000_000 * 10**9 + seq * 1000
    return FlowRecord(1, agent, seq, "link-0", 1, 4, "10.0.0.1", 20000 + seq % 5000, "133.1.1.1", 443, 6, 0,
                      ns, ns + 1000, ns + 2000, "fin", 100, 1, 200, 2, 0x1B, 0x1B, 0, 0, 900, 100,
                      0, None, None, 0, (), 0, None, None, 0, (), 0, None, None, 0, (),
                      "egress", "japan", "JP", 0)  # fmt: skip


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def consume(bootstrap: str, topic: str) -> dict[int, list[FlowRecord]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="gwtel-test")
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out: dict[int, list[FlowRecord]] = {tp.partition: [] for tp in parts}
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, "timed out reading the topic back"
            for tp, msgs in consumer.poll(timeout_ms=500).items():
                out[tp.partition].extend(codec.decode(m.value) for m in msgs)
    finally:
        consumer.close()
    return out


def check_exactly_once_in_order(got: dict[int, list[FlowRecord]], agent: str, n: int) -> None:
    ids = Counter((r.agent_id, r.seq) for recs in got.values() for r in recs)
    assert [k for k, c in ids.items() if c > 1] == [], "duplicates"
    assert set(ids) == {(agent, s) for s in range(n)}, "missing records"
    for partition, recs in got.items():
        seqs = [r.seq for r in recs]
        assert seqs == sorted(seqs), f"partition {partition} is out of send order"
    assert sum(1 for recs in got.values() if recs) == 2  # the 5-tuple key spread them


def new_topic(broker: KafkaService) -> str:
    broker.start()  # a no-op when up; a test that failed with the broker killed must not fail the next one too
    topic = f"test.producer.{uuid.uuid4().hex[:12]}"
    broker.ensure_topics([topic], partitions=2)
    return topic


def test_broker_killed_mid_stream_every_record_arrives_once_in_order(broker: KafkaService, tmp_path: Path) -> None:
    topic = new_topic(broker)
    agent = "agent-kill"
    n = 3000
    p = FlowProducer(broker.endpoint(), topic, spool_dir=tmp_path / "spool", spool_max_bytes=64 << 20,
                     spill_after_s=1.0, linger_ms=5)  # fmt: skip
    for seq in range(1000):
        p.send(record(seq, agent))
        if seq % 100 == 0:
            time.sleep(0.01)  # a stream, not one burst: the kill lands while records are in flight
    broker.kill()
    for seq in range(1000, 2000):
        p.send(record(seq, agent))
    wait_for(lambda: p.spooling, 30, "the producer to spool")
    assert p.spool_pending > 0
    broker.start()
    for seq in range(2000, n):
        p.send(record(seq, agent))
    wait_for(lambda: p.acked == n, 180, f"all {n} records acknowledged (acked={p.acked})")
    wait_for(lambda: not p.spooling and p.spool_pending == 0, 30, "the spool to drain")
    p.close(30)
    print(f"spooled {p.spooled}, replayed {p.replayed}, send errors {p.send_errors}")
    assert (p.produced, p.acked, p.dropped) == (n, n, 0)
    assert p.spooled > 0 and p.replayed == p.spooled
    check_exactly_once_in_order(consume(broker.endpoint(), topic), agent, n)


def test_agent_restart_while_broker_down_replays_the_spool_first(broker: KafkaService, tmp_path: Path) -> None:
    topic = new_topic(broker)
    agent = "agent-restart"
    spool = tmp_path / "spool"
    first = FlowProducer(broker.endpoint(), topic, spool_dir=spool, spool_max_bytes=64 << 20, spill_after_s=1.0)
    for seq in range(500):
        first.send(record(seq, agent))
    wait_for(lambda: first.acked == 500, 60, "the first 500 acknowledged")
    broker.kill()
    for seq in range(500, 1500):
        first.send(record(seq, agent))
    wait_for(lambda: first.spooling, 30, "the producer to spool")
    first.close(2)  # the agent stops while the broker is down
    assert first.spool_pending == 1000

    second = FlowProducer(broker.endpoint(), topic, spool_dir=spool, spool_max_bytes=64 << 20,
                          spill_after_s=1.0, connect_timeout_s=1.0)  # fmt: skip
    assert second.spooling and second.spool_pending == 1000
    for seq in range(1500, 2000):
        second.send(record(seq, agent))  # behind the previous run's spool
    broker.start()
    wait_for(lambda: second.acked == 1500, 180, f"the spool replayed (acked={second.acked})")
    second.close(30)
    assert second.spool_pending == 0
    check_exactly_once_in_order(consume(broker.endpoint(), topic), agent, 2000)
