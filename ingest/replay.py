"""Pcap replay: read capture files through the agent, as fast as possible or paced at recorded speed."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingest.agent import Agent
from ingest.native import NativeAgent
from ingest.packet import RawFrame
from ingest.sources import CaptureError, open_capture


@dataclass
class FileOutcome:
    path: str
    frames: int
    error: CaptureError | None = None


@dataclass
class ReplayResult:
    files: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> list[CaptureError]:
        return [f.error for f in self.files if f.error is not None]


def _paced(frames: Iterator[RawFrame], shift_to_now: bool) -> Iterator[RawFrame]:
    """Yield frames at the pace they were recorded; optionally move their timestamps to the present."""
    t0_wall = time.time_ns()
    t0_cap: int | None = None
    for fr in frames:
        if t0_cap is None:
            t0_cap = fr.ts_ns
        due = t0_wall + (fr.ts_ns - t0_cap)
        delay = (due - time.time_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)
        yield RawFrame(fr.ts_ns - t0_cap + t0_wall, fr.linktype, fr.data, fr.wire_len) if shift_to_now else fr


def _paced_batches(frames: Iterator[RawFrame], shift_to_now: bool, most: int = 4096) -> Iterator[list[RawFrame]]:
    """The frames of ``_paced`` in lists of those due together: a list is handed over before each wait."""
    batch: list[RawFrame] = []
    t0_wall = time.time_ns()
    t0_cap: int | None = None
    for fr in frames:
        if t0_cap is None:
            t0_cap = fr.ts_ns
        delay = (t0_wall + (fr.ts_ns - t0_cap) - time.time_ns()) / 1e9
        if delay > 0 or len(batch) >= most:
            if batch:
                yield batch
                batch = []
            if delay > 0:
                time.sleep(delay)
        batch.append(RawFrame(fr.ts_ns - t0_cap + t0_wall, fr.linktype, fr.data, fr.wire_len) if shift_to_now else fr)
    if batch:
        yield batch


def _replay_paced_native(
    agent: NativeAgent, path: Path, shift_to_now: bool, progress: Callable[[Agent | NativeAgent], None] | None
) -> FileOutcome:
    outcome = FileOutcome(str(path), 0)
    try:
        with open_capture(path) as reader:
            for batch in _paced_batches(iter(reader), shift_to_now):
                agent.feed_batch(batch)
                outcome.frames += len(batch)
                if progress is not None:
                    progress(agent)
    except CaptureError as exc:
        outcome.error = exc
    return outcome


def replay_files(
    agent: Agent | NativeAgent,
    paths: Sequence[Path],
    *,
    pace: bool = False,
    shift_to_now: bool = False,
    progress: Callable[[Agent | NativeAgent], None] | None = None,
) -> ReplayResult:
    """Feed every file through the agent; a damaged file is processed up to the damage and reported."""
    result = ReplayResult()
    start = time.monotonic()
    if isinstance(agent, NativeAgent) and pace:
        result.files = [_replay_paced_native(agent, path, shift_to_now, progress) for path in paths]
        agent.finish()
        result.seconds = time.monotonic() - start
        return result
    if isinstance(agent, NativeAgent):
        for path in paths:
            outcome = FileOutcome(str(path), 0)
            try:
                outcome.frames, outcome.error = agent.replay_file(path)
            except CaptureError as exc:
                outcome.error = exc
            result.files.append(outcome)
            if progress is not None:
                progress(agent)
        agent.finish()
        result.seconds = time.monotonic() - start
        return result
    for path in paths:
        outcome = FileOutcome(str(path), 0)
        try:
            with open_capture(path) as reader:
                frames: Iterator[RawFrame] = iter(reader)
                if pace:
                    frames = _paced(frames, shift_to_now)
                for frame in frames:
                    agent.feed(frame)
                    # Counted as fed, so a file damaged midway reports the frames read before the damage
                    # (`--allow-truncated` and the pipeline tell those from unreadable files by it).
                    outcome.frames += 1
                    if progress is not None and outcome.frames % 65536 == 1:
                        progress(agent)
        except CaptureError as exc:
            outcome.error = exc
        result.files.append(outcome)
    agent.finish()
    result.seconds = time.monotonic() - start
    return result


class ProgressLine:
    """One self-rewriting line on stderr with packets and packets/s (only on a terminal)."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.last = 0.0

    def __call__(self, agent: Agent | NativeAgent) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.5:
            return
        self.last = now
        n = agent.counters.packets_seen
        rate = n / max(now - self.t0, 1e-9)
        sys.stderr.write(f"\r  {n:>12,} packets  {rate:>12,.0f} packets/s  {agent.meter.stats.active:>9,} flows active")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
