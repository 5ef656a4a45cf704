"""FlowProducer: FlowRecords to Kafka (idempotent, acks=all), spilling to a disk spool while Kafka is away.

Two modes:
- direct: the spool is empty and Kafka answers; ``send`` hands the record to the Kafka client, which keeps
  it (and retries it) until the broker acknowledges it.
- spooling: Kafka failed a send, refused one, or left the oldest unacknowledged record waiting longer than
  ``spill_after_s``, or more than ``max_in_flight`` records are waiting. On entering it, every record not
  yet acknowledged is written to the spool in send order, and from then on ``send`` appends to the spool.
  A background thread replays the spool in order, batch by batch, once the records already handed to the
  client are resolved; a record leaves the spool only after Kafka acknowledged it. When the spool is empty
  the producer returns to direct mode.
So records reach Kafka in the order ``send`` saw them, across outages and agent restarts (a spool left by a
previous run is replayed before anything new). A record whose fate is unknown (a definitive send failure
after the broker may have written it, or ``close`` before an acknowledgement) is sent again: duplicates are
possible in those cases, losses are not, and ``agent_id`` + ``seq`` identify duplicates downstream.

Key: the flow's 5-tuple (``src/sport>dst/dport/proto``). The Flink job re-keys by partner x direction x
link anyway, so the Kafka key only decides partition balance and per-partition event-time order. Keying by
partner or link would put most traffic (Japan) on one partition and leave partitions idle, and an idle
partition holds back Flink's per-partition watermark for every window. Hashing the 5-tuple spreads records
evenly, so every partition carries the agent's export stream at about the same event time and watermarks
advance together; successive slices of one long flow (active timeout) stay in one partition, in order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Producer
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ingest.spool import Pos, Spool
from schemas import codec
from schemas.flow_record import FlowRecord

log = logging.getLogger(__name__)

_PENDING: Final = 0
_ACKED: Final = 1
_FAILED: Final = 2
# Produce latency buckets, seconds: sub-ms when healthy up to minutes while spooled.
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def flow_key(rec: FlowRecord) -> bytes:
    """Kafka key of a record: its 5-tuple (see the module docstring for why)."""
    return f"{rec.src_ip}/{rec.src_port}>{rec.dst_ip}/{rec.dst_port}/{rec.protocol}".encode()


@dataclass(slots=True, eq=False)
class _Pending:
    """Records handed to Kafka together (one `send_batch`, or one record read back from the spool).

    Each record is acknowledged or failed on its own (`states`); `pos` is where each sits in the spool once
    spilled (None while only in memory, and for records acknowledged before the spill).
    """

    items: Sequence[tuple[bytes, bytes]]  # (key, value)
    t0: float | None  # monotonic time send saw them; None when read from a previous run's spool
    states: bytearray
    pos: list[Pos | None]

    @classmethod
    def of(cls, items: Sequence[tuple[bytes, bytes]], t0: float | None, pos: Pos | None = None) -> _Pending:
        return cls(items, t0, bytearray(len(items)), [pos] * len(items))

    def spooled_pending(self) -> bool:
        return any(p is not None and s == _PENDING for p, s in zip(self.pos, self.states, strict=True))


class _RateLimitedLog:
    """At most one message per ``interval_s`` per kind, with the number of suppressed ones."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) < self.interval_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        n = self._suppressed.pop(kind, 0)
        self._last[kind] = now
        log.warning(msg + (f" ({n} similar messages suppressed)" if n else ""), *args)


@dataclass
class _Latency:
    buckets: Sequence[float] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.buckets, seconds)] += 1
        self.total += seconds


