"""processors.queries on the embedded ClickHouse, against answers computed here from the inserted values."""

from __future__ import annotations

import calendar
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from processors.migrate import Migrator
from processors.queries import (
    bandwidth_series,
    billing_95th,
    error_budget,
    handshake_rtt,
    late_traffic,
    latency_quantiles,
    partner_traffic,
    percentile_95,
    slo_status,
    top_countries,
    top_hosts,
    utilisation,
)
from schemas.histogram import bucket_mid_us, bucket_of_us
from tests.integration.queries_data import (
    FLOW_BASE_NS,
    MIN,
    T0,
    RttSample,
    bandwidth_fixture,
    insert_flows,
    insert_rtts,
    lognormal_rtts,
    nearest_rank,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def db(clickhouse_client: Any, clickhouse_db: str) -> Iterator[str]:
    Migrator(clickhouse_client, clickhouse_db).run()
    yield clickhouse_db


def test_merged_percentiles_equal_pooled_raw_percentiles_within_a_bucket(clickhouse_client: Any, db: str) -> None:
    rng = random.Random(4)
    samples: list[RttSample] = []
    for minute in range(10):
        for partner, median in (("japan", 30_000), ("korea", 45_000)):
            for link in ("l1", "l2"):
                n = rng.randint(100, 250)
                for us in lognormal_rtts(rng, n, median * (1 + minute / 20)):
                    samples.append(RttSample(T0 + minute * MIN, partner, "egress", link, us))
    insert_rtts(clickhouse_client, db, samples, "hs_rtt_ext")
    assert len(samples) > 3000

    def check(got: Any, pool: list[int]) -> None:
        assert got.samples == len(pool)
        for q, value in ((0.5, got.p50_us), (0.95, got.p95_us), (0.99, got.p99_us)):
            exact = nearest_rank(pool, q)
            assert value == pytest.approx(bucket_mid_us(bucket_of_us(exact)), rel=1e-12), q
            assert abs(value - exact) <= 0.0101 * exact

    # Per partner over windows and links; the 10-minute range is whole 5-minute buckets: the rollup answers.
    for start, end in ((T0, T0 + 10 * MIN), (T0 + MIN, T0 + 9 * MIN)):  # rollup, then window table
        got = latency_quantiles(clickhouse_client, db, start, end, 60, by=("partner",))
        assert [g.key for g in got] == [("japan",), ("korea",)]
        for g in got:
            check(g, [s.us for s in samples if s.partner == g.key[0] and start <= s.window_start_ms < end])
    # Both partners and links pooled; one link of one partner.
    [both] = latency_quantiles(clickhouse_client, db, T0, T0 + 10 * MIN, 60, by=())
    check(both, [s.us for s in samples])
    [one] = latency_quantiles(
        clickhouse_client, db, T0, T0 + 10 * MIN, 60, by=("link_id",), partners=["korea"], links=["l2"]
    )
    check(one, [s.us for s in samples if s.partner == "korea" and s.link_id == "l2"])
    # Per 5 minutes.
    steps = latency_quantiles(clickhouse_client, db, T0, T0 + 10 * MIN, 60, by=("partner",), step_s=300)
    assert [(g.start_ms, g.key) for g in steps] == [(T0 + b, (p,)) for b in (0, 300_000) for p in ("japan", "korea")]
    for g in steps:
        b = g.start_ms or 0
        check(g, [s.us for s in samples if s.partner == g.key[0] and 0 <= s.window_start_ms - b < 300_000])


def month_before(now: datetime) -> tuple[int, int]:
    return (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)


def test_95th_billing_of_a_month_matches_the_definition(clickhouse_client: Any, db: str) -> None:
    year, month = month_before(datetime.now(UTC))
    start_ms = int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)
    n_slots = calendar.monthrange(year, month)[1] * 288
    rng = random.Random(95)
    egress: dict[int, int] = {}  # slot index -> bytes in the slot (all links)
    rows: list[tuple[int, str, str, str, int, int, int]] = []
    for slot in rng.sample(range(n_slots), int(n_slots * 0.6)):  # 40% of the slots idle, never written
        nbytes = rng.randint(1, 10**9) if rng.random() > 0.03 else rng.randint(10**10, 10**11)  # spikes
        egress[slot] = nbytes
        # Split over two links and sampling rates: the slot's sample is their sum.
        a = nbytes // 3
        rows.append((start_ms // 1000 + slot * 300, "japan", "egress", "l1", 1, a, a))
        rows.append((start_ms // 1000 + slot * 300, "japan", "egress", "l2", 10, nbytes - a, nbytes - a))
    ingress = {slot: 7 * v for slot, v in egress.items() if slot % 2}
    for slot, v in ingress.items():
        rows.append((start_ms // 1000 + slot * 300, "japan", "ingress", "l1", 1, v, v))
    rows.append((start_ms // 1000 + n_slots * 300, "japan", "egress", "l1", 1, 10**15, 10**15))  # next month
    clickhouse_client.insert(
        f"{db}.bandwidth_5m",
        [[datetime.fromtimestamp(r[0], UTC), *r[1:]] for r in rows],
        column_names=["ts", "partner", "direction", "link_id", "sampling_rate", "bytes", "bytes_scaled"],
    )

    def billed_bps(per_slot: dict[int, int], slots: int) -> float:
        every = sorted((per_slot.get(i, 0) for i in range(slots)), reverse=True)
        discarded = slots * 5 // 100  # the top 5% of the samples
        return every[discarded] * 8 / 300

    far_future = start_ms + 400 * 86_400_000
    got = {r.direction: r for r in billing_95th(clickhouse_client, db, year, month, now_ms=far_future)}
    assert got["egress"].slots == n_slots and got["egress"].slots_with_data == len(egress)
    assert got["egress"].bps == pytest.approx(billed_bps(egress, n_slots), rel=1e-12)
    assert got["ingress"].bps == pytest.approx(billed_bps(ingress, n_slots), rel=1e-12)
    assert got["max"].bps == max(got["egress"].bps, got["ingress"].bps)
    assert got["ingress"].bps > got["egress"].bps  # the variant picks the larger direction here

    # Ten days into the month: only the elapsed slots count (zero-filled), later samples are not seen yet.
    now_ms = start_ms + 10 * 86_400_000 + 123_456
    elapsed = 10 * 288
    part = billing_95th(clickhouse_client, db, year, month, now_ms=now_ms)
    early = {s: v for s, v in egress.items() if s < elapsed}
    assert part[0].direction == "egress" and part[0].slots == elapsed
    assert part[0].bps == pytest.approx(billed_bps(early, elapsed), rel=1e-12)

    with pytest.raises(ValueError, match="5-minute"):
        percentile_95(clickhouse_client, db, start_ms + 1, start_ms + 600_000)


def test_bandwidth_series_and_rollups_equal_the_window_sums(clickhouse_client: Any, db: str) -> None:
    windows = [w for w in bandwidth_fixture(clickhouse_client, db) if w.window_s == 60]
    end = T0 + 120 * MIN

    def expected(step_s: int, start: int, stop: int) -> dict[tuple[int, str, str], int]:
        out: dict[tuple[int, str, str], int] = {}
        for p in ("japan", "korea"):
            for d in ("egress", "ingress"):
                for b in range(start // (step_s * 1000) * step_s * 1000, stop, step_s * 1000):
                    out[(b, p, d)] = 0
        for w in windows:
            if start <= w.start_ms < stop:
                b = w.start_ms // (step_s * 1000) * step_s * 1000
                out[(b, w.partner, w.direction)] += w.bytes_scaled
        return out

    for step in (300, 3600):  # read from bandwidth_5m and bandwidth_1h
        got = bandwidth_series(clickhouse_client, db, T0, end, step, 60)
        assert {(p.start_ms, p.partner, p.direction): p.bytes for p in got} == expected(step, T0, end)
        for p in got:
            assert p.avg_bps == pytest.approx(p.bytes * 8 / step, rel=1e-12)
    # A range that is not whole 5-minute buckets reads the 60 s windows; edge buckets are partial.
    start, stop = T0 + 3 * MIN, T0 + 17 * MIN
    got = bandwidth_series(clickhouse_client, db, start, stop, 300, 60, partners=["korea"], directions=["ingress"])
    want = {k: v for k, v in expected(300, start, stop).items() if k[1:] == ("korea", "ingress")}
    assert {(p.start_ms, p.partner, p.direction): p.bytes for p in got} == want
    spans = {T0: 120, T0 + 300_000: 300, T0 + 600_000: 300, T0 + 900_000: 120}
    for p in got:
        assert p.avg_bps == pytest.approx(p.bytes * 8 / spans[p.start_ms], rel=1e-12)
    # The 1-day rollup holds the same total as the windows.
    day = T0 // 86_400_000 * 86_400_000
    total = sum(p.bytes for p in bandwidth_series(clickhouse_client, db, day, day + 86_400_000, 86_400, 60))
    assert total == sum(w.bytes_scaled for w in windows)


def test_utilisation_against_contracted_capacity(clickhouse_client: Any, db: str) -> None:
    windows = [w for w in bandwidth_fixture(clickhouse_client, db) if w.window_s == 60]
    end = T0 + 120 * MIN
    traffic = partner_traffic(clickhouse_client, db, T0, end, 60)
    p95 = percentile_95(clickhouse_client, db, T0, end)
    caps = {"japan": 400_000_000, "korea": 0}
    got = {(u.partner, u.direction): u for u in utilisation(traffic, p95, caps)}
    for direction in ("egress", "ingress"):
        mine = [w for w in windows if w.partner == "japan" and w.direction == direction]
        avg_bps = sum(w.bytes_scaled for w in mine) * 8 / 7200
        per_minute: dict[int, int] = {}
        for w in mine:
            per_minute[w.start_ms] = per_minute.get(w.start_ms, 0) + w.bytes_scaled
        peak_bps = max(per_minute.values()) * 8 / 60
        per_slot = sorted(
            (sum(v for t, v in per_minute.items() if 0 <= t - s < 300_000) for s in range(T0, end, 300_000)),
            reverse=True,
        )
        p95_bps = per_slot[24 * 5 // 100] * 8 / 300
        u = got[("japan", direction)]
        assert u.capacity_bps == 400_000_000
        assert u.avg == pytest.approx(avg_bps / 400e6, rel=1e-9)
        assert u.peak == pytest.approx(peak_bps / 400e6, rel=1e-9)
        assert u.p95 == pytest.approx(p95_bps / 400e6, rel=1e-9)
        assert got[("korea", direction)].avg is None  # no contract, no ratio


def test_top_countries_hosts_and_late_traffic(clickhouse_client: Any, db: str) -> None:
    flows = [
        # Egress flows unless stated: the remote host is the responder (dst_ip), of ingress flows the initiator.
        dict(remote_country="SG", src_ip="10.0.0.1", dst_ip="203.0.113.1", bytes_fwd=1000, bytes_rev=5000),
        dict(remote_country="SG", src_ip="10.0.0.2", dst_ip="203.0.113.1", bytes_fwd=10, bytes_rev=20,
             sampling_rate=100),
        dict(remote_country="MY", src_ip="203.0.113.9", dst_ip="10.0.0.3", direction="ingress", bytes_fwd=400,
             bytes_rev=400),
        dict(remote_country="TH", src_ip="10.0.0.4", dst_ip="203.0.113.7", bytes_fwd=100, bytes_rev=100),
        dict(remote_country="KR", partner="korea", src_ip="10.0.0.5", dst_ip="198.51.100.1", bytes_fwd=10**6,
             bytes_rev=10**6),
        # Started before the range: not counted.
        dict(remote_country="TH", src_ip="10.0.0.4", dst_ip="203.0.113.7", bytes_fwd=10**7, bytes_rev=0,
             first_ns=FLOW_BASE_NS - 10**9, last_ns=FLOW_BASE_NS),
    ]  # fmt: skip
    base = dict(partner="belt_and_road", first_ns=FLOW_BASE_NS + 10**9, last_ns=FLOW_BASE_NS + 2 * 10**9)
    insert_flows(clickhouse_client, db, [{**base, **f} for f in flows])
    end = T0 + 3_600_000
    countries = top_countries(clickhouse_client, db, "belt_and_road", T0, end)
    # SG: 6000 + 30 x 100; MY: 800; TH: 200 (the flow before the range is left out).
    assert [(c.name, c.bytes, c.flows) for c in countries] == [("SG", 9000, 101), ("MY", 800, 1), ("TH", 200, 1)]
    assert [c.name for c in top_countries(clickhouse_client, db, "belt_and_road", T0, end, limit=1)] == ["SG"]
    hosts = top_hosts(clickhouse_client, db, "belt_and_road", T0, end)
    assert [(h.name, h.bytes) for h in hosts] == [("203.0.113.1", 9000), ("203.0.113.9", 800), ("203.0.113.7", 200)]

    # IPv6 remote hosts, written three ways: each one address (stored as IPv6), printed in its short form; an
    # IPv6 flow to an IPv4-mapped address is the IPv4 host (one address, printed dotted).
    v6 = dict(partner="v6", ip_version=6, src_ip="2001:db8::10", bytes_rev=0)
    insert_flows(clickhouse_client, db, [{**base, **v6, **f} for f in (
        dict(dst_ip="2001:DB8:0:0:1:0:0:1", bytes_fwd=700),
        dict(dst_ip="2001:db8::1:0:0:1", bytes_fwd=300),
        dict(dst_ip="2001:db8:0:0:0:0:0:2", bytes_fwd=600),
        dict(dst_ip="::ffff:203.0.113.1", bytes_fwd=50),
    )] + [{**base, "partner": "v6", "dst_ip": "203.0.113.1", "bytes_fwd": 40, "bytes_rev": 0}])  # fmt: skip
    hosts = top_hosts(clickhouse_client, db, "v6", T0, end)
    assert [(h.name, h.bytes, h.flows) for h in hosts] == [
        ("2001:db8::1:0:0:1", 1000, 2), ("2001:db8::2", 600, 1), ("203.0.113.1", 90, 2)
    ]  # fmt: skip

    late = [
        dict(partner="japan", direction="egress", bytes_fwd=300, bytes_rev=7000, sampling_rate=2),
        dict(partner="japan", direction="ingress", bytes_fwd=50, bytes_rev=60),
    ]
    insert_flows(clickhouse_client, db, [{**base, **f} for f in late], late=True)
    got = [(r.partner, r.direction, r.flows, r.bytes) for r in late_traffic(clickhouse_client, db, T0, end)]
    # egress: 300 x 2 (initiator) + 60 (responder of the ingress flow); ingress: 7000 x 2 + 50.
    assert got == [("japan", "egress", 2, 660), ("japan", "ingress", 1, 14050)]


def test_handshake_rtt_and_slo_status(clickhouse_client: Any, db: str) -> None:
    # Each class is judged on its own flows: japan's trading (about 30 ms) meets 60 ms although japan's bulk
    # traffic (about 200 ms) would make the partner's single p95 miss it; japan's vr (about 20 ms) misses 8 ms.
    rng = random.Random(11)
    pairs: dict[tuple[str, str], list[tuple[int, int]]] = {}
    flows = []
    cases = (("japan", "trading", 30_000), ("japan", "vr", 20_000), ("japan", "bulk", 200_000),
             ("korea", "trading", 70_000))  # fmt: skip
    for partner, cls, ext_median in cases:
        for i in range(400):
            ext, inner = int(rng.lognormvariate(0, 0.3) * ext_median), rng.randint(100, 3000)
            pairs.setdefault((partner, cls), []).append((ext, inner))
            first = FLOW_BASE_NS + i * 10**7
            flows.append(dict(partner=partner, app_class=cls, hs_rtt_ext_us=ext, hs_rtt_int_us=inner, first_ns=first,
                              last_ns=first + 10**9, direction=("egress", "ingress")[i % 2]))  # fmt: skip
    # Without the internal leg, or domestic: not part of the measure.
    flows.append(dict(partner="japan", app_class="vr", hs_rtt_ext_us=10**7, hs_rtt_int_us=None, first_ns=FLOW_BASE_NS))
    flows.append(
        dict(partner="japan", app_class="vr", hs_rtt_ext_us=10**7, hs_rtt_int_us=5, first_ns=FLOW_BASE_NS,
             direction="domestic")
    )  # fmt: skip
    insert_flows(clickhouse_client, db, flows)
    by_partner = handshake_rtt(clickhouse_client, db, T0, T0 + 3_600_000)
    assert {r.key: r.samples for r in by_partner} == {("japan",): 1200, ("korea",): 400}
    japan = [a + b for (p, _c), v in pairs.items() if p == "japan" for a, b in v]
    [j] = [r for r in by_partner if r.key == ("japan",)]
    assert j.p95_us == nearest_rank(japan, 0.95) > 60_000  # the partner's single p95 would miss trading's 60 ms
    rtt = handshake_rtt(clickhouse_client, db, T0, T0 + 3_600_000, by_class=True)
    assert {r.key for r in rtt} == set(pairs)
    for r in rtt:
        totals = [a + b for a, b in pairs[(r.key[0], r.key[1])]]
        assert r.samples == 400
        assert (r.p50_us, r.p95_us, r.p99_us) == tuple(nearest_rank(totals, q) for q in (0.5, 0.95, 0.99))
    p95_ms = {(r.key[0], r.key[1]): r.p95_us / 1000 for r in rtt}
    objectives = {"japan": {"trading": 60.0, "vr": 8.0}, "korea": {"trading": 50.0}, "other": {"trading": 100.0}}
    status = {(s.partner, s.app_class): s for s in slo_status(rtt, objectives)}
    assert status[("japan", "trading")].met is (p95_ms[("japan", "trading")] <= 60) is True
    assert status[("japan", "vr")].met is False and status[("japan", "vr")].samples == 400
    assert status[("korea", "trading")].met is False
    assert status[("korea", "trading")].p95_ms == p95_ms[("korea", "trading")]
    assert status[("other", "trading")].met is None and status[("other", "trading")].samples == 0
    # Error budget: the flows span 4 s, one 5-minute slot per class, judged as above
    budget = {(b.partner, b.app_class): b for b in error_budget(clickhouse_client, db, T0 + 3_600_000, objectives)}
    assert (budget[("japan", "trading")].slots, budget[("japan", "trading")].slots_met) == (1, 1)
    assert (budget[("japan", "vr")].slots, budget[("japan", "vr")].slots_met) == (1, 0)
    assert budget[("other", "trading")].slots == 0 and budget[("other", "trading")].share_met is None
