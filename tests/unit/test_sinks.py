"""Record sinks: batches passed on whole (Kafka pairs, JSON lines as they are), single records still accepted."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from ingest.producer import flow_key
from ingest.sinks import EncodedBatch, JsonlSink, KafkaSink, ObservedSink, batch_writer
from schemas import codec
from schemas.flow_record import FlowRecord
from tests.records import sample_flow


def _batch(recs: list[FlowRecord]) -> EncodedBatch:
    return EncodedBatch(
        len(recs), b"".join(flow_key(r) + b"\n" for r in recs), b"".join(codec.encode(r) + b"\n" for r in recs)
    )


def _records() -> list[FlowRecord]:
    return [sample_flow(seq=i, agent_id='a"\n\u00e9') for i in range(3)]


def test_pairs_and_records_of_a_batch() -> None:
    recs = _records()
    b = _batch(recs)
    assert b.pairs() == [(flow_key(r), codec.encode(r)) for r in recs]
    assert b.records() == recs
    empty = EncodedBatch(0, b"", b"")
    assert empty.pairs() == [] and empty.records() == []


class _Producer:
    def __init__(self) -> None:
        self.batches: list[list[tuple[bytes, bytes]]] = []
        self.single: list[FlowRecord] = []

    def send_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        self.batches.append(list(items))

    def send(self, rec: FlowRecord) -> None:
        self.single.append(rec)


def test_kafka_sink_hands_the_producer_whole_batches() -> None:
    p = _Producer()
    sink = KafkaSink(p)  # type: ignore[arg-type]
    recs = _records()
    sink.write_batch(_batch(recs))
    sink(recs[0])
    assert p.batches == [[(flow_key(r), codec.encode(r)) for r in recs]]
    assert p.single == [recs[0]]


def test_jsonl_sink_writes_the_values_as_they_are() -> None:
    out = io.BytesIO()
    flushed: list[int] = []
    sink = JsonlSink(out, before=lambda: flushed.append(1))
    recs = _records()
    sink.write_batch(_batch(recs))
    sink(recs[0])
    assert out.getvalue().splitlines() == [codec.encode(r) for r in [*recs, recs[0]]]
    assert len(flushed) == 2


def test_a_plain_callable_gets_each_record_and_an_observer_sees_them() -> None:
    got: list[FlowRecord] = []
    recs = _records()
    batch_writer(got.append)(_batch(recs))
    assert got == recs
    seen: list[Any] = []
    out = io.BytesIO()
    ObservedSink(JsonlSink(out), seen.append).write_batch(_batch(recs))
    assert seen == recs and len(out.getvalue().splitlines()) == 3
