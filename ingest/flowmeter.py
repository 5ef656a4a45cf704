"""The flow meter: DecodedPacket -> bidirectional flows -> FlowRecord, with timeouts and a bounded table.

Flows live in one dict keyed by a direction-independent key that includes the VLAN (``ingest.flowkey``).
Initiator = sender of the flow's first packet, except TCP: the sender of a SYN without ACK is the initiator,
so a flow first seen through its SYN-ACK (or mid-stream) is re-oriented when the responder side sends a SYN
before any SYN came from the initiator side; the classifier is then asked again.

Records are cut at window-aligned boundaries: every multiple of ``active_timeout_s`` since the Unix epoch (10 s
by default, the job's finest window), each flow that received packets since its last record exports one (end
reason ``active``, or its TCP close reason, below) and stays in the table with its TCP and latency state. A
record therefore holds the packets of one boundary interval at most, and it leaves the agent at the boundary
after its last packet: its lateness in event time is the interval, not the idle timeout. The cut happens when
time (a packet's, or ``advance``'s) reaches the boundary; flows get their record in the order their interval's
first packet arrived. Handshake, TCP-timestamp, DNS and ICMP summaries go with the record holding the packets.

Ends of a flow (``end_reason`` of the record holding its last packets):
- ``idle``: no packet for ``idle_timeout_s``. A flow's packets are normally all reported by the cut after its
  last packet, so the idle end itself exports nothing (only with an idle timeout shorter than the interval
  does an idle end find packets to report);
- ``active``: a cut at a boundary; the flow goes on. The slices of one flow share agent, VLAN, 5-tuple and
  orientation, with consecutive non-overlapping [first_ns, last_ns];
- ``fin`` / ``rst``: FIN seen from both sides, or an RST; the flow is kept ``tcp_close_grace_s`` more after
  its last packet so the final ACK (or repeated RSTs) is counted in it. A cut inside the grace reports the
  close with the packets so far; a straggler after it is reported as ``active`` (each flow's end is reported
  once). A SYN without ACK on a closed flow starts a new flow at once (port reuse);
- ``evicted``: the table is full (``max_flows``) and a new flow arrives: the flow with the earliest expiry
  (least recently active, to the timer granularity; closed ones first) leaves to make room, unless its
  timeout had already passed, in which case it leaves with its natural reason;
- ``flush``: ``flush()`` at end of input or shutdown (flows whose timeout already passed get their natural
  reason, closed TCP flows ``fin``/``rst``).
A flow that leaves with no packet since its last record exports nothing: every record holds packets.

Timing comes only from what the caller passes: packet timestamps in ``add``, ``now_ns`` in ``advance`` and
``flush``, never the wall clock, so replaying a file gives the same records. Timeouts use a lazy timer
wheel: each flow sits in one bucket of ``timer_tick_s`` granularity at (or before) its expiry; ``advance``
pops due buckets and either exports a flow or moves it to the bucket of its current expiry. ``add`` only
updates ``last_ns``. ``advance`` is O(1) when nothing is due, so it can be called after every packet; calling
it every N packets (or once per second of packet time) gives the same record contents, because ``add`` itself
makes a due cut and ends a flow whose timeout passed before counting a new packet into it, and a cut first ends
the flows whose timeout passed before its boundary; only the export time and order differ.

Export order is deterministic for a given sequence of calls: timer buckets in time order, flows within one
in scheduling order, ``flush`` in flow creation order. ``seq`` is assigned at export, +1 per record, from
``first_seq``.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ingest.applications import NO_CLASSES, AppClassifier
from ingest.classification import Classification, Classifier
from ingest.export import build_record
from ingest.flowkey import (
    ECHO_REPLY,
    ECHO_REQUEST,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    flow_key,
    ip_text,
)
from ingest.latency import LatencyState
from ingest.packet import DecodedPacket
from ingest.tcpstate import ACK, SYN, TcpState
from schemas.flow_record import FlowRecord

_NS = 1_000_000_000
_CLS_CACHE_MAX = 65_536


@dataclass(frozen=True, slots=True)
class MeterConfig:
    """Flow meter settings (mapped from ``AgentConfig``)."""

    idle_timeout_s: float = 30.0
    active_timeout_s: float = 10.0
    max_flows: int = 1_000_000
    tcp_close_grace_s: float = 2.0  # after FIN both ways / RST, wait for the last ACK
    timer_tick_s: float = 1.0  # expiry granularity; also the LRU granularity of eviction
    ooo_threshold_s: float = 0.003  # below-highest segment this soon after new data: out-of-order
    max_pending_ts: int = 16  # TSvals awaiting their echo, per flow
    max_pending_echo: int = 16  # ICMP echo / DNS queries awaiting a reply, per flow

    def __post_init__(self) -> None:
        for name in ("idle_timeout_s", "active_timeout_s", "tcp_close_grace_s", "timer_tick_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MeterConfig.{name} must be > 0")
        if self.max_flows < 1 or self.max_pending_ts < 1 or self.max_pending_echo < 1:
            raise ValueError("MeterConfig.max_flows / max_pending_* must be >= 1")
        if self.ooo_threshold_s < 0:
            raise ValueError("MeterConfig.ooo_threshold_s must be >= 0")


@dataclass(slots=True)
class MeterStats:
    """Counters of one meter (what it received and what it exported, for end-to-end reconciliation)."""

    packets: int = 0
    bytes: int = 0
    flows_created: int = 0
    records: int = 0
    exported: dict[str, int] = field(default_factory=dict)  # records by end_reason
    evicted: int = 0
    reoriented: int = 0
    out_of_order: int = 0  # out-of-order TCP segments (no FlowRecord field yet)
    active: int = 0  # flows in the table


class Flow:
    """State of one bidirectional flow (fwd = initiator -> responder)."""

    __slots__ = (
        "aux",
        "bytes_f",
        "bytes_r",
        "cls",
        "dirty",
        "dscp",
        "end_sent",
        "first_ns",
        "flags_f",
        "flags_r",
        "key",
        "last_ns",
        "lat",
        "lo_init",
        "pkts_f",
        "pkts_r",
        "tcp",
        "tick",
    )

    def __init__(self, key: bytes, lo_init: bool, ts_ns: int, cls: Classification) -> None:
        self.key = key
        self.lo_init = lo_init  # the key's "lo" endpoint is the initiator
        self.first_ns = ts_ns
        self.last_ns = ts_ns
        self.bytes_f = 0
        self.pkts_f = 0
        self.bytes_r = 0
        self.pkts_r = 0
        self.flags_f = 0
        self.flags_r = 0
        self.cls = cls
        self.tcp: TcpState | None = None
        self.lat: LatencyState | None = None
        self.tick = 0  # timer bucket that owns the flow; -1 once exported for good
        self.aux = 0  # ICMP: type<<8|code of the first packet
        self.dirty = False  # in the meter's list of flows with packets since their last record
        self.end_sent = False  # a record already reported the TCP close
        self.dscp = 0  # DSCP of the flow's first packet (docs/classes.md: why not the dominant one)

    def has_packets(self) -> bool:
        return self.pkts_f + self.pkts_r > 0


class FlowMeter:
    """Bidirectional flow meter. ``add`` every packet, ``advance`` with the current time, ``flush`` at end."""

    def __init__(
        self,
        cfg: MeterConfig,
        classifier: Classifier,
        sink: Callable[[FlowRecord], None],
        *,
        agent_id: str,
        link_id: str,
        sampling_rate: int = 1,
        first_seq: int = 0,
        apps: AppClassifier = NO_CLASSES,
    ) -> None:
        if sampling_rate < 1:
            raise ValueError("sampling_rate must be >= 1")
        self.cfg = cfg
        self._classifier = classifier
        self._apps = apps
        self._sink = sink
        self.agent_id = agent_id
        self.link_id = link_id
        self.sampling_rate = sampling_rate
        self.next_seq = first_seq
        self._idle = round(cfg.idle_timeout_s * _NS)
        self._cut_ns = round(cfg.active_timeout_s * _NS)
        self._next_cut = 0  # the first packet or advance sets it to the boundary after it
        self._dirty: list[Flow] = []  # flows with packets since their last record, in order of the first one
        self._grace = round(cfg.tcp_close_grace_s * _NS)
        self._tick_ns = max(1, round(cfg.timer_tick_s * _NS))
        self._ooo = round(cfg.ooo_threshold_s * _NS)
        self._max_flows = cfg.max_flows
        self._table: dict[bytes, Flow] = {}
        self._buckets: dict[int, deque[Flow]] = {}
        self._ticks: list[int] = []  # heap of bucket ticks
        self._cls_cache: dict[Classification, Classification] = {}
        self._clock = 0  # latest time seen (export time of flush)
        self._stats = MeterStats()

    # ---------------------------------------------------------------- public

    @property
    def stats(self) -> MeterStats:
        self._stats.active = len(self._table)
        return self._stats

    def __len__(self) -> int:
        return len(self._table)

    def add(self, pkt: DecodedPacket) -> None:
        """Meter one packet."""
        ts = pkt.ts_ns
        self._clock = max(self._clock, ts)
        if ts >= self._next_cut:
            self._cut(ts)
        key, sender_lo = flow_key(pkt)
        flow = self._table.get(key)
        tcp: TcpState | None
        if flow is not None:
            tcp = flow.tcp
            gap = ts - flow.last_ns
            if tcp is not None and tcp.closing is not None:
                if gap >= self._grace or (pkt.tcp_flags & (SYN | ACK)) == SYN:
                    self._end(flow, tcp.closing, ts)
                    flow = None
            elif gap >= self._idle:
                self._end(flow, "idle", ts)
                flow = None
        if flow is None:
            flow = self._create(key, sender_lo, pkt)
        if not flow.dirty:
            flow.dirty = True
            self._dirty.append(flow)
        if not flow.has_packets():
            flow.first_ns = ts  # the first packet of this record
        tcp = flow.tcp
        fwd = sender_lo == flow.lo_init
        flags = pkt.tcp_flags
        l4 = pkt.l4_present
        if tcp is not None and l4 and flags & (SYN | ACK) == SYN and not fwd and not tcp.syn_seen:
            self._reorient(flow)
            fwd = True

        n = pkt.ip_len
        st = self._stats
        st.packets += 1
        st.bytes += n
        if fwd:
            flow.bytes_f += n
            flow.pkts_f += 1
            flow.flags_f |= flags
        else:
            flow.bytes_r += n
            flow.pkts_r += 1
            flow.flags_r |= flags
        flow.last_ns = max(flow.last_ns, ts)
        if not l4:
            return  # non-first fragment: counted, nothing more to learn

        if tcp is not None:
            self._tcp(flow, tcp, pkt, fwd)
            return
        proto = pkt.protocol
        to_remote = fwd != flow.cls.remote_is_initiator
        if proto == PROTO_UDP:
            dns_id = pkt.dns_id
            if dns_id is not None:
                if pkt.dns_is_response:
                    if not to_remote and flow.lat is not None:
                        flow.lat.dns_response(dns_id, ts)
                elif to_remote:
                    self._lat(flow).dns_query(dns_id, ts, self.cfg.max_pending_echo)
        elif proto in (PROTO_ICMP, PROTO_ICMPV6):
            tkey = (proto, pkt.icmp_type)
            if tkey in ECHO_REQUEST:
                if to_remote:
                    self._lat(flow).icmp_request(pkt.icmp_seq, ts, self.cfg.max_pending_echo)
            elif tkey in ECHO_REPLY and not to_remote and flow.lat is not None:
                flow.lat.icmp_reply(pkt.icmp_seq, ts)

    def advance(self, now_ns: int) -> None:
        """Export flows whose idle timeout or close grace has passed at ``now_ns``. O(1) when none is due."""
        self._clock = max(self._clock, now_ns)
        if now_ns >= self._next_cut:
            self._cut(now_ns)
        ticks = self._ticks
        if not ticks:
            return
        now_tick = now_ns // self._tick_ns
        buckets = self._buckets
        while ticks and ticks[0] <= now_tick:
            tick = heapq.heappop(ticks)
            for flow in buckets.pop(tick):
                if flow.tick != tick:
                    continue  # already exported, or owned by another bucket
                deadline = self._deadline(flow)
                if deadline <= now_ns:
                    self._end(flow, self._natural_reason(flow), now_ns)
                else:
                    self._schedule(flow, deadline)

    def flush(self, reason: str = "flush", now_ns: int | None = None) -> None:
        """Export every flow (end of input, shutdown). Export time: ``now_ns`` or the latest time seen."""
        now = self._clock if now_ns is None else now_ns
        self.advance(now)
        for flow in list(self._table.values()):
            tcp = flow.tcp
            self._end(flow, tcp.closing if tcp is not None and tcp.closing else reason, now)
        self._buckets.clear()
        self._ticks.clear()
        self._dirty.clear()

    # ---------------------------------------------------------------- internals

    def _create(self, key: bytes, sender_lo: bool, pkt: DecodedPacket) -> Flow:
        if len(self._table) >= self._max_flows:
            self._evict_one(pkt.ts_ns)
        flow = Flow(key, sender_lo, pkt.ts_ns, self._classify(pkt.src_ip, pkt.dst_ip, pkt.ip_version))
        flow.dscp = pkt.dscp
        proto = pkt.protocol
        if proto == PROTO_TCP:
            flow.tcp = TcpState()
        elif proto in (PROTO_ICMP, PROTO_ICMPV6):
            flow.aux = (max(pkt.icmp_type, 0) << 8) | max(pkt.icmp_code, 0)
        self._table[key] = flow
        self._stats.flows_created += 1
        self._schedule(flow, pkt.ts_ns + self._idle)
        return flow

    def _classify(self, src: bytes, dst: bytes, ip_version: int) -> Classification:
        c = self._classifier.classify(ip_text(src), ip_text(dst), ip_version, self.link_id)
        # Share equal classifications between flows: saves one object per flow.
        if len(self._cls_cache) < _CLS_CACHE_MAX:
            return self._cls_cache.setdefault(c, c)
        return self._cls_cache.get(c, c)

    def _reorient(self, flow: Flow) -> None:
        flow.lo_init = not flow.lo_init
        flow.bytes_f, flow.bytes_r = flow.bytes_r, flow.bytes_f
        flow.pkts_f, flow.pkts_r = flow.pkts_r, flow.pkts_f
        flow.flags_f, flow.flags_r = flow.flags_r, flow.flags_f
        if flow.tcp is not None:
            flow.tcp.swap()
        if flow.lat is not None:
            flow.lat.reoriented()
        ip = self._initiator_ips(flow)
        flow.cls = self._classify(ip[0], ip[1], 4 if len(ip[0]) == 4 else 6)
        self._stats.reoriented += 1

    @staticmethod
    def _initiator_ips(flow: Flow) -> tuple[bytes, bytes]:
        alen = 4 if len(flow.key) < 32 else 16
        lo, hi = flow.key[:alen], flow.key[alen : 2 * alen]
        return (lo, hi) if flow.lo_init else (hi, lo)

    def _lat(self, flow: Flow) -> LatencyState:
        lat = flow.lat
        if lat is None:
            lat = flow.lat = LatencyState()
        return lat

    def _tcp(self, flow: Flow, tcp: TcpState, pkt: DecodedPacket, fwd: bool) -> None:
        ts = pkt.ts_ns
        flags = pkt.tcp_flags
        syn_ack = flags & (SYN | ACK)
        if syn_ack == SYN:
            if fwd:
                tcp.syn_seen = True
                self._lat(flow).hs_syn(ts, pkt.tcp_seq)
        elif syn_ack == SYN | ACK:
            if fwd:
                # The "initiator" sends a SYN-ACK: its SYN was not seen (yet); no handshake sample.
                self._lat(flow).hs_taint()
            else:
                self._lat(flow).hs_synack(ts, pkt.tcp_seq, pkt.tcp_ack)
        elif syn_ack == ACK and fwd and flow.lat is not None and flow.lat.hs is not None:
            irtt = flow.lat.hs_ack(ts, pkt.tcp_ack)
            if irtt:
                tcp.irtt_ns = irtt

        was_closing = tcp.closing
        ooo = tcp.ooo_f + tcp.ooo_r
        tcp.segment(fwd, flags, pkt.tcp_seq, pkt.tcp_payload_len, ts_ns=ts, ooo_ns=self._ooo)
        self._stats.out_of_order += tcp.ooo_f + tcp.ooo_r - ooo
        if was_closing is None and tcp.closing is not None:
            self._schedule(flow, flow.last_ns + self._grace)

        tsval = pkt.tcp_tsval
        if tsval is not None:
            to_remote = fwd != flow.cls.remote_is_initiator
            if to_remote:
                self._lat(flow).ts_out(tsval, ts, self.cfg.max_pending_ts)
            elif flags & ACK and flow.lat is not None and pkt.tcp_tsecr is not None:
                flow.lat.ts_echo(pkt.tcp_tsecr, ts)

    def _deadline(self, flow: Flow) -> int:
        tcp = flow.tcp
        if tcp is not None and tcp.closing is not None:
            return flow.last_ns + self._grace
        return flow.last_ns + self._idle

    @staticmethod
    def _natural_reason(flow: Flow) -> str:
        tcp = flow.tcp
        if tcp is not None and tcp.closing is not None:
            return tcp.closing
        return "idle"

    def _schedule(self, flow: Flow, deadline_ns: int) -> None:
        tick = -(-deadline_ns // self._tick_ns)  # ceil: never expire early
        flow.tick = tick
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = deque()
            heapq.heappush(self._ticks, tick)
        bucket.append(flow)

    def _cut(self, now_ns: int) -> None:
        """Export a record for every flow with packets since its last one, at the boundary ``now_ns`` reached."""
        at = self._next_cut
        self._next_cut = (now_ns // self._cut_ns + 1) * self._cut_ns
        dirty, self._dirty = self._dirty, []
        for flow in dirty:
            flow.dirty = False
            if flow.tick < 0:
                continue  # ended since, with its record
            if self._deadline(flow) <= at:
                self._end(flow, self._natural_reason(flow), at)
                continue
            tcp = flow.tcp
            if tcp is not None and tcp.closing is not None and not flow.end_sent:
                flow.end_sent = True
                self._export(flow, tcp.closing, at)
            else:
                self._export(flow, "active", at)
            self._new_slice(flow)

    def _evict_one(self, now_ns: int) -> None:
        ticks, buckets = self._ticks, self._buckets
        while ticks:
            tick = ticks[0]
            bucket = buckets[tick]
            while bucket:
                flow = bucket.popleft()
                if flow.tick != tick:
                    continue
                deadline = self._deadline(flow)
                if -(-deadline // self._tick_ns) > tick:
                    self._schedule(flow, deadline)  # refreshed since scheduled: not the oldest
                    continue
                if not bucket:
                    heapq.heappop(ticks)
                    del buckets[tick]
                if deadline <= now_ns:
                    self._end(flow, self._natural_reason(flow), now_ns)
                else:
                    self._stats.evicted += 1
                    self._end(flow, "evicted", now_ns)
                return
            heapq.heappop(ticks)
            del buckets[tick]

    def _end(self, flow: Flow, reason: str, now_ns: int) -> None:
        del self._table[flow.key]
        flow.tick = -1
        if flow.has_packets():
            self._export(flow, "active" if flow.end_sent else reason, now_ns)

    def _export(self, flow: Flow, reason: str, now_ns: int) -> None:
        rec = build_record(
            flow,
            seq=self.next_seq,
            export_ns=now_ns,
            end_reason=reason,
            agent_id=self.agent_id,
            link_id=self.link_id,
            sampling_rate=self.sampling_rate,
            apps=self._apps,
        )
        self.next_seq += 1
        st = self._stats
        st.records += 1
        st.exported[reason] = st.exported.get(reason, 0) + 1
        self._sink(rec)

    @staticmethod
    def _new_slice(flow: Flow) -> None:
        # last_ns stays: the idle timeout runs from the flow's last packet; the next packet sets first_ns.
        flow.bytes_f = flow.pkts_f = flow.bytes_r = flow.pkts_r = 0
        flow.flags_f = flow.flags_r = 0
        if flow.tcp is not None:
            flow.tcp.reset_counts()
        if flow.lat is not None:
            flow.lat.new_slice()
