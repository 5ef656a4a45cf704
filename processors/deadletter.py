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

from kafka import KafkaProducer

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

    def headers(self) -> list[tuple[str, bytes]]:
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

    def __init__(self, producer: Any, topic: str, timeout_s: float = 30.0) -> None:
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s

    def send_all(self, letters: Sequence[DeadLetter]) -> None:
        """Raise (a kafka-python error) unless every letter was acknowledged."""
        futures = [self.producer.send(self.topic, key=d.key, value=d.value, headers=d.headers()) for d in letters]
        self.producer.flush(timeout=self.timeout_s)
        for fut in futures:
            fut.get(timeout=self.timeout_s)


def make_producer(bootstrap: str) -> Any:
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        client_id="gwtel-loader-deadletter",
        linger_ms=5,
    )
