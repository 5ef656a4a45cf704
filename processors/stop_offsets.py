"""Where a bounded run stops reading, and the group offsets it leaves behind.

A bounded run reads each partition up to offsets fixed before the job starts, then commits exactly those
offsets for its consumer groups once the job has ended well. The Kafka source commits offsets on its own
only asynchronously, when a checkpoint completes; the commit of a bounded job's final checkpoint can still
be in flight when the job ends, and is then lost: a rerun with the same group would read part of a
partition again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from gwtel.errors import ServiceError

log = logging.getLogger(__name__)

_COMMIT_ATTEMPTS = 3


def end_offsets(kafka: Mapping[str, Any], topic: str) -> dict[int, int]:
    """Each partition's end offset as a read_committed consumer sees it (partition -> offset).

    ``kafka``: brokers and security as kafka-python arguments (``KafkaConfig.kafka_python()``), as below.

    Under read_committed this is the last stable offset: an open transaction's records are past it.
    """
    bootstrap = kafka["bootstrap_servers"]
    try:
        consumer = KafkaConsumer(**kafka, isolation_level="read_committed", enable_auto_commit=False)
    except KafkaError as e:
        raise ServiceError(f"cannot reach Kafka at {bootstrap} ({e}): is it up? (`gwtel status`)") from e
    try:
        found = consumer.partitions_for_topic(topic)
        if not found:
            raise ServiceError(f"Kafka topic {topic!r} does not exist at {bootstrap}: `gwtel up` creates the topics")
        parts = [TopicPartition(topic, p) for p in sorted(found)]
        return {tp.partition: int(offset) for tp, offset in consumer.end_offsets(parts).items()}
    except KafkaError as e:
        raise ServiceError(f"cannot read the end offsets of {topic!r} at {bootstrap}: {e}") from e
    finally:
        consumer.close()


def committed(kafka: Mapping[str, Any], group_id: str, topic: str, partitions: list[int]) -> dict[int, int | None]:
    """The group's committed offset of each partition (None: nothing committed)."""
    consumer = KafkaConsumer(**kafka, group_id=group_id, enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in partitions}
    finally:
        consumer.close()


def commit(kafka: Mapping[str, Any], group_id: str, topic: str, offsets: Mapping[int, int]) -> None:
    """Commit ``offsets`` for ``group_id`` and check that the broker holds them.

    The group has no live member once the job has ended, so a client outside it may commit. The check
    and retry cover a commit of an earlier checkpoint that lands after this one.
    """
    wanted = dict(offsets)
    for attempt in range(1, _COMMIT_ATTEMPTS + 1):
        consumer = KafkaConsumer(**kafka, group_id=group_id, enable_auto_commit=False)
        try:
            consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in wanted.items()})
        finally:
            consumer.close()
        now = committed(kafka, group_id, topic, sorted(wanted))
        if now == wanted:
            return
        log.warning("group %s holds offsets %s after committing %s (attempt %d)", group_id, now, wanted, attempt)
        time.sleep(0.5 * attempt)
    raise ServiceError(
        f"could not commit the stopping offsets {wanted} of topic {topic!r} for group {group_id!r}: "
        "a rerun with this group would read part of the topic again; restart from the last checkpoint instead"
    )
