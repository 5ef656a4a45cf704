"""Live capture options and interface facts: what the native engine's TPACKET_V3 ring needs to open.

The ring itself (socket, filter, ring, bind, fanout, kernel statistics) is in native/src/ring.rs; frames never
cross into Python. This module checks the options, finds the interface's index and link type, and builds the
classic BPF program (user filter, snap length, sampling: ``ingest.sources.bpf``) that the engine attaches.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from gwtel.errors import UserError
from ingest import linktypes
from ingest.sources import bpf

# ARPHRD_* (linux/if_arp.h) -> the link type of what an AF_PACKET SOCK_RAW socket returns.
ARPHRD_LINKTYPE: Final = {
    1: linktypes.ETHERNET,  # ARPHRD_ETHER
    772: linktypes.ETHERNET,  # ARPHRD_LOOPBACK: Linux gives loopback frames a zeroed Ethernet header
    65534: linktypes.RAW,  # ARPHRD_NONE: tun devices, bare IP
}
ARPHRD_LOOPBACK: Final = 772

DEFAULT_SNAPLEN: Final = 128
MIN_SNAPLEN: Final = 64
PAGE: Final = 4096

SamplingMode = Literal["packet", "flow"]


@dataclass(frozen=True, slots=True)
class LiveOptions:
    iface: str
    snaplen: int = DEFAULT_SNAPLEN
    sample: int = 1
    sample_mode: SamplingMode = "packet"
    bpf: str | None = None
    promisc: bool = True
    block_size: int = 1 << 20  # bytes per ring block (a power of two, >= 4096)
    block_count: int = 64
    block_timeout_ms: int = 50  # a partly filled block is handed over after this long
    workers: int = 1  # rings in one PACKET_FANOUT_HASH group on the interface, one thread each
    fanout_defrag: bool = False  # reassemble IP fragments in the kernel before the fanout hash
    poll_ms: int = 250  # longest a worker waits for a block, so it can tick timers and notice a stop request


@dataclass(frozen=True, slots=True)
class KernelStats:
    """PACKET_STATISTICS of one ring since it was opened (tpacket_stats_v3)."""

    packets: int = 0  # packets the filter accepted, including the dropped ones
    drops: int = 0  # packets dropped because no ring block was free
    freeze_q_cnt: int = 0  # times the ring was full (every block with the reader)


def check_options(opts: LiveOptions) -> None:
    if not MIN_SNAPLEN <= opts.snaplen <= bpf.MAX_SNAPLEN:
        raise UserError(f"--snaplen {opts.snaplen}: use {MIN_SNAPLEN}..{bpf.MAX_SNAPLEN} bytes")
    if opts.sample < 1:
        raise UserError(f"--sample {opts.sample}: the sampling rate is 1:N with N >= 1")
    bs = opts.block_size
    if bs < PAGE or bs & (bs - 1):
        raise UserError(f"ring block size {bs}: use a power of two of at least {PAGE} bytes")
    if bs < opts.snaplen + 128:
        raise UserError(f"ring block size {bs}: must hold a frame of the snap length {opts.snaplen} and its header")
    if opts.block_count < 2 or opts.block_timeout_ms < 1 or opts.workers < 1:
        raise UserError("ring: at least 2 blocks, a block timeout of at least 1 ms and at least one worker")


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


def is_loopback(iface: str) -> bool:
    try:
        return int((Path("/sys/class/net") / iface / "type").read_text().strip()) == ARPHRD_LOOPBACK
    except OSError:
        return False


def interface_index(iface: str) -> int | None:
    """The interface's index, or None while it does not exist."""
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        return None


def filter_program(opts: LiveOptions, linktype: int) -> bytes:
    """The encoded classic BPF program: sampling, then the user filter (or all), returning the snap length."""
    user = bpf.compile_filter(opts.bpf, linktype, opts.snaplen) if opts.bpf else None
    return bpf.encode(bpf.build_program(opts.snaplen, opts.sample, user, mode=opts.sample_mode, linktype=linktype))


def open_error(iface: str, exc: OSError) -> UserError:
    """What opening the ring on ``iface`` failed with, said for a person."""
    if exc.errno == errno.EPERM:
        return UserError(
            f"capturing on {iface} needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous mode): run as root, or "
            "grant the capabilities (AmbientCapabilities in systemd: see deploy/systemd/)"
        )
    if exc.errno in (errno.ENODEV, errno.ENXIO):
        return UserError(f"interface {iface!r} does not exist")
    if exc.errno == errno.ENOMEM:
        return UserError(f"capture on {iface}: the kernel could not allocate the ring; use fewer or smaller blocks")
    return UserError(f"cannot capture on {iface}: {exc.strerror or exc}")
