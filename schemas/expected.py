"""Expected per-partner aggregates (`gwtel-expected/1`): what `gwtel verify` checks ClickHouse against.

Written by `gwtel synth --expected` from the generator's ground truth, or by hand (docs/verify.md). Times are
ISO-8601 UTC strings so a person can read and write them; bytes and packets are sampling-corrected (what the
report shows), so a capture replayed at sampling rate N expects N times the bytes in the file.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

FORMAT = "gwtel-expected/1"
DIRECTIONS = ("egress", "ingress")
QUANTILES = {"p50_us": 0.5, "p95_us": 0.95, "p99_us": 0.99}


class ExpectedError(Exception):
    """The expected-aggregates file cannot be used; the message names the file, the entry and the fix."""


def parse_time(value: str | int) -> int:
    """ISO-8601 (`2026-11-26T00:00:10Z`) or epoch milliseconds -> epoch milliseconds."""
    if isinstance(value, int):
        return value
    t = datetime.fromisoformat(value)
    if t.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone: end it with Z (UTC)")
    return round(t.timestamp() * 1000)


def format_time(ms: int) -> str:
    t = datetime.fromtimestamp(ms / 1000, UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if ms % 1000:
        text += f".{ms % 1000:03d}"
    return text + "Z"


def _check_direction(v: str) -> str:
    if v not in DIRECTIONS:
        raise ValueError(f"{v!r} is not a direction: use egress (domestic -> partner) or ingress")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tolerance(_Strict):
    # Bytes, packets and flows are always exact; a percentile may sit this many histogram buckets away.
    percentile_buckets: int = Field(default=1, ge=0)


class BandwidthRow(_Strict):
    window_start: str
    partner: str = Field(min_length=1)
    direction: str
    bytes: int = Field(ge=0)
    packets: int = Field(ge=0)
    flows: int | None = Field(default=None, ge=0)

    @field_validator("direction")
    @classmethod
    def _direction(cls, v: str) -> str:
        return _check_direction(v)

    @field_validator("window_start")
    @classmethod
    def _time(cls, v: str) -> str:
        parse_time(v)
        return v

    @property
    def window_start_ms(self) -> int:
        return parse_time(self.window_start)


class LatencyRow(_Strict):
    partner: str = Field(min_length=1)
    direction: str
    metric: str = Field(min_length=1)
    samples: int | None = Field(default=None, ge=0)
    p50_us: float | None = Field(default=None, ge=0)
    p95_us: float | None = Field(default=None, ge=0)
    p99_us: float | None = Field(default=None, ge=0)

    @field_validator("direction")
    @classmethod
    def _direction(cls, v: str) -> str:
        return _check_direction(v)

    @model_validator(mode="after")
    def _something(self) -> LatencyRow:
        if self.samples is None and all(getattr(self, k) is None for k in QUANTILES):
            raise ValueError("give samples or at least one of p50_us, p95_us, p99_us")
        return self


class Expected(_Strict):
    format: str
    description: str = ""
    window_s: int = Field(ge=1)
    start: str
    end: str
    sampling_rate: int = Field(default=1, ge=1)
    tolerance: Tolerance = Tolerance()
    bandwidth: list[BandwidthRow]
    latency: list[LatencyRow] = []

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        if v != FORMAT:
            raise ValueError(f"{v!r} is not {FORMAT!r}: this file is not an expected-aggregates file")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Expected:
        start, end = parse_time(self.start), parse_time(self.end)
        w_ms = self.window_s * 1000
        if end <= start:
            raise ValueError(f"end {self.end} must come after start {self.start}")
        seen: set[tuple[int, str, str]] = set()
        for row in self.bandwidth:
            ws = row.window_start_ms
            if ws % w_ms or not start <= ws < end:
                raise ValueError(
                    f"bandwidth window_start {row.window_start} must be a multiple of {self.window_s} s "
                    f"within [{self.start}, {self.end})"
                )
            key = (ws, row.partner, row.direction)
            if key in seen:
                raise ValueError(f"bandwidth row {row.window_start} {row.partner} {row.direction} appears twice")
            seen.add(key)
        lat = [(r.partner, r.direction, r.metric) for r in self.latency]
        if len(set(lat)) != len(lat):
            raise ValueError("a latency row (partner, direction, metric) appears twice")
        return self

    @property
    def start_ms(self) -> int:
        return parse_time(self.start)

    @property
    def end_ms(self) -> int:
        return parse_time(self.end)


def load(path: Path) -> Expected:
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ExpectedError(f"{path}: cannot read the expected-aggregates file ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ExpectedError(f"{path}: not valid JSON ({exc})") from None
    try:
        return Expected.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: not a valid {FORMAT} file (see docs/verify.md)"]
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown key: remove it" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"  {key}: {msg}")
        raise ExpectedError("\n".join(lines)) from None


def dump(exp: Expected) -> str:
    return json.dumps(exp.model_dump(exclude_none=True), indent=1) + "\n"


def nearest_rank(sorted_values: list[int], q: float) -> int:
    """The q-quantile of sorted values by the nearest-rank definition (an actual sample, never interpolated)."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def from_truth(truth: dict[str, Any], *, window_s: int | None = None, sampling_rate: int = 1) -> Expected:
    """Expected aggregates of a `gwtel synth` ground-truth document.

    ``window_s`` may be any multiple of the truth's window (its flows never straddle a truth window, so they never
    straddle a longer one either); bytes and packets are multiplied by ``sampling_rate``, latency samples are not.
    """
    tw = int(truth["window_s"])
    w = window_s or tw
    if w % tw:
        raise ValueError(f"window {w} s is not a multiple of the truth's window {tw} s")
    w_ns = w * 1_000_000_000
    bw: dict[tuple[int, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in truth["bandwidth"]:
        acc = bw[(r["window_start_ns"] // w_ns * w_ns // 1_000_000, r["partner"], r["direction"])]
        acc[0] += r["bytes"] * sampling_rate
        acc[1] += r["packets"] * sampling_rate
        acc[2] += r["flows"]
    pooled: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for r in truth["latency"]:
        pooled[(r["partner"], r["direction"], r["metric"])].extend(r["samples_us"])
    lat = []
    for (p, d, m), samples in sorted(pooled.items()):
        samples.sort()
        qs = {k: float(nearest_rank(samples, q)) for k, q in QUANTILES.items()}
        lat.append(LatencyRow(partner=p, direction=d, metric=m, samples=len(samples), **qs))
    start_ms = truth["start_ns"] // w_ns * w_ns // 1_000_000
    end_ns = truth["end_ns"]
    end_ms = -(-end_ns // w_ns) * w_ns // 1_000_000
    return Expected(
        format=FORMAT,
        description=f"generated by gwtel synth, seed {truth['seed']}, from {truth['pcap']}",
        window_s=w,
        start=format_time(start_ms),
        end=format_time(end_ms),
        sampling_rate=sampling_rate,
        bandwidth=[
            BandwidthRow(window_start=format_time(ws), partner=p, direction=d, bytes=b, packets=n, flows=f)
            for (ws, p, d), (b, n, f) in sorted(bw.items())
        ],
        latency=lat,
    )
