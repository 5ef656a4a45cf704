"""The agent's Prometheus metrics: the delivery ledger, kernel drops, producer state and per-partner live series.

Everything is counted in plain Python numbers by the agent's own thread and read by ``AgentCollector`` at
scrape time, so metering never takes a metrics lock. Labels are bounded: link, partner group, direction and
reason (reject reason, flow end reason); never addresses or ports. Series of a known label set (reject and end
reasons) exist from the start at 0, so ``rate()`` and alerts see them before the first event.

Per-partner series count the IP octets and packets of exported flow records, scaled by the record's sampling
rate, so ``rate(gwtel_agent_partner_bytes_total[1m]) * 8`` is the bandwidth in bit/s. As in the Flink job, a
flow's initiator counters go to its own direction and its responder counters to the opposite one (egress <->
ingress), so ``direction`` is the way the bytes crossed the gateway. The handshake RTT histogram takes the total
of the two legs (external SYN -> SYN-ACK plus internal SYN-ACK -> ACK) of flows where both were measured, labelled
with the flow's own direction.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Final, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest.decode import REJECT_REASONS
from ingest.producer import LATENCY_BUCKETS
from schemas.flow_record import FlowRecord

if TYPE_CHECKING:
    from ingest.agent import AgentCounters
    from ingest.config import AgentConfig
    from ingest.flowmeter import MeterStats
    from ingest.producer import FlowProducer
    from ingest.sources.live import KernelStats

# Fine below 10 ms for the 8 ms VR objective, then coarser up to 2 s.
HANDSHAKE_RTT_BUCKETS: Final = (
    0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.030, 0.040, 0.050, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0,
)  # fmt: skip
END_REASONS: Final = ("idle", "active", "fin", "rst", "evicted", "flush")
_OPPOSITE: Final = {"egress": "ingress", "ingress": "egress"}
_Factory = Callable[[str, str, float], Metric]
TrafficRow = tuple[str, str, str, int, int]
HandshakeRow = tuple[str, str, str, Sequence[int], float]


def cumulative(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Prometheus buckets (upper bound as text, cumulative count) from per-bucket counts ending with +Inf."""
    out = []
    running = 0
    for bound, n in zip([*bounds, float("inf")], counts, strict=True):
        running += n
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(running)))
    return out


