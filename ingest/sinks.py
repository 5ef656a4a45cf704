"""Where FlowRecords go: one record at a time (the Python reference engine, tools, tests) or a batch the native
engine classified and encoded itself, which a sink passes on whole without touching a single record.

A batch holds the Kafka keys (``ingest.producer.flow_key``) and values (``schemas.codec.encode``), each followed
by a newline: compact JSON escapes newlines inside strings and keys are addresses and numbers, so one
``bytes.split`` (C speed) separates them, and a JSON lines file takes the values as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from ingest.producer import FlowProducer
from schemas import codec
from schemas.flow_record import FlowRecord

RecordSink = Callable[[FlowRecord], None]


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    count: int
    keys: bytes  # each key followed by b"\n"
    values: bytes  # each encoded record followed by b"\n"

    def pairs(self) -> list[tuple[bytes, bytes]]:
        """(key, value) of each record, in order."""
        if not self.count:
            return []
        keys = self.keys.split(b"\n")
        values = self.values.split(b"\n")
        keys.pop()  # the empty piece after the last newline
        values.pop()
        return list(zip(keys, values, strict=True))

    def records(self) -> list[FlowRecord]:
        """The records themselves, decoded (for sinks that take one FlowRecord at a time: slow, for tools)."""
        if not self.count:
            return []
        return [codec.decode_trusted(v) for v in self.values.split(b"\n")[:-1]]


class BatchSink(Protocol):
    """A sink that takes both single records and encoded batches."""

    def __call__(self, rec: FlowRecord) -> None: ...

    def write_batch(self, batch: EncodedBatch) -> None: ...


def batch_writer(sink: RecordSink | BatchSink) -> Callable[[EncodedBatch], None]:
    """How to hand `sink` a batch: its own `write_batch`, else record by record (decoded)."""
    write = getattr(sink, "write_batch", None)
    if write is not None:
        return write  # type: ignore[no-any-return]

    def each(batch: EncodedBatch) -> None:
        for rec in batch.records():
            sink(rec)

    return each


class KafkaSink:
    """Records to the flows topic through the agent's producer (spool, delivery accounting)."""

    def __init__(self, producer: FlowProducer) -> None:
        self.producer = producer

    def __call__(self, rec: FlowRecord) -> None:
        self.producer.send(rec)

    def write_batch(self, batch: EncodedBatch) -> None:
        self.producer.send_batch(batch.pairs())


class JsonlSink:
    """Records as JSON lines (the Kafka values, one a line) on a binary stream; ``before`` runs before each write
    (standard output: flush its text layer first, so lines and messages keep their order)."""

    def __init__(self, out: BinaryIO, before: Callable[[], None] | None = None) -> None:
        self.out = out
        self._before = before

    def __call__(self, rec: FlowRecord) -> None:
        if self._before is not None:
            self._before()
        self.out.write(codec.encode(rec) + b"\n")

    def write_batch(self, batch: EncodedBatch) -> None:
        if self._before is not None:
            self._before()
        self.out.write(batch.values)


class ObservedSink:
    """A sink that also shows each record to ``observe`` (batches decoded for it: for tools that need single
    records, such as the pipeline's ledger, not for the hot path)."""

    def __init__(self, inner: BatchSink, observe: RecordSink) -> None:
        self.inner = inner
        self.observe = observe

    def __call__(self, rec: FlowRecord) -> None:
        self.inner(rec)
        self.observe(rec)

    def write_batch(self, batch: EncodedBatch) -> None:
        self.inner.write_batch(batch)
        for rec in batch.records():
            self.observe(rec)
