"""FlowProducer's mode machine against an in-process fake of the Kafka client (the real broker is in
tests/integration/test_producer_kafka.py): order, spill, replay, restart, full spool, counters."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ingest.producer import FlowProducer, flow_key
from schemas import codec
from schemas.flow_record import FlowRecord

Report = Callable[[Any, Any], None]


class FakeKafka:
    """Like confluent-kafka's Producer: holds sends until told to deliver (acknowledge, in order) or fail them,
    like a broker that is away; delivery reports run only inside poll() / flush()."""

    def __init__(self, auto: bool = True) -> None:
        self.auto = auto  # acknowledge at once
        self.refuse = False  # produce() raises BufferError, like librdkafka with its queue full
        self.written: list[bytes] = []  # what the "broker" stored, in order
        self.pending: list[tuple[bytes, Report]] = []
        self.reports: list[tuple[Report, Any]] = []  # (callback, error or None), served by poll()
        self.lock = threading.Lock()
        self.closed = False

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Report) -> None:
        if self.refuse:
            raise BufferError("queue full")
        with self.lock:
            self.pending.append((value, on_delivery))
        if self.auto:
            self.deliver()

    def list_topics(self, topic: str, timeout: float) -> None:
        pass

    def deliver(self, n: int | None = None) -> None:
        """Acknowledge the oldest `n` records held (all by default)."""
        with self.lock:
            n = len(self.pending) if n is None else n
            batch, self.pending = self.pending[:n], self.pending[n:]
            for value, cb in batch:
                self.written.append(value)
                self.reports.append((cb, None))

    def fail_pending(self) -> None:
        with self.lock:
            batch, self.pending = self.pending, []
            self.reports.extend((cb, TimeoutError("delivery timeout")) for _value, cb in batch)

    def poll(self, timeout: float) -> int:
        with self.lock:
            reports, self.reports = self.reports, []
        for cb, err in reports:
            cb(err, None)
        if not reports:
            time.sleep(min(timeout, 0.005))
        return len(reports)

    def flush(self, timeout: float = 0) -> int:
        self.poll(0)
        return len(self.pending)

    def purge(self) -> None:
        self.closed = True


def record(seq: int) -> FlowRecord:
    ns = 1_700_000_000 * 10**9 + seq
    hist: tuple[()] = ()
    return FlowRecord(1, "agent-a", seq, "link-0", 1, 4, "10.0.0.1", 40000 + seq % 1000, "133.1.1.1", 443, 6, 0,
                      ns, ns + 1000, ns + 2000, "fin", 100, 1, 200, 2, 0x1B, 0x1B, 0, 0, 900, 100,
                      0, None, None, 0, hist, 0, None, None, 0, hist, 0, None, None, 0, hist,
                      "egress", "japan", "JP", 0)  # fmt: skip


def seqs(values: list[bytes]) -> list[int]:
    return [codec.decode(v).seq for v in values]


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def make(tmp_path: Path, fake: FakeKafka | None, **kw: Any) -> FlowProducer:
    def factory(_cfg: dict[str, Any]) -> FakeKafka:
        if fake is None:
            raise ConnectionError("no broker")
        return fake

    kw.setdefault("spool_max_bytes", 1 << 20)
    kw.setdefault("spill_after_s", 0.05)
    return FlowProducer("127.0.0.1:1", "flows", spool_dir=tmp_path / "spool", client_factory=factory, **kw)


def test_key_is_the_five_tuple() -> None:
    assert flow_key(record(7)) == b"10.0.0.1/40007>133.1.1.1/443/6"


def test_healthy_broker_gets_everything_directly(tmp_path: Path) -> None:
    fake = FakeKafka()
    p = make(tmp_path, fake)
    for i in range(100):
        p.send(record(i))
    p.close(5)
    assert seqs(fake.written) == list(range(100))
    assert (p.produced, p.acked, p.spooled, p.replayed, p.dropped, p.send_errors) == (100, 100, 0, 0, 0, 0)
    assert sum(p.latency.counts) == 100


def test_stalled_broker_spills_then_replays_in_order_exactly_once(tmp_path: Path) -> None:
    fake = FakeKafka()
    p = make(tmp_path, fake)
    for i in range(10):
        p.send(record(i))
    fake.auto = False  # the broker stops answering
    for i in range(10, 20):
        p.send(record(i))
    wait_for(lambda: p.spooling)
    for i in range(20, 50):
        p.send(record(i))  # go to the spool
    assert p.spool_pending == 40  # 10 spilled in-flight + 30 new
    assert seqs(fake.written) == list(range(10))
    fake.auto = True
    fake.deliver()  # the broker returns: the client delivers what it held, then the spool is replayed
    wait_for(lambda: not p.spooling)
    p.send(record(50))
    p.close(5)
    assert seqs(fake.written) == list(range(51))
    assert p.spool_pending == 0
    assert (p.produced, p.acked, p.spooled, p.replayed, p.dropped) == (51, 51, 40, 40, 0)


def test_spooling_is_reported_once_the_records_in_hand_are_in_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `spooling` is read without the producer's lock (metrics, callers, the broker-kill test): it must not say so
    # while the records in hand are still being written to the spool (a reader saw spooling, nothing pending).
    fake = FakeKafka(auto=False)
    p = make(tmp_path, fake)
    seen: list[bool] = []
    append = p._spool.append

    def watched(key: bytes, value: bytes) -> Any:
        seen.append(p.spooling)
        return append(key, value)

    monkeypatch.setattr(p._spool, "append", watched)
    for i in range(20):
        p.send(record(i))
    wait_for(lambda: p.spooling)
    assert p.spool_pending == 20
    assert seen == [False] * 20
    p.close(1)


def test_failed_sends_are_replayed_from_the_spool_in_order(tmp_path: Path) -> None:
    fake = FakeKafka(auto=False)
    p = make(tmp_path, fake, spill_after_s=60)
    for i in range(20):
        p.send(record(i))
    fake.fail_pending()  # delivery timeout of everything the client held
    wait_for(lambda: p.spooling)
    for i in range(20, 30):
        p.send(record(i))
    # The pump's replay of the spool head is itself held by the client; then the broker returns.
    fake.auto = True
    fake.deliver()
    wait_for(lambda: not p.spooling)
    p.close(5)
    assert seqs(fake.written) == list(range(30))
    assert p.send_errors == 20
    assert (p.acked, p.dropped, p.spool_pending) == (30, 0, 0)


def test_refused_send_spills(tmp_path: Path) -> None:
    fake = FakeKafka()
    p = make(tmp_path, fake)
    p.send(record(0))
    fake.refuse = True
    p.send(record(1))
    assert p.spooling and p.send_errors == 1
    p.send(record(2))
    fake.refuse = False
    wait_for(lambda: not p.spooling)
    p.close(5)
    assert seqs(fake.written) == [0, 1, 2]


def test_unreachable_at_start_spools_and_restart_replays_before_new_records(tmp_path: Path) -> None:
    p = make(tmp_path, None)
    for i in range(25):
        p.send(record(i))
    assert p.spooling and p.spool_pending == 25
    p.close(0.2)  # the agent stops while Kafka is still away

    fake = FakeKafka()
    again = make(tmp_path, fake)
    for i in range(25, 30):
        again.send(record(i))  # queued behind the previous run's spool
    wait_for(lambda: not again.spooling)
    again.close(5)
    assert seqs(fake.written) == list(range(30))
    assert (again.produced, again.acked, again.replayed) == (5, 30, 30)


def test_close_keeps_unacknowledged_direct_records_for_the_next_run(tmp_path: Path) -> None:
    fake = FakeKafka(auto=False)
    p = make(tmp_path, fake, spill_after_s=60)
    for i in range(5):
        p.send(record(i))
    p.close(0.2)  # nothing acknowledged
    assert fake.closed
    fake2 = FakeKafka()
    again = make(tmp_path, fake2)
    wait_for(lambda: not again.spooling)
    again.close(5)
    assert seqs(fake2.written) == list(range(5))


def test_full_spool_drops_counts_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    size = len(codec.encode(record(0))) + len(flow_key(record(0))) + 10
    p = make(tmp_path, None, spool_max_bytes=size * 10)
    with caplog.at_level(logging.WARNING, logger="ingest.producer"):
        for i in range(30):
            p.send(record(i))
    assert p.spooled == 10 and p.dropped == 20 and p.produced == 30
    drops = [r for r in caplog.records if "full" in r.getMessage()]
    assert len(drops) == 1  # rate-limited: one line, not twenty
    p.close(0.1)
    fake = FakeKafka()
    again = make(tmp_path, fake)
    wait_for(lambda: not again.spooling)
    again.close(5)
    assert seqs(fake.written) == list(range(10))  # the oldest ten were kept


def test_metrics_in_a_registry(tmp_path: Path) -> None:
    fake = FakeKafka()
    reg = CollectorRegistry()
    p = make(tmp_path, fake, registry=reg)
    for i in range(3):
        p.send(record(i))
    p.close(5)
    text = generate_latest(reg).decode()
    assert "gwtel_producer_produced_total 3.0" in text
    assert "gwtel_producer_acked_total 3.0" in text
    assert "gwtel_producer_dropped_total 0.0" in text
    assert "gwtel_producer_spool_records 0.0" in text
    assert 'gwtel_producer_latency_seconds_bucket{le="+Inf"} 3.0' in text
    assert "gwtel_producer_latency_seconds_count 3.0" in text


def test_send_after_close_is_an_error(tmp_path: Path) -> None:
    p = make(tmp_path, FakeKafka())
    p.close(1)
    with pytest.raises(RuntimeError, match="closed"):
        p.send(record(0))


def encoded(seq: int) -> tuple[bytes, bytes]:
    return flow_key(record(seq)), codec.encode(record(seq))


def test_send_batch_hands_every_record_in_order(tmp_path: Path) -> None:
    fake = FakeKafka()
    p = make(tmp_path, fake)
    p.send_batch([encoded(i) for i in range(50)])
    p.send_batch([])
    p.send(record(50))
    p.send_batch([encoded(i) for i in range(51, 60)])
    p.close(5)
    assert seqs(fake.written) == list(range(60))
    assert (p.produced, p.acked, p.spooled, p.send_errors) == (60, 60, 0, 0)
    assert sum(p.latency.counts) == 60


def test_a_batch_partly_acknowledged_replays_only_its_failed_records(tmp_path: Path) -> None:
    fake = FakeKafka(auto=False)
    p = make(tmp_path, fake, spill_after_s=60)
    p.send_batch([encoded(i) for i in range(10)])
    fake.deliver(4)  # the broker took 0-3 ...
    fake.fail_pending()  # ... and 4-9 timed out
    wait_for(lambda: p.spooling)
    p.send_batch([encoded(i) for i in range(10, 15)])  # behind the spool
    fake.auto = True
    fake.deliver()
    wait_for(lambda: not p.spooling)
    p.close(5)
    assert seqs(fake.written) == list(range(15))  # each once, in order
    assert (p.produced, p.acked, p.send_errors, p.spool_pending) == (15, 15, 6, 0)


def test_a_refused_batch_spills_the_records_not_taken(tmp_path: Path) -> None:
    fake = FakeKafka()
    p = make(tmp_path, fake)
    taken = 0
    produce = fake.produce

    def refuse_after_three(topic: str, value: bytes, key: bytes, on_delivery: Report) -> None:
        nonlocal taken
        if taken == 3:
            raise BufferError("queue full")
        taken += 1
        produce(topic, value, key, on_delivery)

    fake.produce = refuse_after_three  # type: ignore[method-assign]
    p.send_batch([encoded(i) for i in range(8)])
    assert p.spooling
    fake.produce = produce  # type: ignore[method-assign]
    wait_for(lambda: not p.spooling)
    p.close(5)
    assert seqs(fake.written) == list(range(8))
    assert (p.produced, p.acked, p.dropped) == (8, 8, 0)
