"""The whole pipeline on the real services: a generated capture in, ClickHouse aggregates equal to its truth.

Kafka broker, Flink MiniCluster, the ClickHouse engine behind its HTTP interface: all real; names are unique per
test so runs never meet. Bytes, packets and flows must match the generator exactly, per window, partner and
direction; latency percentiles within one histogram bucket of the exact percentile of the injected samples.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gwtel.config import ClickHouseConfig, GwtelConfig, KafkaConfig, TopicsConfig
from gwtel.pipeline import run_pipeline
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.flink import FlinkRuntime
from gwtel.services.kafka import KafkaService
from ingest.config import AgentConfig
from ingest.synth import SynthConfig, generate
from processors.chclient import make_client
from processors.config import JobConfig, LoaderConfig
from processors.loader_setup import migrate
from processors.queries import partner_latency
from schemas.histogram import bucket_of_us

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def unique_config(base: GwtelConfig, tag: str) -> GwtelConfig:
    topics = TopicsConfig(
        flows=f"test.flows.{tag}",
        aggregates=f"test.aggregates.{tag}",
        late=f"test.late.{tag}",
        counters=f"test.counters.{tag}",
        dead_letter=f"test.deadletter.{tag}",
    )
    return base.model_copy(
        update={
            "kafka": KafkaConfig(bootstrap=base.kafka.bootstrap, topics=topics, partitions=2),
            "clickhouse": ClickHouseConfig(url=base.clickhouse.url, database=f"e2e_{tag}"),
            "agent": AgentConfig(agent_id=f"e2e-{tag}", spool_dir=f"agent/spool-{tag}"),
            "job": JobConfig(
                group_id=f"e2e-job-{tag}",
                transactional_id_prefix=f"e2e-{tag}",
                checkpoint_dir=f"flink/checkpoints-{tag}",
            ),
            "loader": LoaderConfig(group_id=f"e2e-loader-{tag}"),
        }
    )


@pytest.fixture(scope="module")
def e2e(
    kafka_service: KafkaService,
    clickhouse_service: ClickHouseService,
    flink_runtime: FlinkRuntime,
    kafka_config: GwtelConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GwtelConfig, dict[str, Any], Any]]:
    tag = uuid.uuid4().hex[:10]
    cfg = unique_config(kafka_config, tag)
    cfg = cfg.model_copy(
        update={"clickhouse": ClickHouseConfig(url=clickhouse_service.endpoint(), database=f"e2e_{tag}")}
    )
    kafka_service.ensure_topics(list(cfg.kafka.topics.model_dump().values()), partitions=2)
    migrate(cfg)
    d = tmp_path_factory.mktemp("e2e")
    # Recent traffic: rows older than the tables' TTL (15 days by default) would be dropped at insert.
    start_ns = (time.time_ns() // 60_000_000_000 - 30) * 60_000_000_000
    sc = SynthConfig(seed=5, flows=800, duration_s=60, start_ns=start_ns)
    truth = generate(sc, d / "golden.pcap", d / "golden.json")
    result = run_pipeline(cfg, Path(d / "golden.pcap"), ledger_timeout_s=240)
    assert result.packets == truth["packets"]
    client = make_client(cfg.clickhouse)
    yield cfg, truth, client
    client.command(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")
    client.close()


def test_bandwidth_per_window_equals_truth(e2e: tuple[GwtelConfig, dict[str, Any], Any]) -> None:
    cfg, truth, client = e2e
    rows = client.query(
        f"SELECT window_start_ms, partner, direction, sum(bytes_scaled), sum(packets_scaled), sum(flows) "
        f"FROM {cfg.clickhouse.database}.bandwidth_window WHERE window_s = 10 "
        "GROUP BY window_start_ms, partner, direction"
    ).result_rows
    got = {(w * 1_000_000, p, d): [int(b), int(n), int(f)] for w, p, d, b, n, f in rows}
    want = {
        (r["window_start_ns"], r["partner"], r["direction"]): [r["bytes"], r["packets"], r["flows"]]
        for r in truth["bandwidth"]
    }
    assert got == want


def test_minute_windows_and_rollups_sum_to_the_same(e2e: tuple[GwtelConfig, dict[str, Any], Any]) -> None:
    cfg, truth, client = e2e
    db = cfg.clickhouse.database
    total = sum(r["bytes"] for r in truth["bandwidth"])
    for sql in (
        f"SELECT sum(bytes_scaled) FROM {db}.bandwidth_window WHERE window_s = 60",
        f"SELECT sum(bytes_scaled) FROM {db}.bandwidth_5m",
    ):
        assert int(client.query(sql).result_rows[0][0]) == total, sql


def test_raw_flows_stored_once(e2e: tuple[GwtelConfig, dict[str, Any], Any]) -> None:
    cfg, truth, client = e2e
    db = cfg.clickhouse.database
    n, distinct, pkts = client.query(
        f"SELECT count(), uniqExact(agent_id, seq), sum(packets_fwd + packets_rev) FROM {db}.flows_raw"
    ).result_rows[0]
    assert n == distinct
    assert pkts == truth["packets"]


@pytest.mark.parametrize("metric", ["hs_rtt_ext", "ts_rtt", "icmp_rtt", "dns_rtt"])
def test_latency_percentiles_within_one_bucket(e2e: tuple[GwtelConfig, dict[str, Any], Any], metric: str) -> None:
    cfg, truth, client = e2e
    pooled: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in truth["latency"]:
        if row["metric"] == metric:
            pooled[(row["partner"], row["direction"])].extend(row["samples_us"])
    got = partner_latency(
        client, cfg.clickhouse.database, truth["start_ns"] // 10**6, truth["end_ns"] // 10**6, 10, metric
    )
    assert {(r.partner, r.direction) for r in got} == set(pooled)
    for r in got:
        samples = sorted(pooled[(r.partner, r.direction)])
        assert r.samples == len(samples)
        for q, value in ((0.5, r.p50_us), (0.95, r.p95_us), (0.99, r.p99_us)):
            exact = samples[max(0, math.ceil(q * len(samples)) - 1)]
            assert abs(bucket_of_us(round(value)) - bucket_of_us(exact)) <= 1, (r.partner, r.direction, q)
            assert abs(value - exact) / exact < 0.03
