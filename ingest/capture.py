"""Live capture: read frames from a live source through the agent until told to stop.

The live counterpart of ``ingest.replay``: the same ``Agent.feed`` for every frame, plus what only a live source
needs. Flow timeouts advance with time even when no packet arrives: when the socket is empty, the agent is
ticked with the wall clock (kernel timestamps are on the same clock); while packets stream in, with the latest
packet's time, so a flow never expires before a packet of it that still waits in the socket buffer. The kernel's
accepted and dropped packet counts are read every ``stats_every_s`` into the agent's counters. If the source
fails (the interface was removed), the flows metered so far are still exported before the error goes up.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

from ingest.agent import Agent
from ingest.packet import RawFrame
from ingest.sources.live import KernelStats

_TICK_EVERY_S = 1.0


class FrameSource(Protocol):
    link_down_events: int

    def read(self) -> RawFrame | None: ...

    def kernel_stats(self) -> KernelStats: ...


@dataclass
class CaptureResult:
    seconds: float
    stopped_by: str  # "duration" or "stop"


def _add_kernel_stats(agent: Agent, source: FrameSource) -> None:
    ks = source.kernel_stats()
    agent.counters.kernel_packets += ks.packets
    agent.counters.kernel_drops += ks.drops
    agent.counters.link_down = source.link_down_events


def capture_live(
    agent: Agent,
    source: FrameSource,
    stop: threading.Event,
    *,
    duration_s: float | None = None,
    stats_every_s: float = 1.0,
) -> CaptureResult:
    """Feed frames until ``stop`` is set or ``duration_s`` passed; then export every flow (``agent.finish``)."""
    start = time.monotonic()
    deadline = start + duration_s if duration_s is not None else float("inf")
    last_tick = last_stats = start
    last_ts = 0
    stopped_by = "stop"
    try:
        while not stop.is_set():
            frame = source.read()
            now = time.monotonic()
            if frame is not None:
                agent.feed(frame)
                last_ts = max(last_ts, frame.ts_ns)
                if now - last_tick >= _TICK_EVERY_S:
                    agent.tick(last_ts)
                    last_tick = now
            else:
                agent.tick(time.time_ns())
                last_tick = now
                agent.counters.link_down = source.link_down_events  # a link-down read returns no frame
            if now - last_stats >= stats_every_s:
                _add_kernel_stats(agent, source)
                last_stats = now
            if now >= deadline:
                stopped_by = "duration"
                break
    finally:
        # Also when the source fails (interface removed): what was metered is exported, not lost.
        _add_kernel_stats(agent, source)
        agent.finish()
    return CaptureResult(time.monotonic() - start, stopped_by)
