"""Kafka client figures shared by the benchmarks: librdkafka's plain consume and the agent's producer.

Each is measured beside kafka-python's (bench/job.py: `consume_rate`, `load_topic`) in the same run.
"""

from __future__ import annotations

import atexit
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence

from confluent_kafka import Consumer

from gwtel.config import GwtelConfig
from gwtel.services.kafka import KafkaService
from ingest.producer import FlowProducer
from processors.loader_setup import FETCH_SETTINGS

_CHUNK = 10_000
_WINDOW = 50_000


def delete_at_exit(svc: KafkaService, topics: Sequence[str]) -> None:
    """Delete `topics` when the benchmark's process exits, however it exits short of a kill: a benchmark's topic
    holds up to gigabytes of the broker's disk (a development home had 14 GB of them)."""
    names = list(topics)

    def delete() -> None:
        try:
            svc.delete_topics(names)
        except Exception as exc:  # the broker may be down by then: say so, and keep the benchmark's own outcome
            print(f"bench: could not delete the topics {names}: {exc}", file=sys.stderr)

    atexit.register(delete)


def librdkafka_consume_rate(bootstrap: str, topic: str, expected: int) -> float:
    """A plain read_committed consume with confluent-kafka (librdkafka, the loader's client, fetching as the
    loader does): records/s."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", **FETCH_SETTINGS})  # fmt: skip
    consumer.subscribe([topic])
    n = 0
    t0 = None
    while n < expected:
        msgs = consumer.consume(num_messages=50_000, timeout=1.0)
        if msgs and t0 is None:
            t0 = time.perf_counter()  # group join excluded, as the kafka-python baseline assigns directly
        n += len(msgs)
    seconds = time.perf_counter() - (t0 or time.perf_counter())
    consumer.close()
    return n / seconds


def producer_rate(cfg: GwtelConfig, values: Sequence[bytes]) -> float:
    """Records/s of the agent's FlowProducer (`send_batch`, chunks of 10k) into a scratch topic, until Kafka
    acknowledged every record (acks=all, idempotent, lz4 as the agent sends).

    Paced as a sender that keeps up with Kafka: at most `_WINDOW` records unacknowledged (the producer spills
    to its spool past `max_in_flight`, 100k by default). Offered all at once, 2M records waited seconds for
    their acknowledgement on the busy machine and the producer spilled, as designed; the figure here is the
    client's sustained rate, so a stall is allowed 30 s before a spill fails the benchmark.
    """
    topic = f"{cfg.kafka.topics.flows}.producer"
    svc = KafkaService(cfg, cfg.local.home_path())
    svc.ensure_topics([topic])
    try:
        with tempfile.TemporaryDirectory() as spool:
            producer = FlowProducer(cfg.kafka.bootstrap, topic, spool_dir=spool, spool_max_bytes=8 << 30,
                                    spill_after_s=30.0)  # fmt: skip
            keys = [b"%d" % (i % 4096) for i in range(_CHUNK)]
            try:
                t0 = time.perf_counter()
                for first in range(0, len(values), _CHUNK):
                    while producer.produced - producer.acked > _WINDOW:
                        time.sleep(0.001)
                    producer.send_batch(list(zip(keys, values[first : first + _CHUNK], strict=False)))
                while producer.acked < len(values):
                    if producer.spooling:
                        raise RuntimeError("the producer spilled to its spool during the benchmark")
                    time.sleep(0.005)
                seconds = time.perf_counter() - t0
            finally:
                producer.close()
    finally:
        with svc.admin() as admin:
            admin.delete_topics([topic])
    return len(values) / seconds
