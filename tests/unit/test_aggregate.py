"""The job's aggregation functions on hand-built FlowRecords, in batch mode (and streaming for watermarks).

FlowRecords go through the real codec into JSON lines and are read by the same column/watermark DDL the
Kafka source uses. To keep JVM work small, every scenario lives under its own partner name in one data set
that is aggregated once per session; each test reads its partner's rows.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from pyflink.table import EnvironmentSettings, TableEnvironment

from gwtel.config import GwtelConfig
from processors import aggregate as agg
from processors import ddl, udf
from processors.job import SESSION_TIME_ZONE, SinkNames, aggregate_records, build_statement_set
from schemas import codec
from schemas.aggregate import AGGREGATE_FIELDS, DEAD_LETTER_FIELDS, KINDS, LATE_FIELDS, Kind
from schemas.flow_record import FLOW_RECORD_FIELDS, FlowRecord, HistBin
from schemas.histogram import MAX_BUCKET, RTT_GAMMA, bucket_mid_us, bucket_of_us
from tests.unit.test_landing import CASES, fresh

pytestmark = [
    pytest.mark.slow,
    # pyflink imports apache_beam -> httplib2, which calls a deprecated pyparsing name at import time.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:httplib2.*"),
]

S = 10**9
T0_S = 1_700_000_040  # a multiple of 60: 10 s and 1 min windows both start here
T0 = T0_S * S
T0_MS = T0_S * 1000
WINDOWS = (10, 60)

Row = dict[str, Any]

_BASE = FlowRecord(
    schema_version=1, agent_id="a1", seq=0, link_id="L1", sampling_rate=1, ip_version=4,
    src_ip="10.0.0.1", src_port=40000, dst_ip="203.0.113.1", dst_port=443, protocol=6, vlan=0,
    first_ns=T0, last_ns=T0 + S, export_ns=T0 + 2 * S, end_reason="fin",
    bytes_fwd=0, packets_fwd=1, bytes_rev=0, packets_rev=0, tcp_flags_fwd=0x02, tcp_flags_rev=0,
    retrans_fwd=0, retrans_rev=0, hs_rtt_ext_us=None, hs_rtt_int_us=None,
    ts_rtt_count=0, ts_rtt_min_us=None, ts_rtt_max_us=None, ts_rtt_sum_us=0, ts_rtt_hist=(),
    icmp_rtt_count=0, icmp_rtt_min_us=None, icmp_rtt_max_us=None, icmp_rtt_sum_us=0, icmp_rtt_hist=(),
    dns_rtt_count=0, dns_rtt_min_us=None, dns_rtt_max_us=None, dns_rtt_sum_us=0, dns_rtt_hist=(),
    direction="egress", partner="japan", remote_country="JP", remote_asn=0,
)  # fmt: skip
_seq = itertools.count(1)


def flow(**changes: Any) -> FlowRecord:
    return dataclasses.replace(_BASE, seq=next(_seq), **changes)


def hist(values: list[int]) -> tuple[HistBin, ...]:
    """A sparse histogram the way the agent builds it."""
    return tuple(HistBin(b, c) for b, c in sorted(Counter(bucket_of_us(v) for v in values).items()))


def with_samples(metric: str, values: list[int]) -> dict[str, Any]:
    return {
        f"{metric}_count": len(values), f"{metric}_min_us": min(values), f"{metric}_max_us": max(values),
        f"{metric}_sum_us": sum(values), f"{metric}_hist": hist(values),
    }  # fmt: skip


# ---- scenarios, one partner each -------------------------------------------------------------------------


def two_directions() -> list[FlowRecord]:
    p = "t_dirs"
    return [
        # A: domestic host opens toward the partner; answered.
        flow(partner=p, direction="egress", src_ip="10.0.0.1", dst_ip="203.0.113.1", last_ns=T0 + 2 * S,
             bytes_fwd=1000, packets_fwd=10, bytes_rev=5000, packets_rev=8, retrans_fwd=1, retrans_rev=2),
        # B: partner host opens toward the domestic side; idle-ended.
        flow(partner=p, direction="ingress", src_ip="198.51.100.7", dst_ip="10.0.0.2", last_ns=T0 + 5 * S,
             end_reason="idle", bytes_fwd=3000, packets_fwd=4, bytes_rev=200, packets_rev=2),
        # C: unanswered, to A's remote host, 1 ns before the window ends.
        flow(partner=p, direction="egress", src_ip="10.0.0.3", dst_ip="203.0.113.1", last_ns=T0 + 10 * S - 1,
             end_reason="idle", bytes_fwd=100, packets_fwd=1),
    ]  # fmt: skip


def window_edges() -> list[FlowRecord]:
    p = "t_edge"
    return [
        flow(partner=p, last_ns=T0 + 10 * S, bytes_fwd=1),  # exactly on a 10 s boundary: the later window
        flow(partner=p, last_ns=T0 + 10 * S - 1, bytes_fwd=2),  # 1 ns before it: the earlier window
        flow(partner=p, last_ns=T0 + 60 * S, bytes_fwd=4),  # exactly on a 1 min boundary
    ]


def spanning_flow() -> list[FlowRecord]:
    """One long flow exported as four slices (active timeout 10 s), last packets in four windows."""
    p = "t_span"
    ends = [T0 + 8 * S, T0 + 18 * S, T0 + 28 * S, T0 + 31 * S]
    starts = [T0 - 2 * S, *ends[:-1]]
    reasons = ["active", "active", "active", "fin"]
    fwd = [100, 200, 300, 50]
    return [
        flow(partner=p, first_ns=a, last_ns=b, end_reason=r, bytes_fwd=f, packets_fwd=f // 10,
             bytes_rev=f // 10, packets_rev=1)
        for a, b, r, f in zip(starts, ends, reasons, fwd, strict=True)
    ]  # fmt: skip


def sampled() -> list[FlowRecord]:
    p = "t_rate"
    return [
        flow(partner=p, sampling_rate=10, bytes_fwd=150, packets_fwd=3, last_ns=T0 + 1 * S),
        flow(partner=p, sampling_rate=10, bytes_fwd=50, packets_fwd=1, last_ns=T0 + 2 * S),
        flow(partner=p, sampling_rate=1, bytes_fwd=1000, packets_fwd=5, last_ns=T0 + 3 * S),
    ]


def spellings() -> list[FlowRecord]:
    """One remote host per link, written three ways: the job counts addresses, not their text."""
    p = "t_spell"
    v6 = ("2001:db8::1", "2001:DB8:0:0::1", "2001:db8:0:0:0:0:0:1")
    v4 = [(4, "192.0.2.7"), (6, "::ffff:192.0.2.7"), (6, "::FFFF:c000:0207")]
    return [
        *(flow(partner=p, link_id="v6", ip_version=6, src_ip="2001:db8:ff::2", dst_ip=d, bytes_fwd=1) for d in v6),
        *(flow(partner=p, link_id="v4", ip_version=v, src_ip="10.0.0.1" if v == 4 else "::ffff:10.0.0.1", dst_ip=d,
               bytes_fwd=1) for v, d in v4),
    ]  # fmt: skip


def links() -> list[FlowRecord]:
    p = "t_links"
    return [
        flow(partner=p, link_id="jp-1", bytes_fwd=10),
        flow(partner=p, link_id="jp-2", bytes_fwd=20),
        flow(partner=p, link_id="kr-1", bytes_fwd=40),
        flow(partner=p, link_id="jp-1", bytes_fwd=5),
    ]


def classes() -> list[FlowRecord]:
    # one partner, window and link: each application class its own rows
    p = "t_cls"
    return [
        flow(partner=p, app_class="trading", bytes_fwd=100, hs_rtt_ext_us=30_000, hs_rtt_int_us=100),
        flow(partner=p, app_class="trading", bytes_fwd=200, hs_rtt_ext_us=32_000, hs_rtt_int_us=100),
        flow(partner=p, app_class="vr", bytes_fwd=7, hs_rtt_ext_us=9_000, hs_rtt_int_us=100),
        flow(partner=p, app_class="default", bytes_fwd=1000, hs_rtt_ext_us=200_000, hs_rtt_int_us=100),
    ]


def latency_flows() -> list[FlowRecord]:
    p = "t_lat"
    return [
        flow(partner=p, hs_rtt_ext_us=35_000, hs_rtt_int_us=120, **with_samples("ts_rtt", [34_000, 36_000])),
        flow(partner=p, hs_rtt_ext_us=36_000, **with_samples("ts_rtt", [34_100]),
             **with_samples("dns_rtt", [5_000])),
        flow(partner=p, **with_samples("icmp_rtt", [800, 1_000, 1_200])),
    ]  # fmt: skip


def percentile_flows() -> tuple[list[FlowRecord], list[int], list[int]]:
    """3000 flows with log-normal handshake RTTs and 3 TCP-timestamp RTTs each (median about 30 ms)."""
    rng = random.Random(20240601)
    recs, hs, ts = [], [], []
    for i in range(3000):
        one = max(1, int(rng.lognormvariate(math.log(30_000), 0.6)))
        three = [max(1, int(rng.lognormvariate(math.log(8_000), 1.0))) for _ in range(3)]
        hs.append(one)
        ts.extend(three)
        recs.append(flow(partner="t_pct", last_ns=T0 + (i % 9) * S, hs_rtt_ext_us=one, **with_samples("ts_rtt", three)))
    return recs, hs, ts


def random_flows() -> list[FlowRecord]:
    rng = random.Random(7)
    return [
        flow(
            partner=rng.choice(["rand_a", "rand_b"]), link_id=rng.choice(["x1", "x2"]),
            direction=rng.choice(["egress", "ingress"]), sampling_rate=rng.choice([1, 10]),
            src_ip=f"10.0.{rng.randrange(4)}.{rng.randrange(8)}", dst_ip=f"203.0.113.{rng.randrange(20)}",
            last_ns=T0 + rng.randrange(120 * S), end_reason=rng.choice(["active", "idle", "fin"]),
            bytes_fwd=rng.randrange(40, 100_000), packets_fwd=rng.randrange(1, 80),
            bytes_rev=(rev := rng.choice([0, rng.randrange(40, 100_000)])), packets_rev=rev // 500 + (rev > 0),
            retrans_fwd=rng.randrange(3), retrans_rev=rng.randrange(3) if rev else 0,
            hs_rtt_ext_us=rng.choice([None, rng.randrange(1, 400_000)]),
        )
        for _ in range(1500)
    ]  # fmt: skip


PCT_RECORDS, PCT_HS, PCT_TS = percentile_flows()
ALL_RECORDS = [
    *two_directions(), *window_edges(), *spanning_flow(), *sampled(), *spellings(), *links(), *classes(),
    *latency_flows(),
    *PCT_RECORDS, *random_flows(),
]  # fmt: skip


# ---- Flink plumbing --------------------------------------------------------------------------------------

_names = itertools.count()


def make_env(streaming: bool) -> Any:
    settings = EnvironmentSettings.in_streaming_mode() if streaming else EnvironmentSettings.in_batch_mode()
    t_env = TableEnvironment.create(settings)
    conf = t_env.get_config()
    conf.set("parallelism.default", "1")
    conf.set("table.local-time-zone", SESSION_TIME_ZONE)
    # The job's Java functions, as processors.flink_env gives them to every environment.
    conf.set("pipeline.jars", udf.udf_jar().resolve().as_uri())
    udf.register(t_env)
    return t_env


@pytest.fixture(scope="session")
def batch_env() -> Any:
    return make_env(streaming=False)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flows")


def write_lines(folder: Path, lines: list[bytes]) -> Path:
    path = folder / f"part-{next(_names)}.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def flows_table(t_env: Any, path: Path, bound_ms: int = 5_000, cut_ms: int | None = None) -> Any:
    """A file source with the Kafka source's columns, rowtime and watermark (and the same record format: each
    line of the file is a Kafka value)."""
    name = f"flows_{next(_names)}"
    options = {"connector": "filesystem", "path": str(path), **ddl.flow_format_options()}
    t_env.execute_sql(ddl.create_table_sql(name, ddl.flows_columns_sql(bound_ms, cut_ms=cut_ms), options))
    return t_env.from_path(name)


def collect(table: Any) -> list[Row]:
    names = table.get_schema().get_field_names()
    with table.execute().collect() as rows:
        return [dict(zip(names, row, strict=True)) for row in rows]


def run_all(t_env: Any, data_dir: Path, parallelism: int) -> list[Row]:
    path = write_lines(data_dir, [codec.encode(r) for r in ALL_RECORDS])
    t_env.get_config().set("parallelism.default", str(parallelism))
    try:
        return collect(aggregate_records(agg.valid(flows_table(t_env, path)), WINDOWS))
    finally:
        t_env.get_config().set("parallelism.default", "1")


@pytest.fixture(scope="session")
def results(batch_env: Any, data_dir: Path) -> list[Row]:
    return run_all(batch_env, data_dir, parallelism=1)


def select(rows: list[Row], kind: str, partner: str, window_s: int) -> list[Row]:
    return [r for r in rows if r["kind"] == kind and r["partner"] == partner and r["window_s"] == window_s]


def bw(
    rows: list[Row], partner: str, window_s: int = 10, key: tuple[str, ...] = ("window_start_ms", "direction")
) -> dict[Any, Row]:
    out: dict[Any, Row] = {}
    for r in select(rows, "bandwidth", partner, window_s):
        k = tuple(r[c] for c in key)
        assert k not in out, f"two rows for {k}"
        out[k[0] if len(k) == 1 else k] = r
    return out


# ---- bandwidth -------------------------------------------------------------------------------------------


def test_two_directions_hand_computed(results: list[Row]) -> None:
    rows = bw(results, "t_dirs")
    assert set(rows) == {(T0_MS, "egress"), (T0_MS, "ingress")}
    eg, ing = rows[(T0_MS, "egress")], rows[(T0_MS, "ingress")]
    # egress: A's and C's initiator bytes plus B's responder bytes
    assert (eg["bytes"], eg["packets"], eg["retrans"]) == (1000 + 100 + 200, 10 + 1 + 2, 1)
    assert (eg["flows"], eg["flows_ended"], eg["remote_hosts"]) == (2, 2, 2)
    assert eg["bits_per_s"] == pytest.approx(1300 * 8 / 10)
    assert eg["packets_per_s"] == pytest.approx(1.3)
    # ingress: A's responder bytes plus B's initiator bytes; C was never answered
    assert (ing["bytes"], ing["packets"], ing["retrans"]) == (5000 + 3000, 8 + 4, 2)
    assert (ing["flows"], ing["flows_ended"], ing["remote_hosts"]) == (1, 1, 2)
    assert ing["bits_per_s"] == pytest.approx(8000 * 8 / 10)
    minute = bw(results, "t_dirs", 60)
    assert minute[(T0_MS, "egress")]["bytes"] == 1300
    assert minute[(T0_MS, "egress")]["bits_per_s"] == pytest.approx(1300 * 8 / 60)
    for r in (eg, ing):
        assert (r["link_id"], r["sampling_rate"], r["schema_version"]) == ("L1", 1, 1)
        assert r["metric"] is None and r["samples"] is None


def test_window_edges(results: list[Row]) -> None:
    ten = {k: r["bytes"] for k, r in bw(results, "t_edge", 10, ("window_start_ms",)).items()}
    assert ten == {T0_MS: 2, T0_MS + 10_000: 1, T0_MS + 60_000: 4}
    minute = {k: r["bytes"] for k, r in bw(results, "t_edge", 60, ("window_start_ms",)).items()}
    assert minute == {T0_MS: 3, T0_MS + 60_000: 4}


def test_flow_spanning_windows_sums_to_its_total(results: list[Row]) -> None:
    ten = bw(results, "t_span")
    egress = {k[0]: r for k, r in ten.items() if k[1] == "egress"}
    assert {k: r["bytes"] for k, r in egress.items()} == {
        T0_MS: 100, T0_MS + 10_000: 200, T0_MS + 20_000: 300, T0_MS + 30_000: 50,
    }  # fmt: skip
    assert sum(r["bytes"] for r in egress.values()) == 650
    assert sum(r["bytes"] for k, r in ten.items() if k[1] == "ingress") == 65
    assert [egress[k]["flows_ended"] for k in sorted(egress)] == [0, 0, 0, 1]
    minute = bw(results, "t_span", 60)
    assert (minute[(T0_MS, "egress")]["bytes"], minute[(T0_MS, "ingress")]["bytes"]) == (650, 65)
    assert (minute[(T0_MS, "egress")]["flows"], minute[(T0_MS, "egress")]["flows_ended"]) == (4, 1)


def test_one_remote_host_in_three_spellings_counts_once(results: list[Row]) -> None:
    rows = bw(results, "t_spell", key=("link_id", "direction"))
    assert set(rows) == {("v6", "egress"), ("v4", "egress")}
    for link in ("v6", "v4"):
        assert (rows[(link, "egress")]["flows"], rows[(link, "egress")]["remote_hosts"]) == (3, 1), link


def test_sampling_rate_keeps_raw_and_scaled(results: list[Row]) -> None:
    rows = bw(results, "t_rate", key=("sampling_rate",))
    assert set(rows) == {1, 10}
    ten = rows[10]
    assert (ten["bytes"], ten["packets"], ten["bytes_scaled"], ten["packets_scaled"]) == (200, 4, 2000, 40)
    assert ten["bits_per_s"] == pytest.approx(2000 * 8 / 10)
    assert ten["packets_per_s"] == pytest.approx(4.0)
    one = rows[1]
    assert (one["bytes"], one["bytes_scaled"]) == (1000, 1000)
    # query-time scaling from the stored rate agrees with the stored scaled totals
    assert sum(r["bytes"] * r["sampling_rate"] for r in rows.values()) == 3000


def test_links_are_kept_apart(results: list[Row]) -> None:
    rows = bw(results, "t_links", key=("link_id",))
    assert {k: r["bytes"] for k, r in rows.items()} == {"jp-1": 15, "jp-2": 20, "kr-1": 40}


def test_application_classes_are_kept_apart(results: list[Row]) -> None:
    rows = bw(results, "t_cls", key=("app_class",))
    assert {k: (r["bytes"], r["flows"]) for k, r in rows.items()} == {
        "trading": (300, 2), "vr": (7, 1), "default": (1000, 1),
    }  # fmt: skip
    ext: dict[str, dict[int, int]] = defaultdict(dict)
    for r in select(results, "latency_bucket", "t_cls", 10):
        if r["metric"] == "hs_rtt_ext":
            ext[r["app_class"]][r["bucket"]] = r["samples"]
    assert ext == {
        "trading": dict(Counter([bucket_of_us(30_000), bucket_of_us(32_000)])),
        "vr": {bucket_of_us(9_000): 1},
        "default": {bucket_of_us(200_000): 1},
    }


@pytest.mark.parametrize("window_s", WINDOWS)
def test_random_flows_match_a_python_reference(results: list[Row], window_s: int) -> None:
    # Every window size counts its distinct hosts over the whole window, never adds up shorter ones'.
    expected: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    remotes: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    for r in (rec for rec in ALL_RECORDS if rec.partner.startswith("rand_")):
        start = (r.last_ns // S // window_s) * window_s * 1000
        remote = r.src_ip if r.direction == "ingress" else r.dst_ip
        other = "ingress" if r.direction == "egress" else "egress"
        sides = [(r.direction, r.bytes_fwd, r.packets_fwd, r.retrans_fwd, 1)]
        if r.packets_rev > 0:
            sides.append((other, r.bytes_rev, r.packets_rev, r.retrans_rev, 0))
        for direction, b, p, rt, f in sides:
            key = (start, r.partner, direction, r.link_id, r.sampling_rate)
            acc = expected[key]
            acc[0] += b
            acc[1] += p
            acc[2] += rt
            acc[3] += f
            acc[4] += b * r.sampling_rate
            remotes[key].add(remote)
    got = {
        (r["window_start_ms"], r["partner"], r["direction"], r["link_id"], r["sampling_rate"]): r
        for r in results
        if r["kind"] == "bandwidth" and r["window_s"] == window_s and r["partner"].startswith("rand_")
    }
    assert set(got) == set(expected)
    for key, (b, p, rt, f, scaled) in expected.items():
        row = got[key]
        got_counts = (row["bytes"], row["packets"], row["retrans"], row["flows"], row["bytes_scaled"])
        assert got_counts == (b, p, rt, f, scaled)
        assert row["remote_hosts"] == len(remotes[key])
    if window_s > min(WINDOWS):
        # the same remote hosts recur across the shorter windows, so a sum of their counts would be wrong
        shorter = sum(r["remote_hosts"] for r in results if r["kind"] == "bandwidth" and r["window_s"] == min(WINDOWS)
                      and r["partner"].startswith("rand_"))  # fmt: skip
        assert shorter > sum(len(v) for v in remotes.values())


def test_ten_second_windows_roll_up_into_minutes(results: list[Row]) -> None:
    def totals(window_s: int) -> Counter[tuple[Any, ...]]:
        out: Counter[tuple[Any, ...]] = Counter()
        for r in results:
            if r["kind"] == "bandwidth" and r["window_s"] == window_s:
                minute = r["window_start_ms"] // 60_000
                out[(minute, r["partner"], r["direction"], r["link_id"], r["sampling_rate"])] += r["bytes"]
        return out

    assert totals(10) == totals(60)
    assert sum(totals(10).values()) == sum(r.bytes_fwd + r.bytes_rev for r in ALL_RECORDS)


def test_parallelism_two_gives_identical_rows(batch_env: Any, data_dir: Path, results: list[Row]) -> None:
    def key(r: Row) -> tuple[str, ...]:
        return tuple(repr(r[f.name]) for f in AGGREGATE_FIELDS)

    parallel = run_all(batch_env, data_dir, parallelism=2)
    assert len(parallel) == len(results)
    assert sorted(map(key, parallel)) == sorted(map(key, results))


def test_distinct_hosts_are_exact_up_to_2048_then_estimated_within_three_percent(
    batch_env: Any, data_dir: Path
) -> None:
    # Each partner's window holds `n` distinct remote addresses, most of them seen twice. Up to 2048 the
    # count is exact; beyond, a HyperLogLog estimate with a relative standard error of 0.8%.
    sizes = (2048, 2049, 20_000)
    recs = [
        flow(partner=f"hosts_{n}", dst_ip=f"198.18.{i >> 8}.{i & 255}", last_ns=T0 + (i % 9) * S)
        for n in sizes
        for i in (*range(n), *range(0, n, 2))
    ]
    path = write_lines(data_dir, [codec.encode(r) for r in recs])
    rows = collect(agg.as_records(agg.bandwidth(agg.valid(flows_table(batch_env, path)), 10), "bandwidth"))
    got = {r["partner"]: r["remote_hosts"] for r in rows}
    assert got["hosts_2048"] == 2048
    for n in sizes[1:]:
        assert abs(got[f"hosts_{n}"] - n) <= 0.03 * n, got


def test_without_distinct_hosts_only_remote_hosts_is_left_out(
    batch_env: Any, data_dir: Path, results: list[Row]
) -> None:
    def key(r: Row) -> tuple[str, ...]:
        return tuple(repr(r[f.name]) for f in AGGREGATE_FIELDS)

    path = write_lines(data_dir, [codec.encode(r) for r in ALL_RECORDS])
    flows = agg.valid(flows_table(batch_env, path))
    only: tuple[Kind, ...] = ("bandwidth",)
    got = collect(aggregate_records(flows, WINDOWS, kinds=only, distinct_hosts=False))
    want = [{**r, "remote_hosts": None} for r in results if r["kind"] == "bandwidth"]
    assert {r["window_s"] for r in want} == set(WINDOWS)
    assert want and sorted(map(key, got)) == sorted(map(key, want))


def test_a_window_the_finest_does_not_divide_is_built_from_the_flows(batch_env: Any, data_dir: Path) -> None:
    def key(r: Row) -> tuple[str, ...]:
        return tuple(repr(r[f.name]) for f in AGGREGATE_FIELDS)

    path = write_lines(data_dir, [codec.encode(r) for r in ALL_RECORDS])
    both = collect(aggregate_records(agg.valid(flows_table(batch_env, path)), (10, 15)))
    alone = collect(aggregate_records(agg.valid(flows_table(batch_env, path)), (15,)))
    fifteen = [r for r in both if r["window_s"] == 15]
    assert {r["kind"] for r in fifteen} == set(KINDS)
    assert sorted(map(key, fifteen)) == sorted(map(key, alone))


def test_each_kind_alone_gives_the_rows_of_that_kind(batch_env: Any, data_dir: Path, results: list[Row]) -> None:
    def key(r: Row) -> tuple[str, ...]:
        return tuple(repr(r[f.name]) for f in AGGREGATE_FIELDS)

    path = write_lines(data_dir, [codec.encode(r) for r in ALL_RECORDS])
    for kind in KINDS:
        alone = collect(aggregate_records(agg.valid(flows_table(batch_env, path)), WINDOWS, kinds=(kind,)))
        want = [r for r in results if r["kind"] == kind]
        assert want and sorted(map(key, alone)) == sorted(map(key, want)), kind
    with pytest.raises(ValueError, match="no aggregate kind"):
        aggregate_records(agg.valid(flows_table(batch_env, path)), WINDOWS, kinds=())


# ---- latency ---------------------------------------------------------------------------------------------


def test_latency_summary_hand_computed(results: list[Row]) -> None:
    rows = {r["metric"]: r for r in select(results, "latency", "t_lat", 10)}
    got = {m: (r["samples"], r["min_us"], r["max_us"], r["sum_us"]) for m, r in rows.items()}
    assert got == {
        "hs_rtt_ext": (2, 35_000, 36_000, 71_000),
        "hs_rtt_int": (1, 120, 120, 120),
        "ts_rtt": (3, 34_000, 36_000, 104_100),
        "icmp_rtt": (3, 800, 1_200, 3_000),
        "dns_rtt": (1, 5_000, 5_000, 5_000),
    }
    for r in rows.values():
        assert (r["window_start_ms"], r["direction"], r["link_id"]) == (T0_MS, "egress", "L1")
        assert r["bytes"] is None and r["bucket"] is None


def test_latency_buckets_hand_computed(results: list[Row]) -> None:
    got: dict[str, dict[int, int]] = defaultdict(dict)
    for r in select(results, "latency_bucket", "t_lat", 10):
        got[r["metric"]][r["bucket"]] = r["samples"]
    expected = {
        "hs_rtt_ext": Counter([bucket_of_us(35_000), bucket_of_us(36_000)]),
        "hs_rtt_int": Counter([bucket_of_us(120)]),
        "ts_rtt": Counter(bucket_of_us(v) for v in (34_000, 36_000, 34_100)),
        "icmp_rtt": Counter(bucket_of_us(v) for v in (800, 1_000, 1_200)),
        "dns_rtt": Counter([bucket_of_us(5_000)]),
    }
    assert got == {m: dict(c) for m, c in expected.items()}


def _percentile_from_buckets(buckets: dict[int, int], q: float) -> float:
    total = sum(buckets.values())
    rank = math.ceil(q * total)
    seen = 0
    for b in sorted(buckets):
        seen += buckets[b]
        if seen >= rank:
            return bucket_mid_us(b)
    raise AssertionError("rank beyond the histogram")


def _exact_percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1]


@pytest.mark.parametrize("metric", ["hs_rtt_ext", "ts_rtt"])
def test_percentiles_from_merged_buckets_are_within_a_bucket(results: list[Row], metric: str) -> None:
    exact = PCT_HS if metric == "hs_rtt_ext" else PCT_TS
    # merge the 10 s windows' histograms, as a report over a longer period does
    buckets: Counter[int] = Counter()
    for r in select(results, "latency_bucket", "t_pct", 10):
        if r["metric"] == metric:
            buckets[r["bucket"]] += r["samples"]
    assert sum(buckets.values()) == len(exact)
    for q in (0.5, 0.9, 0.95, 0.99):
        want = _exact_percentile(exact, q)
        assert _percentile_from_buckets(buckets, q) == pytest.approx(want, rel=0.02), q


def test_bucket_sql_equals_python_at_every_boundary(batch_env: Any) -> None:
    values = {0, 1, 2}
    for k in range(1, MAX_BUCKET + 1):
        edge = RTT_GAMMA**k
        values.update({math.floor(edge), math.ceil(edge), math.floor(edge) - 1, math.ceil(edge) + 1})
    values.add(10**12)  # beyond an hour: clamped to the last bucket
    table = batch_env.from_elements([(v,) for v in sorted(values)], ["v"])
    sql = f"SELECT `v`, {agg.bucket_sql('`v`')} AS `b` FROM {table}"
    got = {r["v"]: r["b"] for r in collect(batch_env.sql_query(sql))}
    assert len(got) == len(values)
    wrong = {v: (b, bucket_of_us(v)) for v, b in got.items() if b != bucket_of_us(v)}
    assert wrong == {}


# ---- malformed records and schema drift ------------------------------------------------------------------


def test_each_value_is_either_valid_or_dead_lettered(batch_env: Any, data_dir: Path) -> None:
    good, no_asn_rec, no_partner, null_partner, no_last, v_text, wrong_type, rule, v_float, trailing = (
        flow(partner="m") for _ in range(10)
    )

    def without(rec: FlowRecord, name: str) -> bytes:
        return orjson.dumps({k: v for k, v in codec.to_dict(rec).items() if k != name})

    # (value, the codec's (reason, field) or None when it takes the value): the job must give the same.
    cases: list[tuple[bytes, tuple[str, str] | None]] = [
        (codec.encode(good), None),
        (without(no_asn_rec, "remote_asn"), None),  # optional: defaults to 0
        (b"garbage", ("not_json", "")),
        (codec.encode(flow(partner="m"))[:-3], ("not_json", "")),  # a version 1 record cut short
        (b"[1, 2]", ("bad_type", "")),
        (b'{"a": 1}', ("wrong_version", "schema_version")),
        (orjson.dumps({**codec.to_dict(flow(partner="m")), "schema_version": 2}), ("wrong_version", "schema_version")),
        (without(no_partner, "partner"), ("missing_field", "partner")),
        (orjson.dumps({**codec.to_dict(null_partner), "partner": None}), ("missing_field", "partner")),
        (without(no_last, "last_ns"), ("missing_field", "last_ns")),
        (orjson.dumps({**codec.to_dict(v_text), "schema_version": "1"}), None),  # the codec's quoted version
        (orjson.dumps({**codec.to_dict(v_float), "schema_version": 1.0}), ("bad_type", "schema_version")),
        (orjson.dumps({**codec.to_dict(flow(partner="m")), "schema_version": " 1 "}),
         ("wrong_version", "schema_version")),
        (orjson.dumps({**codec.to_dict(flow(partner="m")), "schema_version": None}),
         ("wrong_version", "schema_version")),
        (codec.encode(flow(partner="m")).replace(b'"dns_rtt_hist":[', b'"dns_rtt_hist":[}', 1),
         ("not_json", "")),  # broken inside a nested value
        (orjson.dumps({**codec.to_dict(wrong_type), "bytes_fwd": "many"}), ("bad_type", "bytes_fwd")),
        (codec.encode(trailing) + b" and more", ("not_json", "")),
        (orjson.dumps({**codec.to_dict(rule), "packets_fwd": 0, "packets_rev": 0}), ("bad_value", "packets_fwd")),
    ]  # fmt: skip
    for value, verdict in cases:  # the oracle agrees with the verdicts written here
        try:
            codec.decode(value)
            assert verdict is None, value
        except codec.RecordError as exc:
            assert verdict is not None and exc.reason == verdict[0], value
    path = write_lines(data_dir, [v for v, _ in cases])
    flows = flows_table(batch_env, path)
    dead = collect(agg.invalid(flows))
    assert sorted((r["reason"], r["field"]) for r in dead) == sorted(v for _, v in cases if v is not None)
    assert all(r["stage"] == "aggregate" and r["line"] == 0 for r in dead)
    # a refused value is dead-lettered as it came; a record a rule refused names its agent and sequence number
    texts = {r["value"] for r in dead if r["field"] != "packets_fwd"}
    assert texts == {v.decode("utf-8", "replace") for v, verdict in cases if verdict and verdict[1] != "packets_fwd"}
    assert [orjson.loads(r["value"])["seq"] for r in dead if r["field"] == "packets_fwd"] == [rule.seq]
    kept = collect(batch_env.sql_query(f"SELECT `seq` FROM {agg.valid(flows)}"))
    assert sorted(r["seq"] for r in kept) == sorted([good.seq, no_asn_rec.seq, v_text.seq])
    assert len(kept) + len(dead) == len(cases)


def test_the_job_accepts_the_records_the_loader_accepts(batch_env: Any, data_dir: Path) -> None:
    # The same kinds of records as tests/unit/test_landing.py feeds ClickHouse and the Python checks, with their
    # hand-written verdicts; the job judges them with the SQL generated from the same table (schemas.checks):
    # bounds, bins, addresses of both families, the record rules.
    cases = CASES
    lines = []
    for i, (_name, change, _expected) in enumerate(cases):
        d = fresh(seq=10_000 + i)
        change(d)
        d["seq"] = 10_000 + i
        lines.append(orjson.dumps(d))
    flows = flows_table(batch_env, write_lines(data_dir, lines))
    kept = {r["seq"] - 10_000 for r in collect(batch_env.sql_query(f"SELECT `seq` FROM {agg.valid(flows)}"))}
    bad = {}
    for r in collect(agg.invalid(flows)):
        value = orjson.loads(r["value"])  # the record's text, or (a record rule) its identity
        bad[value["seq"] - 10_000] = (r["reason"], r["field"])
    for i, (name, _change, expected) in enumerate(cases):
        if expected is None:
            assert i in kept, name
        else:
            assert i not in kept, name
            assert bad[i] == expected, name


def _resolved(table: Any) -> list[tuple[str, str]]:
    cols = table._j_table.getResolvedSchema().getColumns()
    return [(c.getName(), c.getDataType().toString().replace("`", "").replace(" NOT NULL", "")) for c in cols]


def test_kafka_source_ddl_matches_flow_record_fields(batch_env: Any) -> None:
    name = f"kafka_flows_{next(_names)}"
    batch_env.execute_sql(ddl.flows_source_ddl(GwtelConfig(), name=name))
    expected = [(f.name, f.flink) for f in FLOW_RECORD_FIELDS] + list(agg.PROBLEM_COLUMNS)
    expected.append(("rowtime", "TIMESTAMP_LTZ(3)"))
    assert _resolved(batch_env.from_path(name)) == expected


def test_sink_ddls_match_field_tables_and_records(batch_env: Any, data_dir: Path) -> None:
    cfg = GwtelConfig()
    suffix = next(_names)
    for make, fields in (
        (ddl.aggregates_sink_ddl, AGGREGATE_FIELDS),
        (ddl.late_sink_ddl, LATE_FIELDS),
        (ddl.dead_letter_sink_ddl, DEAD_LETTER_FIELDS),
    ):
        name = f"{make.__name__}_{suffix}"
        batch_env.execute_sql(make(cfg, name=name))
        assert _resolved(batch_env.from_path(name)) == [(f.name, f.flink) for f in fields]
    records = aggregate_records(flows_table(batch_env, write_lines(data_dir, [])), WINDOWS)
    assert _resolved(records) == [(f.name, f.flink) for f in AGGREGATE_FIELDS]


# ---- streaming: watermark, late records, the whole job's plan --------------------------------------------


@pytest.fixture(scope="session")
def stream_env() -> Any:
    return make_env(streaming=True)


def test_late_rows_are_split_off_by_the_watermark(stream_env: Any, data_dir: Path) -> None:
    # (seq, end second); the bound is 5 s, so after 200 the watermark is 195
    arrivals = [(1, 100), (2, 200), (3, 50), (4, 199), (5, 194), (6, 195), (7, 300), (8, 296)]
    recs = [dataclasses.replace(_BASE, seq=q, last_ns=T0 + s * S, partner="w") for q, s in arrivals]
    flows = agg.valid(flows_table(stream_env, write_lines(data_dir, [codec.encode(r) for r in recs]), 5_000))
    late = stream_env.sql_query(f"SELECT `seq`, 'late' AS `tag` FROM {agg.late(flows)}")
    timely = stream_env.sql_query(f"SELECT `seq`, 'on_time' AS `tag` FROM {agg.on_time(flows)}")
    got = {(r["seq"], r["tag"]) for r in collect(late.union_all(timely))}
    assert got == {(3, "late"), (5, "late"), (6, "late")} | {(q, "on_time") for q in (1, 2, 4, 7, 8)}


def test_watermark_from_the_agents_cuts(stream_env: Any, data_dir: Path) -> None:
    """Records cut at 10 s boundaries: a cut's records end anywhere in the interval before it and are all on
    time; only a record ending before a boundary that an earlier record proved passed is late."""
    ms = S // 1000
    # (seq, last packet s, export s): cut at 110; a FIN record after it (exported 112.5 s: the watermark
    # reaches the 110 s boundary, 2 s bound); a record of the 100-110 s interval exported at the next cut
    # (impossible for one agent cutting in order: late); the cut at 120.
    arrivals = [(1, 101.0, 110), (2, 109.0, 110), (3, 100.5, 110), (4, 111.0, 112.5), (5, 108.0, 120),
                (6, 115.0, 120), (7, 112.0, 120)]  # fmt: skip
    recs = [
        dataclasses.replace(_BASE, seq=q, first_ns=T0 + round(s * 1000) * ms, last_ns=T0 + round(s * 1000) * ms,
                            export_ns=T0 + round(e * 1000) * ms, partner="cut")
        for q, s, e in arrivals
    ]  # fmt: skip
    path = write_lines(data_dir, [codec.encode(r) for r in recs])

    def split(cut_ms: int | None) -> set[int]:
        flows = agg.valid(flows_table(stream_env, path, 2_000, cut_ms))
        late = stream_env.sql_query(f"SELECT `seq` FROM {agg.late(flows)}")
        return {r["seq"] for r in collect(late)}

    assert split(10_000) == {5}
    # The same records with the watermark from the newest last packet and the same bound: a cut's early
    # records would be late (why that mode needs a bound above the interval, and fires windows later).
    assert split(None) == {3, 5, 7}


def test_job_plan_is_append_only_window_aggregation(stream_env: Any, data_dir: Path) -> None:
    path = write_lines(data_dir, [codec.encode(flow(partner="plan"))])
    suffix = next(_names)
    sinks = SinkNames(f"agg_{suffix}", f"late_{suffix}", f"dead_{suffix}")
    for name, fields in ((sinks.aggregates, AGGREGATE_FIELDS), (sinks.late, LATE_FIELDS),
                         (sinks.dead_letter, DEAD_LETTER_FIELDS)):  # fmt: skip
        stream_env.execute_sql(ddl.create_table_sql(name, ddl.columns_sql(fields), {"connector": "blackhole"}))
    stmt = build_statement_set(stream_env, flows_table(stream_env, path), WINDOWS, sinks)
    plan = stmt.explain()
    # window TVF aggregation (insert-only, fired by the watermark), never an updating group aggregate
    assert "WindowAggregate" in plan
    assert "GroupAggregate" not in plan
    assert plan.count("CURRENT_WATERMARK") >= 2
    # every branch (bandwidth, latency, buckets, late, dead letters) reuses the one scan of the FlowRecord source
    executed = plan.split("== Optimized Execution Plan ==", 1)[1]
    assert executed.count("TableSourceScan(") == 1
    # the record checks (agg.classify) run in one Calc that the windows, the late split and the dead-letter
    # path all read, not once per branch
    assert sum("'ip_version'" in line for line in executed.splitlines()) == 1