class FlowProducer:
    """Send FlowRecords to ``topic``; never blocks on Kafka for long and never loses a record silently.

    Counters (ints, also exported as ``gwtel_producer_*`` metrics when ``registry`` is given):
    ``produced`` (records given to ``send``), ``acked`` (acknowledged by Kafka), ``spooled`` (written to the
    spool), ``replayed`` (left the spool after an acknowledgement), ``dropped`` (spool full), ``send_errors``
    (sends Kafka refused or failed). At rest: produced == acked + dropped + records still pending.

    The client is librdkafka (confluent-kafka): its delivery reports are served by this object's background
    thread only, so acknowledgements are counted on one thread.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        spool_dir: str | Path,
        spool_max_bytes: int,
        compression: str | None = "lz4",
        linger_ms: int = 20,
        batch_size: int = 1024 * 1024,
        spill_after_s: float = 2.0,
        max_in_flight: int = 100_000,
        replay_batch: int = 1000,
        delivery_timeout_ms: int = 120_000,
        connect_timeout_s: float = 5.0,
        client_id: str = "gwtel-agent",
        registry: CollectorRegistry | None = None,
        extra_kafka: dict[str, Any] | None = None,
        client_factory: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        """``extra_kafka`` adds or overrides librdkafka settings; ``client_factory`` replaces
        ``confluent_kafka.Producer`` itself (tests)."""
        self.bootstrap = bootstrap
        self.topic = topic
        self.spill_after_s = spill_after_s
        self.max_in_flight = max_in_flight
        self.replay_batch = replay_batch
        self.connect_timeout_s = connect_timeout_s
        self._kafka_config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": compression or "none",
            "linger.ms": linger_ms,
            "batch.size": batch_size,
            "delivery.timeout.ms": delivery_timeout_ms,
            "request.timeout.ms": min(30_000, delivery_timeout_ms - linger_ms),
            "reconnect.backoff.max.ms": 2_000,
            # Room for a burst of batches; past it produce() raises BufferError at once (a spill, not a hang).
            "queue.buffering.max.messages": 1_000_000,
            **(extra_kafka or {}),
        }
        self.produced = 0
        self.acked = 0
        self.spooled = 0
        self.replayed = 0
        self.dropped = 0
        self.send_errors = 0
        self.latency = _Latency()
        self._stats_lock = threading.Lock()  # counters touched by the sender and the background thread
        self._lock = threading.Lock()  # mode, spool and the queues below
        self._spool = Spool(spool_dir, spool_max_bytes)
        self.spool_corrupt_tails = self._spool.corrupt_tails
        if self._spool.corrupt_tails:
            log.warning(
                "spool %s: %d corrupt tail(s), %d bytes, cut off at start-up (an interrupted write)",
                spool_dir,
                self._spool.corrupt_tails,
                self._spool.corrupt_bytes,
            )
        self._direct: deque[_Pending] = deque()  # handed to Kafka in direct mode, not in the spool
        self._direct_records = 0  # records in self._direct
        self._head: list[_Pending] = []  # spool records handed to Kafka, in spool order
        self._acked_ahead: set[Pos] = set()  # acknowledged but behind an unacknowledged one: skip on replay
        self._orphans: list[tuple[_Pending, int]] = []  # could not be spilled (spool full); still with the client
        self._spooling = not self._spool.empty()  # a spool left by a previous run goes first
        self._closed = False
        self._rlog = _RateLimitedLog()
        self._producer: Any = None
        self._client_factory = client_factory
        self._connect()
        if self._producer is None:
            self._spooling = True
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pump = threading.Thread(target=self._run, name="gwtel-producer-spool", daemon=True)
        self._pump.start()
        if registry is not None:
            registry.register(_ProducerCollector(self))

    # -- public ---------------------------------------------------------------------------------------
    def send(self, rec: FlowRecord) -> None:
        self.send_raw(flow_key(rec), codec.encode(rec))

    def send_raw(self, key: bytes, value: bytes) -> None:
        """Send an already encoded record (replay tools, tests)."""
        self.send_batch(((key, value),))

    def send_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Send already encoded records, (key, value) each, in order: each is handed to the client as it is."""
        if not items:
            return
        p = _Pending.of(items, time.monotonic())
        with self._lock:
            if self._closed:
                raise RuntimeError("FlowProducer is closed")
            with self._stats_lock:
                self.produced += len(items)
            self._prune_direct()
            if not self._spooling:
                self._check_direct(full=False)
            if self._spooling or self._producer is None:
                for key, value in items:
                    self._to_spool(key, value)
                return
            handed = self._hand_to_kafka(p)
            self._direct.append(p)
            self._direct_records += len(items)
            if handed < len(items):
                self._enter_spooling("Kafka refused a record")

    @property
    def spool_pending(self) -> int:
        return self._spool.pending_records

    @property
    def spool_bytes(self) -> int:
        return self._spool.size_bytes

    @property
    def spooling(self) -> bool:
        return self._spooling

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what can be delivered within ``timeout`` s; keep the rest in the spool for the next run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._idle():
            self._wake.set()
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        self._pump.join(max(0.1, deadline - time.monotonic()))
        with self._lock:
            self._closed = True
            self._prune_direct()
            self._resolve_head()
            # Not acknowledged yet: keep them for the next run (may duplicate if Kafka wrote them).
            for p in self._direct:
                for i, (key, value) in enumerate(p.items):
                    if p.states[i] != _ACKED:
                        self._to_spool(key, value)
            for p, i in self._orphans:
                if p.states[i] != _ACKED:
                    self._to_spool(*p.items[i])
            self._direct.clear()
            self._direct_records = 0
            self._orphans.clear()
            self._spool.close()
        if self._producer is not None:
            _close_client(self._producer)
            self._producer = None

    def __enter__(self) -> FlowProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Kafka ----------------------------------------------------------------------------------------
    def _connect(self) -> None:
        try:
            client = (self._client_factory or Producer)(dict(self._kafka_config))
            # librdkafka connects lazily: ask for the topic's metadata so that a missing broker shows at once.
            client.list_topics(self.topic, timeout=self.connect_timeout_s)
        except Exception as exc:  # no broker yet: spool and retry in the background
            self._rlog.warning("connect", "Kafka at %s unreachable (%s); spooling", self.bootstrap, exc)
            self._producer = None
            return
        self._producer = client

    def _hand_to_kafka(self, p: _Pending) -> int:
        """Hand `p`'s records to the client in order; how many it took (the rest are marked failed)."""
        produce = self._producer.produce
        topic = self.topic
        delivered = self._delivered
        i = 0
        try:
            for i, (key, value) in enumerate(p.items):
                produce(topic, value, key, on_delivery=partial(delivered, p, i))
        except (BufferError, KafkaException, TypeError, ValueError) as exc:  # queue full, unknown topic, ...
            self._rlog.warning("send", "Kafka refused a record (%s); spooling", exc)
            for j in range(i, len(p.items)):
                p.states[j] = _FAILED
            with self._stats_lock:
                self.send_errors += 1
            return i
        return len(p.items)

    def _delivered(self, p: _Pending, i: int, err: KafkaError | None, _msg: object) -> None:
        # Runs on the background thread (the only caller of poll): no self._lock here.
        if err is None:
            if p.states[i] == _ACKED:
                return
            p.states[i] = _ACKED
            self.acked += 1
            if p.t0 is not None:
                self.latency.observe(time.monotonic() - p.t0)
            return
        if self._closed:
            return
        p.states[i] = _FAILED
        with self._stats_lock:
            self.send_errors += 1
        self._rlog.warning("send", "Kafka send failed (%s); the record is kept for replay", err)

    # -- bookkeeping (caller holds self._lock) ---------------------------------------------------------
    def _prune_direct(self) -> None:
        while self._direct and all(s == _ACKED for s in self._direct[0].states):
            self._direct_records -= len(self._direct.popleft().items)

    def _check_direct(self, full: bool) -> None:
        """Spill when Kafka failed or stalls; ``full`` also looks past the oldest records (the pump does)."""
        if not self._direct:
            return
        first = self._direct[0]
        if _FAILED in first.states or (full and any(_FAILED in p.states for p in self._direct)):
            self._enter_spooling("a send failed")
        elif first.t0 is not None and time.monotonic() - first.t0 > self.spill_after_s:
            self._enter_spooling(f"no acknowledgement for {self.spill_after_s:.1f}s")
        elif self._direct_records >= self.max_in_flight:
            self._enter_spooling(f"{self._direct_records} records waiting for Kafka")

    def _enter_spooling(self, why: str) -> None:
        self._rlog.warning("spool", "Kafka at %s: %s; spooling to %s", self.bootstrap, why, self._spool.dir)
        for p in self._direct:
            spilled = False
            for i, (key, value) in enumerate(p.items):
                if p.states[i] == _ACKED:
                    continue
                pos = self._spool.append(key, value)
                if pos is None:
                    self._orphans.append((p, i))  # still with the client; dropped only if it fails
                    continue
                p.pos[i] = pos
                spilled = True
                with self._stats_lock:
                    self.spooled += 1
            if spilled:
                self._head.append(p)
        self._direct.clear()
        self._direct_records = 0
        # Set last: `spooling` is read without the lock (metrics, callers), and must not say so before the
        # records in hand are in the spool (a reader saw spooling with nothing pending).
        self._spooling = True

    def _to_spool(self, key: bytes, value: bytes) -> None:
        pos = self._spool.append(key, value)
        with self._stats_lock:
            if pos is None:
                self.dropped += 1
            else:
                self.spooled += 1
        if pos is None:
            self._rlog.warning(
                "dropped",
                "spool %s is full (%d bytes): record dropped, %d dropped so far",
                self._spool.dir,
                self._spool.max_bytes,
                self.dropped,
            )

    def _resolve_head(self) -> None:
        """Commit the acknowledged prefix of the spool; remember acknowledged records past a gap."""
        done = 0
        last: Pos | None = None
        gap = False
        for p in self._head:
            for pos, state in zip(p.pos, p.states, strict=True):
                if pos is None:
                    continue  # acknowledged before the spill, or an orphan: not in the spool
                if state == _ACKED and not gap:
                    done += 1
                    last = pos
                elif state == _ACKED:
                    self._acked_ahead.add(pos)
                else:
                    gap = True
        if last is not None:
            self._spool.commit(last, done)
            with self._stats_lock:
                self.replayed += done
        self._head.clear()

    def _handle_orphans(self) -> None:
        keep = []
        for p, i in self._orphans:
            if p.states[i] == _FAILED:
                self._to_spool(*p.items[i])
            elif p.states[i] == _PENDING:
                keep.append((p, i))
        self._orphans = keep

    def _advance(self) -> None:
        """Spooling mode: once the records handed to Kafka are resolved, commit and send the next batch."""
        if any(p.spooled_pending() for p in self._head):
            return
        self._resolve_head()
        if self._spool.empty():
            if not self._direct and not self._orphans:
                self._spooling = False
                self._acked_ahead.clear()
                log.info("Kafka at %s: spool drained, back to direct sends", self.bootstrap)
            return
        for r in self._spool.read(self.replay_batch):
            p = _Pending.of(((r.key, r.value),), None, r.pos)
            self._head.append(p)
            if r.pos in self._acked_ahead:
                self._acked_ahead.discard(r.pos)
                p.states[0] = _ACKED
                continue
            if self._hand_to_kafka(p) == 0:
                break  # refused (counted): retried on a later round

    def _idle(self) -> bool:
        with self._lock:
            self._prune_direct()
            return not self._spooling and not self._direct and not self._head

    # -- background -----------------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            producer = self._producer
            if producer is not None:
                producer.poll(0.05)  # serves delivery reports (this thread is their only caller)
            else:
                self._wake.wait(0.05)
            self._wake.clear()
            if self._producer is None:
                self._connect()
                if self._producer is None:
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.2
            try:
                with self._lock:
                    if self._closed:
                        return
                    self._prune_direct()
                    self._handle_orphans()
                    if not self._spooling:
                        self._check_direct(full=True)
                    if self._spooling:
                        self._advance()
            except Exception:  # keep the pump alive; the next round retries
                log.exception("spool pump error")
                self._stop.wait(1.0)


