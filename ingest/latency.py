"""Passive latency trackers of one flow: TCP handshake legs, TCP timestamps, ICMP echo, DNS.

All times are packet capture times in ns; samples are turned into integer microseconds by ``ns_to_us``
(nearest microsecond, exact halves rounded up: 1_499 ns -> 1 us, 1_500 ns -> 2 us). A sample whose end is
before its start (a trace with reordered or jumping clocks) is dropped, never reported as 0 or negative.

Handshake, split at the observation point: SYN -> SYN-ACK is the round trip on the responder's side of it,
SYN-ACK -> ACK the round trip on the initiator's side. A retransmitted SYN carries the same sequence number
as the first, so the SYN-ACK cannot say which one it answers; the last SYN before the SYN-ACK is used because
the usual cause of a SYN retransmission is a lost SYN (or SYN-ACK) and timing from the first one would add a
whole retransmission timeout (1 s or more) to the sample. Likewise the ACK is timed from the last SYN-ACK.
A SYN-ACK seen before any SYN of the flow (a trace whose SYN-ACK precedes its SYN) taints the handshake: no
sample at all, since any pairing there is made up.

TCP timestamps (as pping/ePPing): the time a TSval is first seen going toward the remote side is remembered;
when a packet from the remote side echoes it in TSecr (ACK set), sample = now - first seen, i.e. the round
trip beyond the observation point. Only the first occurrence of a TSval counts (packets repeating the last
TSval are ignored, matched entries are removed, and an echo also drops older pending values, which can never
be echoed since TSecr only moves forward). Pending values per flow are capped: when full, new TSvals are not
timestamped until echoes free room (fewer samples, never wrong ones). Pure ACKs are timestamped as pping
does, so a download whose local side only sends ACKs still yields samples; the remote's delayed ACK or
sending pause can inflate those.

ICMP echo and DNS: requests going toward the remote side keyed by (echo seq) / (DNS id), first occurrence
kept, capped; the matching reply from the remote side gives a sample and removes the entry.
"""

from __future__ import annotations

from typing import Final

from schemas.flow_record import HistBin
from schemas.histogram import bucket_of_us

_MASK: Final = 0xFFFFFFFF
_HALF: Final = 0x80000000


def ns_to_us(ns: int) -> int:
    """Nanoseconds -> integer microseconds, nearest, halves up."""
    return (ns + 500) // 1000


class RttSummary:
    """count / min / max / sum and a sparse log-bucket histogram of microsecond samples."""

    __slots__ = ("count", "hist", "max_us", "min_us", "sum_us")

    def __init__(self) -> None:
        self.count = 0
        self.min_us = 0
        self.max_us = 0
        self.sum_us = 0
        # Flat [bucket, count, bucket, count, ...]: a flow's samples fall in few buckets, and a short list
        # costs a fraction of a dict.
        self.hist: list[int] = []

    def add(self, us: int) -> None:
        if self.count == 0 or us < self.min_us:
            self.min_us = us
        self.max_us = max(self.max_us, us)
        self.count += 1
        self.sum_us += us
        b = bucket_of_us(us)
        hist = self.hist
        for i in range(0, len(hist), 2):
            if hist[i] == b:
                hist[i + 1] += 1
                return
        hist.append(b)
        hist.append(1)

    def bins(self) -> tuple[HistBin, ...]:
        h = self.hist
        return tuple(HistBin(b, c) for b, c in sorted(zip(h[::2], h[1::2], strict=True)))


