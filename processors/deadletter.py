"""Records the loader cannot store go to the dead-letter topic, byte for byte, with why and where from.

The value is the original Kafka value (so a fixed reader can replay it), the key the original key, and the
headers say: `stage` (loader), `reason` (a short label, also the metric label), `detail` (which field and
why), and the source `topic`, `partition` and `offset`. A batch's dead letters are acknowledged by the broker
(acks=all) before the batch's offsets are committed, so a rejected record is never silently skipped; a
crash in between may write one twice (the headers identify duplicates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

STAGE = "loader"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str
    detail: str

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        return [
            ("stage", STAGE.encode()),
            ("reason", self.reason.encode()),
            ("detail", self.detail.encode("utf-8", errors="replace")[:1000]),
            ("source_topic", self.topic.encode()),
            ("source_partition", str(self.partition).encode()),
            ("source_offset", str(self.offset).encode()),
        ]


class DeadLetterSink:
    """Sends dead letters with an idempotent, acks=all producer and waits until the broker has them."""

    def __init__(self, producer: Producer, topic: str, timeout_s: float = 30.0) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s

    def send_all(self, letters: Sequence[DeadLetter]) -> None:
        """Raise KafkaException unless every letter was acknowledged."""
        failed: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                failed.append(err)

        for d in letters:
            while True:
                try:
                    self.producer.produce(self.topic, d.value, d.key, headers=d.headers(), on_delivery=delivered)
                    break
                except BufferError:  # the client's queue is full: let it deliver some first
                    self.producer.poll(0.1)
        if self.producer.flush(self.timeout_s) > 0:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "dead letters not acknowledged in time"))
        if failed:
            raise KafkaException(failed[0])

    def close(self) -> None:
        self.producer.flush(self.timeout_s)


def make_producer(kafka: dict[str, Any]) -> Producer:
    """`kafka`: brokers and security (`KafkaConfig.librdkafka()`)."""
    return Producer(
        {
            **kafka,
            "acks": "all",
            "enable.idempotence": True,
            "client.id": "gwtel-loader-deadletter",
            "linger.ms": 5,
        }
    )
