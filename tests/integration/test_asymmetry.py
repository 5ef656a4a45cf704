"""Asymmetric routing through the real ClickHouse: hand-built flow records whose links and directions are known,
counted per partner and per link pair."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from processors.asymmetry import link_directions, link_pairs, pair_rows, per_partner
from processors.migrate import Migrator
from processors.report import collect, render_table
from processors.report_html import collect_series, render_html
from tests.integration.queries_data import FLOW_BASE_NS, MIN, T0, insert_flows
from tests.records import sample_flow

pytestmark = pytest.mark.integration

END = T0 + 60 * MIN
S = 10**9
JP = "203.0.113.9"  # the remote end of every japan conversation
KR = "198.51.100.7"


def egress(src: str, sport: int, link: str, **kw: Any) -> dict[str, Any]:
    """Recorded as the agent on `link` sees it: the domestic end first."""
    return dict(src_ip=src, src_port=sport, dst_ip=JP, dst_port=443, link_id=link, direction="egress", **kw)


FLOWS: list[dict[str, Any]] = [
    # A: symmetric, two slices of one long flow on jp-1 (one conversation).
    egress("10.0.0.1", 40000, "jp-1", first_ns=FLOW_BASE_NS),
    egress("10.0.0.1", 40000, "jp-1", first_ns=FLOW_BASE_NS + 10 * S),
    # B: out via jp-1, back via jp-2; jp-2's agent saw the answer first, so it took the remote end as initiator.
    egress("10.0.0.2", 40001, "jp-1", first_ns=FLOW_BASE_NS + S, packets_rev=0, bytes_rev=0, tcp_flags_rev=0),
    dict(src_ip=JP, src_port=443, dst_ip="10.0.0.2", dst_port=40001, link_id="jp-2", direction="ingress",
         first_ns=FLOW_BASE_NS + S, packets_fwd=8, bytes_fwd=9000, packets_rev=0, bytes_rev=0, tcp_flags_rev=0),
    # C: out via jp-1, back via jp-3, both records keep the domestic end as initiator.
    egress("10.0.0.3", 40002, "jp-1", first_ns=FLOW_BASE_NS + 2 * S, packets_rev=0, bytes_rev=0, tcp_flags_rev=0),
    egress("10.0.0.3", 40002, "jp-3", first_ns=FLOW_BASE_NS + 2 * S, packets_fwd=0, bytes_fwd=0, tcp_flags_fwd=0),
    # D: one-way TCP carrying ACKs: answered over a path not monitored.
    egress("10.0.0.4", 40003, "jp-1", first_ns=FLOW_BASE_NS + 3 * S, packets_rev=0, bytes_rev=0, tcp_flags_fwd=0x18,
           tcp_flags_rev=0),
    # E: one-way bare SYNs (no answer at all): not routing evidence.
    egress("10.0.0.5", 40004, "jp-1", first_ns=FLOW_BASE_NS + 4 * S, packets_fwd=3, bytes_fwd=180, packets_rev=0,
           bytes_rev=0, tcp_flags_fwd=0x02, tcp_flags_rev=0),
    # F: one-way UDP.
    egress("10.0.0.6", 5000, "jp-1", first_ns=FLOW_BASE_NS + 5 * S, protocol=17, packets_rev=0, bytes_rev=0,
           tcp_flags_fwd=0, tcp_flags_rev=0),
    # G: a router export's two one-way records of one UDP conversation on one link: symmetric.
    egress("10.0.0.7", 5001, "jp-4", first_ns=FLOW_BASE_NS + 6 * S, protocol=17, packets_rev=0, bytes_rev=0),
    dict(src_ip=JP, src_port=443, dst_ip="10.0.0.7", dst_port=5001, link_id="jp-4", direction="ingress", protocol=17,
         first_ns=FLOW_BASE_NS + 6 * S, packets_rev=0, bytes_rev=0),
    # korea, sampled 1:4: out via kr-1, back via jp-2.
    dict(src_ip="10.0.1.1", src_port=41000, dst_ip=KR, dst_port=443, link_id="kr-1", direction="egress",
         partner="korea", sampling_rate=4, first_ns=FLOW_BASE_NS, packets_rev=0, bytes_rev=0),
    dict(src_ip=KR, src_port=443, dst_ip="10.0.1.1", dst_port=41000, link_id="jp-2", direction="ingress",
         partner="korea", sampling_rate=4, first_ns=FLOW_BASE_NS, packets_fwd=8, bytes_fwd=9000, packets_rev=0,
         bytes_rev=0),
    # Outside the range, and domestic traffic: never counted.
    egress("10.0.0.8", 40005, "jp-1", first_ns=FLOW_BASE_NS + 3600 * S, packets_rev=0, bytes_rev=0),
    dict(src_ip="10.0.0.9", dst_ip="10.0.0.10", link_id="jp-1", direction="domestic", partner="domestic",
         first_ns=FLOW_BASE_NS, packets_rev=0, bytes_rev=0),
]  # fmt: skip


def _bytes(*idx: int) -> int:
    """Sampling-corrected bytes both ways of FLOWS[idx], from the records as built (not from ClickHouse)."""
    flows = [sample_flow(**FLOWS[i]) for i in idx]
    return sum((f.bytes_fwd + f.bytes_rev) * f.sampling_rate for f in flows)


@pytest.fixture
def db(clickhouse_client: Any, clickhouse_db: str) -> Iterator[str]:
    Migrator(clickhouse_client, clickhouse_db).run()
    insert_flows(clickhouse_client, clickhouse_db, FLOWS)
    yield clickhouse_db


def test_counts_per_partner(clickhouse_client: Any, db: str) -> None:
    rows = {r.partner: r for r in per_partner(link_pairs(clickhouse_client, db, T0, END))}
    assert set(rows) == {"japan", "korea"}
    jp = rows["japan"]
    assert (jp.conversations, jp.symmetric, jp.asymmetric, jp.one_way, jp.one_way_answered) == (7, 2, 2, 3, 1)
    assert jp.asymmetric_bytes == _bytes(2, 3, 4, 5, 6)  # B, C and D
    assert jp.share == pytest.approx(3 / 7)
    kr = rows["korea"]
    assert (kr.conversations, kr.symmetric, kr.asymmetric, kr.one_way, kr.one_way_answered) == (4, 0, 4, 0, 0)
    assert kr.asymmetric_bytes == _bytes(11, 12)


def test_link_pairs(clickhouse_client: Any, db: str) -> None:
    pairs = link_pairs(clickhouse_client, db, T0, END)
    got = {(x.partner, x.links_out, x.links_in, x.tcp_answered): x.conversations for x in pairs}
    assert got == {
        ("japan", ("jp-1",), ("jp-1",), False): 1,
        ("japan", ("jp-1",), ("jp-2",), False): 1,
        ("japan", ("jp-1",), ("jp-3",), False): 1,
        ("japan", ("jp-1",), (), True): 1,  # D
        ("japan", ("jp-1",), (), False): 2,  # E, F
        ("japan", ("jp-4",), ("jp-4",), False): 1,
        ("korea", ("kr-1",), ("jp-2",), False): 4,
    }
    # Per link: jp-2 and jp-3 carry only answers, kr-1 only the way out; jp-1 and jp-4 carry both.
    got_links = {d.link_id: (d.toward, d.back, d.one_direction) for d in link_directions(pairs)}
    assert got_links == {
        "jp-1": (6, 1, None),  # A both ways; B, C, D, E, F out
        "jp-2": (0, 5, "back only"),  # B, and korea's 4
        "jp-3": (0, 1, "back only"),
        "jp-4": (1, 1, None),
        "kr-1": (4, 0, "toward partner only"),
    }
    shown = pair_rows(pairs)
    assert shown[0][:4] == ("korea", "kr-1", "jp-2", "4")
    assert {r[:4] for r in shown[1:]} == {
        ("japan", "jp-1", "jp-2", "1"), ("japan", "jp-1", "jp-3", "1"), ("japan", "jp-1", "(not seen)", "1"),
    }  # fmt: skip


def test_report_and_page_show_the_counts(clickhouse_client: Any, db: str) -> None:
    data = collect(clickhouse_client, db, T0, END, 60)
    rows = [re.split(r"\s{2,}", ln) for ln in render_table(data).splitlines()]
    assert ["japan", "7", "2", "2", "3", "1", "42.9%", f"{_bytes(2, 3, 4, 5, 6) / 1e6:.3f}"] in rows
    assert ["korea", "kr-1", "jp-2", "4", f"{_bytes(11, 12) / 1e6:.3f}"] in rows
    line = (
        "Links that carry one direction only: jp-2 back only (5 conversations), jp-3 back only (1 conversation),"
        " kr-1 toward partner only (4 conversations)."
    )
    assert line in render_table(data).splitlines()
    page = render_html(data, collect_series(clickhouse_client, db, data), {})
    section = page.split("<h2>Asymmetric routing</h2>")[1].split("<h2>")[0]
    assert "<tr><td>japan</td><td>7</td><td>2</td><td>2</td><td>3</td><td>1</td><td>42.9%</td>" in section
    assert "<tr><td>korea</td><td>kr-1</td><td>jp-2</td><td>4</td>" in section