class Handshake:
    """SYN / SYN-ACK / ACK timing of one connection attempt (fwd = initiator -> responder)."""

    __slots__ = ("done", "leg_init_ns", "leg_resp_ns", "syn_ns", "syn_seq", "synack_ns", "synack_seq")

    def __init__(self) -> None:
        self.syn_ns = -1
        self.syn_seq = 0
        self.synack_ns = -1
        self.synack_seq = 0
        self.leg_resp_ns: int | None = None  # SYN -> SYN-ACK: responder's side of the observation point
        self.leg_init_ns: int | None = None  # SYN-ACK -> ACK: initiator's side
        self.done = False  # handshake completed or tainted: no further samples

    def syn(self, ts_ns: int, seq: int) -> None:
        """A SYN without ACK from the initiator: (re)start timing from this, the latest, SYN."""
        if self.done:
            return
        self.syn_ns = ts_ns
        self.syn_seq = seq
        self.synack_ns = -1
        self.leg_resp_ns = None

    def synack(self, ts_ns: int, seq: int, ack: int) -> None:
        """A SYN-ACK from the responder; it must acknowledge the SYN (ack = SYN seq + 1)."""
        if self.done:
            return
        if self.syn_ns < 0:
            self.done = True  # SYN-ACK before any SYN: taint
            return
        if ack != (self.syn_seq + 1) & _MASK or ts_ns < self.syn_ns:
            return
        if self.leg_resp_ns is None:
            self.leg_resp_ns = ts_ns - self.syn_ns
        self.synack_ns = ts_ns
        self.synack_seq = seq

    def ack(self, ts_ns: int, ack: int) -> None:
        """A segment with ACK (no SYN) from the initiator; completes the handshake if it acks the SYN-ACK."""
        if self.done or self.synack_ns < 0:
            return
        if ack != (self.synack_seq + 1) & _MASK or ts_ns < self.synack_ns:
            return
        self.leg_init_ns = ts_ns - self.synack_ns
        self.done = True

    def taint(self) -> None:
        self.done = True


class TsMatcher:
    """TSval first-seen times toward the remote side, matched against TSecr coming back."""

    __slots__ = ("last_val", "pending")

    def __init__(self) -> None:
        self.pending: list[int] = []  # flat [tsval, first_seen_ns, ...]: few entries, cheaper than a dict
        self.last_val = -1

    def out(self, tsval: int, ts_ns: int, cap: int) -> None:
        if tsval == self.last_val:
            return  # not the first occurrence
        self.last_val = tsval
        pending = self.pending
        if len(pending) < 2 * cap and tsval not in pending[::2]:
            pending.append(tsval)
            pending.append(ts_ns)

    def echo(self, tsecr: int, ts_ns: int) -> int | None:
        pending = self.pending
        vals = pending[::2]
        if tsecr not in vals:
            return None
        t0 = pending[2 * vals.index(tsecr) + 1]
        # The echoed value and older ones go: TSecr is non-decreasing, older values will never be echoed.
        self.pending = [
            x
            for i in range(0, len(pending), 2)
            if (tsecr - pending[i]) & _MASK >= _HALF
            for x in (pending[i], pending[i + 1])
        ]
        return ts_ns - t0 if ts_ns >= t0 else None


