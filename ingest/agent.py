"""The agent: packets -> decoder -> fragment tracker -> flow meter -> FlowRecord sink.

Live capture and pcap replay call the same ``Agent.feed``; only the packet source differs. Counters are kept as
plain integers on the hot path and read by a Prometheus collector at scrape time
(``ingest.agent_metrics.AgentCollector``), so metering a packet never takes a metrics lock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from ingest.agent_metrics import PartnerTally
from ingest.anonymise import TextAnonymiser
from ingest.anonymise_config import engine_key
from ingest.applications import NO_CLASSES, AppClassifier
from ingest.classification import Classifier
from ingest.config import AgentConfig
from ingest.decode import DecodeConfig, decode
from ingest.flowmeter import FlowMeter, MeterConfig
from ingest.fragments import FragmentTracker
from ingest.packet import DecodedPacket, RawFrame
from ingest.sinks import RecordSink
from schemas.flow_record import FlowRecord

_ADVANCE_EVERY = 1024  # packets between timer checks: expiry granularity is the meter's tick anyway


@dataclass
class AgentCounters:
    """What the agent received and what became of it (the first stages of the delivery ledger)."""

    packets_seen: int = 0
    wire_bytes_seen: int = 0
    packets_decoded: int = 0
    ip_bytes_decoded: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    records_emitted: int = 0
    kernel_packets: int = 0  # live capture: packets the socket's filter accepted, dropped ones included
    kernel_drops: int = 0  # live capture: packets the kernel dropped (socket buffer full)
    link_down: int = 0  # live capture: times the interface went down


def meter_config(cfg: AgentConfig) -> MeterConfig:
    return MeterConfig(
        idle_timeout_s=cfg.idle_timeout_s, active_timeout_s=cfg.active_timeout_s, max_flows=cfg.max_flows
    )


class Agent:
    def __init__(
        self,
        cfg: AgentConfig,
        classifier: Classifier,
        sink: RecordSink,
        *,
        first_seq: int = 0,
        sampling_rate: int = 0,
        apps: AppClassifier = NO_CLASSES,
    ) -> None:
        self.cfg = cfg
        self.counters = AgentCounters()
        self.partners = PartnerTally()
        self._sink = sink
        self._decode_cfg = DecodeConfig(decap_gre=cfg.decap_gre, decap_vxlan=cfg.decap_vxlan, decap_gtp=cfg.decap_gtp)
        self.fragments = FragmentTracker()
        self.meter = FlowMeter(
            meter_config(cfg),
            classifier,
            self._emit,
            agent_id=cfg.agent_id,
            link_id=cfg.link_id,
            sampling_rate=sampling_rate or cfg.sampling_rate,
            first_seq=first_seq,
            apps=apps,
        )
        self._since_advance = 0
        key = engine_key(cfg.anonymise)  # read at start-up: a bad key stops here
        self._anon = None if key is None else TextAnonymiser(key)

    def _emit(self, rec: FlowRecord) -> None:
        if self._anon is not None:  # after classification: partner, country and direction are the real ones
            rec = replace(rec, src_ip=self._anon(rec.src_ip), dst_ip=self._anon(rec.dst_ip))
        self.counters.records_emitted += 1
        self.partners.add(rec)
        self._sink(rec)

    def feed(self, frame: RawFrame) -> None:
        c = self.counters
        c.packets_seen += 1
        c.wire_bytes_seen += frame.wire_len
        pkt = decode(frame, self._decode_cfg)
        if isinstance(pkt, str):
            c.rejected[pkt] += 1
        else:
            c.packets_decoded += 1
            c.ip_bytes_decoded += pkt.ip_len
            self._meter(pkt)
        self._since_advance += 1
        if self._since_advance >= _ADVANCE_EVERY:
            self._since_advance = 0
            self.meter.advance(frame.ts_ns)

    def _meter(self, pkt: DecodedPacket) -> None:
        if pkt.frag_offset or pkt.more_fragments:
            pkt = self.fragments.process(pkt)
        self.meter.add(pkt)

    def tick(self, now_ns: int) -> None:
        """Expire flows by time (live capture calls this with the wall clock when no packet arrives)."""
        self.meter.advance(now_ns)

    def finish(self) -> None:
        """Export every flow still in the table (end of file or shutdown)."""
        self.meter.flush()
