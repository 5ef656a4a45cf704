"""Live packet source: an AF_PACKET socket on one interface, with a kernel-side filter, snap length and sampling.

Set-up order matters: the socket is created with protocol 0 (it receives nothing), the BPF program is attached,
and only then is it bound to the interface for every protocol, so no packet of another interface, and none that
the filter would refuse, is ever queued. Frames carry kernel receive timestamps (SO_TIMESTAMPNS), their length on
the wire (PACKET_AUXDATA ``tp_len``, since the filter cut the copy to the snap length) and their 802.1Q tag,
which Linux strips from the frame and hands over in the same auxiliary data: the tag is put back so the decoder
sees the frame as it was on the wire.

``kernel_stats()`` reads PACKET_STATISTICS, which the kernel resets on every read: callers add the deltas up.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

from gwtel.errors import UserError
from ingest import linktypes
from ingest.packet import RawFrame
from ingest.sources import bpf

log = logging.getLogger(__name__)

ETH_P_ALL: Final = 0x0003
ETH_P_8021Q: Final = 0x8100
SOL_PACKET: Final = 263
PACKET_ADD_MEMBERSHIP: Final = 1
PACKET_STATISTICS: Final = 6
PACKET_AUXDATA: Final = 8
PACKET_IGNORE_OUTGOING: Final = 23  # Linux >= 4.20
PACKET_MR_PROMISC: Final = 1
PACKET_OUTGOING: Final = 4
SO_TIMESTAMPNS: Final = 35  # also the control message type (SCM_TIMESTAMPNS)
SO_RCVBUFFORCE: Final = 33
TP_STATUS_VLAN_VALID: Final = 0x10
TP_STATUS_VLAN_TPID_VALID: Final = 0x40

# ARPHRD_* (linux/if_arp.h) -> the link type of what an AF_PACKET SOCK_RAW socket returns.
ARPHRD_LINKTYPE: Final = {
    1: linktypes.ETHERNET,  # ARPHRD_ETHER
    772: linktypes.ETHERNET,  # ARPHRD_LOOPBACK: Linux gives loopback frames a zeroed Ethernet header
    65534: linktypes.RAW,  # ARPHRD_NONE: tun devices, bare IP
}
ARPHRD_LOOPBACK: Final = 772

DEFAULT_SNAPLEN: Final = 128
MIN_SNAPLEN: Final = 64
DEFAULT_RCVBUF: Final = 32 << 20

_TIMESPEC: Final = struct.Struct("@qq")
_AUXDATA: Final = struct.Struct("@IIIHHHH")  # struct tpacket_auxdata
_STATS: Final = struct.Struct("@II")  # struct tpacket_stats
_ANCBUF: Final = socket.CMSG_SPACE(_TIMESPEC.size) + socket.CMSG_SPACE(_AUXDATA.size)


@dataclass(frozen=True, slots=True)
class LiveOptions:
    iface: str
    snaplen: int = DEFAULT_SNAPLEN
    sample: int = 1
    bpf: str | None = None
    promisc: bool = True
    rcvbuf: int = DEFAULT_RCVBUF
    poll_s: float = 0.25  # longest a read blocks, so the caller can tick timers and notice a stop request


@dataclass(frozen=True, slots=True)
class KernelStats:
    packets: int  # packets the filter accepted, including the dropped ones
    drops: int  # packets dropped because the socket buffer was full


def interface_linktype(iface: str) -> int:
    """Link type of the frames the interface delivers; UserError if it does not exist or is not supported."""
    sysdir = Path("/sys/class/net") / iface
    if "/" in iface or not iface or not sysdir.is_dir():
        known = sorted(p.name for p in Path("/sys/class/net").iterdir()) if Path("/sys/class/net").is_dir() else []
        raise UserError(f"interface {iface!r} does not exist (interfaces here: {', '.join(known) or 'none'})")
    arphrd = int((sysdir / "type").read_text().strip())
    lt = ARPHRD_LINKTYPE.get(arphrd)
    if lt is None:
        raise UserError(f"interface {iface!r} has hardware type {arphrd}; capture supports Ethernet, loopback and tun")
    return lt


def _vlan_tag(aux: bytes) -> bytes | None:
    status, _len, _snap, _mac, _net, tci, tpid = _AUXDATA.unpack_from(aux)
    if not status & TP_STATUS_VLAN_VALID:
        return None
    if not status & TP_STATUS_VLAN_TPID_VALID or tpid == 0:
        tpid = ETH_P_8021Q
    return struct.pack("!HH", tpid, tci)


class LiveSource:
    """Frames from one interface; ``read()`` returns a RawFrame, or None when nothing arrived within poll_s."""

    def __init__(self, opts: LiveOptions) -> None:
        if not MIN_SNAPLEN <= opts.snaplen <= bpf.MAX_SNAPLEN:
            raise UserError(f"--snaplen {opts.snaplen}: use {MIN_SNAPLEN}..{bpf.MAX_SNAPLEN} bytes")
        if opts.sample < 1:
            raise UserError(f"--sample {opts.sample}: the sampling rate is 1:N with N >= 1")
        self.opts = opts
        self.linktype = interface_linktype(opts.iface)
        user = bpf.compile_filter(opts.bpf, self.linktype, opts.snaplen) if opts.bpf else None
        self.program = bpf.build_program(opts.snaplen, opts.sample, user)
        self.link_down_events = 0
        self._link_down = False
        self._ifindex = socket.if_nametoindex(opts.iface)
        self._loopback = int((Path("/sys/class/net") / opts.iface / "type").read_text().strip()) == ARPHRD_LOOPBACK
        self._sock = self._open()

    def _open(self) -> socket.socket:
        iface = self.opts.iface
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise UserError(
                f"capturing on {iface} needs CAP_NET_RAW: run as root, or grant the capability "
                "(setcap cap_net_raw,cap_net_admin+eip on the Python interpreter, or AmbientCapabilities in systemd)"
            ) from None
        try:
            self._configure(sock)
            sock.bind((iface, ETH_P_ALL))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.ENODEV:
                raise UserError(f"interface {iface!r} does not exist") from None
            if exc.errno == errno.EPERM:
                raise UserError(
                    f"capturing on {iface} needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous mode)"
                ) from None
            raise UserError(f"cannot capture on {iface}: {exc.strerror}") from None
        return sock

    def _configure(self, sock: socket.socket) -> None:
        bpf.attach(sock, self.program)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        if self._loopback:
            # Loopback frames are seen leaving and arriving: keep one copy, as libpcap does. In the kernel when
            # it can, so its packet counts match what the agent reads; read() skips them on older kernels.
            with contextlib.suppress(OSError):
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        # A large buffer absorbs bursts while the agent is busy; root may exceed net.core.rmem_max.
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.opts.rcvbuf)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.opts.rcvbuf)
        if self.opts.promisc:
            # Needed on a SPAN/tap port, where the frames are addressed to other hosts; undone on close.
            ifindex = socket.if_nametoindex(self.opts.iface)
            mreq = struct.pack("@iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        sock.settimeout(self.opts.poll_s)

    def read(self) -> RawFrame | None:
        """The next frame, or None after ``poll_s`` without one."""
        while True:
            try:
                data, anc, _flags, addr = self._sock.recvmsg(self.opts.snaplen, _ANCBUF)
            except TimeoutError:
                if self._link_down:
                    self._check_still_there()
                return None
            except OSError as exc:
                # A link going down is reported once; the kernel resumes delivery when it comes back up. Removing
                # the interface also starts with "down", and then goes silent: _check_still_there() sees that.
                if exc.errno != errno.ENETDOWN:
                    raise UserError(f"capture on {self.opts.iface} stopped: {exc.strerror or exc}") from None
                self.link_down_events += 1
                self._link_down = True
                log.warning("interface %s went down; capture resumes when it is up again", self.opts.iface)
                self._check_still_there()
                return None
            self._link_down = False
            if self._loopback and addr[2] == PACKET_OUTGOING:
                continue
            ts_ns = -1
            wire_len = len(data)
            tag = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(payload)
                    ts_ns = sec * 1_000_000_000 + nsec
                elif level == SOL_PACKET and kind == PACKET_AUXDATA:
                    wire_len = _AUXDATA.unpack_from(payload)[1]
                    tag = _vlan_tag(payload)
            if ts_ns < 0:  # never seen with SO_TIMESTAMPNS set; better a late time than none
                ts_ns = time.time_ns()
            if tag is not None and self.linktype == linktypes.ETHERNET and len(data) >= 12:
                data = data[:12] + tag + data[12:]
                wire_len += len(tag)
            return RawFrame(ts_ns, self.linktype, data, wire_len)

    def _check_still_there(self) -> None:
        """Raise if the interface was removed (or replaced by a new one of the same name) while down."""
        try:
            same = socket.if_nametoindex(self.opts.iface) == self._ifindex
        except OSError:
            same = False
        if not same:
            raise UserError(f"capture on {self.opts.iface} stopped: the interface was removed")

    def kernel_stats(self) -> KernelStats:
        """Packets accepted and dropped since the previous call (the kernel resets the counters on read)."""
        packets, drops = _STATS.unpack(self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size))
        return KernelStats(packets, drops)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
