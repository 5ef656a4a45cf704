"""Shared steps of the fault tests: unique configurations, private services, replay, job, load, read back.

Ground truth is always independent of the run under test: the generator's truth document (which the
end-to-end test proves equal to the fault-free run) and the (agent id, seq) ranges the agent assigned.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from gwtel.config import GwtelConfig
from gwtel.pipeline import truth_totals
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.kafka import KafkaService
from processors.chclient import make_client
from processors.loader import Loader
from processors.loader_setup import build_loader, migrate
from schemas import codec
from schemas.flow_record import FlowRecord
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]

# kafka-python 3.0 loads protocol schemas lazily, on its IO thread, with a deprecated importlib call.
KAFKA_WARNINGS = [
    "ignore:read_text is deprecated:DeprecationWarning",
    "ignore:open_text is deprecated:DeprecationWarning",
]


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s waiting for {what}"
        time.sleep(interval_s)


def fault_config(base: GwtelConfig, *, bootstrap: str, ch_url: str, tag: str, **loader: Any) -> GwtelConfig:
    """A configuration whose topics, groups, database, spool and checkpoints are this test's own."""
    return GwtelConfig.model_validate(
        {
            "kafka": {
                "bootstrap": bootstrap,
                "partitions": 2,
                "topics": {
                    "flows": f"test.flows.{tag}",
                    "aggregates": f"test.aggregates.{tag}",
                    "late": f"test.late.{tag}",
                    "dead_letter": f"test.deadletter.{tag}",
                },
            },
            "clickhouse": {"url": ch_url, "database": f"fault_{tag}"},
            "local": base.local.model_dump(),
            "agent": {"agent_id": f"fault-{tag}", "spool_dir": f"agent/spool-{tag}", "metrics_port": 0},
            "job": {
                "group_id": f"fault-job-{tag}",
                "transactional_id_prefix": f"fault-{tag}",
                "checkpoint_dir": f"flink/checkpoints-{tag}",
            },
            "loader": {
                "group_id": f"fault-loader-{tag}",
                "retry_initial_s": 0.1,
                "retry_max_s": 1.0,
                "lag_interval_s": 0.2,
                "metrics_port": 0,
                **loader,
            },
        }
    )


def new_tag() -> str:
    return uuid.uuid4().hex[:10]


def with_loader(cfg: GwtelConfig, **changes: Any) -> GwtelConfig:
    return cfg.model_copy(update={"loader": cfg.loader.model_copy(update=changes)})


def with_clickhouse(cfg: GwtelConfig, url: str, database: str | None = None) -> GwtelConfig:
    ch = cfg.clickhouse.model_copy(update={"url": url, "database": database or cfg.clickhouse.database})
    return cfg.model_copy(update={"clickhouse": ch})


