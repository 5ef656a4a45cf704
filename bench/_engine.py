"""One timed pass of the native engine over a capture file, shared by the engine benchmarks
(bench/run.py, bench/classes.py, bench/anonymise.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.native import NativeAgent


@dataclass(frozen=True)
class EnginePass:
    packets: int  # frames the engine read
    batch: tuple[Any, ...]  # `Engine.take(0)`: (count, keys, values, ...), records classified and encoded
    cpu_s: float  # CPU time of this process (the engine runs on its thread)
    wall_s: float


def engine_pass(agent: NativeAgent, pcap: Path) -> EnginePass:
    """Meter `pcap` through `agent`'s engine in one call, finished flows taken as one batch."""
    eng = agent._engine
    c0, t0 = time.process_time(), time.perf_counter()
    eng.begin(False)
    eng.push_file(str(pcap))
    eng.end()
    eng.flush()
    batch = tuple(eng.take(0))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return EnginePass(int(eng.counters()["packets_seen"]), batch, cpu, wall)  # type: ignore[arg-type]
