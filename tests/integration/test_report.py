"""`gwtel report`: the table shows the query results, and the HTML page is complete on its own."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gwtel.cli import main
from gwtel.services.clickhouse import ClickHouseService
from processors.counter_rows import LINK_COUNTERS
from processors.link_counters import link_checks
from processors.migrate import Migrator
from processors.queries import (
    handshake_rtt,
    late_traffic,
    link_sources,
    partner_traffic,
    percentile_95,
    top_countries,
)
from processors.report import BUDGET_HEAD, CLASS_HEAD, collect, render_table
from processors.report_html import collect_series, render_html
from tests.integration.queries_data import FLOW_BASE_NS, MIN, T0, bandwidth_fixture, insert_flows

pytestmark = pytest.mark.integration

END = T0 + 120 * MIN
CAPACITY = {"japan": 1_000_000_000, "korea": 500_000_000}
OBJECTIVES = {"japan": {"trading": 60.0, "vr": 8.0}, "korea": {"bulk": 200.0, "trading": 50.0}}
CLASSES = {"japan": ("trading", "vr"), "korea": ("bulk", "trading")}  # half of each partner's flows each


@pytest.fixture
def db(clickhouse_client: Any, clickhouse_db: str) -> Iterator[str]:
    Migrator(clickhouse_client, clickhouse_db).run()
    bandwidth_fixture(clickhouse_client, clickhouse_db)
    rng = random.Random(3)
    flows = []
    for i in range(600):
        partner = ("japan", "korea")[i % 2]
        first = FLOW_BASE_NS + i * 10 * 10**9  # spread over 100 minutes
        ext = int(rng.lognormvariate(0, 0.3) * 40_000)
        direction = "ingress" if i % 3 == 0 else "egress"
        app_class = CLASSES[partner][i // 2 % 2]
        flows.append(dict(partner=partner, first_ns=first, hs_rtt_ext_us=ext, hs_rtt_int_us=rng.randint(100, 2000),
                          direction=direction, app_class=app_class))  # fmt: skip
    insert_flows(clickhouse_client, clickhouse_db, flows)
    late = [
        dict(
            partner="korea",
            direction="egress",
            first_ns=FLOW_BASE_NS + 10**9,
            bytes_fwd=2_500_000,
            bytes_rev=0,
            packets_rev=0,
        )
    ]
    insert_flows(clickhouse_client, clickhouse_db, late, late=True)
    yield clickhouse_db


def rows_of(table: str, first_cell: str) -> list[list[str]]:
    """Whitespace-split table lines whose first cell is `first_cell` (the SLO cell is kept whole)."""
    return [re.split(r"\s{2,}", ln) for ln in table.splitlines() if ln.split(" ", 1)[0] == first_cell]


def test_table_numbers_are_the_query_results(clickhouse_client: Any, db: str) -> None:
    data = collect(clickhouse_client, db, T0, END, 60, capacity_bps=CAPACITY, objectives=OBJECTIVES)
    # The forecast and asymmetry sections also start rows with a partner (tests/integration/test_asymmetry.py).
    table = render_table(replace(data, forecast=(), asymmetry=(), link_pairs=()))
    traffic = {(t.partner, t.direction): t for t in partner_traffic(clickhouse_client, db, T0, END, 60)}
    p95 = {(r.partner, r.direction): r.bps for r in percentile_95(clickhouse_client, db, T0, END)}
    late = {(r.partner, r.direction): r.bytes for r in late_traffic(clickhouse_client, db, T0, END)}
    for partner in ("japan", "korea"):
        rows = {r[1]: r for r in rows_of(table, partner) if r[1] in ("egress", "ingress")}
        assert set(rows) == {"egress", "ingress"}
        for direction, r in rows.items():
            t = traffic[(partner, direction)]
            cap = CAPACITY[partner]
            assert float(r[2]) == pytest.approx(t.avg_bps / 1e9, abs=5e-5)
            assert float(r[3]) == pytest.approx(t.peak_bps / 1e9, abs=5e-5)
            assert float(r[4]) == pytest.approx(p95[(partner, direction)] / 1e9, abs=5e-5)
            assert float(r[5].rstrip("%")) == pytest.approx(t.avg_bps / cap * 100, abs=0.05)
            assert float(r[6].rstrip("%")) == pytest.approx(t.peak_bps / cap * 100, abs=0.05)
            assert float(r[7].rstrip("%")) == pytest.approx(p95[(partner, direction)] / cap * 100, abs=0.05)
            assert float(r[8]) == pytest.approx(late.get((partner, direction), 0) / 1e6, abs=5e-4)
    assert late == {("korea", "egress"): 2_500_000}

    rtt = {r.key[0]: r for r in handshake_rtt(clickhouse_client, db, T0, END)}
    by_class = {(r.key[0], r.key[1]): r for r in handshake_rtt(clickhouse_client, db, T0, END, by_class=True)}
    for partner in ("japan", "korea"):
        [r] = [r for r in rows_of(table, partner) if r[1].isdigit()]
        q = rtt[partner]
        assert int(r[1]) == q.samples == 300
        assert [float(x) for x in r[2:5]] == pytest.approx(
            [q.p50_us / 1000, q.p95_us / 1000, q.p99_us / 1000], abs=0.005
        )
        for cls, objective in OBJECTIVES[partner].items():
            # each class is judged on its own flows' p95
            c = by_class[(partner, cls)]
            assert c.samples == 150
            verdict = "met" if c.p95_us / 1000 <= objective else "MISSED"
            assert f"{cls}<={objective:g}ms {verdict}" in r[-1]
            # the class section (no traffic rows for these classes), then the error budget of the objective
            [row] = [x for x in rows_of(table, partner) if x[1] == cls and len(x) == len(CLASS_HEAD)]
            assert row[6:] == ["150", f"{c.p95_us / 1000:.2f}", f"{cls}<={objective:g}ms {verdict}"]
            [budget] = [x for x in rows_of(table, partner) if x[1] == cls and len(x) == len(BUDGET_HEAD)]
            assert budget[2] == f"{objective:g}" and int(budget[3]) > 0
    for partner in ("japan", "korea"):
        top = top_countries(clickhouse_client, db, partner, T0, END, 5)
        assert [c.name for c in top] == ["JP"]  # every fixture flow is to Japan (tests.records.sample_flow)
        assert f"{partner}: JP {top[0].bytes / 1e9:.3f} GB" in table.splitlines()
        assert top[0].bytes == 300 * (1200 + 9000)
    # The fixture's p95 is near 70 ms: both verdicts appear.
    assert "bulk<=200ms met" in table and "vr<=8ms MISSED" in table


def test_html_page_is_self_contained_with_the_charts(clickhouse_client: Any, db: str) -> None:
    data = collect(clickhouse_client, db, T0, END, 60, capacity_bps=CAPACITY, objectives=OBJECTIVES)
    series = collect_series(clickhouse_client, db, data)
    page = render_html(data, series, OBJECTIVES)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    lowered = page.lower()
    for forbidden in ("http://", "https://", "<script", "<link", "@import", "url(", "src="):
        assert forbidden not in lowered, forbidden
    svgs = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    assert len(svgs) == 4  # egress and ingress bandwidth, then one RTT chart per partner
    egress, ingress, rtt_japan, rtt_korea = svgs
    assert "Egress bandwidth" in egress and "Ingress bandwidth" in ingress
    for chart in (egress, ingress):
        assert chart.count('stroke-width="1.6"') == 2  # one line per partner
        assert "japan 95th" in chart and "korea 95th" in chart and chart.count('stroke-dasharray="6 4"') >= 2
    assert "japan: TCP handshake RTT" in rtt_japan and "korea: TCP handshake RTT" in rtt_korea
    assert "trading p95 objective" in rtt_japan and "vr p95 objective" in rtt_japan
    assert 'fill-opacity="0.18"' in rtt_japan  # the p50-p99 band
    # 2 hours at 60 s windows: 60 s steps, 120 points per bandwidth line.
    assert series.step_s == 60
    first_line = re.search(r'<path d="(M[^"]*)" fill="none"', egress)
    assert first_line is not None and first_line.group(1).count("L") == 119


def test_report_command_writes_the_page(
    clickhouse_service: ClickHouseService, db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f'clickhouse: {{url: "{clickhouse_service.endpoint()}", database: {db}}}\n')
    out = tmp_path / "report.html"
    start = datetime.fromtimestamp(T0 / 1000, UTC).isoformat()
    end = datetime.fromtimestamp(END / 1000, UTC).isoformat()

    def run(start: str, end: str) -> int:
        common = ["--config", str(config), "report", "--window", "60", "--html", str(out)]
        return main([*common, "--from", start, "--to", end])

    assert run(start, start) == 2  # an empty range is refused with a message
    assert not out.exists()
    assert run(start, end) == 0
    printed = capsys.readouterr().out
    assert "95th Gb/s" in printed and f"wrote {out}" in printed
    assert out.read_text(encoding="utf-8").count("<svg ") == 4
    assert main(["--config", str(config), "report", "--billing", "2026-13"]) == 2


def test_the_report_says_which_links_have_rtt_and_which_only_export_data(clickhouse_client: Any, db: str) -> None:
    no_rtt: dict[str, Any] = dict(hs_rtt_ext_us=None, hs_rtt_int_us=None, ts_rtt_count=0, ts_rtt_min_us=None,
                                  ts_rtt_max_us=None, ts_rtt_sum_us=0, ts_rtt_hist=())  # fmt: skip
    exported = dict(no_rtt, exporter="192.0.2.1", in_if=3, out_if=4, one_way=1)
    extra: list[dict[str, Any]] = [
        *(dict(exported, link_id="hk-router", first_ns=FLOW_BASE_NS + i * 10**9) for i in range(4)),
        dict(exported, link_id="sg-both", first_ns=FLOW_BASE_NS),
        dict(link_id="sg-both", first_ns=FLOW_BASE_NS + 10**9),  # from a capture agent, with RTTs
        dict(no_rtt, link_id="sg-both", first_ns=FLOW_BASE_NS + 2 * 10**9),  # captured, no RTT (one-way UDP)
    ]
    insert_flows(clickhouse_client, db, extra)
    got = {x.link_id: (x.kind, x.records, x.exported, x.with_rtt) for x in link_sources(clickhouse_client, db, T0, END)}
    assert got == {
        "jp-1": ("capture", 600, 0, 600),  # the fixture's flows
        "hk-router": ("export only", 4, 4, 0),
        "sg-both": ("capture and export", 3, 1, 1),
    }
    table = render_table(collect(clickhouse_client, db, T0, END, 60))
    assert [r[1:] for r in rows_of(table, "hk-router")] == [["export only", "4", "4", "0"]]
    assert [r[1:] for r in rows_of(table, "sg-both")] == [["capture and export", "3", "1", "1"]]
    assert "RTT comes from capture agents only" in table


def test_link_counters_meet_their_flows_as_addresses_and_print_as_text(clickhouse_client: Any, db: str) -> None:
    # Counter samples name their exporter as the collector wrote it (text); the flows' exporter is stored as
    # IPv6. Written differently on each side, each is one address: matched, and printed IPv4 dotted, IPv6 short.
    samples = [
        [1, "col-1", exporter, 3, "in", FLOW_BASE_NS + t * 10**9, octets, 10, 10**9, 1 + t, "t.counters", 0, i]
        for i, (exporter, t, octets) in enumerate(
            (("192.0.2.1", 0, 1000), ("192.0.2.1", 10, 5000), ("2001:db8::1", 0, 0), ("2001:db8::1", 10, 900))
        )
    ]
    clickhouse_client.insert(f"{db}.link_counters", samples, column_names=[c for c, _ in LINK_COUNTERS.columns])
    flows = [
        dict(exporter="::ffff:192.0.2.1", in_if=3, out_if=4, bytes_fwd=3000, packets_fwd=2),
        dict(exporter="2001:DB8:0:0::1", in_if=3, out_if=4, bytes_fwd=700, packets_fwd=1),
    ]
    insert_flows(clickhouse_client, db, [{**f, "first_ns": FLOW_BASE_NS + 5 * 10**9} for f in flows])
    got = {(c.exporter, c.if_index, c.direction): (c.counter_octets, c.flow_octets, c.sampled_packets)
           for c in link_checks(clickhouse_client, db, T0, END)}  # fmt: skip
    assert got == {("192.0.2.1", 3, "in"): (4000, 3000, 2), ("2001:db8::1", 3, "in"): (900, 700, 1)}
    table = render_table(collect(clickhouse_client, db, T0, END, 60))
    assert rows_of(table, "192.0.2.1") and rows_of(table, "2001:db8::1")
