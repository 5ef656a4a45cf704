"""The job on a standalone Flink cluster: a TaskManager killed (SIGKILL) while the job runs at parallelism 2
(the job fails over from its last checkpoint onto the remaining slots), and a job stopped with a savepoint at
parallelism 1 and resumed from it at parallelism 2; in both every window is written exactly once.

The cluster (one JobManager, two TaskManagers of two slots, slots spread evenly so both run tasks) is the
test's own, on free ports. Truth: the aggregates computed in Python from the records (tests/integration/
flink_truth.py), read back from the aggregates topic with read_committed.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gwtel.config import GwtelConfig
from gwtel.services.flink import FlinkRuntime
from gwtel.services.flink_cluster import FlinkCluster
from processors.job import run_job
from tests.faults.support import wait_for
from tests.integration.flink_truth import LINKS, T0_S, expected_aggregates, flow_records, flush_records, produce
from tests.integration.test_flink_job import WINDOWS, committed_rows, job_config, make_topics
from tests.ports import free_port
from tests.services import flink_rest, running

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:httplib2.*"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, flink_runtime: FlinkRuntime) -> Iterator[FlinkCluster]:
    home = tmp_path_factory.mktemp("flink-2tm-home")
    svc = FlinkCluster(home, rest_port=free_port(), rpc_port=free_port(), slots=2, taskmanagers=2)
    with running(svc, "the standalone Flink cluster") as started:
        yield started


def rest(cluster: FlinkCluster, path: str, method: str = "GET") -> Any:
    return flink_rest(cluster.endpoint(), path, method)


def completed_checkpoints(cluster: FlinkCluster, jid: str) -> int:
    return int(rest(cluster, f"/jobs/{jid}/checkpoints")["counts"]["completed"])


def cancel(cluster: FlinkCluster, jobs: list[str]) -> None:
    for jid in jobs:
        with contextlib.suppress(OSError):
            rest(cluster, f"/jobs/{jid}?mode=cancel", method="PATCH")


class JobThread:
    """`run_job` in a thread (it blocks until the job ends); the job id once submitted, any error it ended with."""

    def __init__(self, cfg: GwtelConfig, restore_from: Path | None = None) -> None:
        self.started: list[str] = []
        self.failure: list[BaseException] = []

        def job() -> None:
            try:
                run_job(cfg, bounded=False, restore_from=restore_from,
                        on_start=lambda job_id, _port: self.started.append(job_id))  # fmt: skip
            except BaseException as exc:  # a cancel ends it with an error: kept for the report
                self.failure.append(exc)

        self.thread = threading.Thread(target=job, daemon=True)
        self.thread.start()

    def job_id(self) -> str:
        wait_for(lambda: bool(self.started) or bool(self.failure), 180, "the job submitted")
        assert not self.failure, self.failure
        return self.started[0]


def test_taskmanager_killed_mid_stream_every_window_exactly_once(
    cluster: FlinkCluster,
    kafka_bootstrap: str,
    kafka_config: GwtelConfig,
    kafka_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    assert len(cluster.taskmanager_pids()) == 2
    topics = make_topics(kafka_topic)
    remote = {
        **cluster.job_settings(),
        # The job's own default (2 attempts) is for the in-process MiniCluster; a cluster losing a
        # TaskManager may need a few tries before the scheduler has written off its slots.
        "restart-strategy.fixed-delay.attempts": "30",
        "restart-strategy.fixed-delay.delay": "2 s",
    }
    # A watermark bound of 2 s fires windows while the job runs; partitions never count as idle here.
    cfg = job_config(kafka_config, topics, tmp_path, parallelism=2, watermark_bound_ms=2000, idle_timeout_ms=600_000,
                     flink=remote)  # fmt: skip
    first = flow_records(seed=3, start_s=T0_S, seconds=120, per_link=40)
    second = flow_records(seed=4, start_s=T0_S + 120, seconds=120, per_link=40)
    truth = expected_aggregates(first + second, WINDOWS)
    produce(kafka_bootstrap, topics["flows"], first)

    job = JobThread(cfg)
    try:
        jid = job.job_id()
        wait_for(lambda: completed_checkpoints(cluster, jid) >= 1, 180, "a completed checkpoint")
        wait_for(lambda: sum(committed_rows(kafka_bootstrap, topics["aggregates"]).values()) > 0, 180,
                 "committed aggregates before the kill")  # fmt: skip
        before = sum(committed_rows(kafka_bootstrap, topics["aggregates"]).values())
        victim = cluster.kill_taskmanager()
        produce(kafka_bootstrap, topics["flows"], second + flush_records(T0_S + 3600))

        def complete() -> bool:
            return sum(committed_rows(kafka_bootstrap, topics["aggregates"]).values()) >= sum(truth.values())

        wait_for(complete, 300, "every window after the failover", interval_s=2.0)
        # Three more checkpoints: anything written twice would be committed by now.
        time.sleep(3 * cfg.job.checkpoint_interval_ms / 1000 + 2)
        got = committed_rows(kafka_bootstrap, topics["aggregates"])
        history = rest(cluster, f"/jobs/{jid}/exceptions")
        overview = rest(cluster, "/overview")
        state = rest(cluster, f"/jobs/{jid}")["state"]
        print(f"TaskManager {victim} killed with {before} of {sum(truth.values())} aggregates committed; "
              f"{overview['taskmanagers']} TaskManager(s) left; job state {state}")  # fmt: skip
        assert 0 < before < sum(truth.values())
        assert got == truth
        # It really failed over: the job records the lost TaskManager, and runs on.
        assert history["exceptionHistory"]["entries"], history
        assert state == "RUNNING"
    finally:
        cancel(cluster, job.started)
        job.thread.join(120)


def stop_with_savepoint(cluster: FlinkCluster, jid: str, target: Path) -> Path:
    """Flink's stop-with-savepoint over REST; the savepoint's folder once it completed."""
    body = json.dumps({"targetDirectory": target.as_uri(), "drain": False}).encode()
    req = urllib.request.Request(f"{cluster.endpoint()}/jobs/{jid}/stop", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        trigger = json.load(resp)["request-id"]
    status: dict[str, Any] = {}

    def done() -> bool:
        nonlocal status
        status = rest(cluster, f"/jobs/{jid}/savepoints/{trigger}")
        return bool(status["status"]["id"] == "COMPLETED")

    wait_for(done, 180, "the savepoint", interval_s=1.0)
    location = status["operation"].get("location")
    assert location, status
    return Path(location.removeprefix("file:"))


def test_savepoint_at_parallelism_1_resumed_at_2_keeps_every_window_exact(
    cluster: FlinkCluster,
    kafka_bootstrap: str,
    kafka_config: GwtelConfig,
    kafka_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    topics = make_topics(kafka_topic)
    remote = cluster.job_settings()
    cfg1 = job_config(kafka_config, topics, tmp_path, parallelism=1, watermark_bound_ms=2000, idle_timeout_ms=600_000,
                      flink=remote)  # fmt: skip
    cfg2 = cfg1.model_copy(update={"job": cfg1.job.model_copy(update={"parallelism": 2})})
    first = flow_records(seed=8, start_s=T0_S, seconds=120, per_link=40)
    second = flow_records(seed=9, start_s=T0_S + 120, seconds=120, per_link=40)
    truth = expected_aggregates(first + second, WINDOWS)

    def committed() -> int:
        return sum(committed_rows(kafka_bootstrap, topics["aggregates"]).values())

    produce(kafka_bootstrap, topics["flows"], first)
    one = JobThread(cfg1)
    jobs: list[str] = []
    try:
        jid = one.job_id()
        jobs.append(jid)
        wait_for(lambda: completed_checkpoints(cluster, jid) >= 1 and committed() > 0, 180,
                 "a checkpoint and committed aggregates at parallelism 1")  # fmt: skip
        savepoint = stop_with_savepoint(cluster, jid, tmp_path / "savepoints")
        one.thread.join(120)
        before = committed()
        assert rest(cluster, f"/jobs/{jid}")["state"] == "FINISHED"

        produce(kafka_bootstrap, topics["flows"], second + flush_records(T0_S + 3600))
        two = JobThread(cfg2, restore_from=savepoint)
        jid2 = two.job_id()
        jobs.append(jid2)
        wait_for(lambda: committed() >= sum(truth.values()), 300, "every window at parallelism 2", interval_s=2.0)
        time.sleep(3 * cfg2.job.checkpoint_interval_ms / 1000 + 2)
        got = committed_rows(kafka_bootstrap, topics["aggregates"])
        plan = rest(cluster, f"/jobs/{jid2}/plan")["plan"]["nodes"]
        print(f"savepoint {savepoint.name} at p1 with {before} of {sum(truth.values())} aggregates committed; "
              f"resumed at parallelism {max(n['parallelism'] for n in plan)}")  # fmt: skip
        assert 0 < before < sum(truth.values())
        assert max(n["parallelism"] for n in plan) == 2
        assert got == truth
    finally:
        cancel(cluster, jobs)


def test_an_idle_partition_at_parallelism_2_does_not_hold_windows_back(
    cluster: FlinkCluster,
    kafka_bootstrap: str,
    kafka_config: GwtelConfig,
    kafka_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    """Every record on partition 0, none ever on partition 1 (read by the other subtask): once partition 1 is
    idle for `job.idle_timeout_ms`, partition 0's watermark alone fires the windows."""
    topics = make_topics(kafka_topic)
    remote = cluster.job_settings()
    cfg = job_config(kafka_config, topics, tmp_path, parallelism=2, watermark_bound_ms=2000, idle_timeout_ms=2000,
                     flink=remote)  # fmt: skip
    busy = LINKS[0]
    records = [r for r in flow_records(seed=12, start_s=T0_S, seconds=120, per_link=60) if r.link_id == busy]
    truth = expected_aggregates(records, WINDOWS)
    produce(kafka_bootstrap, topics["flows"], records + [r for r in flush_records(T0_S + 3600) if r.link_id == busy])
    job = JobThread(cfg)
    try:
        job.job_id()
        wait_for(lambda: sum(committed_rows(kafka_bootstrap, topics["aggregates"]).values()) >= sum(truth.values()),
                 240, "the windows of the busy partition", interval_s=2.0)  # fmt: skip
        time.sleep(3 * cfg.job.checkpoint_interval_ms / 1000 + 2)
        assert committed_rows(kafka_bootstrap, topics["aggregates"]) == truth
    finally:
        cancel(cluster, job.started)
        job.thread.join(120)
