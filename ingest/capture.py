"""Live capture: the native engine behind TPACKET_V3 rings, one worker thread per ring, until told to stop.

Each interface gets ``workers`` rings in one PACKET_FANOUT_HASH group (the kernel's flow hash is symmetric, so
both directions of a flow reach the same worker and its engine). A worker meters whole ring blocks in one native
call without the GIL, then drains its engine's finished flows into the shared agent (one record sequence, one
set of counters) under the agent's lock: Python sees batches of finished flows, never frames.

Flow timeouts advance with time even when no packet arrives: once a worker has read every ready block, its engine
is advanced to the wall clock minus a margin that covers a block still being filled (kernel timestamps are on the
same clock). Kernel statistics (PACKET_STATISTICS, tpacket_stats_v3) are read every ``stats_every_s``.

An interface that goes down keeps its ring: the kernel resumes delivery when it is up again (the engine counts
the ENETDOWN). One that is removed, or replaced by another of the same name, is noticed within a second: the
ring is closed, and opened again when an interface of that name exists, with the flows of the engine kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gwtel.errors import UserError
from ingest.native import NativeAgent
from ingest.sources.live import (
    KernelStats,
    LiveOptions,
    check_options,
    filter_program,
    interface_index,
    interface_linktype,
    is_loopback,
    open_error,
)

if TYPE_CHECKING:
    import gwtel_native

log = logging.getLogger(__name__)

_MAX_BLOCKS = 64  # per native call: bounds the time between two drains of finished flows
_REOPEN_EVERY_S = 0.5
_MS = 1_000_000


@dataclass
class CaptureResult:
    seconds: float
    stopped_by: str  # "duration" or "stop"


@dataclass
class WorkerStats:
    """One ring's kernel counters, summed over the times its ring was (re)opened."""

    iface: str
    worker: int
    kernel: KernelStats = field(default_factory=KernelStats)
    link_down: int = 0
    damaged_blocks: int = 0
    reopened: int = 0


