"""Fixture rows for the query and report tests, inserted the way the loader stores them.

Each helper returns what it inserted, so a test computes its expected answer from these plain values.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processors.rows import flow_rows, late_rows
from processors.tables import AGG_TABLES, FLOWS_LATE, FLOWS_RAW
from schemas import codec
from schemas.histogram import bucket_of_us
from tests.records import sample_flow

KAFKA = ["test", 0, 0]
# A recent whole hour, well inside every retention period; flows start at T0 in ns.
T0 = (int(datetime.now(UTC).timestamp()) // 86_400 - 2) * 86_400_000 + 8 * 3_600_000
MIN = 60_000
FLOW_BASE_NS = T0 * 1_000_000


@dataclass(frozen=True)
class Window:
    window_s: int
    start_ms: int
    partner: str
    direction: str
    link_id: str
    bytes_scaled: int
    sampling_rate: int = 1
    app_class: str = "default"


def insert_bandwidth(client: Any, db: str, windows: Sequence[Window]) -> None:
    spec = AGG_TABLES["bandwidth"]
    rows = []
    for w in windows:
        raw = w.bytes_scaled // w.sampling_rate
        rows.append(
            [w.window_s, w.start_ms, w.partner, w.direction, w.link_id, w.app_class, w.sampling_rate, raw, 1, 0, 1,
             1, 1, w.bytes_scaled, w.sampling_rate, 0, w.bytes_scaled * 8 / w.window_s, w.sampling_rate / w.window_s,
             *KAFKA]
        )  # fmt: skip
    client.insert(f"{db}.{spec.name}", rows, column_names=spec.column_names)


@dataclass(frozen=True)
class RttSample:
    window_start_ms: int
    partner: str
    direction: str
    link_id: str
    us: int


def insert_rtts(client: Any, db: str, samples: Sequence[RttSample], metric: str, window_s: int = 60) -> None:
    """Samples -> one histogram row per window x partner x direction x link x bucket (as the job emits them)."""
    counts: dict[tuple[int, str, str, str, int], int] = {}
    for s in samples:
        key = (s.window_start_ms, s.partner, s.direction, s.link_id, bucket_of_us(s.us))
        counts[key] = counts.get(key, 0) + 1
    spec = AGG_TABLES["latency_bucket"]
    rows = [[window_s, ws, p, d, link, "default", metric, b, n, *KAFKA] for (ws, p, d, link, b), n in counts.items()]
    client.insert(f"{db}.{spec.name}", rows, column_names=spec.column_names)


def lognormal_rtts(rng: random.Random, n: int, median_us: float) -> list[int]:
    return [max(1, int(rng.lognormvariate(0, 0.35) * median_us)) for _ in range(n)]


def insert_flows(client: Any, db: str, flows: Sequence[dict[str, Any]], *, late: bool = False) -> None:
    """FlowRecords built from `tests.records.sample_flow(**changes)`, into flows_raw (or flows_late)."""
    spec = FLOWS_LATE if late else FLOWS_RAW
    decode = late_rows if late else flow_rows
    rows = []
    for i, changes in enumerate(flows):
        first = changes.get("first_ns", sample_flow().first_ns)
        times = {"last_ns": first + 10**9, "export_ns": first + 2 * 10**9}  # unless the test chose them
        [(_, row)] = decode(codec.encode(sample_flow(seq=i, **{**times, **changes})))
        rows.append([*row, "test", 0, i])
    client.insert(f"{db}.{spec.name}", rows, column_names=spec.column_names)


def bandwidth_fixture(client: Any, db: str) -> list[Window]:
    """Two hours of 60 s windows (and the same traffic in 10 s windows) for two partners, two links."""
    rng = random.Random(7)
    windows = []
    for minute in range(120):
        for partner in ("japan", "korea"):
            for direction in ("egress", "ingress"):
                for link in ("l1", "l2"):
                    if rng.random() < 0.15:
                        continue  # some idle windows
                    nbytes = rng.randint(10**6, 10**9)
                    windows.append(Window(60, T0 + minute * MIN, partner, direction, link, nbytes, rng.choice((1, 4))))
                    # The job's 10 s windows of the same traffic: never added to the 60 s figures.
                    windows.append(Window(10, T0 + minute * MIN, partner, direction, link, nbytes // 6))
    insert_bandwidth(client, db, windows)
    return windows


def nearest_rank(values: list[int], q: float) -> int:
    """The smallest value with at least q x n values at or below it."""
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]
