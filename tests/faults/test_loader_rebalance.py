"""Several `gwtel load` processes in one consumer group, joining and leaving while they load.

Every membership change is a rebalance: partitions move between loaders while batches are in hand, announced
or being inserted. Whatever the interleaving, each record of the topic must be stored exactly once: the
stored Kafka coordinates are exactly the topic's, with no gap and no repeat.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from gwtel.config import GwtelConfig
from gwtel.pipeline import drop_database
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.kafka import KafkaService
from processors.loader_setup import migrate
from schemas.codec import encode
from tests.faults import support as s
from tests.records import sample_flow

pytestmark = [pytest.mark.integration, pytest.mark.slow, *(pytest.mark.filterwarnings(w) for w in s.KAFKA_WARNINGS)]

RECORDS = 40_000


@pytest.fixture()
def cfg(
    kafka_service: KafkaService, clickhouse_service: ClickHouseService, kafka_config: GwtelConfig
) -> Iterator[GwtelConfig]:
    tag = s.new_tag()
    base = s.fault_config(
        kafka_config, bootstrap=kafka_service.endpoint(), ch_url=clickhouse_service.endpoint(), tag=tag
    )
    # Small, quick batches: many of them are in hand, announced or being inserted when a partition moves.
    cfg = s.with_loader(base, batch_rows=400, batch_seconds=0.2)
    kafka_service.ensure_topics(list(cfg.kafka.topics.model_dump().values()), partitions=2)
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap, acks="all", linger_ms=5)
    # Recent flows: older ones would fall to flows_raw's retention while the test reads them.
    t0 = time.time_ns() - 120 * 10**9
    for seq in range(RECORDS):
        flow = sample_flow(agent_id=f"rb-{tag}", seq=seq, first_ns=t0, last_ns=t0 + 10**9, export_ns=t0 + 2 * 10**9)
        producer.send(cfg.kafka.topics.flows, encode(flow), partition=seq % 2)
    producer.flush()
    producer.close()
    migrate(cfg)
    yield cfg
    drop_database(cfg)


def _start(config: Path, logs: list[Path], tmp: Path) -> subprocess.Popen[bytes]:
    path = tmp / f"load{len(logs)}.log"
    logs.append(path)
    with path.open("wb") as log:
        return subprocess.Popen(s.gwtel(["load", "--metrics-port", "0"], config), env=s.gwtel_env(),
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip


def _stored(cfg: GwtelConfig) -> int:
    return int(s.query(cfg, "SELECT count() FROM DB.flows_raw")[0][0])


def test_loaders_joining_and_leaving_the_group_store_every_record_once(cfg: GwtelConfig, tmp_path: Path) -> None:
    config = s.write_config(cfg, tmp_path / "config.yaml")
    logs: list[Path] = []
    running = [_start(config, logs, tmp_path)]
    stopped: list[subprocess.Popen[bytes]] = []
    try:
        s.wait_for(lambda: _stored(cfg) > 0, 120, "the first loader to store a batch", 0.2)
        # Join, join, leave, join, leave: five rebalances while the topic is being loaded.
        for change in ("join", "join", "leave", "join", "leave"):
            if _stored(cfg) >= RECORDS:
                break
            if change == "join":
                running.append(_start(config, logs, tmp_path))
            else:
                proc = running.pop(0)
                proc.terminate()
                proc.wait(60)
                stopped.append(proc)
            time.sleep(1.5)
        s.wait_for(lambda: s.group_done(cfg), 240, "the group to commit the whole topic", 0.5)
    finally:
        for proc in running:
            proc.terminate()
        for proc in running:
            proc.wait(60)
    for path in logs:
        text = path.read_text()
        assert "Traceback" not in text, text[-3000:]
    assert all(p.returncode == 0 for p in stopped + running), [p.returncode for p in stopped + running]
    n, coords, seqs = s.query(
        cfg, "SELECT count(), uniqExact(kafka_partition, kafka_offset), uniqExact(agent_id, seq) FROM DB.flows_raw"
    )[0]
    gaps = s.query(
        cfg,
        "SELECT kafka_partition, count(), min(kafka_offset), max(kafka_offset) FROM DB.flows_raw "
        "GROUP BY kafka_partition ORDER BY kafka_partition",
    )
    half = RECORDS // 2
    assert gaps == [(0, half, 0, half - 1), (1, half, 0, half - 1)], f"stored per partition: {gaps}"
    assert (n, coords, seqs) == (RECORDS, RECORDS, RECORDS)
