"""Capacity forecast through the real ClickHouse: synthetic months of known growth in `bandwidth_5m`, each
month's billing figure and the forecast computed by hand."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gwtel.cli import main
from gwtel.services.clickhouse import ClickHouseService
from processors.forecast import (
    MIN_COVERAGE,
    collect_forecasts,
    complete_months,
    month_coverage,
    month_ms,
    monthly_p95,
)
from processors.migrate import Migrator
from processors.report import collect, render_table
from processors.report_html import collect_series, render_html

pytestmark = pytest.mark.integration

G = 10**9
SLOT_S = 300
NOW_MS = time.time_ns() // 1_000_000
# The five complete months before now: all inside bandwidth_5m's 400-day retention.
M = complete_months(NOW_MS, 5)
CAPACITY = {"japan": 100 * G, "korea": 50 * G}


def _slots(month: str, share: float = 1.0) -> list[int]:
    start, end = month_ms(month)
    n = (end - start) // (SLOT_S * 1000)
    return [start // 1000 + i * SLOT_S for i in range(int(n * share))]


def _rows(month: str, partner: str, direction: str, gbps: int, share: float = 1.0) -> list[list[Any]]:
    """Every slot at `gbps`, except every 50th (2% of the slots, inside the top 5% billing drops) at ten times
    that: the month's 95th percentile is `gbps` exactly."""
    out = []
    for i, ts in enumerate(_slots(month, share)):
        rate = gbps * G * (10 if i % 50 == 0 else 1)
        nbytes = rate * SLOT_S // 8
        out.append([datetime.fromtimestamp(ts, UTC), partner, direction, "l1", 1, nbytes, nbytes, 5])
    return out


@pytest.fixture
def db(clickhouse_client: Any, clickhouse_db: str) -> Iterator[str]:
    Migrator(clickhouse_client, clickhouse_db).run()
    rows: list[list[Any]] = []
    # M[0]: the pipeline ran for the first 40% of the month only (with a low figure): left out of every fit.
    rows += _rows(M[0], "japan", "egress", 1, share=0.4)
    for i, month in enumerate(M[1:]):
        rows += _rows(month, "japan", "egress", 10 * (i + 1))  # 10, 20, 30, 40 Gb/s
        rows += _rows(month, "japan", "ingress", 5)  # flat
    for month in M[3:]:
        rows += _rows(month, "korea", "ingress", 7)  # two months only
    cols = ["ts", "partner", "direction", "link_id", "sampling_rate", "bytes", "bytes_scaled", "windows"]
    clickhouse_client.insert(f"{clickhouse_db}.bandwidth_5m", rows, column_names=cols)
    yield clickhouse_db


def test_monthly_figures_are_the_billing_95th_of_covered_months(clickhouse_client: Any, db: str) -> None:
    coverage = month_coverage(clickhouse_client, db, M)
    assert coverage[M[0]] == pytest.approx(0.4, abs=0.001)
    assert coverage[M[0]] < MIN_COVERAGE
    assert all(coverage[m] == 1.0 for m in M[1:])
    series = monthly_p95(clickhouse_client, db, M)
    got = {k: [(m.month, m.bps) for m in v] for k, v in series.items()}
    assert got[("japan", "egress")] == [(M[1], 10 * G), (M[2], 20 * G), (M[3], 30 * G), (M[4], 40 * G)]
    assert got[("japan", "ingress")] == [(m, 5 * G) for m in M[1:]]
    assert got[("korea", "ingress")] == [(M[3], 7 * G), (M[4], 7 * G)]


def test_forecast_per_partner_and_direction(clickhouse_client: Any, db: str) -> None:
    got = {(f.partner, f.direction): f for f in collect_forecasts(clickhouse_client, db, NOW_MS, CAPACITY)}
    assert set(got) == {("japan", "egress"), ("japan", "ingress"), ("korea", "ingress")}
    egress = got[("japan", "egress")]
    # +10 Gb/s a month, 40 in the last month: (100 - 40) / 10 = 6 months after the last complete month.
    assert egress.status == "forecast"
    assert egress.slope_bps == pytest.approx(10 * G)
    assert egress.months_left == pytest.approx(6.0)
    y, m = (int(x) for x in M[4].split("-"))
    assert egress.reached_in == f"{y + (m + 5) // 12:04d}-{(m + 5) % 12 + 1:02d}"
    assert got[("japan", "ingress")].status == "not reached"
    assert got[("korea", "ingress")].status == "too few months"


def test_report_and_page_show_the_forecast(clickhouse_client: Any, db: str) -> None:
    y, m = (int(x) for x in M[4].split("-"))
    start = month_ms(M[4])[0]
    data = collect(clickhouse_client, db, start, start + 3_600_000, 60, capacity_bps=CAPACITY, now_ms=NOW_MS)
    table = render_table(data)
    reached = f"{y + (m + 5) // 12:04d}-{(m + 5) % 12 + 1:02d}"
    rows = [re.split(r"\s{2,}", ln) for ln in table.splitlines()]
    assert ["japan", "egress", "4", "40.000", "10.000", "100.000", "6.0", reached] in rows
    assert ["japan", "ingress", "4", "5.000", "0.000", "100.000", "not reached", "-"] in rows
    assert ["korea", "ingress", "2", "7.000", "-", "50.000", "too few months", "-"] in rows
    page = render_html(data, collect_series(clickhouse_client, db, data), {})
    section = page.split("<h2>Capacity forecast</h2>")[1].split("<h2>")[0]
    cells = ["japan", "egress", "4", "40.000", "10.000", "100.000", "6.0", reached]
    assert "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>" in section


def test_forecast_command_prints_and_serves(
    clickhouse_service: ClickHouseService, db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    groups = (
        "{korea: {countries: [KR], capacity_bps: 50000000000}, japan: {countries: [JP], capacity_bps: 100000000000}}"
    )
    config.write_text(
        f'clickhouse: {{url: "{clickhouse_service.endpoint()}", database: {db}}}\npartners: {{groups: {groups}}}\n'
    )
    assert main(["--config", str(config), "forecast"]) == 0
    rows = [re.split(r"\s{2,}", ln) for ln in capsys.readouterr().out.splitlines()]
    assert [r[:7] for r in rows if r[:2] == ["japan", "egress"]] == [
        ["japan", "egress", "4", "40.000", "10.000", "100.000", "6.0"]
    ]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path / "home"  # its own target folder, out of the shared Prometheus's sight
    cmd = [str(Path(sys.executable).parent / "gwtel"), "--config", str(config), "forecast", "--serve",
           "--interval", "1", "--metrics-port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "GWTEL_HOME": str(home)}, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        text = ""
        while "gwtel_forecast_capacity_months_left{" not in text:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.5)
            with contextlib.suppress(OSError):
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'gwtel_forecast_capacity_months_left{direction="egress",partner="japan"} 6.0' in text
        assert list((home / "prometheus" / "targets").glob("*.json"))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not list((home / "prometheus" / "targets").glob("*.json"))  # withdrawn on exit
