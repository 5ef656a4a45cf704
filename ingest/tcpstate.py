"""Per-flow TCP state: retransmission / out-of-order counting and connection end (FIN both ways, RST).

Heuristic (constant state per direction, no per-segment lists): remember the highest sequence end seen
(``seq + payload + SYN + FIN``, serial arithmetic mod 2**32) and when it last moved forward. A segment that
occupies sequence space (payload, SYN or FIN) and ends at or below that highest end was already covered:

- if it does not end exactly at the highest end and arrives sooner after the last forward move than the
  flow's handshake RTT (SYN -> ACK at the observation point; ``ooo_ns``, default 3 ms, while unknown), it is
  counted as out-of-order (a late segment filling a hole), otherwise as a retransmission: the same rule and
  thresholds as tshark's ``tcp.analysis``;
- a 0/1-byte segment at ``highest - 1`` without SYN/FIN is a keep-alive, not a retransmission.

What it misses, knowingly: a hole filled late after a loss upstream of the observation point is counted as a
retransmission (tshark does the same); a retransmission that also carries new data (re-packetised, partial
overlap) only advances the highest end and is not counted (tshark counts it); a fast retransmission arriving
within the threshold of new data is counted as out-of-order (tshark checks duplicate ACKs first); segments
whose originals were never seen (lost before the observation point) look new and are not counted; SACK is
ignored.
"""

from __future__ import annotations

from typing import Final

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
ACK: Final = 0x10

_MASK: Final = 0xFFFFFFFF
_HALF: Final = 0x80000000
DEFAULT_OOO_NS: Final = 3_000_000


class TcpState:
    """Sequence tracking and end-of-connection state of one TCP flow (fwd = initiator -> responder)."""

    __slots__ = (
        "adv_f",
        "adv_r",
        "closing",
        "fins",
        "hi_f",
        "hi_r",
        "irtt_ns",
        "ooo_f",
        "ooo_r",
        "retrans_f",
        "retrans_r",
        "syn_seen",
    )

    def __init__(self) -> None:
        self.hi_f = -1  # highest sequence end seen initiator -> responder; -1: none yet
        self.hi_r = -1
        self.adv_f = 0  # ns when hi_f last moved forward
        self.adv_r = 0
        self.retrans_f = 0
        self.retrans_r = 0
        self.ooo_f = 0
        self.ooo_r = 0
        self.fins = 0  # bit 1: FIN seen fwd, bit 2: FIN seen rev
        self.closing: str | None = None  # "fin" or "rst" once the connection has ended
        self.syn_seen = False  # a SYN without ACK came from the initiator (orientation is settled)
        self.irtt_ns = 0  # handshake RTT (SYN -> ACK) once known: the out-of-order threshold, as tshark

    def segment(self, fwd: bool, flags: int, seq: int, payload_len: int, *, ts_ns: int, ooo_ns: int) -> None:
        """Account one segment sent in direction ``fwd``."""
        if flags & RST:
            self.closing = "rst"
        if flags & FIN:
            self.fins |= 1 if fwd else 2
            if self.fins == 3 and self.closing is None:
                self.closing = "fin"
        seglen = payload_len + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        if seglen == 0:
            return
        end = (seq + seglen) & _MASK
        hi = self.hi_f if fwd else self.hi_r
        if hi >= 0:
            ahead = (end - hi) & _MASK
            if ahead == 0 or ahead >= _HALF:
                # Entirely within sequence space already covered.
                if seglen <= 1 and not flags & (SYN | FIN) and end == hi:
                    return  # keep-alive probe
                adv = self.adv_f if fwd else self.adv_r
                if end != hi and 0 <= ts_ns - adv < (self.irtt_ns or ooo_ns):
                    if fwd:
                        self.ooo_f += 1
                    else:
                        self.ooo_r += 1
                elif fwd:
                    self.retrans_f += 1
                else:
                    self.retrans_r += 1
                return
        if fwd:
            self.hi_f = end
            self.adv_f = ts_ns
        else:
            self.hi_r = end
            self.adv_r = ts_ns

    def swap(self) -> None:
        """The flow was re-oriented: what was fwd is now rev."""
        self.hi_f, self.hi_r = self.hi_r, self.hi_f
        self.adv_f, self.adv_r = self.adv_r, self.adv_f
        self.retrans_f, self.retrans_r = self.retrans_r, self.retrans_f
        self.ooo_f, self.ooo_r = self.ooo_r, self.ooo_f
        self.fins = ((self.fins & 1) << 1) | ((self.fins >> 1) & 1)

    def reset_counts(self) -> None:
        """Start a new active-timeout slice: counters restart, sequence tracking continues."""
        self.retrans_f = self.retrans_r = 0
        self.ooo_f = self.ooo_r = 0