class EchoMatcher:
    """Request first-seen times by identifier (ICMP echo seq, DNS id), matched by the reply."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: dict[int, int] = {}

    def request(self, ident: int, ts_ns: int, cap: int) -> None:
        if ident not in self.pending and len(self.pending) < cap:
            self.pending[ident] = ts_ns

    def reply(self, ident: int, ts_ns: int) -> int | None:
        t0 = self.pending.pop(ident, None)
        if t0 is None or ts_ns < t0:
            return None
        return ts_ns - t0


class LatencyState:
    """Lazily allocated per flow, only once a packet that can yield latency is seen."""

    __slots__ = ("dns", "dns_sum", "hs", "hs_done", "hs_init_ns", "hs_resp_ns", "icmp", "icmp_sum", "ts", "ts_sum")

    def __init__(self) -> None:
        self.hs: Handshake | None = None  # in progress only: freed once done, its legs kept below
        self.hs_done = False
        self.hs_resp_ns: int | None = None
        self.hs_init_ns: int | None = None
        self.ts: TsMatcher | None = None
        self.icmp: EchoMatcher | None = None
        self.dns: EchoMatcher | None = None
        self.ts_sum: RttSummary | None = None
        self.icmp_sum: RttSummary | None = None
        self.dns_sum: RttSummary | None = None

    def _hs(self) -> Handshake | None:
        if self.hs_done:
            return None
        hs = self.hs
        if hs is None:
            hs = self.hs = Handshake()
        return hs

    def _settle(self, hs: Handshake) -> None:
        if hs.done:
            self.hs_resp_ns, self.hs_init_ns = hs.leg_resp_ns, hs.leg_init_ns
            self.hs_done = True
            self.hs = None

    def hs_syn(self, ts_ns: int, seq: int) -> None:
        hs = self._hs()
        if hs is not None:
            hs.syn(ts_ns, seq)

    def hs_synack(self, ts_ns: int, seq: int, ack: int) -> None:
        hs = self._hs()
        if hs is not None:
            hs.synack(ts_ns, seq, ack)
            self._settle(hs)

    def hs_ack(self, ts_ns: int, ack: int) -> int:
        """Returns the whole handshake RTT (SYN -> ACK) in ns when this ACK completes it, else 0."""
        hs = self.hs
        if hs is None:
            return 0
        hs.ack(ts_ns, ack)
        self._settle(hs)
        if self.hs_resp_ns is not None and self.hs_init_ns is not None:
            return self.hs_resp_ns + self.hs_init_ns
        return 0

    def hs_taint(self) -> None:
        hs = self._hs()
        if hs is not None:
            hs.taint()
            self._settle(hs)

    def hs_legs(self) -> tuple[int | None, int | None]:
        """(SYN -> SYN-ACK, SYN-ACK -> ACK) in ns, as far as known."""
        hs = self.hs
        if hs is not None:
            return hs.leg_resp_ns, hs.leg_init_ns
        return self.hs_resp_ns, self.hs_init_ns

    def ts_out(self, tsval: int, ts_ns: int, cap: int) -> None:
        m = self.ts
        if m is None:
            m = self.ts = TsMatcher()
        m.out(tsval, ts_ns, cap)

    def ts_echo(self, tsecr: int, ts_ns: int) -> None:
        m = self.ts
        if m is None:
            return
        rtt = m.echo(tsecr, ts_ns)
        if rtt is not None:
            if self.ts_sum is None:
                self.ts_sum = RttSummary()
            self.ts_sum.add(ns_to_us(rtt))

    def icmp_request(self, seq: int, ts_ns: int, cap: int) -> None:
        if self.icmp is None:
            self.icmp = EchoMatcher()
        self.icmp.request(seq, ts_ns, cap)

    def icmp_reply(self, seq: int, ts_ns: int) -> None:
        if self.icmp is None:
            return
        rtt = self.icmp.reply(seq, ts_ns)
        if rtt is not None:
            if self.icmp_sum is None:
                self.icmp_sum = RttSummary()
            self.icmp_sum.add(ns_to_us(rtt))

    def dns_query(self, dns_id: int, ts_ns: int, cap: int) -> None:
        if self.dns is None:
            self.dns = EchoMatcher()
        self.dns.request(dns_id, ts_ns, cap)

    def dns_response(self, dns_id: int, ts_ns: int) -> None:
        if self.dns is None:
            return
        rtt = self.dns.reply(dns_id, ts_ns)
        if rtt is not None:
            if self.dns_sum is None:
                self.dns_sum = RttSummary()
            self.dns_sum.add(ns_to_us(rtt))

    def reoriented(self) -> None:
        """Initiator and responder swapped: direction-bound pending state is void; the handshake stays."""
        self.ts = None
        self.icmp = None
        self.dns = None

    def new_slice(self) -> None:
        """After an export: summaries restart; reported handshake legs are not reported again."""
        self.ts_sum = None
        self.icmp_sum = None
        self.dns_sum = None
        self.hs_resp_ns = self.hs_init_ns = None
        hs = self.hs
        if hs is not None:
            hs.leg_resp_ns = None
            hs.leg_init_ns = None
