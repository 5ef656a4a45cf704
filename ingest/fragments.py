"""Attribute later IP fragments to the flow of their first fragment.

Only the first fragment (offset 0) carries the transport header. The tracker remembers, per fragmented
datagram (source, destination, protocol, IP id), the flow fields decoded from that first fragment, and
copies them into later fragments of the same datagram, so their bytes land on the right flow. With
decapsulation the remembered flow is the inner one and later outer fragments are attributed to it too.

Policy for a later fragment seen before its first fragment (reordering, or a first fragment that was
lost or rejected): it is passed on at once with ports 0 (its own addresses and protocol) and counted in
`stats.orphans`; it is not held back, so the tracker never delays or buffers packets.

Memory is bounded: at most `max_datagrams` entries; an entry expires `timeout_ns` of packet time after its
first fragment (reassembly timeouts are 30-60 s in hosts); when full, the oldest entry is dropped
(`stats.evicted`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.flowkey import PROTO_ICMP, PROTO_ICMPV6, icmp_key_port
from ingest.packet import DecodedPacket

_Key = tuple[bytes, bytes, int, int]
# first fragment's flow: (expiry ns, ip version, src, dst, protocol, src port, dst port)
_Entry = tuple[int, int, bytes, bytes, int, int, int]


@dataclass(slots=True)
class FragmentStats:
    first_fragments: int = 0  # datagrams whose first fragment was seen
    attributed: int = 0  # later fragments given their first fragment's flow
    orphans: int = 0  # later fragments with no known first fragment: ports 0
    expired: int = 0  # entries dropped after the timeout
    evicted: int = 0  # entries dropped because the table was full


class FragmentTracker:
    """Bounded table from fragmented datagram to the flow of its first fragment."""

    def __init__(self, max_datagrams: int = 65_536, timeout_ns: int = 30_000_000_000) -> None:
        if max_datagrams < 1 or timeout_ns <= 0:
            raise ValueError("max_datagrams must be >= 1 and timeout_ns > 0")
        self.max_datagrams = max_datagrams
        self.timeout_ns = timeout_ns
        self.stats = FragmentStats()
        self._table: dict[_Key, _Entry] = {}  # insertion order = order of first fragments

    def __len__(self) -> int:
        return len(self._table)

    def process(self, pkt: DecodedPacket) -> DecodedPacket:
        """Record a first fragment or fill in a later one (in place); other packets pass untouched."""
        key = pkt.frag_key
        if key is None:
            return pkt
        if pkt.frag_offset == 0:
            self._remember(key, pkt)
            return pkt
        self._expire(pkt.ts_ns)
        entry = self._table.get(key)
        if entry is None or entry[0] < pkt.ts_ns:
            self.stats.orphans += 1
            return pkt
        _, pkt.ip_version, pkt.src_ip, pkt.dst_ip, pkt.protocol, pkt.src_port, pkt.dst_port = entry
        self.stats.attributed += 1
        return pkt

    def _remember(self, key: _Key, pkt: DecodedPacket) -> None:
        self._expire(pkt.ts_ns)
        table = self._table
        if key in table:
            del table[key]  # a repeated first fragment (retransmission, id reuse) starts afresh
        elif len(table) >= self.max_datagrams:
            del table[next(iter(table))]
            self.stats.evicted += 1
        sport, dport = pkt.src_port, pkt.dst_port
        if pkt.protocol in (PROTO_ICMP, PROTO_ICMPV6):
            # ICMP keys on its echo id or type/code, which later fragments lack: they get the first
            # fragment's key port in both port fields (ingest.flowkey.icmp_key_port reads it back).
            sport = dport = icmp_key_port(pkt)
        table[key] = (pkt.ts_ns + self.timeout_ns, pkt.ip_version, pkt.src_ip, pkt.dst_ip, pkt.protocol, sport, dport)
        self.stats.first_fragments += 1

    def _expire(self, now_ns: int) -> None:
        # Oldest first; stop at the first live entry. Out-of-order time (merged captures) only delays expiry.
        table = self._table
        while table:
            key = next(iter(table))
            if table[key][0] >= now_ns:
                return
            del table[key]
            self.stats.expired += 1
