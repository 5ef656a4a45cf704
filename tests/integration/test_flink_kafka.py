"""PyFlink on a local MiniCluster with the Kafka SQL connector: event-time tumbling windows, Kafka to Kafka,
exactly-once (transactional) sink read back with read_committed and checked against sums computed here."""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from gwtel.errors import ServiceError
from gwtel.services.flink import FlinkRuntime
from processors.flink_env import build_configuration, make_table_env

pytestmark = pytest.mark.integration

WINDOW_MS = 10_000
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a window boundary
PARTNERS = ("japan", "korea", "belt_and_road")


def flow_events() -> list[dict[str, object]]:
    """Events over 6 windows, in time order; each partner's bytes follow its own simple pattern."""
    events: list[dict[str, object]] = []
    for i in range(360):
        ts = T0_MS + i * 167  # ~6 per second, 60 s in all, crossing window edges at odd offsets
        partner = PARTNERS[i % 3]
        events.append({"partner": partner, "bytes": 100 + (i * 37) % 1000, "ts_ms": ts})
    return events


def expected_windows(events: list[dict[str, object]]) -> Counter[tuple[str, str]]:
    """Hand-computed (window start, partner) -> [bytes, records], written as a Counter of two keys."""
    totals: Counter[tuple[str, str]] = Counter()
    for e in events:
        ts = int(str(e["ts_ms"]))
        start = ts - ts % WINDOW_MS
        key = datetime.fromtimestamp(start / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        totals[(key, f"{e['partner']}|bytes")] += int(str(e["bytes"]))
        totals[(key, f"{e['partner']}|records")] += 1
    return totals


def read_committed(bootstrap: str, topic: str, timeout_s: float = 30.0) -> tuple[list[bytes], int]:
    """All committed values of `topic` and the sum of its end offsets (control records included)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        # With read_committed these are the last stable offsets: nothing is pending once the job ended.
        end = consumer.end_offsets(parts)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, f"timed out reading {topic} up to {end}"
            for msgs in consumer.poll(timeout_ms=500).values():
                values.extend(m.value for m in msgs)
    finally:
        consumer.close()
    return values, sum(end.values())


def flink_log_text() -> str:
    """The Flink JVM log of this process (make_table_env points $FLINK_LOG_DIR at it)."""
    logs = sorted(Path(os.environ["FLINK_LOG_DIR"]).glob("flink-*-python-*.log"))
    assert logs, f"no Flink log under {os.environ['FLINK_LOG_DIR']}"
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in logs)


def test_configuration_puts_jars_state_and_checkpoints_in_place(flink_runtime: FlinkRuntime, tmp_path: Path) -> None:
    jar = flink_runtime.connector_jar()
    conf = build_configuration(parallelism=2, jars=[jar], checkpoint_dir=tmp_path / "chk", checkpoint_interval_ms=1500)
    assert conf["pipeline.jars"] == f"file://{jar.resolve()}"
    assert conf["parallelism.default"] == "2"
    assert conf["taskmanager.numberOfTaskSlots"] == "2"
    assert conf["state.backend.type"] == "rocksdb"
    assert conf["execution.checkpointing.dir"] == f"file://{(tmp_path / 'chk').resolve()}"
    assert conf["execution.checkpointing.interval"] == "1500 ms"
    assert "state.backend.type" not in build_configuration(jars=[])
    with pytest.raises(ServiceError, match="not found"):
        build_configuration(jars=[tmp_path / "missing.jar"])
    with pytest.raises(ValueError, match="parallelism"):
        build_configuration(parallelism=0, jars=[])


def test_batch_environment_runs_sql_with_parallelism_two(kafka_home: Path) -> None:
    t_env = make_table_env(streaming=False, parallelism=2, jars=[], log_dir=kafka_home / "logs" / "flink")
    # SQL VALUES rather than from_elements: the latter loads Apache Beam, which this check does not need.
    values = ", ".join(f"('{p}', {b})" for p in PARTNERS for b in range(1, 11))
    sql = f"SELECT partner, SUM(b), COUNT(*) FROM (VALUES {values}) AS t(partner, b) GROUP BY partner"
    with t_env.execute_sql(sql).collect() as it:
        got = {r[0]: (r[1], r[2]) for r in it}
    assert got == dict.fromkeys(PARTNERS, (55, 10))
    assert t_env.get_config().get("parallelism.default", "") == "2"


def test_tumbling_windows_kafka_to_kafka_exactly_once(
    flink_runtime: FlinkRuntime,
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    kafka_home: Path,
    tmp_path: Path,
) -> None:
    source = kafka_topic("flink-src", partitions=2)
    sink = kafka_topic("flink-agg", partitions=1)
    events = flow_events()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    try:
        for e in events:  # keyed by partner: each partition is in time order, so nothing is late
            producer.send(source, key=str(e["partner"]).encode(), value=json.dumps(e).encode())
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)

    checkpoints = tmp_path / "checkpoints"
    t_env = make_table_env(
        streaming=True,
        parallelism=2,
        jars=flink_runtime.jars(),
        checkpoint_dir=checkpoints,
        checkpoint_interval_ms=1000,
        extra={"table.local-time-zone": "UTC"},
        log_dir=kafka_home / "logs" / "flink",
    )
    t_env.execute_sql(f"""
        CREATE TABLE flows (
            partner STRING,
            `bytes` BIGINT,
            ts_ms BIGINT,
            ts AS TO_TIMESTAMP_LTZ(ts_ms, 3),
            WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
        ) WITH (
            'connector' = 'kafka',
            'topic' = '{source}',
            'properties.bootstrap.servers' = '{kafka_bootstrap}',
            'properties.group.id' = 'gwtel-test-{source}',
            'scan.startup.mode' = 'earliest-offset',
            'scan.bounded.mode' = 'latest-offset',
            'format' = 'json',
            'json.fail-on-missing-field' = 'true'
        )""")
    t_env.execute_sql(f"""
        CREATE TABLE aggregates (
            window_start STRING,
            partner STRING,
            `bytes` BIGINT,
            records BIGINT
        ) WITH (
            'connector' = 'kafka',
            'topic' = '{sink}',
            'properties.bootstrap.servers' = '{kafka_bootstrap}',
            'format' = 'json',
            'sink.delivery-guarantee' = 'exactly-once',
            'sink.transactional-id-prefix' = 'gwtel-test-{sink}',
            'properties.transaction.timeout.ms' = '600000'
        )""")
    started = time.monotonic()
    result = t_env.execute_sql("""
        INSERT INTO aggregates
        SELECT DATE_FORMAT(window_start, 'yyyy-MM-dd HH:mm:ss'), partner, SUM(`bytes`), COUNT(*)
        FROM TABLE(TUMBLE(TABLE flows, DESCRIPTOR(ts), INTERVAL '10' SECOND))
        GROUP BY window_start, window_end, partner
        """)
    job_id = str(result.get_job_client().get_job_id())
    result.wait(120_000)
    print(f"flink job ran in {time.monotonic() - started:.1f}s")

    values, end_offsets = read_committed(kafka_bootstrap, sink)
    rows = [json.loads(v) for v in values]
    got: Counter[tuple[str, str]] = Counter()
    for r in rows:
        got[(r["window_start"], f"{r['partner']}|bytes")] += r["bytes"]
        got[(r["window_start"], f"{r['partner']}|records")] += r["records"]
    assert got == expected_windows(events)
    assert len(rows) == 6 * len(PARTNERS)  # one row per window and partner: nothing twice
    # Transaction markers take offsets of their own: proof the rows were written in transactions.
    assert end_offsets > len(rows)
    # Flink's own log: this job completed checkpoints into the folder it was given, with RocksDB state.
    # (A finished job deletes its checkpoints, so the folder itself proves little afterwards.)
    log = flink_log_text()
    assert re.search(rf"Completed checkpoint \d+ for job {job_id}", log), "no completed checkpoint"
    assert f'checkpoints "{checkpoints.resolve().as_uri().replace("file://", "file:")}"' in log
    assert re.search(rf"RocksDB keyed state-backend at \S*job_{job_id}", log), "state not in RocksDB"
