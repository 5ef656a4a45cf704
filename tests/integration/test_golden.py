"""Golden captures through the real services: ClickHouse must match their expected aggregates exactly.

The captures and expected files under tests/golden/ come from the generator's own ground truth
(tests/golden/regen.py); the pipeline's output is never copied back into them. The same comparison backs
`gwtel verify`, whose failure on one changed number is checked here on the same run.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from gwtel.cli import main
from gwtel.compare import compare
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.kafka import KafkaService
from schemas import expected
from tests.golden.regen import CASES, Case, expected_path, pcap_path
from tests.integration.fixtures_replay import SharedRun

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_case_matches_exactly(shared_run: SharedRun, case: Case) -> None:
    exp = expected.load(expected_path(case))
    result = compare(shared_run.client, shared_run.cfg.clickhouse.database, exp)
    assert result.ok, result.render()
    # Every bandwidth row carries bytes, packets and flows; latency rows samples and three percentiles.
    assert result.checks == 3 * len(exp.bandwidth) + 4 * len(exp.latency)


def test_golden_cases_cover_what_they_claim() -> None:
    exps = {c.name: expected.load(expected_path(c)) for c in CASES}
    metrics = {r.metric for e in exps.values() for r in e.latency}
    assert {"hs_rtt_ext", "ts_rtt", "icmp_rtt", "dns_rtt"} <= metrics
    assert exps["sampled"].sampling_rate == 100
    assert len({r.window_start for r in exps["icmp_dns"].bandwidth}) == 12
    spans = sorted((e.start_ms, e.end_ms) for e in exps.values())
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), "cases must not share windows"


def _changed(tmp_path: Path, case: Case, edit: str) -> Path:
    doc = json.loads(expected_path(case).read_text())
    if edit == "bytes":
        doc["bandwidth"][3]["bytes"] += 1
    else:
        row = next(r for r in doc["latency"] if r["metric"] == "hs_rtt_ext")
        row["p95_us"] *= 1.5
    out = tmp_path / "changed.expected.json"
    out.write_text(json.dumps(doc))
    return out


def test_verify_fails_with_a_readable_diff_when_bytes_change(
    shared_run: SharedRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CASES[0]
    row = expected.load(expected_path(case)).bandwidth[3]
    changed = _changed(tmp_path, case, "bytes")
    rc = main(["verify", "--database", shared_run.cfg.clickhouse.database, "--expected", str(changed)])
    out = capsys.readouterr().out
    assert rc == 1
    lines = out.splitlines()
    assert lines[0].startswith("verify: MISMATCH, 1 of ")
    assert len(lines) == 2
    assert f"bandwidth {row.window_start} {row.partner} {row.direction}" in lines[1]
    assert f"expected {row.bytes + 1:,}, got {row.bytes:,} (-1)" in lines[1]


def test_verify_fails_when_a_percentile_moves_beyond_one_bucket(
    shared_run: SharedRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = _changed(tmp_path, CASES[0], "p95")
    rc = main(["verify", "--database", shared_run.cfg.clickhouse.database, "--expected", str(changed)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "hs_rtt_ext  p95" in out and "buckets apart, tolerance 1" in out


def test_verify_passes_on_the_unchanged_file(shared_run: SharedRun, capsys: pytest.CaptureFixture[str]) -> None:
    path = expected_path(CASES[1])
    assert main(["verify", "--database", shared_run.cfg.clickhouse.database, "--expected", str(path)]) == 0
    assert capsys.readouterr().out.startswith("verify: OK, all ")


def test_verify_command_replays_a_golden_capture_and_cleans_up(
    kafka_service: KafkaService, clickhouse_service: ClickHouseService, capsys: pytest.CaptureFixture[str]
) -> None:
    case = next(c for c in CASES if c.name == "sampled")
    before = _run_databases(clickhouse_service)
    rc = main(["verify", "--pcap", str(pcap_path(case)), "--expected", str(expected_path(case))])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "verify: OK, all " in out
    assert _run_databases(clickhouse_service) == before, "verify must drop its database"
    with kafka_service.admin() as admin:
        topic = next(line.split("Kafka topic ")[1] for line in out.splitlines() if "Kafka topic " in line)
        assert topic not in admin.list_topics(), "verify must delete its topics"


def _run_databases(svc: ClickHouseService) -> set[str]:
    client = svc.client()
    try:
        rows = client.query("SELECT name FROM system.databases WHERE name LIKE 'gwtel_run_%'").result_rows
        return {str(r[0]) for r in rows}
    finally:
        client.close()
