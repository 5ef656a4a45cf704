"""The loader's Kafka consumer: librdkafka (confluent-kafka) behind the few calls the loader makes.

kafka-python cost about 10 us of Python per message (fetch, CRC, record parsing, one object per record) and
bounded the loader below its target; librdkafka does that work in C on its own threads, and a poll hands
back a list of messages. Here they are grouped by partition in runs (librdkafka delivers a fetch's messages
of one partition together), with no Python per message.

Guarantees kept from the kafka-python consumer the loader was built on: no automatic commit (offsets are
committed synchronously, exactly those the loader names, with their metadata); read_committed; revocations
are reported to the loader's listener, which librdkafka calls from inside `poll` on the loader's own thread.
With the eager (classic) group protocol a partition given back to the same member after a rebalance starts
again at its committed offset, and messages fetched before the rebalance are discarded by librdkafka.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

log = logging.getLogger("gwtel.loader")

# Errors with which the group coordinator refuses a commit because the member's generation is gone (a
# rebalance began or ended without it): not retried, the partitions may be someone else's now.
_REFUSED_COMMIT = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.FENCED_INSTANCE_ID,
        KafkaError._ASSIGNMENT_LOST,
        KafkaError._STATE,
    }
)
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_TIMEOUT_S = 30.0

# The error every Kafka call of this module raises when it fails (retried by the loader).
ConsumerError = KafkaException
# A consumed message always has an offset (the stubs allow None for a produced one not yet delivered).
offset_of = cast("Callable[[Message], int]", Message.offset)
value_of = Message.value
key_of = Message.key


def timestamp_of(msg: Message) -> int:
    """The message's Kafka timestamp in ms (0 when it has none)."""
    kind, ts = msg.timestamp()
    return int(ts) if kind != 0 and ts > 0 else 0  # 0: TIMESTAMP_NOT_AVAILABLE


def newest_timestamp(msgs: Iterable[Message]) -> int:
    """The largest Kafka timestamp (ms) of `msgs`, 0 when none has one."""
    return max((ts for kind, ts in map(Message.timestamp, msgs) if kind != 0), default=0)


class TP(NamedTuple):
    """A topic partition (hashable, ordered)."""

    topic: str
    partition: int


class Committed(NamedTuple):
    """A committed offset and its metadata."""

    offset: int
    metadata: str = ""


class CommitRefusedError(Exception):
    """The group refused the commit: a rebalance began or the member left the group."""


class LoaderConsumer:
    """A subscribed librdkafka consumer with the calls the loader uses (see the module docstring)."""

    def __init__(self, config: Mapping[str, Any], max_records: int) -> None:
        self._config = {
            **config,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
        }
        self._consumer = Consumer(self._config)
        self._max_records = max_records
        self._topics: list[str] = []

    # -- group membership -----------------------------------------------------------------------------
    def subscribe(self, topics: Iterable[str], on_revoke: Callable[[list[TP]], None]) -> None:
        self._topics = sorted(topics)

        def revoked(_consumer: Any, parts: list[TopicPartition]) -> None:
            on_revoke([TP(p.topic, p.partition) for p in parts])

        self._consumer.subscribe(self._topics, on_revoke=revoked, on_lost=revoked)

    def subscription(self) -> list[str]:
        return list(self._topics)

    def assignment(self) -> set[TP]:
        return {TP(p.topic, p.partition) for p in self._consumer.assignment()}

    def close(self) -> None:
        """Leave the group; nothing is committed (auto commit is off)."""
        self._consumer.close()

    # -- reading --------------------------------------------------------------------------------------
    def poll(self, timeout_ms: int) -> dict[TP, list[Message]]:
        msgs = self._consumer.consume(num_messages=self._max_records, timeout=timeout_ms / 1000)
        if not msgs:
            return {}
        if any(map(Message.error, msgs)):
            for m in msgs:
                if (err := m.error()) is not None:
                    log.warning("consumer error: %s", err)
            msgs = [m for m in msgs if m.error() is None]
        keys = zip(map(Message.topic, msgs), map(Message.partition, msgs), strict=True)
        out: dict[TP, list[Message]] = {}
        # One Python step per run of one partition, not per message.
        for key, run in groupby(zip(keys, msgs, strict=True), key=_FIRST):
            out.setdefault(TP(*key), []).extend(map(_SECOND, run))
        return out

    def seek(self, tp: TP, offset: int) -> None:
        self._consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    def seek_to_beginning(self, tp: TP) -> None:
        self._consumer.seek(TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING))

    def position(self, tp: TP) -> int:
        """The offset of the next record to read: after the last one consumed, or, before any, where reading
        starts (the committed offset, else the log start as `auto.offset.reset` says)."""
        [p] = self._consumer.position([TopicPartition(tp.topic, tp.partition)])
        if p.offset >= 0:
            return int(p.offset)
        committed = self.committed(tp)
        if committed is not None:
            return committed.offset
        low, _high = self._consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=_TIMEOUT_S)
        return int(low)

    # -- offsets --------------------------------------------------------------------------------------
    def committed(self, tp: TP) -> Committed | None:
        [p] = self._consumer.committed([TopicPartition(tp.topic, tp.partition)], timeout=_TIMEOUT_S)
        if p.error is not None:
            raise KafkaException(p.error)
        if p.offset < 0:
            return None
        return Committed(p.offset, p.metadata or "")

    def commit(self, offsets: Mapping[TP, Committed]) -> None:
        """Commit exactly `offsets`, synchronously. CommitRefusedError when the group moved on."""
        parts = [TopicPartition(tp.topic, tp.partition, c.offset, metadata=c.metadata) for tp, c in offsets.items()]
        try:
            result = self._consumer.commit(offsets=parts, asynchronous=False)
        except KafkaException as exc:
            if exc.args and isinstance(exc.args[0], KafkaError) and exc.args[0].code() in _REFUSED_COMMIT:
                raise CommitRefusedError(str(exc)) from exc
            raise
        for p in result or ():
            if p.error is not None:
                if p.error.code() in _REFUSED_COMMIT:
                    raise CommitRefusedError(str(p.error))
                raise KafkaException(p.error)

    def end_offsets(self, tps: Iterable[TP], timeout_ms: int = 30_000) -> dict[TP, int]:
        """Each partition's end as this read_committed consumer sees it (the last stable offset)."""
        timeout = timeout_ms / 1000
        return {
            tp: int(self._consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=timeout)[1])
            for tp in tps
        }
