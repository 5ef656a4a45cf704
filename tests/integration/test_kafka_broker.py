"""The real local Kafka broker: produce/consume round trip, topic creation, data kept across a restart."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from gwtel.config import GwtelConfig, KafkaConfig, TopicsConfig
from gwtel.errors import ServiceError
from gwtel.services.base import port_open
from gwtel.services.flink import FlinkRuntime
from gwtel.services.kafka import KafkaService

pytestmark = pytest.mark.integration

Sent = tuple[bytes, bytes]  # (key, value)


def produce(bootstrap: str, topic: str, records: list[Sent]) -> list[tuple[int, int]]:
    """Send with acks=all and idempotence; return (partition, offset) of each record, in send order."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        client_id="gwtel-test-producer",
    )
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in records]
        producer.flush(timeout=30)
        metas = [f.get(timeout=30) for f in futures]
    finally:
        producer.close(timeout=10)
    return [(m.partition, m.offset) for m in metas]


def consume_all(bootstrap: str, topic: str, timeout_s: float = 30.0, **extra: Any) -> dict[int, list[Any]]:
    """Every record of `topic`, per partition in offset order, read from the start up to the end offsets."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="gwtel-test-consumer",
        **extra,
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert parts, f"topic {topic} has no partitions"
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out: dict[int, list[Any]] = {tp.partition: [] for tp in parts}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, f"timed out reading {topic} up to {end}"
            for tp, msgs in consumer.poll(timeout_ms=500).items():
                out[tp.partition].extend(msgs)
    finally:
        consumer.close()
    return out


def keyed_records(n: int, keys: int) -> list[Sent]:
    return [(f"k{i % keys:02d}".encode(), f"seq={i}".encode()) for i in range(n)]


def test_round_trip_keeps_every_record_in_partition_order(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic("roundtrip", partitions=3)
    sent = keyed_records(1000, keys=17)
    placed = produce(kafka_bootstrap, topic, sent)

    got = consume_all(kafka_bootstrap, topic)

    # Everything came back, nothing twice.
    flat = [(m.key, m.value) for msgs in got.values() for m in msgs]
    assert len(flat) == 1000
    assert sorted(flat) == sorted(sent)
    # Each partition holds exactly the records the producer was told went there, in the order sent.
    for partition, msgs in got.items():
        expected = [rec for rec, (p, _) in zip(sent, placed, strict=True) if p == partition]
        assert [(m.key, m.value) for m in msgs] == expected
        assert [m.offset for m in msgs] == list(range(len(msgs)))
    # A key lives in one partition, and its sequence numbers only grow.
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    seqs_of_key: dict[bytes, list[int]] = defaultdict(list)
    for partition, msgs in got.items():
        for m in msgs:
            partitions_of_key[m.key].add(partition)
            seqs_of_key[m.key].append(int(m.value.split(b"=")[1]))
    assert all(len(ps) == 1 for ps in partitions_of_key.values())
    assert all(s == sorted(s) for s in seqs_of_key.values())
    assert len([p for p, msgs in got.items() if msgs]) > 1, "17 keys all hashed to one partition"


def _partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="gwtel-test-meta")
    try:
        counts = {t: len(consumer.partitions_for_topic(t) or ()) for t in topics}
    finally:
        consumer.close()
    return counts


def test_ensure_topics_creates_configured_topics_once(kafka_service: KafkaService, kafka_home: Path) -> None:
    suffix = str(time.time_ns())
    topics = TopicsConfig(
        flows=f"test.flows.{suffix}",
        aggregates=f"test.aggregates.{suffix}",
        late=f"test.late.{suffix}",
        counters=f"test.counters.{suffix}",
        dead_letter=f"test.deadletter.{suffix}",
    )
    cfg = GwtelConfig(kafka=KafkaConfig(topics=topics, partitions=3), local=kafka_service.cfg.local)
    svc = KafkaService(cfg, kafka_home)
    names = [topics.flows, topics.aggregates, topics.late, topics.counters, topics.dead_letter]
    bootstrap = kafka_service.endpoint()
    assert _partition_counts(bootstrap, names) == dict.fromkeys(names, 0)

    first = svc.ensure_topics()
    assert _partition_counts(bootstrap, names) == dict.fromkeys(names, 3)
    assert first == dict.fromkeys(names, 3)

    produce(bootstrap, topics.flows, [(b"k", b"kept")])
    second = svc.ensure_topics()
    assert second == first
    kept = consume_all(bootstrap, topics.flows)
    assert [m.value for msgs in kept.values() for m in msgs] == [b"kept"]


def test_records_survive_a_broker_restart(
    kafka_service: KafkaService, kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic("restart", partitions=2)
    sent = keyed_records(200, keys=5)
    produce(kafka_bootstrap, topic, sent)
    cluster = kafka_service.cluster_id()
    assert cluster

    kafka_service.stop()
    assert not kafka_service.running()
    assert not port_open("127.0.0.1", kafka_service.port)
    assert not kafka_service.health().ok

    t0 = time.monotonic()
    kafka_service.start()
    print(f"broker restart took {time.monotonic() - t0:.1f}s")
    assert kafka_service.health().ok
    assert kafka_service.cluster_id() == cluster  # same storage, not re-formatted

    got = consume_all(kafka_bootstrap, topic)
    assert sorted((m.key, m.value) for msgs in got.values() for m in msgs) == sorted(sent)


def test_broker_logs_through_log4j2(kafka_service: KafkaService) -> None:
    # The pattern of deploy/local/kafka/log4j2.properties: "[date] LEVEL message (logger)".
    text = kafka_service.log_path.read_text(encoding="utf-8", errors="replace")
    assert re.search(r"^\[\d{4}-\d\d-\d\d [\d:,]+\] INFO .*Kafka Server started \(kafka\.server\.", text, re.M)
    assert "SLF4J: Failed to load class" not in text
    assert "No SLF4J providers were found" not in text


def test_fetch_without_maven_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_config: GwtelConfig
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    for svc in (KafkaService(kafka_config, tmp_path), FlinkRuntime(kafka_config, tmp_path)):
        with pytest.raises(ServiceError, match="apt-get install maven openjdk-17-jre-headless"):
            svc.fetch()
    assert not FlinkRuntime(kafka_config, tmp_path).health().ok
