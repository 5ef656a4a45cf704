"""The expected-aggregates format: hand-written files load, mistakes are named, synth's truth converts exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from ingest.synth import SynthConfig, generate
from schemas import expected

HAND_WRITTEN = {
    "format": "gwtel-expected/1",
    "window_s": 60,
    "start": "2026-11-26T00:00:00Z",
    "end": "2026-11-26T00:02:00Z",
    "bandwidth": [
        {"window_start": "2026-11-26T00:01:00Z", "partner": "japan", "direction": "egress", "bytes": 10, "packets": 1}
    ],
    "latency": [{"partner": "japan", "direction": "egress", "metric": "hs_rtt_ext", "p95_us": 40000}],
}


def _write(tmp_path: Path, doc: object) -> Path:
    p = tmp_path / "e.json"
    p.write_text(json.dumps(doc))
    return p


def test_a_hand_written_file_loads(tmp_path: Path) -> None:
    exp = expected.load(_write(tmp_path, HAND_WRITTEN))
    assert exp.bandwidth[0].window_start_ms == 1_795_651_260_000
    assert exp.sampling_rate == 1 and exp.tolerance.percentile_buckets == 1
    assert exp.latency[0].p50_us is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something/2"}, "is not an expected-aggregates file"),
        ({"bandwidth": [{**HAND_WRITTEN["bandwidth"][0], "direction": "out"}]}, "use egress"),  # type: ignore[index]
        ({"bandwidth": [{**HAND_WRITTEN["bandwidth"][0], "window_start": "2026-11-26T00:00:30Z"}]}, "multiple of 60"),  # type: ignore[index]
        ({"latency": [{"partner": "japan", "direction": "egress", "metric": "m"}]}, "give samples or"),
        ({"bytes_total": 1}, "bytes_total: unknown key"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(expected.ExpectedError, match=message):
        expected.load(_write(tmp_path, {**HAND_WRITTEN, **change}))


def test_from_truth_sums_windows_and_scales_by_sampling(tmp_path: Path) -> None:
    truth = generate(SynthConfig(seed=3, flows=60, duration_s=120), tmp_path / "s.pcap", tmp_path / "t.json")
    exp = expected.from_truth(truth, window_s=60, sampling_rate=10)
    want: dict[tuple[int, str, str], int] = defaultdict(int)
    for r in truth["bandwidth"]:
        want[(r["window_start_ns"] // 60_000_000_000 * 60_000, r["partner"], r["direction"])] += r["bytes"] * 10
    assert {(b.window_start_ms, b.partner, b.direction): b.bytes for b in exp.bandwidth} == want
    assert sum(b.packets for b in exp.bandwidth) == truth["packets"] * 10
    row = exp.latency[0]
    samples = sorted(
        s
        for r in truth["latency"]
        if (r["partner"], r["direction"], r["metric"]) == (row.partner, row.direction, row.metric)
        for s in r["samples_us"]
    )
    assert row.samples == len(samples) and row.p50_us == samples[(len(samples) + 1) // 2 - 1]
    assert expected.Expected.model_validate_json(expected.dump(exp)) == exp


def test_committed_golden_files_are_up_to_date() -> None:
    regen = Path(__file__).resolve().parents[1] / "golden" / "regen.py"
    done = subprocess.run([sys.executable, str(regen), "--check"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_synth_writes_the_expected_file(tmp_path: Path) -> None:
    from gwtel.cli import main

    out, exp_path = tmp_path / "s.pcap", tmp_path / "s.expected.json"
    argv = ["synth", "--out", str(out), "--flows", "40", "--expected", str(exp_path), "--sampling-rate", "4"]
    assert main(argv) == 0
    truth = json.loads((tmp_path / "s.truth.json").read_text())
    exp = expected.load(exp_path)
    assert exp.sampling_rate == 4
    assert sum(b.bytes for b in exp.bandwidth) == 4 * sum(r["bytes"] for r in truth["bandwidth"])