def _close_client(client: Any) -> None:
    """Drop what the client still holds (it is in the spool already) and serve its last reports."""
    with contextlib.suppress(Exception):
        client.purge()
    with contextlib.suppress(Exception):
        client.flush(0)


class _ProducerCollector(Collector):
    """Exports a FlowProducer's counters as Prometheus metrics, read at scrape time."""

    def __init__(self, producer: FlowProducer) -> None:
        self._p = producer

    def collect(self) -> Iterator[Any]:
        p = self._p
        counters = (
            ("produced", p.produced, "records given to the producer"),
            ("acked", p.acked, "records acknowledged by Kafka"),
            ("spooled", p.spooled, "records written to the disk spool"),
            ("replayed", p.replayed, "records that left the spool after Kafka acknowledged them"),
            ("dropped", p.dropped, "records dropped because the spool was full"),
            ("send_errors", p.send_errors, "sends that Kafka refused or failed"),
            ("spool_corrupt_tails", p.spool_corrupt_tails, "corrupt spool tails cut off at start-up"),
        )
        for name, value, doc in counters:
            c = CounterMetricFamily(f"gwtel_producer_{name}", doc)
            c.add_metric([], value)
            yield c
        g = GaugeMetricFamily("gwtel_producer_spool_records", "records waiting in the spool")
        g.add_metric([], p.spool_pending)
        yield g
        g = GaugeMetricFamily("gwtel_producer_spool_bytes", "bytes of spool segment files on disk")
        g.add_metric([], p.spool_bytes)
        yield g
        lat = p.latency
        cumulative = []
        running = 0
        for bound, n in zip([*lat.buckets, float("inf")], lat.counts, strict=True):
            running += n
            cumulative.append((str(bound) if bound != float("inf") else "+Inf", running))
        h = HistogramMetricFamily("gwtel_producer_latency_seconds", "time from send() to Kafka's acknowledgement")
        h.add_metric([], cumulative, lat.total)
        yield h
