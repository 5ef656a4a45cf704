"""The collector loop: read datagram batches, decode them in the native engine, build and send FlowRecords."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import gwtel_native

from ingest.collect.config import CollectorConfig
from ingest.collect.decoded import Exported, LinkCounters
from ingest.collect.listener import Listeners
from ingest.collect.records import RecordBuilder
from ingest.collect.templates import TemplateFiles
from schemas.flow_record import FlowRecord

_SAVE_EVERY_S = 10.0
_SFLOW_IF_FORMAT = 1 << 30


@dataclass
class CollectorState:
    """What the loop has done, read by the metrics collector at scrape time."""

    records_sent: int = 0
    batches: int = 0
    # latest sFlow interface counters per (exporter, ifIndex)
    links: dict[tuple[bytes, int], LinkCounters] = field(default_factory=dict)
    # sFlow flow samples' octets scaled by their sampling rate, per (exporter, ifIndex, "in" | "out"): the flows'
    # view of the same interfaces, to cross-check against the counters
    flow_octets: Counter[tuple[bytes, int, str]] = field(default_factory=Counter)

    def add_flow_octets(self, rows: list[Exported]) -> None:
        for r in rows:
            if r.kind != "sflow":
                continue
            scaled = r.octets * max(r.sampling_rate, 1)
            # sFlow interface values of 0 (unknown) or with the format bits set (discarded, several ports)
            # name no single interface
            if 0 < r.in_if < _SFLOW_IF_FORMAT:
                self.flow_octets[(r.exporter, r.in_if, "in")] += scaled
            if 0 < r.out_if < _SFLOW_IF_FORMAT:
                self.flow_octets[(r.exporter, r.out_if, "out")] += scaled


class CollectorService:
    def __init__(
        self,
        cfg: CollectorConfig,
        listeners: Listeners,
        builder: RecordBuilder,
        sink: Callable[[FlowRecord], None],
        templates: TemplateFiles | None,
    ) -> None:
        self.cfg = cfg
        self.listeners = listeners
        self.builder = builder
        self.engine = gwtel_native.Collector(max_templates_per_exporter=cfg.max_templates_per_exporter)
        self.state = CollectorState()
        self._sink = sink
        self._templates = templates
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
            rows = [Exported._make(t) for t in self.engine.take()]
            for rec in self.builder.build(rows, time.time_ns(), self.cfg.agent_id):
                self._sink(rec)
                sent += 1
            self.state.add_flow_octets(rows)
            for t in self.engine.take_links():
                lc = LinkCounters._make(t)
                self.state.links[(lc.exporter, lc.if_index)] = lc
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
