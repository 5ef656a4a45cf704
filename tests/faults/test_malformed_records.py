"""Malformed Kafka records through the Flink job and the loader: each is dead-lettered with a reason by both
stages, counted, and neither stops; the aggregates hold exactly the valid records.

One record lies a year ahead and comes first: if it moved the watermark, every valid record after it would
be late and the aggregates empty.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from gwtel.config import GwtelConfig
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.flink import FlinkRuntime
from gwtel.services.kafka import KafkaService
from processors.job import run_job
from processors.loader_setup import migrate
from schemas import codec
from tests.faults import support as s
from tests.records import sample_flow

pytestmark = [pytest.mark.integration, pytest.mark.slow, *(pytest.mark.filterwarnings(w) for w in s.KAFKA_WARNINGS)]

SEC = 10**9
YEAR = 365 * 86_400 * SEC


def _value(**changes: Any) -> dict[str, Any]:
    return codec.to_dict(sample_flow(**changes))


def test_malformed_records_are_dead_lettered_by_job_and_loader(
    kafka_service: KafkaService,
    clickhouse_service: ClickHouseService,
    flink_runtime: FlinkRuntime,
    kafka_config: GwtelConfig,
) -> None:
    tag = s.new_tag()
    cfg = s.fault_config(
        kafka_config, bootstrap=kafka_service.endpoint(), ch_url=clickhouse_service.endpoint(), tag=tag
    )
    kafka_service.ensure_topics(list(cfg.kafka.topics.model_dump().values()), partitions=1)
    agent = f"mal-{tag}"
    base = (time.time_ns() // (60 * SEC) - 120) * 60 * SEC  # two hours ago, on a minute
    valid = [_value(agent_id=agent, seq=i, first_ns=base + i * SEC, last_ns=base + i * SEC + SEC // 2,
                    export_ns=base + i * SEC + SEC) for i in range(10)]  # fmt: skip
    future = base + YEAR
    missing = _value(agent_id=agent, seq=103)
    del missing["bytes_rev"]
    bad: list[tuple[str, bytes]] = [
        (
            "year_ahead",
            orjson.dumps(_value(agent_id=agent, seq=100, first_ns=future, last_ns=future, export_ns=future)),
        ),
        ("garbage", b"\x00\xff not a record"),
        ("wrong_version", orjson.dumps({**_value(agent_id=agent, seq=102), "schema_version": 2})),
        ("missing_field", orjson.dumps(missing)),
        ("negative_bytes", orjson.dumps(_value(agent_id=agent, seq=104, bytes_fwd=-5))),
        (
            "year_1990",
            orjson.dumps(
                _value(
                    agent_id=agent,
                    seq=105,
                    first_ns=631_152_000 * SEC,
                    last_ns=631_152_000 * SEC,
                    export_ns=631_152_000 * SEC,
                )
            ),
        ),
        (
            "year_2150",
            orjson.dumps(
                _value(
                    agent_id=agent,
                    seq=106,
                    first_ns=5_680_281_600 * SEC,
                    last_ns=5_680_281_600 * SEC,
                    export_ns=5_680_281_600 * SEC,
                )
            ),
        ),
        ("wrong_type", orjson.dumps({**_value(agent_id=agent, seq=107), "bytes_fwd": "lots"})),
    ]
    values = [
        bad[0][1],
        *(orjson.dumps(v) for v in valid[:5]),
        *(v for _, v in bad[1:]),
        *(orjson.dumps(v) for v in valid[5:]),
    ]
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap, acks="all", enable_idempotence=True)
    try:
        for v in values:
            producer.send(cfg.kafka.topics.flows, value=v, key=b"k", partition=0)
        producer.flush(30)
    finally:
        producer.close()

    run_job(cfg, bounded=True)
    migrate(cfg)
    registry = CollectorRegistry()
    try:
        s.load_all(cfg, registry)
        letters = s.raw_values(cfg.kafka.bootstrap, cfg.kafka.topics.dead_letter)
        job_reasons: Counter[tuple[str, str]] = Counter()
        loader_reasons: Counter[str] = Counter()
        for rec in letters:
            headers = {k: v.decode() for k, v in rec.headers}
            if headers.get("stage") == "loader":
                loader_reasons[headers["reason"]] += 1
            else:
                d = orjson.loads(rec.value)
                job_reasons[(d["reason"], d["field"])] += 1
        print(f"job dead letters {dict(job_reasons)}; loader dead letters {dict(loader_reasons)}")
        assert job_reasons == Counter({
            ("not_json", ""): 1, ("wrong_version", ""): 1, ("bad_field", "bytes_rev"): 1, ("bad_value", "bytes_fwd"): 1,
            # 1990 and 2150 (first_ns is checked first: schemas.checks' order), a year ahead of now
            ("bad_value", "first_ns"): 2, ("bad_value", "last_ns"): 1,
            # The job's JSON format leaves a field it cannot convert null: dead-lettered, the field named.
            ("bad_field", "bytes_fwd"): 1,
        })  # fmt: skip
        # The loader rejects 1990 and 2150 by the codec's bounds, and the year ahead against the record's
        # Kafka timestamp plus job.max_future_skew_s.
        assert loader_reasons == Counter(
            {"not_json": 1, "wrong_version": 1, "missing_field": 1, "bad_value": 4, "bad_type": 1}
        )
        for reason, n in loader_reasons.items():
            assert registry.get_sample_value("gwtel_loader_dead_lettered_total", {"reason": reason}) == n
        expected_bytes = sum(v["bytes_fwd"] + v["bytes_rev"] for v in valid)
        assert s.query(cfg, "SELECT sum(bytes_scaled), sum(flows) FROM DB.bandwidth_window WHERE window_s = 10") == [
            (expected_bytes, len(valid))
        ]
        assert s.query(cfg, "SELECT count(), countIf(seq = 100) FROM DB.flows_raw") == [(len(valid), 0)]
    finally:
        admin = clickhouse_service.client()
        try:
            admin.command(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")
        finally:
            admin.close()