class FanoutGroup:
    """The PACKET_FANOUT group of one interface's rings in this process.

    Group ids are global in the network namespace, and a ring that asks for the id of another process's group on
    the same interface silently joins it (each process would then see part of the traffic). So the first ring asks
    the kernel for an id no group has (``fanout_group=0``: PACKET_FANOUT_FLAG_UNIQUEID) and the others join that
    id. A group outlives its interface until its last ring closes: rings of a re-created interface (a new index)
    start a new group.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ifindex: int | None = None
        self._id: int | None = None

    def open(self, ifindex: int, open_ring: Callable[[int], int | None]) -> None:
        """Open a ring with ``open_ring(group id to join, or 0 for a new unique group)``."""
        with self._lock:
            join = self._id if self._ifindex == ifindex and self._id is not None else 0
            got = open_ring(join)
            if got is None or (join and got != join):
                raise RuntimeError(f"fanout group {got} after asking for {join or 'a unique one'}")
            self._ifindex, self._id = ifindex, got


class RingWorker:
    """One ring on one interface, its engine, and the thread that meters it."""

    def __init__(self, agent: NativeAgent, opts: LiveOptions, index: int, group: FanoutGroup | None) -> None:
        self.agent = agent
        self.group = group  # None: the only ring of its interface
        self.opts = opts
        self.stats = WorkerStats(opts.iface, index)
        self.engine: gwtel_native.Engine = agent.new_engine()
        self.linktype = interface_linktype(opts.iface)
        self.program = filter_program(opts, self.linktype)
        self.loopback = is_loopback(opts.iface)
        self.ifindex: int | None = None
        self._base = WorkerStats(opts.iface, index)  # counters of the rings closed before the current one
        self.error: BaseException | None = None

    def open(self) -> bool:
        """Open the ring if the interface exists; UserError if it exists and cannot be captured."""
        idx = interface_index(self.opts.iface)
        if idx is None:
            return False
        o = self.opts

        def open_ring(group: int | None) -> int | None:
            return self.engine.open_ring(
                ifindex=idx,
                linktype=self.linktype,
                filter=self.program,
                block_size=o.block_size,
                block_count=o.block_count,
                block_timeout_ms=o.block_timeout_ms,
                fanout_group=group,
                fanout_defrag=o.fanout_defrag,
                promisc=o.promisc,
                loopback=self.loopback,
            )

        try:
            if self.group is None:
                open_ring(None)
            else:
                self.group.open(idx, open_ring)
        except OSError as exc:
            if interface_index(self.opts.iface) != idx:  # removed while opening: try again later
                return False
            raise open_error(self.opts.iface, exc) from None
        self.ifindex = idx
        return True

    def close(self) -> None:
        if self.ifindex is None:
            return
        self.read_stats()
        b, s = self._base, self.stats
        b.kernel, b.link_down, b.damaged_blocks = s.kernel, s.link_down, s.damaged_blocks
        self.engine.close_ring()
        self.ifindex = None

    def read_stats(self) -> None:
        if self.ifindex is None:
            return
        packets, drops, freeze, link_down, damaged = self.engine.ring_stats()
        b, s = self._base, self.stats
        s.kernel = KernelStats(b.kernel.packets + packets, b.kernel.drops + drops, b.kernel.freeze_q_cnt + freeze)
        s.link_down = b.link_down + link_down
        s.damaged_blocks = b.damaged_blocks + damaged

    def run(self, stop: threading.Event, stats_every_s: float, on_stats: threading.Event) -> None:
        try:
            self._loop(stop, stats_every_s, on_stats)
        except BaseException as exc:  # handed to the main thread, which raises it
            self.error = exc
            stop.set()

    def _loop(self, stop: threading.Event, stats_every_s: float, on_stats: threading.Event) -> None:
        eng, agent, o = self.engine, self.agent, self.opts
        lag_ns = (2 * o.block_timeout_ms + 100) * _MS
        next_stats = time.monotonic() + stats_every_s
        while not stop.is_set():
            if self.ifindex is None:
                if not self.open():
                    stop.wait(_REOPEN_EVERY_S)
                    continue
                self.stats.reopened += 1
                log.warning("interface %s is back: capturing again", o.iface)
            try:
                _frames, blocks = eng.poll_ring(o.poll_ms, _MAX_BLOCKS)
            except OSError as exc:
                log.warning("capture on %s failed (%s); reopening when the interface is there", o.iface, exc)
                self.close()
                continue
            if blocks < _MAX_BLOCKS:  # caught up with the kernel: time may move on
                eng.advance(time.time_ns() - lag_ns)
            agent.drain(eng)
            now = time.monotonic()
            if now >= next_stats:
                next_stats = now + stats_every_s
                self.read_stats()
                on_stats.set()
                if interface_index(o.iface) != self.ifindex:
                    log.warning("interface %s was removed; capture resumes when it exists again", o.iface)
                    self.close()

    def finish(self) -> None:
        """Export every flow still open and close the ring."""
        self.close()
        self.engine.flush()
        self.agent.drain(self.engine)


class LiveCapture:
    """Every ring of every interface of one agent; `run` until stopped."""

    def __init__(self, agent: NativeAgent, options: Sequence[LiveOptions]) -> None:
        if not options:
            raise UserError("give at least one interface to capture on")
        if len({o.iface for o in options}) != len(options):
            raise UserError("each interface can be given once")
        self.agent = agent
        self.workers: list[RingWorker] = []
        for o in options:
            check_options(o)
            interface_linktype(o.iface)
            group = FanoutGroup() if o.workers > 1 else None
            self.workers.extend(RingWorker(agent, o, i, group) for i in range(o.workers))
        try:
            for w in self.workers:
                if not w.open():
                    raise UserError(f"interface {w.opts.iface!r} does not exist")
        except BaseException:
            self.close()
            raise

    def ring_stats(self) -> list[WorkerStats]:
        return [w.stats for w in self.workers]

    def _sync(self) -> None:
        c = self.agent.counters
        with self.agent.lock:
            c.kernel_packets = sum(w.stats.kernel.packets for w in self.workers)
            c.kernel_drops = sum(w.stats.kernel.drops for w in self.workers)
            c.link_down = sum(w.stats.link_down for w in self.workers)

    def run(
        self, stop: threading.Event, *, duration_s: float | None = None, stats_every_s: float = 1.0
    ) -> CaptureResult:
        """Meter until ``stop`` is set or ``duration_s`` passed; then export every flow and close the rings."""
        start = time.monotonic()
        deadline = start + duration_s if duration_s is not None else None
        on_stats = threading.Event()
        threads = [
            threading.Thread(target=w.run, args=(stop, stats_every_s, on_stats), name=f"ring-{w.opts.iface}-{i}")
            for i, w in enumerate(self.workers)
        ]
        stopped_by = "stop"
        for t in threads:
            t.start()
        try:
            while not stop.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    stopped_by = "duration"
                    break
                on_stats.wait(min(stats_every_s, left) if left is not None else stats_every_s)
                on_stats.clear()
                self._sync()
        finally:
            stop.set()
            for t in threads:
                t.join()
            # Also when a worker failed: what was metered is exported, not lost.
            for w in self.workers:
                w.finish()
            self._sync()
        for w in self.workers:
            if w.error is not None:
                raise w.error
        return CaptureResult(time.monotonic() - start, stopped_by)

    def close(self) -> None:
        for w in self.workers:
            w.engine.close_ring()
            w.ifindex = None
