"""A record the Flink job really sends to the late topic still counts in its window in ClickHouse.

An agent's stream cut at 10 s boundaries goes to the streaming job; once the job has closed the first window,
one more record of that window arrives (an agent whose clock trails): the job writes it to the late topic,
the loader stores it in flows_late, and the late view (migration late_into_windows) adds it to its window at
every size and to the rollups.
Every expected figure is summed here from the records the test built. A second loader group reading the same
topics stores nothing twice.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gwtel.config import GwtelConfig
from gwtel.pipeline import caught_up
from gwtel.services.flink import FlinkRuntime
from processors import queries
from processors.loader_setup import build_loader, migrate
from schemas import codec
from schemas.flow_record import FlowRecord
from tests.integration.test_flink_job import committed_rows, kill_group, start_aggregate, wait_for
from tests.integration.test_flink_kafka import read_committed
from tests.integration.test_loader import produce, pytestmark, q, setup, with_group
from tests.unit.test_batcher import flow

__all__ = ["pytestmark", "setup"]

S = 10**9
# Two hours ago, on a 1 min boundary: inside every retention period and behind the job's clock.
T0 = (time.time_ns() - 7200 * S) // (60 * S) * (60 * S)


def rec(seq: int, last_s: float, export_s: float, nbytes: int, rev: int = 0, reason: str = "active") -> FlowRecord:
    last = T0 + round(last_s * 1000) * 10**6
    return flow(seq=seq, first_ns=last - S // 2, last_ns=last, export_ns=T0 + round(export_s * 1000) * 10**6,
                bytes_fwd=nbytes, packets_fwd=1, bytes_rev=rev, packets_rev=1 if rev else 0, retrans_fwd=0,
                retrans_rev=0, end_reason=reason, direction="egress", partner="japan", sampling_rate=1)  # fmt: skip


# First: the cut at 10 s and a FIN record after it (exported 2.5 s past the boundary: the watermark reaches
# 10 s and the first 10 s window closes). Then: the late record (its packets in 0-10 s, exported at the cut
# at 20 s), the cut at 20 s, and one far ahead that closes every window before it (itself in none).
FIRST = [rec(1, 3.0, 10, 1000, rev=400), rec(2, 9.5, 10, 2000), rec(3, 11.0, 12.5, 3000, reason="fin")]
LATE = rec(4, 8.0, 20, 7000, rev=900)
THEN = [LATE, rec(5, 15.0, 20, 5000)]
CLOSER = rec(6, 185.0, 190, 1)
STREAM = [(r, r is LATE) for r in FIRST + THEN]


@pytest.mark.slow
def test_late_record_counts_in_its_window_once(
    setup: Callable[..., GwtelConfig], flink_runtime: FlinkRuntime, tmp_path: Path
) -> None:
    base = setup(partitions=1, batch_rows=100, batch_seconds=0.3)
    tag = uuid.uuid4().hex[:8]
    job = {"group_id": f"test-late-{tag}", "transactional_id_prefix": f"test-late-{tag}",
           "checkpoint_dir": str(tmp_path / "checkpoints"), "checkpoint_interval_ms": 1000, "metrics_port": 0,
           "idle_timeout_ms": 600_000}  # fmt: skip
    cfg = base.model_copy(update={"job": base.job.model_copy(update=job)})
    migrate(cfg)
    boot, topics = cfg.kafka.bootstrap, cfg.kafka.topics
    produce(cfg, topics.flows, [(0, codec.encode(r)) for r in FIRST])
    proc, log = start_aggregate(cfg, tmp_path, "job")
    try:
        wait_for(lambda: sum(committed_rows(boot, topics.aggregates).values()) > 0, 240, "the first window", proc, log)
        produce(cfg, topics.flows, [(0, codec.encode(r)) for r in [*THEN, CLOSER]])
        wait_for(
            lambda: any(dict(r)["window_s"] == 60 for r in committed_rows(boot, topics.aggregates))
            and len(read_committed(boot, topics.late)[0]) == 1,
            120, "the 1 min window and the late record", proc, log,
        )  # fmt: skip
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
    finally:
        kill_group(proc)
    load_all(cfg)

    late = [r for r, is_late in STREAM if is_late]
    assert q(cfg, "SELECT seq FROM DB.flows_late") == [(r.seq,) for r in late]
    assert q(cfg, "SELECT count() FROM DB.flows_raw") == [(len(STREAM) + 1,)]
    # Every record in the window of its last packet, at both sizes: egress gets the initiators' bytes,
    # ingress the responders' (only records whose responder sent packets).
    for size in cfg.job.window_sizes_s:
        want: dict[tuple[int, str], list[int]] = {}
        for r, _ in STREAM:
            start = r.last_ns // 10**6 // (size * 1000) * (size * 1000)
            e = want.setdefault((start, "egress"), [0, 0, 0])
            e[0] += r.bytes_fwd
            e[1] += 1
            e[2] += r.end_reason != "active"
            if r.packets_rev:
                want.setdefault((start, "ingress"), [0, 0, 0])[0] += r.bytes_rev
        got = q(
            cfg,
            "SELECT window_start_ms, direction, sum(bytes), sum(flows), sum(flows_ended) FROM DB.bandwidth_window "
            f"WHERE window_s = {size} GROUP BY window_start_ms, direction ORDER BY window_start_ms, direction",
        )
        assert got == [(k[0], k[1], *v) for k, v in sorted(want.items())], size
    # The late rows keep the late topic's coordinates: how much came late stays visible.
    assert q(cfg, f"SELECT sum(bytes) FROM DB.bandwidth_window WHERE kafka_topic = '{cfg.kafka.topics.late}'") == [
        (len(cfg.job.window_sizes_s) * sum(r.bytes_fwd + r.bytes_rev for r in late),)
    ]
    # The rollups (billing, long-range rates) include it.
    total_egress = sum(r.bytes_fwd for r, _ in STREAM)
    assert q(cfg, "SELECT sum(bytes) FROM DB.bandwidth_5m WHERE direction = 'egress'") == [(total_egress,)]
    start_ms, end_ms = T0 // 10**6, T0 // 10**6 + 300_000
    client_rows = queries_traffic(cfg, start_ms, end_ms)
    assert client_rows[("japan", "egress")] == total_egress

    # Another loader group reads every topic again: the deduplication tokens store nothing twice.
    load_all(with_group(cfg, f"test-loader-again-{tag}"))
    assert q(cfg, "SELECT count() FROM DB.flows_late") == [(1,)]
    assert q(cfg, "SELECT sum(bytes) FROM DB.bandwidth_5m WHERE direction = 'egress'") == [(total_egress,)]
    assert queries_traffic(cfg, start_ms, end_ms)[("japan", "egress")] == total_egress


def load_all(cfg: GwtelConfig, timeout_s: float = 180.0) -> None:
    """Run a loader until it has read and stored everything (transaction markers count in the end offsets,
    so the positions are compared, as `gwtel run` does)."""
    loader = build_loader(cfg, CollectorRegistry())
    deadline = time.monotonic() + timeout_s
    try:
        while not caught_up(loader):
            assert time.monotonic() < deadline, "the loader did not catch up"
            loader.step(100)
    finally:
        loader.close()


def queries_traffic(cfg: GwtelConfig, start_ms: int, end_ms: int) -> dict[tuple[str, str], int]:
    from processors.chclient import make_client

    client = make_client(cfg.clickhouse)
    try:
        rows = queries.partner_traffic(client, cfg.clickhouse.database, start_ms, end_ms, 10)
        late = queries.late_traffic(client, cfg.clickhouse.database, start_ms, end_ms)
    finally:
        client.close()
    assert late, "the late traffic is still reported"
    return {(r.partner, r.direction): r.bytes for r in rows}
