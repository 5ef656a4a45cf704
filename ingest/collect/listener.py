"""UDP listeners: several SO_REUSEPORT sockets per address, a large receive buffer, kernel drops per socket.

The kernel spreads exporters over a port's sockets by their source address and port, and the reader takes at
most ``quota`` datagrams from one socket before it serves the next: a flooding exporter fills (and overflows)
its own socket's buffer while the others keep being read. SO_RXQ_OVFL makes the kernel attach the socket's
cumulative drop count to each datagram, which is how drops are read per socket.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass

from ingest.collect.config import Listen
from ingest.collect.frames import HEADER, PROTOCOLS

SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # Linux
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_MAX_DATAGRAM = 65535
_ANC = socket.CMSG_SPACE(4)


@dataclass
class SocketStats:
    listen: str  # protocol://host:port
    index: int
    datagrams: int = 0
    bytes: int = 0
    kernel_drops: int = 0  # cumulative, as the kernel last reported it
    receive_buffer: int = 0


@dataclass
class _Sock:
    sock: socket.socket
    protocol: int
    stats: SocketStats


def _open(lst: Listen, port: int, rcvbuf: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in lst.host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)  # beyond rmem_max, needs CAP_NET_ADMIN
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind((lst.host, port))
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def _exporter(addr: tuple[str, int] | tuple[str, int, int, int]) -> tuple[int, bytes]:
    host = addr[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    if ":" in host:
        return 6, socket.inet_pton(socket.AF_INET6, host.split("%")[0])
    return 4, socket.inet_pton(socket.AF_INET, host) + bytes(12)


class Listeners:
    def __init__(self, listens: list[Listen], *, sockets_per_listener: int, receive_buffer: int) -> None:
        self._socks: list[_Sock] = []
        self._scratch = bytearray(_MAX_DATAGRAM)
        self._next = 0
        try:
            for lst in listens:
                port = lst.port
                for i in range(sockets_per_listener):
                    s = _open(lst, port, receive_buffer)
                    port = s.getsockname()[1]  # port 0 (tests): the other sockets join the one picked
                    st = SocketStats(f"{lst.protocol}://{lst.host}:{port}", i)
                    st.receive_buffer = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                    self._socks.append(_Sock(s, PROTOCOLS[lst.protocol], st))
        except OSError:
            self.close()
            raise
        self._poll = select.poll()
        for entry in self._socks:
            self._poll.register(entry.sock.fileno(), select.POLLIN)

    @property
    def stats(self) -> list[SocketStats]:
        return [s.stats for s in self._socks]

    def ports(self) -> list[int]:
        return sorted({s.sock.getsockname()[1] for s in self._socks})

    def read(self, out: bytearray, *, max_datagrams: int, quota: int, timeout_s: float) -> int:
        """Append framed datagrams to `out` (see ingest.collect.frames): up to `quota` per socket and turn,
        up to `max_datagrams` in all, waiting at most `timeout_s` for the first. Returns how many."""
        ready = self._poll.poll(int(timeout_s * 1000))
        if not ready:
            return 0
        n = 0
        view = memoryview(self._scratch)
        order = self._socks[self._next :] + self._socks[: self._next]
        self._next = (self._next + 1) % len(self._socks)
        fds = {fd for fd, _ in ready}
        active = [s for s in order if s.sock.fileno() in fds]
        while active and n < max_datagrams:
            still = []
            for s in active:
                took = 0
                while took < quota and n < max_datagrams:
                    try:
                        size, anc, _flags, addr = s.sock.recvmsg_into([view], _ANC)
                    except BlockingIOError:
                        break
                    recv_ns = time.time_ns()
                    for level, kind, data in anc:
                        if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(data) >= 4:
                            s.stats.kernel_drops = struct.unpack("=I", data[:4])[0]
                    family, addr16 = _exporter(addr)
                    out += HEADER.pack(size, recv_ns, family, addr16, s.protocol)
                    out += view[:size]
                    s.stats.datagrams += 1
                    s.stats.bytes += size
                    took += 1
                    n += 1
                if took == quota:
                    still.append(s)
            active = still
        return n

    def close(self) -> None:
        for s in self._socks:
            s.sock.close()
        self._socks = []
