"""The collector loop: read datagram batches; the native engine decodes them and builds and encodes the FlowRecords;
the batch goes to the sink whole."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import gwtel_native

from ingest.agent_metrics import PartnerTally
from ingest.collect.config import CollectorConfig
from ingest.collect.counters import CounterSink, counter_pairs
from ingest.collect.decoded import LinkCounters
from ingest.collect.listener import Listeners
from ingest.collect.records import RecordBuilder
from ingest.collect.templates import TemplateFiles
from ingest.sinks import BatchSink, EncodedBatch, RecordSink, batch_writer

_SAVE_EVERY_S = 10.0
# records encoded per engine call: a read of hundreds of datagrams holds thousands of records, and encoding
# them into one multi-megabyte buffer costs more in memory traffic than in encoding (bench/collect.py)
RECORDS_PER_TAKE = 1024


@dataclass
class CollectorState:
    """What the loop has done, read by the metrics collector at scrape time."""

    records_sent: int = 0
    batches: int = 0
    partners: PartnerTally = field(default_factory=PartnerTally)
    # latest sFlow interface counters per (exporter, ifIndex)
    links: dict[tuple[bytes, int], LinkCounters] = field(default_factory=dict)
    # sFlow flow samples' octets scaled by their sampling rate, per (exporter, ifIndex, "in" | "out"): the flows'
    # view of the same interfaces, to cross-check against the counters
    flow_octets: Counter[tuple[bytes, int, str]] = field(default_factory=Counter)

    def add_flow_octets(self, sums: list[tuple[bytes, int, str, int]]) -> None:
        """Add the engine's sums since its last `take_flow_octets` (exporter, ifIndex, "in" | "out", octets)."""
        for exporter, if_index, direction, octets in sums:
            self.flow_octets[(exporter, if_index, direction)] += octets


class CollectorService:
    def __init__(
        self,
        cfg: CollectorConfig,
        listeners: Listeners,
        builder: RecordBuilder,
        sink: RecordSink | BatchSink,
        templates: TemplateFiles | None,
        counters: CounterSink | None = None,
    ) -> None:
        self.cfg = cfg
        self.listeners = listeners
        self.builder = builder
        self.engine = gwtel_native.Collector(max_templates_per_exporter=cfg.max_templates_per_exporter)
        builder.configure(self.engine, cfg.agent_id)
        self.state = CollectorState()
        self._write = batch_writer(sink)
        self._templates = templates
        # the counters topic's producer: sFlow counter samples stored as link counters (None: metrics only)
        self._counters = counters
        self.restored = templates.load(self.engine) if templates is not None else 0
        self._saved_at = time.monotonic()

    def step(self, timeout_s: float = 0.2) -> int:
        """One batch: read, decode, send. Returns the number of records sent."""
        buf = bytearray()
        n = self.listeners.read(
            buf, max_datagrams=self.cfg.batch_datagrams, quota=self.cfg.socket_quota, timeout_s=timeout_s
        )
        sent = 0
        if n:
            self.engine.feed(bytes(buf))  # one copy per batch: the engine reads bytes
            export_ns = time.time_ns()
            while True:
                batch, self.builder.unmapped = self.engine.take_records(
                    self.builder.next_seq, export_ns, RECORDS_PER_TAKE
                )
                count, keys, values, traffic, handshake, per_partner = batch
                if not count:
                    break
                self.builder.next_seq += count
                self.state.partners.add_batch(traffic, handshake, per_partner)
                self._write(EncodedBatch(count, keys, values))
                sent += count
            self.state.add_flow_octets(self.engine.take_flow_octets())
            samples = [LinkCounters._make(t) for t in self.engine.take_links()]
            for lc in samples:
                self.state.links[(lc.exporter, lc.if_index)] = lc
            if samples and self._counters is not None:
                self._counters(counter_pairs(self.cfg.agent_id, samples))
            self.state.records_sent += sent
            self.state.batches += 1
        if self._templates is not None and time.monotonic() - self._saved_at >= _SAVE_EVERY_S:
            self.save_templates()
        return sent

    def save_templates(self) -> None:
        if self._templates is not None:
            self._templates.save(self.engine)
        self._saved_at = time.monotonic()

    def run(self, stop: threading.Event, duration_s: float | None = None) -> None:
        end = None if duration_s is None else time.monotonic() + duration_s
        try:
            while not stop.is_set() and (end is None or time.monotonic() < end):
                self.step()
        finally:
            self.save_templates()
