"""Loader faults on the whole pipeline: ClickHouse down mid-load, and a crash between insert and commit.

One generated capture is replayed through the agent and the Flink job once (module fixture, session
services, unique names); each test then loads those topics into its own database with its own consumer
group, under a fault, and the stored totals must equal the generator's truth (the fault-free outcome).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gwtel.commands.replay import do_replay
from gwtel.config import GwtelConfig
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.flink import FlinkRuntime
from gwtel.services.kafka import KafkaService
from ingest.synth import SynthConfig, generate
from processors.faults import CRASH_EXIT_CODE, FAULT_ENV, LOADER_CRASH_AFTER_INSERT
from processors.job import run_job
from processors.loader_setup import build_loader, migrate
from processors.tables import ALL_TABLES
from tests.faults import support as s

FLOW_PARTITIONS = 2  # every topic of the module's pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow, *(pytest.mark.filterwarnings(w) for w in s.KAFKA_WARNINGS)]


class Replayed:
    def __init__(self, cfg: GwtelConfig, truth: dict[str, Any], records: int) -> None:
        self.cfg = cfg
        self.truth = truth
        self.records = records


@pytest.fixture(scope="module")
def replayed(
    kafka_service: KafkaService,
    clickhouse_service: ClickHouseService,
    flink_runtime: FlinkRuntime,
    kafka_config: GwtelConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Replayed]:
    cfg = s.fault_config(
        kafka_config, bootstrap=kafka_service.endpoint(), ch_url=clickhouse_service.endpoint(), tag=s.new_tag()
    )
    kafka_service.ensure_topics(list(cfg.kafka.topics.model_dump().values()), partitions=FLOW_PARTITIONS)
    d = tmp_path_factory.mktemp("loader-faults")
    truth = generate(SynthConfig(seed=11, flows=600, duration_s=60), d / "in.pcap", d / "in.json")
    run = do_replay(cfg, [d / "in.pcap"], "kafka")
    assert run.producer is not None and run.producer.spool_pending == 0
    assert run.producer.acked == run.agent.counters.records_emitted
    run_job(cfg, bounded=True)
    yield Replayed(cfg, truth, run.agent.counters.records_emitted)


def _drop(cfg: GwtelConfig) -> None:
    from processors.chclient import make_client

    client = make_client(cfg.clickhouse, database="")
    try:
        client.command(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")
    finally:
        client.close()


def test_clickhouse_outage_mid_load_loses_nothing_and_shows_in_metrics(replayed: Replayed, tmp_path: Path) -> None:
    private = s.private_clickhouse(tmp_path / "ch")  # stopping it disturbs no other test
    private.start()
    try:
        cfg = s.with_clickhouse(s.with_loader(replayed.cfg, group_id=f"fault-outage-{s.new_tag()}", batch_rows=150),
                                private.endpoint())  # fmt: skip
        migrate(cfg)
        registry = CollectorRegistry()
        inserts: list[str] = []

        def outage_after_first_insert(batch: Any) -> None:
            # In the loader's own thread, between two batches: the next insert meets a dead server.
            inserts.append(batch.token)
            if len(inserts) == 1:
                private.stop()

        loader = build_loader(cfg, registry, after_insert=outage_after_first_insert)
        observed: list[tuple[float, float, bool]] = []

        def value(name: str, **labels: str) -> float:
            return registry.get_sample_value(name, labels) or 0.0

        def retries() -> float:
            # Every table the loader writes: which batch meets the dead server first depends on the topic's order.
            return sum(value("gwtel_loader_insert_retries_total", table=t.name) for t in ALL_TABLES)

        def lag() -> float:
            return sum(
                m.value for fam in registry.collect() if fam.name == "gwtel_loader_consumer_lag" for m in fam.samples
            )

        restarting = threading.Lock()

        def sleep_then_recover(seconds: float) -> None:
            # The loader's own back-off sleep: after 5 failed attempts (0.1 + 0.2 + 0.4 + 0.8 + 1.0 s) the
            # server comes back, started from a loader thread. Two threads retry (the main one for aggregates,
            # the landing worker for flows): one of them starts the server, once.
            time.sleep(seconds)
            with restarting:
                if retries() >= 5 and not observed:
                    observed.append((value("gwtel_loader_clickhouse_up"), lag(), s.group_done(cfg)))
                    private.start()

        loader._sleep = sleep_then_recover
        stop = threading.Event()
        worker = threading.Thread(target=loader.run, args=(stop.is_set,), daemon=True)
        worker.start()
        try:
            s.wait_for(lambda: bool(observed), 90, "five insert retries while ClickHouse is down")
            s.wait_for(lambda: s.group_done(cfg), 120, "everything committed after ClickHouse came back", 0.5)
            s.wait_for(lambda: lag() == 0, 30, "the lag gauge back to zero")
        finally:
            stop.set()
            worker.join(30)
            loader.close()
        assert not worker.is_alive()
        [(up, lag_during, done)] = observed
        print(f"outage: {retries():.0f} insert retries, clickhouse_up={up} and lag={lag_during} during the outage")
        assert (up, done) == (0, False) and lag_during > 0
        assert value("gwtel_loader_clickhouse_up") == 1
        s.assert_totals_equal_truth(cfg, replayed.truth, replayed.records)
    finally:
        private.stop()


def test_loader_killed_between_insert_and_commit_stores_everything_once(replayed: Replayed, tmp_path: Path) -> None:
    cfg = s.with_loader(replayed.cfg, group_id=f"fault-crash-{s.new_tag()}", batch_rows=150)
    cfg = s.with_clickhouse(cfg, cfg.clickhouse.url, f"fault_crash_{s.new_tag()}")
    config = s.write_config(cfg, tmp_path / "config.yaml")
    try:
        crashed = s.run_gwtel(["load", "--metrics-port", "0"], config, 180, **{FAULT_ENV: LOADER_CRASH_AFTER_INSERT})
        assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr[-2000:]
        assert "Traceback" not in crashed.stderr
        # The first batch may come from any of the loader's topics (flows, aggregates, late flows). Flow batches
        # are inserted by a worker while the next is read, one in flight per partition, and the crash comes when
        # the first insert is settled: by then each flows partition may have one batch inserted, uncommitted.
        stored = sum(s.query(cfg, f"SELECT count() FROM DB.{t.name}")[0][0] for t in ALL_TABLES)
        at_most = 150 * (FLOW_PARTITIONS + 1)
        assert 0 < stored <= at_most, f"more than the batches in flight were inserted: {crashed.stderr[-1000:]}"
        assert not s.group_done(cfg)

        log = (tmp_path / "load.log").open("w")
        proc = subprocess.Popen(s.gwtel(["load", "--metrics-port", "0"], config), env=s.gwtel_env(),
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            s.wait_for(lambda: s.group_done(cfg), 180, "the restarted loader to commit everything", 0.5)
        finally:
            proc.terminate()
            rc = proc.wait(60)
            log.close()
        text = (tmp_path / "load.log").read_text()
        assert rc == 0 and "Traceback" not in text, text[-2000:]
        assert "re-forming announced batch" in text
        s.assert_totals_equal_truth(cfg, replayed.truth, replayed.records)
    finally:
        _drop(cfg)


def test_fault_switch_rejects_unknown_names(tmp_path: Path, kafka_config: GwtelConfig) -> None:
    config = s.write_config(kafka_config, tmp_path / "config.yaml")
    started = time.monotonic()
    out = s.run_gwtel(["load", "--metrics-port", "0"], config, 60, **{FAULT_ENV: "loader_crash_sometime"})
    assert out.returncode == 2 and "GWTEL_FAULT='loader_crash_sometime' is not a known fault" in out.stderr
    assert time.monotonic() - started < 60