def write_config(cfg: GwtelConfig, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    return path


def private_kafka(base: GwtelConfig, home: Path, shared_home: Path) -> KafkaService:
    """A broker of the test's own on free ports (so killing it disturbs no other test); jars are shared."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "lib").symlink_to(shared_home / "lib", target_is_directory=True)
    ports = {**base.local.ports.model_dump(), "kafka": free_port(), "kafka_controller": free_port()}
    cfg = GwtelConfig.model_validate({"local": {"ports": ports}})
    return KafkaService(cfg, home)


def restart(svc: KafkaService, timeout_s: float = 120.0) -> None:
    """Start a killed broker again once the dead one released its ports (a JVM killed with SIGKILL may hold
    them for a moment after its pid is gone); retries a start that found them still taken."""
    from gwtel.errors import ServiceError
    from gwtel.services.base import port_open

    deadline = time.monotonic() + timeout_s
    while True:
        if not (port_open("127.0.0.1", svc.port) or port_open("127.0.0.1", svc.controller_port)):
            try:
                svc.start()
                return
            except ServiceError:
                if time.monotonic() > deadline:
                    raise
        assert time.monotonic() < deadline, f"the broker's ports stayed taken for {timeout_s:.0f}s"
        time.sleep(1.0)


def ensure_topics(svc: KafkaService, topics: list[str], partitions: int = 2) -> None:
    """Create topics, retrying while a broker that just (re)started still refuses clients."""
    deadline = time.monotonic() + 90
    while True:
        try:
            svc.ensure_topics(topics, partitions=partitions)
            return
        except KafkaError:
            assert time.monotonic() < deadline, f"the broker at {svc.endpoint()} did not take clients in 90s"
            time.sleep(1.0)


def private_clickhouse(home: Path) -> ClickHouseService:
    ports = {"clickhouse": free_port(), "clickhouse_metrics": free_port()}
    return ClickHouseService(GwtelConfig.model_validate({"local": {"ports": ports}}), home)


def topic_records(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[FlowRecord]:
    """Every record of ``topic`` (read_committed), decoded."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed", client_id="fault-test"
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out: list[FlowRecord] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, f"timed out reading {topic} back"
            for msgs in consumer.poll(timeout_ms=500).values():
                out.extend(codec.decode(m.value) for m in msgs)
    finally:
        consumer.close()
    return out


def raw_values(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every Kafka record of ``topic`` (read_committed), undecoded."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed", client_id="fault-test"
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, f"timed out reading {topic} back"
            for msgs in consumer.poll(timeout_ms=500).values():
                out.extend(msgs)
    finally:
        consumer.close()
    return out


def assert_exactly_once(records: list[FlowRecord], agent_id: str, seqs: range) -> None:
    ids = Counter((r.agent_id, r.seq) for r in records)
    dupes = sorted(k for k, c in ids.items() if c > 1)
    assert dupes == [], f"{len(dupes)} records duplicated, first: {dupes[:5]}"
    missing = sorted({(agent_id, s) for s in seqs} - set(ids))
    assert missing == [], f"{len(missing)} records missing, first: {missing[:5]}"
    assert set(ids) == {(agent_id, s) for s in seqs}, "records from elsewhere in the topic"


def group_done(cfg: GwtelConfig, timeout_s: float = 30.0) -> bool:
    """No committed record of the flows and aggregates topics lies past the loader group's committed offsets.

    Compared by reading, not by offset arithmetic: a transactional topic ends with a commit marker, so the
    group's last commit (after the last record) sits one below the end offset.
    """
    topics = [cfg.kafka.topics.flows, cfg.kafka.topics.aggregates]
    peek = KafkaConsumer(
        **cfg.kafka.kafka_python(),
        group_id=cfg.loader.group_id,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(peek.partitions_for_topic(t) or ())]
        ends = peek.end_offsets(tps)
        committed = {tp: peek.committed(tp) for tp in tps}
        if any(ends[tp] > 0 and committed[tp] is None for tp in tps):
            return False
        peek.assign(tps)
        for tp in tps:
            peek.seek(tp, committed[tp] or 0)
        deadline = time.monotonic() + timeout_s
        while any(peek.position(tp) < ends[tp] for tp in tps):
            if any(peek.poll(timeout_ms=200).values()):
                return False
            if time.monotonic() > deadline:
                return False
        return True
    finally:
        peek.close()


def load_all(cfg: GwtelConfig, registry: CollectorRegistry | None = None, timeout_s: float = 180.0) -> Loader:
    """Run an in-process loader until its group committed everything; returns it closed."""
    loader = build_loader(cfg, registry or CollectorRegistry())
    try:
        deadline = time.monotonic() + timeout_s
        checked = 0.0
        while True:
            loader.step(100)
            if time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                if loader.idle() and group_done(cfg):
                    return loader
            assert time.monotonic() < deadline, f"the loader did not commit everything within {timeout_s:.0f}s"
    finally:
        loader.close()


def query(cfg: GwtelConfig, sql: str) -> list[tuple[Any, ...]]:
    client = make_client(cfg.clickhouse)
    try:
        return [tuple(r) for r in client.query(sql.replace("DB.", f"{cfg.clickhouse.database}.")).result_rows]
    finally:
        client.close()


def stored_bandwidth(cfg: GwtelConfig) -> dict[tuple[int, str, str], list[int]]:
    rows = query(
        cfg,
        "SELECT window_start_ms, partner, direction, sum(bytes_scaled), sum(packets_scaled), sum(flows) "
        "FROM DB.bandwidth_window WHERE window_s = 10 GROUP BY window_start_ms, partner, direction",
    )
    return {(int(w) * 1_000_000, p, d): [int(b), int(n), int(f)] for w, p, d, b, n, f in rows}


def truth_bandwidth(truth: dict[str, Any]) -> dict[tuple[int, str, str], list[int]]:
    return {
        (r["window_start_ns"], r["partner"], r["direction"]): [r["bytes"], r["packets"], r["flows"]]
        for r in truth["bandwidth"]
    }


def assert_totals_equal_truth(cfg: GwtelConfig, truth: dict[str, Any], records: int) -> None:
    """Per 10 s window, partner and direction as the generator says; raw flows once; rollups agree."""
    assert stored_bandwidth(cfg) == truth_bandwidth(truth)
    n, distinct, pkts = query(
        cfg, "SELECT count(), uniqExact(agent_id, seq), sum(packets_fwd + packets_rev) FROM DB.flows_raw"
    )[0]
    assert (n, distinct, pkts) == (records, records, truth["packets"])
    total = sum(v[0] for v in truth_totals(truth).values())
    assert query(cfg, "SELECT sum(bytes_scaled) FROM DB.bandwidth_5m") == [(total,)]


def aggregate_load_and_check(cfg: GwtelConfig, truth: dict[str, Any], records: int) -> None:
    """The Flink job over what the flows topic holds, then the loader; ClickHouse must equal the truth."""
    from processors.job import run_job

    run_job(cfg, bounded=True)
    migrate(cfg)
    load_all(cfg)
    assert_totals_equal_truth(cfg, truth, records)


def gwtel(args: list[str], config: Path, env: dict[str, str] | None = None) -> list[str]:
    """argv and environment of a real `gwtel` process on ``config``."""
    return [sys.executable, "-m", "gwtel.cli", "--config", str(config), *args]


def gwtel_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def run_gwtel(args: list[str], config: Path, timeout_s: float = 300.0, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        gwtel(args, config), env=gwtel_env(**env), capture_output=True, text=True, timeout=timeout_s, check=False
    )
