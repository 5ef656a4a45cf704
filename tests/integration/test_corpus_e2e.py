"""The shared corpus captures end to end: ClickHouse's totals equal the agent's own totals.

The agent's totals come from a separate replay of the same files into memory (no Kafka, no Flink, no
ClickHouse), so the check covers every stage after the agent: records stored once, aggregates complete.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer, TopicPartition

from ingest.agent import Agent
from ingest.classify import PartnerClassifier
from ingest.replay import replay_files
from schemas.flow_record import FlowRecord
from tests.integration.fixtures_replay import CORPUS_LINK, SharedRun

pytestmark = [pytest.mark.integration, pytest.mark.corpus, pytest.mark.slow]

Key = tuple[str, str]


def _agent_totals(run: SharedRun) -> dict[Key, tuple[int, int, int]]:
    records: list[FlowRecord] = []
    cfg = run.cfg.agent.model_copy(update={"link_id": CORPUS_LINK})
    replay_files(Agent(cfg, PartnerClassifier(run.cfg.partners), records.append), run.corpus)
    acc: dict[Key, Counter[str]] = {}
    for r in records:
        c = acc.setdefault((r.partner, r.direction), Counter())
        c["bytes"] += r.bytes_fwd + r.bytes_rev
        c["packets"] += r.packets_fwd + r.packets_rev
        c["records"] += 1
    return {k: (c["bytes"], c["packets"], c["records"]) for k, c in acc.items()}


@pytest.fixture(scope="module")
def agent_totals(shared_run: SharedRun) -> dict[Key, tuple[int, int, int]]:
    totals = _agent_totals(shared_run)
    assert sum(v[2] for v in totals.values()) > 1000, "the corpus should give well over a thousand flow records"
    return totals


def _query(run: SharedRun) -> Callable[[str], list[tuple[object, ...]]]:
    def q(sql: str) -> list[tuple[object, ...]]:
        rows = run.client.query(sql, parameters={"l": CORPUS_LINK}).result_rows
        return [tuple(r) for r in rows]

    return q


def test_flow_records_in_clickhouse_equal_the_agents(
    shared_run: SharedRun, agent_totals: dict[Key, tuple[int, int, int]]
) -> None:
    db = shared_run.cfg.clickhouse.database
    rows = _query(shared_run)(
        f"SELECT partner, direction, sum(bytes_fwd + bytes_rev), sum(packets_fwd + packets_rev), count() "
        f"FROM {db}.flows_raw WHERE link_id = {{l:String}} GROUP BY partner, direction"
    )
    got = {(str(p), str(d)): (int(b), int(n), int(c)) for p, d, b, n, c in rows}  # type: ignore[call-overload]
    assert got == agent_totals


def _late_totals(run: SharedRun) -> tuple[int, int, int]:
    """Bytes, packets and records of the corpus the job set aside as late (behind its watermark)."""
    consumer = KafkaConsumer(
        bootstrap_servers=run.cfg.kafka.bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        tps = [
            TopicPartition(run.cfg.kafka.topics.late, p)
            for p in consumer.partitions_for_topic(run.cfg.kafka.topics.late)
        ]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        b = n = c = 0
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=1000).values():
                for m in batch:
                    rec = json.loads(m.value)
                    if rec["link_id"] == CORPUS_LINK:
                        b += rec["bytes_fwd"] + rec["bytes_rev"]
                        n += rec["packets_fwd"] + rec["packets_rev"]
                        c += 1
        return b, n, c
    finally:
        consumer.close()


def test_aggregates_in_clickhouse_and_late_records_equal_the_agents(
    shared_run: SharedRun, agent_totals: dict[Key, tuple[int, int, int]]
) -> None:
    db = shared_run.cfg.clickhouse.database
    want_bytes = sum(v[0] for v in agent_totals.values())
    want_packets = sum(v[1] for v in agent_totals.values())
    late_b, late_n, late_c = _late_totals(shared_run)
    # Captures decades apart in one stream: a few flows end behind the watermark; most must land in windows.
    assert late_c < 0.1 * sum(v[2] for v in agent_totals.values())
    late_topic = shared_run.cfg.kafka.topics.late
    for w in shared_run.cfg.job.window_sizes_s:
        # The late records are in their windows too (the late view adds them), with the late topic's coordinates.
        (b, n, lb, ln), *_ = _query(shared_run)(
            f"SELECT sum(bytes), sum(packets), sumIf(bytes, kafka_topic = '{late_topic}'), "
            f"sumIf(packets, kafka_topic = '{late_topic}') FROM {db}.bandwidth_window "
            f"WHERE link_id = {{l:String}} AND window_s = {w}"
        )
        assert (int(b), int(n)) == (want_bytes, want_packets), f"{w} s windows"  # type: ignore[call-overload]
        assert (int(lb), int(ln)) == (late_b, late_n), f"{w} s windows, late rows"  # type: ignore[call-overload]
