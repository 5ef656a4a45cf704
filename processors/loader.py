"""Kafka -> ClickHouse loader: every acknowledged record stored once, nothing counted twice.

One consumer (read_committed, no auto-commit) reads the flows and aggregates topics. Records are decoded and
validated as they arrive and gathered per partition (`processors.batcher`). A ready batch is stored as:

1. dead letters of the batch sent to the dead-letter topic and acknowledged by the broker;
2. the batch's offset range announced in the group's commit metadata (`processors.intent`);
3. its rows inserted, one insert per table, with `insert_deduplication_token = topic:partition:first-last`
   and `deduplicate_blocks_in_dependent_materialized_views = 1` (so the rollup views deduplicate too);
   a failing insert is retried with the same token, backing off exponentially up to a cap, while nothing
   more is consumed (memory stays bounded by the batches in hand);
4. offset `last + 1` committed: only now is the batch acknowledged.

A crash anywhere before 4 leaves the announced range as the committed state; the next owner of the partition
pins its first batch to that range, so the retry carries the same token and ClickHouse keeps one copy.

A rebalance drops the batches in hand. Whenever the loader drops records of a partition it still owns, it
seeks that partition back to its committed offset and ignores the records of it already polled: reading on
from the fetch position would skip the dropped records while the next commit acknowledged them. A batch is
committed only while no revocation is pending for it, and a commit refused because the group is rebalancing
is not retried: after the rebalance the partition may be someone else's, and the broker would take a commit
of the new generation from any member.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from typing import Any

from processors.batcher import Batch, PartitionBatcher
from processors.config import LoaderConfig
from processors.deadletter import DeadLetter, DeadLetterSink
from processors.intent import parse_pending, pending_metadata
from processors.landing import INPUT_SETTINGS, LANDING, outcome_sql, raw_token
from processors.loader_consumer import (
    TP,
    CommitRefusedError,
    Committed,
    ConsumerError,
    LoaderConsumer,
    key_of,
    newest_timestamp,
    offset_of,
    timestamp_of,
    value_of,
)
from processors.loader_metrics import LoaderMetrics
from processors.rows import Decoder
from processors.tables import AGG_TABLES, FLOWS_RAW, TableSpec
from schemas.codec import RecordError

log = logging.getLogger("gwtel.loader")

_LAG_TIMEOUT_MS = 5_000

INSERT_SETTINGS_FIXED = {
    # Without it a retry that the source table drops as a duplicate still reaches the rollup views
    # (measured: they double count); with it each view deduplicates on a token derived from ours.
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    "insert_deduplicate": 1,
}


# Errors with which ClickHouse refuses a batch's data rather than fails to take it: the batch then takes the
# slow path, which finds the records at fault. CANNOT_PARSE_TEXT, CANNOT_PARSE_ESCAPE_SEQUENCE,
# CANNOT_PARSE_QUOTED_STRING, CANNOT_PARSE_INPUT_ASSERTION_FAILED, ATTEMPT_TO_READ_AFTER_EOF,
# CANNOT_READ_ALL_DATA, TYPE_MISMATCH, ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE, CANNOT_PARSE_NUMBER,
# INCORRECT_DATA, CANNOT_READ_ARRAY_FROM_TEXT, TOO_LARGE_STRING_SIZE, CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN,
# and FUNCTION_THROW_IF_VALUE_IS_NON_ZERO: the landing view's refusal of a block with more rows than records.
REFUSED_DATA_CODES = frozenset({6, 25, 26, 27, 32, 33, 53, 69, 70, 72, 117, 130, 131, 349, 395})


def refused_data(exc: Exception) -> bool:
    """ClickHouse answered that the data cannot be read (not: unreachable, overloaded, timed out)."""
    code = getattr(exc, "code", None)
    return type(exc).__name__ == "DatabaseError" and code in REFUSED_DATA_CODES


# Records per piece of a landing body: about 1 MB of JSON. Each piece comes from the heap (below the mmap
# threshold that `gwtel.allocator` sets) and is reused batch after batch; one joined body of a 50k-record batch
# (~50 MB) was a fresh mapping each time, which the kernel mapped and zeroed, and the HTTP client copied it
# again to put the statement in front.
PIECE_RECORDS = 1024


@dataclass(frozen=True, slots=True)
class LandingBody:
    """A batch's values as JSONEachRow, one record per line (each followed by a newline), in pieces that are
    sent as one HTTP body: the statement goes in the URL, so nothing is joined or copied whole."""

    pieces: tuple[bytes, ...]

    @property
    def size(self) -> int:
        return sum(map(len, self.pieces))


# Bytes below 0x20: in JSON text outside a string only whitespace, inside one never raw. The landing body's only
# one is the newline after each value: any other (or a value's own newline) sends the batch to the slow path.
_CONTROL = bytes(range(0x20))


def landing_block(values: Sequence[bytes | None]) -> LandingBody | None:
    """The batch's values as a landing body, or None when row i could not be record i or ClickHouse would read a
    record the codec refuses.

    Row i must be record i (its offset is computed from i): a value with a newline, an empty one, or one
    not starting with `{` (`[...]` holds any number of rows) would shift the rows. A raw control byte inside a
    string (a tab, a carriage return) is not JSON to the codec and the Flink job, while ClickHouse's reader
    takes it: such a value (or one with whitespace other than spaces between its tokens, which the codec takes)
    goes to the slow path. Checked with C-level passes over the values (`startswith`, then one `translate` per
    piece counting its control bytes, which must be exactly its newlines), not Python per record.
    """
    if not values or None in values:
        return None
    if not all(map(bytes.startswith, values, repeat(b"{"))):  # type: ignore[arg-type]
        return None
    pieces = tuple(
        b"\n".join([*values[i : i + PIECE_RECORDS], b""])  # type: ignore[list-item]
        for i in range(0, len(values), PIECE_RECORDS)
    )
    for i, piece in enumerate(pieces):
        lines = min(PIECE_RECORDS, len(values) - i * PIECE_RECORDS)
        if len(piece) - len(piece.translate(None, _CONTROL)) != lines:
            return None
    return LandingBody(pieces)


class LoaderStoppedError(Exception):
    """The loader was asked to stop while a batch was waiting for ClickHouse; the batch stays unacknowledged."""


@dataclass(frozen=True, slots=True)
class Route:
    """Which decoder reads a topic."""

    topic: str
    decode: Decoder
    # Raw: the values go to ClickHouse as they are (the landing path), `decode` serves only the slow path.
    raw: bool = False


@dataclass(frozen=True, slots=True)
class Decoded:
    rows: tuple[tuple[TableSpec, list[Any]], ...]
    dead: DeadLetter | None


@dataclass
class _Partition:
    batcher: PartitionBatcher[Decoded]
    committed: int | None


@dataclass
class _InFlight:
    """A raw batch whose landing insert runs in the worker thread; finished (committed) by the main thread."""

    st: _Partition
    batch: Batch[Any]
    values: list[bytes | None]
    token: str
    # (inserted, outcome): inserted False when ClickHouse refused the data (the batch takes the slow path).
    future: Future[tuple[bool, tuple[int, int, int, list[Any]] | None]]


@dataclass
class Backoff:
    initial_s: float
    max_s: float
    _next: float = field(default=0.0, init=False)

    def next_delay(self) -> float:
        self._next = self.initial_s if self._next == 0.0 else min(self._next * 2, self.max_s)
        return self._next


class _Listener:
    """Records revocations (called inside the consumer's poll); the loader takes them after the poll."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revoked: set[TP] = set()

    def on_partitions_revoked(self, revoked: list[TP]) -> None:
        with self._lock:
            self._revoked.update(revoked)

    def revoking(self, tp: TP) -> bool:
        """A revocation of `tp` was noted and not yet taken (a rebalance began since the last poll)."""
        with self._lock:
            return tp in self._revoked

    def take(self) -> set[TP]:
        with self._lock:
            out, self._revoked = self._revoked, set()
        return out


class Loader:
    def __init__(
        self,
        *,
        consumer: LoaderConsumer,
        client_factory: Callable[[], Any],
        database: str,
        routes: Sequence[Route],
        deadletters: DeadLetterSink,
        settings: LoaderConfig,
        metrics: LoaderMetrics,
        after_insert: Callable[[Batch[Decoded]], None] | None = None,
        max_future_skew_s: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.consumer = consumer
        # Connected lazily and replaced after a failure: the loader starts, and keeps its batches, while
        # ClickHouse is unreachable.
        self._client_factory = client_factory
        self._client: Any = None
        self.database = database
        self.routes = {r.topic: r for r in routes}
        # Looked up once: `labels()` per record cost about 4% of the loader's time (cProfile).
        self._consumed = {r.topic: metrics.records_consumed.labels(r.topic) for r in routes}
        self.deadletters = deadletters
        self.settings = settings
        self.metrics = metrics
        self.after_insert = after_insert
        # A flow ending this far after its record reached Kafka cannot be real (a sender's clock years
        # ahead); measured against the record's own timestamp, so a re-read decides the same way.
        self._skew_ns = None if max_future_skew_s is None else max_future_skew_s * 1_000_000_000
        self._clock = clock
        self._sleep = sleep
        self._parts: dict[TP, _Partition] = {}
        self._listener = _Listener()
        self._stop: Callable[[], bool] = lambda: False
        self._next_lag = 0.0
        self._lag_labels: set[TP] = set()
        # Partitions sought back to their committed offset in this step: the rest of the records polled for
        # them come from the old position and are read again from the committed offset instead.
        self._rewound: set[TP] = set()
        # Landing inserts run in worker threads, each with a client of its own, so ClickHouse parses batches
        # while this thread reads the next from Kafka (both cost CPU: serially the loader reached their
        # harmonic mean), and batches of different partitions at once (`insert_threads`). At most one batch
        # per partition is in flight; only this thread commits.
        self._worker = ThreadPoolExecutor(max_workers=settings.insert_threads, thread_name_prefix="gwtel-landing")
        self._land_local = threading.local()
        self._land_clients: list[Any] = []
        self._land_lock = threading.Lock()
        self._inflight: dict[TP, _InFlight] = {}
        self.consumer.subscribe(sorted(self.routes), self._listener.on_partitions_revoked)

    # -- main loop --------------------------------------------------------------------------------------
    def run(self, stop: Callable[[], bool], poll_timeout_ms: int = 200) -> None:
        """Load until `stop()` is true; unacknowledged batches in hand are simply read again next time."""
        self._stop = stop
        try:
            while not stop():
                self.step(poll_timeout_ms)
        except LoaderStoppedError:
            log.info("stopped while a batch was waiting for ClickHouse; it will be read again")

    def step(self, poll_timeout_ms: int = 200) -> None:
        polled = self.consumer.poll(poll_timeout_ms)
        self._rewound.clear()
        self._reset(self._listener.take())
        owned = self.consumer.assignment()
        for tp, records in polled.items():
            if tp not in owned:
                continue  # fetched before a revocation: someone else's now
            if self.routes[tp.topic].raw:
                self._accept_raw(tp, records)
                continue
            for rec in records:
                if not self._accept(tp, rec):
                    break  # lost or rewound while flushing: its remaining records are someone else's or re-read
        for tp in [tp for tp, fl in self._inflight.items() if fl.future.done()]:
            self._settle(tp)
        for tp in list(self._parts):
            st = self._parts.get(tp)
            if st is not None and st.batcher.ready():
                self._flush(tp)
        self._update_lag()

    def idle(self) -> bool:
        """No batch in hand: everything read so far is inserted and committed."""
        return not self._inflight and all(len(st.batcher) == 0 for st in self._parts.values())

    def close(self) -> None:
        """Leave the group without committing anything (batches in hand were not acknowledged)."""
        try:
            self._drop_inflight(set(self._inflight))
            self._worker.shutdown(wait=True)
            self.consumer.close()
        finally:
            self.deadletters.close()
            if self._client is not None:
                self._client.close()
            with self._land_lock:
                clients, self._land_clients = self._land_clients, []
            for client in clients:
                client.close()

    # -- records ----------------------------------------------------------------------------------------
    def _accept(self, tp: TP, rec: Any) -> bool:
        if tp in self._rewound:
            return False
        st = self._parts.get(tp) or self._init_partition(tp)
        nxt = st.batcher.next_offset
        offset = offset_of(rec)
        if nxt is not None and offset < nxt:
            # The consumer went back to the committed offset (a rebalance we saw no callback for): start over.
            log.warning("%s:%d rewound to %d; re-reading from the committed offset", tp.topic, tp.partition, offset)
            self._forget({tp})
            st = self._init_partition(tp)
        if st.batcher.closes_before(offset):
            self._flush(tp)
            st2 = self._parts.get(tp)
            if st2 is None:
                return False
            st = st2
        st.batcher.add(offset, self._decode(tp, rec))
        self._consumed[tp.topic].inc()
        if st.batcher.ready():
            self._flush(tp)
            return tp in self._parts
        return True

    def _accept_raw(self, tp: TP, records: Sequence[Any]) -> None:
        """Add a poll's records of a raw partition to its batches, a batch's worth at a time."""
        offsets = list(map(offset_of, records))
        i = 0
        while i < len(records):
            if tp in self._rewound:
                return
            st = self._parts.get(tp) or self._init_partition(tp)
            nxt = st.batcher.next_offset
            if nxt is not None and offsets[i] < nxt:
                log.warning(
                    "%s:%d rewound to %d; re-reading from the committed offset", tp.topic, tp.partition, offsets[i]
                )
                self._forget({tp})
                st = self._init_partition(tp)
            if st.batcher.closes_before(offsets[i]):
                self._flush(tp)
                if tp not in self._parts:
                    return
                continue
            taken = st.batcher.add_many(offsets[i:], records[i:])
            if taken == 0:
                raise RuntimeError(f"{tp.topic}:{tp.partition}: batch full but not ready")  # not reachable
            self._consumed[tp.topic].inc(taken)
            i += taken
            if st.batcher.ready():
                self._flush(tp)
                if tp not in self._parts:
                    return

    def _decode(self, tp: TP, rec: Any) -> Decoded:
        value: bytes = value_of(rec) or b""
        ts = timestamp_of(rec)
        latest = ts * 1_000_000 + self._skew_ns if self._skew_ns is not None and ts > 0 else None
        try:
            table_rows = self.routes[tp.topic].decode(value, latest)
        except RecordError as exc:
            dead = DeadLetter(tp.topic, tp.partition, offset_of(rec), key_of(rec), value, exc.reason, exc.detail)
            return Decoded((), dead)
        coords = [tp.topic, tp.partition, offset_of(rec)]
        return Decoded(tuple((spec, [*row, *coords]) for spec, row in table_rows), None)

    def _init_partition(self, tp: TP) -> _Partition:
        meta: Committed | None = self._with_retry("read committed offset", partial(self.consumer.committed, tp))
        offset = None if meta is None else meta.offset
        batcher: PartitionBatcher[Decoded] = PartitionBatcher(
            tp.topic, tp.partition, self.settings.batch_rows, self.settings.batch_seconds, clock=self._clock
        )
        pin = parse_pending(None if meta is None else meta.metadata, offset)
        if pin is not None:
            log.info("%s:%d: re-forming announced batch %d-%d", tp.topic, tp.partition, *pin)
            batcher.pin_to(*pin)
        st = _Partition(batcher, offset)
        self._parts[tp] = st
        return st

    def _reset(self, tps: set[TP], dropped: frozenset[TP] = frozenset()) -> None:
        """Forget `tps`; those that held records (in hand, or a batch `dropped` by the caller) and are still
        assigned are read again from their committed offset. The others' positions are their committed offsets
        already (everything read was committed), or fresh from the group for a newly assigned partition."""
        if not tps:
            return
        held = {tp for tp in tps if (st := self._parts.get(tp)) is not None and len(st.batcher) > 0}
        held |= tps & set(self._inflight)
        self._forget(tps)
        owned = (held | (dropped & tps)) & self.consumer.assignment()
        for tp in sorted(owned):
            meta: Committed | None = self._with_retry("read committed offset", partial(self.consumer.committed, tp))
            if meta is None:
                # Nothing committed yet: where a new member of the group would start.
                self._with_retry("seek", partial(self.consumer.seek_to_beginning, tp))
            else:
                self._with_retry("seek", partial(self.consumer.seek, tp, meta.offset))
        self._rewound |= owned

    def _forget(self, tps: set[TP]) -> None:
        self._drop_inflight(tps)
        for tp in tps:
            self._parts.pop(tp, None)
            if tp in self._lag_labels:
                # A partition this loader no longer owns must not keep reporting a stale lag.
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
                self._lag_labels.discard(tp)

    # -- storing a batch --------------------------------------------------------------------------------
    def _flush(self, tp: TP) -> None:
        self._settle(tp)  # batches of a partition are committed in order
        st = self._parts.get(tp)
        if st is None:
            return  # settling it found the group rebalancing: the records in hand were dropped
        batch = st.batcher.take()
        if self.routes[tp.topic].raw:
            self._flush_raw(tp, st, batch)
        else:
            self._store(tp, st, batch)

    def _flush_raw(self, tp: TP, st: _Partition, batch: Batch[Any]) -> None:
        """Store a batch of raw records through the landing table: ClickHouse parses and checks them.

        Falls back to the slow path (each record decoded in Python, as `_store` does for other topics) when
        the batch's rows could not be numbered by offset, or ClickHouse refuses its data.
        """
        recs: tuple[Any, ...] = batch.items
        values: list[bytes | None] = list(map(value_of, recs))
        contiguous = batch.last - batch.first + 1 == len(recs) and offset_of(recs[0]) == batch.first
        body = landing_block(values) if contiguous else None
        if body is None:
            self._slow_path(tp, st, batch, "its records cannot be numbered by offset")
            return
        announce = {tp: Committed(batch.first, pending_metadata(batch.first, batch.last))}
        if not self._commit(announce):
            return
        latest = 0
        if self._skew_ns is not None:
            newest = newest_timestamp(recs)
            latest = newest * 1_000_000 + self._skew_ns if newest > 0 else 0
        token = raw_token(tp.topic, tp.partition, batch.first, batch.last, latest)
        future = self._worker.submit(self._land, body, token, tp, batch)
        self._inflight[tp] = _InFlight(st, batch, values, token, future)

    def _land(
        self, body: LandingBody, token: str, tp: TP, batch: Batch[Any]
    ) -> tuple[bool, tuple[int, int, int, list[Any]] | None]:
        """In the worker thread: insert a landing body and read its outcome."""
        if not self._insert_raw(body, token):
            return False, None
        return True, self._outcome(tp, batch, token)

    def _settle(self, tp: TP) -> None:
        """Wait for the partition's batch in flight, if any, and finish it: dead letters, then the commit."""
        fl = self._inflight.pop(tp, None)
        if fl is None:
            return
        inserted, outcome = fl.future.result()  # LoaderStoppedError when asked to stop while it waited
        if not inserted or outcome is None:
            self._slow_path(tp, fl.st, fl.batch, "ClickHouse refused its data")
            return
        records, stored, packets, quarantined = outcome
        batch, recs, values = fl.batch, fl.batch.items, fl.values
        if records != len(recs):
            log.error("%s: ClickHouse read %d rows for %d records", fl.token, records, len(recs))
        dead = [
            DeadLetter(tp.topic, tp.partition, off, key_of(recs[off - batch.first]), values[off - batch.first] or b"",
                       reason, f"field {field!r}: {reason} (checked in ClickHouse)")
            for off, reason, field in quarantined
        ]  # fmt: skip
        if dead:
            self._with_retry("send dead letters", lambda: self.deadletters.send_all(dead))
            for d in dead:
                self.metrics.dead_lettered.labels(d.reason).inc()
        if self.after_insert is not None:
            self.after_insert(batch)
        if self._commit({tp: Committed(batch.last + 1)}):
            fl.st.committed = batch.last + 1
            self.metrics.batches.labels(tp.topic).inc()
            self.metrics.last_commit.set(time.time())
            self.metrics.rows_inserted.labels(FLOWS_RAW.name).inc(stored)
            self.metrics.flow_records_stored.inc(stored)
            self.metrics.flow_packets_stored.inc(packets)

    def _drop_inflight(self, tps: set[TP]) -> None:
        """Let the inserts of `tps` finish and acknowledge nothing: their announced ranges stay pending."""
        for tp in tps:
            fl = self._inflight.pop(tp, None)
            if fl is not None:
                with contextlib.suppress(Exception):
                    fl.future.result()

    def _slow_path(self, tp: TP, st: _Partition, batch: Batch[Any], why: str) -> None:
        log.info("%s:%d:%d-%d takes the slow path: %s", tp.topic, tp.partition, batch.first, batch.last, why)
        self.metrics.slow_batches.labels(tp.topic).inc()
        decoded = tuple(self._decode(tp, rec) for rec in batch.items)
        self._store(tp, st, Batch(batch.topic, batch.partition, batch.first, batch.last, decoded))

    def _store(self, tp: TP, st: _Partition, batch: Batch[Decoded]) -> None:
        dead = [d.dead for d in batch.items if d.dead is not None]
        tables: dict[str, tuple[TableSpec, list[list[Any]]]] = {}
        for item in batch.items:
            for spec, row in item.rows:
                tables.setdefault(spec.name, (spec, []))[1].append(row)
        if dead:
            self._with_retry("send dead letters", lambda: self.deadletters.send_all(dead))
            for d in dead:
                self.metrics.dead_lettered.labels(d.reason).inc()
        if tables:
            announce = {tp: Committed(batch.first, pending_metadata(batch.first, batch.last))}
            if not self._commit(announce):
                return
            for spec, rows in tables.values():
                self._insert(spec, rows, batch.token)
            if self.after_insert is not None:
                self.after_insert(batch)
        if self._commit({tp: Committed(batch.last + 1)}):
            st.committed = batch.last + 1
            self.metrics.batches.labels(tp.topic).inc()
            self.metrics.last_commit.set(time.time())
            self._count_ledger(tables)

    def _count_ledger(self, tables: dict[str, tuple[TableSpec, list[list[Any]]]]) -> None:
        """Ledger stages, counted once a batch is acknowledged (a retried batch is not counted twice)."""
        if (flows := tables.get(FLOWS_RAW.name)) is not None:
            cols = flows[0].column_names
            fwd, rev = cols.index("packets_fwd"), cols.index("packets_rev")
            self.metrics.flow_records_stored.inc(len(flows[1]))
            self.metrics.flow_packets_stored.inc(sum(row[fwd] + row[rev] for row in flows[1]))
        if (bw := tables.get(AGG_TABLES["bandwidth"].name)) is not None:
            cols = bw[0].column_names
            win, n = cols.index("window_s"), cols.index("flows")
            size = self.settings.rollup_window_s
            self.metrics.flows_aggregated.inc(sum(row[n] for row in bw[1] if row[win] == size))

    def _insert(self, spec: TableSpec, rows: list[list[Any]], token: str) -> None:
        backoff = Backoff(self.settings.retry_initial_s, self.settings.retry_max_s)
        settings = {**INSERT_SETTINGS_FIXED, "insert_deduplication_token": token}
        while True:
            t0 = time.perf_counter()
            try:
                if self._client is None:
                    self._client = self._client_factory()
                self._client.insert(
                    spec.name,
                    rows,
                    column_names=spec.column_names,
                    column_type_names=spec.column_types,
                    database=self.database,
                    settings=settings,
                )
            except Exception as exc:  # server down, timeouts, HTTP errors: all retried with the same token
                self._drop_client()
                self.metrics.insert_retries.labels(spec.name).inc()
                self.metrics.clickhouse_up.set(0)
                delay = backoff.next_delay()
                log.warning("insert into %s (%s) failed: %s; retrying in %.1fs", spec.name, token, exc, delay)
                self._pause(delay)
                continue
            self.metrics.insert_seconds.labels(spec.name).observe(time.perf_counter() - t0)
            self.metrics.rows_inserted.labels(spec.name).inc(len(rows))
            self.metrics.clickhouse_up.set(1)
            return

    def _insert_raw(self, body: LandingBody, token: str) -> bool:
        """Insert a landing body, retrying like `_insert`; False when ClickHouse refuses the data itself."""
        backoff = Backoff(self.settings.retry_initial_s, self.settings.retry_max_s)
        settings = {**INSERT_SETTINGS_FIXED, **INPUT_SETTINGS, "insert_deduplication_token": token}
        # A list is sent piece by piece and can be sent again (HTTP retries); Content-Length, not chunks.
        length = {"Content-Length": str(body.size)}
        while True:
            t0 = time.perf_counter()
            try:
                self._land_client().raw_insert(
                    f"`{self.database}`.`{LANDING}`",
                    insert_block=list(body.pieces),
                    fmt="JSONEachRow",
                    settings=settings,
                    transport_settings=length,
                )
            except Exception as exc:
                if refused_data(exc):
                    log.info("ClickHouse refused the data of %s: %s", token, str(exc)[:300])
                    return False
                self._drop_land_client()
                self.metrics.insert_retries.labels(FLOWS_RAW.name).inc()
                self.metrics.clickhouse_up.set(0)
                delay = backoff.next_delay()
                log.warning("insert into %s (%s) failed: %s; retrying in %.1fs", LANDING, token, exc, delay)
                self._pause(delay)
                continue
            self.metrics.insert_seconds.labels(FLOWS_RAW.name).observe(time.perf_counter() - t0)
            self.metrics.clickhouse_up.set(1)
            return True

    def _outcome(self, tp: TP, batch: Batch[Any], token: str) -> tuple[int, int, int, list[Any]]:
        """(records read, rows stored, packets stored, quarantined (offset, reason, field)) of a landed batch."""
        params = {
            "token": token,
            "topic": tp.topic,
            "partition": tp.partition,
            "first": batch.first,
            "last": batch.last,
        }
        backoff = Backoff(self.settings.retry_initial_s, self.settings.retry_max_s)
        while True:
            try:
                counts, bad = self._land_client().query(outcome_sql(self.database), parameters=params).result_rows[0]
                return int(counts[0]), int(counts[1]), int(counts[2]), sorted(bad)
            except Exception as exc:
                self._drop_land_client()
                delay = backoff.next_delay()
                log.warning("reading the outcome of %s failed: %s; retrying in %.1fs", token, exc, delay)
                self._pause(delay)

    def _land_client(self) -> Any:
        """The calling worker thread's client (a client runs one request at a time), made when first needed."""
        client = getattr(self._land_local, "client", None)
        if client is None:
            client = self._land_local.client = self._client_factory()
            with self._land_lock:
                self._land_clients.append(client)
        return client

    def _drop_land_client(self) -> None:
        client, self._land_local.client = getattr(self._land_local, "client", None), None
        if client is not None:
            with self._land_lock:
                self._land_clients = [c for c in self._land_clients if c is not client]
            with contextlib.suppress(Exception):
                client.close()

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _commit(self, offsets: dict[TP, Committed]) -> bool:
        """Commit; False when the group moved on (the partitions may be someone else's now)."""
        if any(self._listener.revoking(tp) for tp in offsets):
            log.info("a rebalance began: not committing %s; dropping batches in hand", sorted(offsets))
            self._reset(set(self._parts) | set(offsets), dropped=frozenset(offsets))
            return False
        try:
            self._with_retry("commit offsets", partial(self.consumer.commit, offsets))
        except CommitRefusedError as exc:
            log.warning("commit refused (%s): the group is rebalancing; dropping batches in hand", exc)
            self._reset(set(self._parts) | set(offsets), dropped=frozenset(offsets))
            return False
        return True

    def _with_retry(self, what: str, fn: Callable[[], Any]) -> Any:
        """Call `fn` until Kafka takes it (a refused commit is not a Kafka error here: it propagates)."""
        backoff = Backoff(self.settings.retry_initial_s, self.settings.retry_max_s)
        while True:
            try:
                return fn()
            except ConsumerError as exc:
                delay = backoff.next_delay()
                log.warning("%s failed: %s; retrying in %.1fs", what, exc, delay)
                self._pause(delay)

    def _pause(self, delay: float) -> None:
        """Wait before a retry without consuming (no poll: nothing new comes in while a batch is stuck)."""
        deadline = self._clock() + delay
        while self._clock() < deadline:
            if self._stop():
                raise LoaderStoppedError
            self._sleep(min(0.1, max(0.0, deadline - self._clock())))

    # -- lag --------------------------------------------------------------------------------------------
    def _update_lag(self) -> None:
        now = self._clock()
        if now < self._next_lag:
            return
        self._next_lag = now + self.settings.lag_interval_s
        tps = [tp for tp in self.consumer.assignment() if tp in self._parts]
        if not tps:
            return
        try:
            # Bounded: the client's default (request_timeout_ms, 305 s) blocked the loader for minutes
            # after a ClickHouse outage; a lag reading can wait for the next interval.
            ends = self.consumer.end_offsets(tps, timeout_ms=_LAG_TIMEOUT_MS)
        except ConsumerError as exc:
            log.info("end offsets unavailable (%s); lag not updated this time", exc)
            return
        for tp, end in ends.items():
            st = self._parts.get(tp)
            if st is None:
                continue
            # With nothing in hand everything read is stored: count from the position, which is past the
            # commit markers of a transactional topic (the last committed offset stays one below its end).
            in_hand = (len(st.batcher) > 0 or tp in self._inflight) and st.committed is not None
            base = st.committed if in_hand and st.committed is not None else self.consumer.position(tp)
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, int(end) - int(base)))
            self._lag_labels.add(tp)
