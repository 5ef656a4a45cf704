"""The agent: packets -> decoder -> fragment tracker -> flow meter -> FlowRecord sink.

Live capture and pcap replay call the same ``Agent.feed``; only the packet source differs. Counters are kept as
plain integers on the hot path and read by a Prometheus collector at scrape time (``AgentCollector``), so metering
a packet never takes a metrics lock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest.classification import Classifier
from ingest.config import AgentConfig
from ingest.decode import DecodeConfig, decode
from ingest.flowmeter import FlowMeter, MeterConfig
from ingest.fragments import FragmentTracker
from ingest.packet import DecodedPacket, RawFrame
from schemas.flow_record import FlowRecord

RecordSink = Callable[[FlowRecord], None]
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
    kernel_drops: int = 0


def meter_config(cfg: AgentConfig) -> MeterConfig:
    return MeterConfig(
        idle_timeout_s=cfg.idle_timeout_s, active_timeout_s=cfg.active_timeout_s, max_flows=cfg.max_flows
    )


class Agent:
    def __init__(
        self, cfg: AgentConfig, classifier: Classifier, sink: RecordSink, *, first_seq: int = 0, sampling_rate: int = 0
    ) -> None:
        self.cfg = cfg
        self.counters = AgentCounters()
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
        )
        self._since_advance = 0

    def _emit(self, rec: FlowRecord) -> None:
        self.counters.records_emitted += 1
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


class AgentCollector(Collector):
    """Exposes an agent's counters to Prometheus at scrape time."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        c = self.agent.counters
        st = self.agent.meter.stats
        labels = ["agent", "link"]
        ids = [self.agent.cfg.agent_id, self.agent.cfg.link_id]

        def counter(name: str, doc: str, value: int) -> CounterMetricFamily:
            m = CounterMetricFamily(name, doc, labels=labels)
            m.add_metric(ids, value)
            return m

        yield counter("gwtel_agent_packets_seen", "Frames the agent received from its packet source.", c.packets_seen)
        yield counter("gwtel_agent_wire_bytes_seen", "Bytes on the wire of the frames received.", c.wire_bytes_seen)
        yield counter("gwtel_agent_packets_decoded", "Frames decoded to an IP packet and metered.", c.packets_decoded)
        yield counter("gwtel_agent_ip_bytes_decoded", "IP-layer bytes of the decoded packets.", c.ip_bytes_decoded)
        rej = CounterMetricFamily(
            "gwtel_agent_packets_rejected", "Frames not metered, by reason.", labels=[*labels, "reason"]
        )
        for reason, n in sorted(c.rejected.items()):
            rej.add_metric([*ids, reason], n)
        yield rej
        yield counter("gwtel_agent_flows_created", "Flows created in the flow table.", st.flows_created)
        yield counter("gwtel_agent_flows_evicted", "Flows evicted because the flow table was full.", st.evicted)
        exp = CounterMetricFamily(
            "gwtel_agent_records_exported", "Flow records exported, by end reason.", labels=[*labels, "end_reason"]
        )
        for reason, n in sorted(st.exported.items()):
            exp.add_metric([*ids, reason], n)
        yield exp
        yield counter("gwtel_agent_kernel_drops", "Packets the capture socket dropped in the kernel.", c.kernel_drops)
        active = GaugeMetricFamily("gwtel_agent_flows_active", "Flows in the flow table.", labels=labels)
        active.add_metric(ids, st.active)
        yield active