class Histogram:
    """Bucket counts (non-cumulative, last one is +Inf) and the sum of observations."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # first bound >= value: Prometheus "le"
        self.total += value

    def merge(self, counts: Sequence[int], total: float) -> None:
        """Add observations already bucketed with the same bounds (a native engine's batch)."""
        for i, n in enumerate(counts):
            self.counts[i] += n
        self.total += total

    def cumulative(self) -> list[tuple[str, float]]:
        return cumulative(self.bounds, list(self.counts))


class PartnerTally:
    """Per-partner counters of exported records (see the module docstring for what is counted)."""

    def __init__(self) -> None:
        self.traffic: dict[tuple[str, str, str], list[int]] = {}  # (partner, direction, link) -> [bytes, packets]
        # (partner, direction, application class) -> total RTT, s
        self.handshake: dict[tuple[str, str, str], Histogram] = {}
        self.records: dict[str, int] = {}  # partner -> records

    def _count(self, key: tuple[str, str, str], octets: int, packets: int) -> None:
        slot = self.traffic.get(key)
        if slot is None:
            slot = self.traffic[key] = [0, 0]
        slot[0] += octets
        slot[1] += packets

    def add(self, rec: FlowRecord) -> None:
        self.records[rec.partner] = self.records.get(rec.partner, 0) + 1
        rate = max(rec.sampling_rate, 1)
        if rec.packets_fwd:
            self._count((rec.partner, rec.direction, rec.link_id), rec.bytes_fwd * rate, rec.packets_fwd * rate)
        if rec.packets_rev:
            back = _OPPOSITE.get(rec.direction, rec.direction)
            self._count((rec.partner, back, rec.link_id), rec.bytes_rev * rate, rec.packets_rev * rate)
        if rec.hs_rtt_ext_us is not None and rec.hs_rtt_int_us is not None:
            key = (rec.partner, rec.direction, rec.app_class)
            hist = self.handshake.get(key)
            if hist is None:
                hist = self.handshake[key] = Histogram(HANDSHAKE_RTT_BUCKETS)
            hist.observe((rec.hs_rtt_ext_us + rec.hs_rtt_int_us) / 1e6)

    def add_batch(
        self, traffic: Iterable[TrafficRow], handshake: Iterable[HandshakeRow], records: Iterable[tuple[str, int]]
    ) -> None:
        """A native engine's aggregates of a batch of records: the same counts as `add` of each record.

        ``traffic``: (partner, direction, link, octets, packets) already scaled and split by direction;
        ``handshake``: (partner, direction, class, per-bucket counts over HANDSHAKE_RTT_BUCKETS, sum in seconds);
        ``records``: (partner, records).
        """
        for partner, n in records:
            self.records[partner] = self.records.get(partner, 0) + n
        for partner, direction, link, octets, packets in traffic:
            self._count((partner, direction, link), octets, packets)
        for partner, direction, app_class, counts, total in handshake:
            key = (partner, direction, app_class)
            hist = self.handshake.get(key)
            if hist is None:
                hist = self.handshake[key] = Histogram(HANDSHAKE_RTT_BUCKETS)
            hist.merge(counts, total)


class _MeterView(Protocol):
    @property
    def stats(self) -> MeterStats: ...
    @property
    def sampling_rate(self) -> int: ...


class MeteredAgent(Protocol):
    """What the collector reads: the Python agent and the native engine's agent both provide it."""

    @property
    def cfg(self) -> AgentConfig: ...
    @property
    def counters(self) -> AgentCounters: ...
    @property
    def meter(self) -> _MeterView: ...
    @property
    def partners(self) -> PartnerTally: ...


class AgentCollector(Collector):
    """Exposes an agent's counters (and its producer's, when it sends to Kafka) at scrape time."""

    def __init__(self, agent: MeteredAgent, producer: FlowProducer | None = None) -> None:
        self.agent = agent
        self.producer = producer

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        c = agent.counters
        st = agent.meter.stats
        link = agent.cfg.link_id

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            m = CounterMetricFamily(name, doc, labels=["link"])
            m.add_metric([link], value)
            return m

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            m = GaugeMetricFamily(name, doc, labels=["link"])
            m.add_metric([link], value)
            return m

        # Ledger: seen = decoded + rejected; exported records = records produced.
        yield counter("gwtel_agent_packets_seen", "Frames the agent received from its packet source.", c.packets_seen)
        yield counter("gwtel_agent_wire_bytes_seen", "Bytes on the wire of the frames received.", c.wire_bytes_seen)
        yield counter("gwtel_agent_packets_decoded", "Frames decoded to an IP packet and metered.", c.packets_decoded)
        yield counter("gwtel_agent_ip_bytes_decoded", "IP-layer bytes of the decoded packets.", c.ip_bytes_decoded)
        rej = CounterMetricFamily(
            "gwtel_agent_packets_rejected", "Frames not metered, by reason.", labels=["link", "reason"]
        )
        rejected = dict(c.rejected)
        for reason in sorted(REJECT_REASONS | set(rejected)):
            rej.add_metric([link, reason], rejected.get(reason, 0))
        yield rej
        yield counter(
            "gwtel_agent_kernel_packets",
            "Packets the capture socket's kernel filter accepted (sampled), including dropped ones.",
            c.kernel_packets,
        )
        yield counter(
            "gwtel_agent_kernel_drops",
            "Packets the capture socket dropped in the kernel (buffer full).",
            c.kernel_drops,
        )
        yield counter("gwtel_agent_link_down", "Times the capture interface went down.", c.link_down)
        yield gauge(
            "gwtel_agent_sampling_rate", "1:N packet sampling rate of the agent's records.", agent.meter.sampling_rate
        )

        yield gauge("gwtel_agent_flows_active", "Flows in the flow table.", st.active)
        yield counter("gwtel_agent_flows_created", "Flows created in the flow table.", st.flows_created)
        exported = dict(st.exported)
        exp = CounterMetricFamily(
            "gwtel_agent_flows_exported", "Flow records exported, by end reason.", labels=["link", "reason"]
        )
        for reason in sorted(set(END_REASONS) | set(exported)):
            exp.add_metric([link, reason], exported.get(reason, 0))
        yield exp
        yield counter("gwtel_agent_flows_evicted", "Flows evicted because the flow table was full.", st.evicted)
        cache: dict[str, int] = getattr(agent, "address_cache", None) or {}
        if cache:  # the native engine classifies with per-address answers it caches
            yield counter(
                "gwtel_agent_address_lookups",
                "Addresses the engine classified (cache hits and misses).",
                cache["lookups"],
            )
            yield counter(
                "gwtel_agent_address_misses", "Addresses the engine asked the classifier about.", cache["misses"]
            )
            yield counter(
                "gwtel_agent_address_cache_clears",
                "Times the full per-address cache was emptied.",
                cache["cache_clears"],
            )
            yield gauge("gwtel_agent_address_cache_entries", "Addresses in the cache.", cache["cache_size"])
        yield from self._producer_metrics(counter, gauge)
        yield from self._partner_metrics()

    def _producer_metrics(self, counter: _Factory, gauge: _Factory) -> Iterator[Metric]:
        p = self.producer
        c = self.agent.counters
        link = self.agent.cfg.link_id
        yield counter("gwtel_agent_records_produced", "Flow records handed to the output.", c.records_emitted)
        yield counter("gwtel_agent_records_acked", "Flow records Kafka acknowledged.", p.acked if p else 0)
        yield counter("gwtel_agent_records_spooled", "Flow records written to the disk spool.", p.spooled if p else 0)
        failed = CounterMetricFamily(
            "gwtel_agent_records_failed", "Flow records lost, by reason.", labels=["link", "reason"]
        )
        failed.add_metric([link, "spool_full"], p.dropped if p else 0)
        yield failed
        yield counter(
            "gwtel_agent_produce_errors",
            "Kafka sends refused or failed (the record is kept and sent again).",
            p.send_errors if p else 0,
        )
        yield gauge("gwtel_agent_spool_bytes", "Bytes of spool files on disk.", p.spool_bytes if p else 0)
        yield gauge("gwtel_agent_spool_records", "Flow records waiting in the spool.", p.spool_pending if p else 0)
        lat = HistogramMetricFamily(
            "gwtel_agent_produce_latency_seconds", "Time from handing a record to Kafka to its acknowledgement.",
            labels=["link"],
        )  # fmt: skip
        if p is not None:
            lat.add_metric([link], cumulative(p.latency.buckets, list(p.latency.counts)), p.latency.total)
        else:
            lat.add_metric([link], Histogram(LATENCY_BUCKETS).cumulative(), 0.0)
        yield lat

    def _partner_metrics(self) -> Iterator[Metric]:
        tally = self.agent.partners
        labels = ["partner", "direction", "link"]
        octets = CounterMetricFamily(
            "gwtel_agent_partner_bytes",
            "IP octets of exported flows per partner, direction of travel and link, scaled by the sampling rate.",
            labels=labels,
        )
        packets = CounterMetricFamily(
            "gwtel_agent_partner_packets",
            "Packets of exported flows per partner, direction of travel and link, scaled by the sampling rate.",
            labels=labels,
        )
        for key, (b, n) in sorted((k, list(v)) for k, v in dict(tally.traffic).items()):
            octets.add_metric(list(key), b)
            packets.add_metric(list(key), n)
        yield octets
        yield packets
        rtt = HistogramMetricFamily(
            "gwtel_agent_partner_handshake_rtt_seconds",
            "TCP handshake RTT, external plus internal leg, per partner, flow direction and application class.",
            labels=["partner", "direction", "app_class"],
        )
        for pd, hist in sorted(dict(tally.handshake).items(), key=lambda kv: kv[0]):
            rtt.add_metric(list(pd), hist.cumulative(), hist.total)
        yield rtt


class _RingStats(Protocol):
    """One capture ring's counters (``ingest.capture.WorkerStats``)."""

    @property
    def iface(self) -> str: ...
    @property
    def worker(self) -> int: ...
    @property
    def kernel(self) -> KernelStats: ...
    @property
    def damaged_blocks(self) -> int: ...
    @property
    def reopened(self) -> int: ...


class RingCollector(Collector):
    """Per-ring kernel statistics of a live capture (PACKET_STATISTICS with tpacket_stats_v3), by interface and
    fanout worker; their sums are the agent's gwtel_agent_kernel_* series."""

    def __init__(self, link: str, rings: Callable[[], Sequence[_RingStats]]) -> None:
        self.link = link
        self.rings = rings

    def collect(self) -> Iterator[Metric]:
        labels = ["link", "iface", "worker"]
        fams = {
            "packets": CounterMetricFamily(
                "gwtel_agent_ring_packets", "Packets a ring's filter accepted, dropped ones included.", labels=labels
            ),
            "drops": CounterMetricFamily(
                "gwtel_agent_ring_drops", "Packets dropped in the kernel: no free block in the ring.", labels=labels
            ),
            "freeze": CounterMetricFamily(
                "gwtel_agent_ring_freeze_q", "Times the ring was full (tp_freeze_q_cnt).", labels=labels
            ),
            "damaged": CounterMetricFamily(
                "gwtel_agent_ring_damaged_blocks", "Ring blocks whose layout could not be read.", labels=labels
            ),
            "reopened": CounterMetricFamily(
                "gwtel_agent_ring_reopened", "Times the ring was opened again after its interface came back.",
                labels=labels,
            ),
        }  # fmt: skip
        for r in self.rings():
            lv = [self.link, r.iface, str(r.worker)]
            fams["packets"].add_metric(lv, r.kernel.packets)
            fams["drops"].add_metric(lv, r.kernel.drops)
            fams["freeze"].add_metric(lv, r.kernel.freeze_q_cnt)
            fams["damaged"].add_metric(lv, r.damaged_blocks)
            fams["reopened"].add_metric(lv, r.reopened)
        yield from fams.values()
