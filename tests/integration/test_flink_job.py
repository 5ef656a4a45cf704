"""The aggregation job itself (processors.job) on the real broker and MiniCluster.

- Bounded runs at parallelism 1 and 2 over a 2-partition topic write exactly the aggregates computed in
  Python from the hand-built records (tests/integration/flink_truth.py), read back with read_committed.
- A second bounded run with the same group continues where the first stopped (group offsets).
- An unbounded `gwtel aggregate` process is killed (SIGKILL) after a completed checkpoint with part of the
  windows committed; `gwtel aggregate --from-checkpoint latest` resumes it, and the topic then holds every
  window exactly once: the same multiset as the failure-free truth.
- While it runs, Flink's own metrics reach the real Prometheus through the announced target.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from gwtel.config import GwtelConfig
from gwtel.metrics_http import target_path
from gwtel.services import prometheus as prom
from gwtel.services.base import wait_until
from gwtel.services.flink import FlinkRuntime
from gwtel.services.kafka import KafkaService
from gwtel.services.prometheus import PrometheusService
from processors import checkpoints, job_metrics
from processors.flink_env import REPORTER_EXCLUDED_LABELS
from processors.job import run_job
from schemas import codec
from tests.integration.flink_truth import (
    FLUSH_PARTNER,
    LINKS,
    T0_S,
    AggRow,
    as_rows,
    expected_aggregates,
    flow_records,
    flush_records,
    produce,
)
from tests.integration.test_flink_kafka import read_committed
from tests.records import sample_flow

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:httplib2.*"),
]

WINDOWS = (10, 60)
REPO = Path(__file__).resolve().parents[2]


def job_config(base: GwtelConfig, topics: dict[str, str], tmp: Path, **job: Any) -> GwtelConfig:
    """The base configuration with this test's topics, group, transactional ids and checkpoint folder."""
    tag = uuid.uuid4().hex[:8]
    data = base.model_dump(mode="json")
    data["kafka"]["topics"] = topics
    data["job"].update(
        {
            "group_id": f"test-agg-{tag}",
            "transactional_id_prefix": f"test-agg-{tag}",
            "checkpoint_dir": str(tmp / "checkpoints"),
            "checkpoint_interval_ms": 1000,
            "metrics_port": 0,
            "window_sizes_s": list(WINDOWS),
            **job,
        }
    )
    return GwtelConfig.model_validate(data)


def make_topics(kafka_topic: Callable[..., str]) -> dict[str, str]:
    return {
        "flows": kafka_topic("job-flows", partitions=2),
        "aggregates": kafka_topic("job-agg", partitions=1),
        "late": kafka_topic("job-late", partitions=1),
        "dead_letter": kafka_topic("job-dead", partitions=1),
    }


def committed_rows(bootstrap: str, topic: str) -> Counter[AggRow]:
    return as_rows(read_committed(bootstrap, topic)[0])


@dataclass
class BoundedRuns:
    truth: Counter[AggRow]
    by_parallelism: dict[int, Counter[AggRow]]
    late: dict[int, int]
    rerun_truth: Counter[AggRow]
    rerun: Counter[AggRow]
    # the group's committed offsets after the first runs, and the topic's end offsets then (partition -> offset)
    group_offsets: dict[int, int | None]
    end_offsets: dict[int, int]
    # the same for the validation side path's group


@pytest.fixture(scope="module")
def new_topic(kafka_service: KafkaService) -> Callable[..., str]:
    """`kafka_topic` for module fixtures: a uniquely named topic per call."""

    def make(stem: str, partitions: int = 1) -> str:
        name = f"test.{stem}.{uuid.uuid4().hex[:12]}"
        kafka_service.ensure_topics([name], partitions=partitions)
        return name

    return make


@pytest.fixture(scope="module")
def bounded_runs(
    flink_runtime: FlinkRuntime,
    kafka_bootstrap: str,
    kafka_config: GwtelConfig,
    new_topic: Callable[..., str],
    tmp_path_factory: pytest.TempPathFactory,
) -> BoundedRuns:
    kafka_topic = new_topic
    records = flow_records(seed=1, start_s=T0_S, seconds=150, per_link=60)
    flows_topic = kafka_topic("job-flows", partitions=2)
    produce(kafka_bootstrap, flows_topic, records)
    by_p: dict[int, Counter[AggRow]] = {}
    late: dict[int, int] = {}
    cfg = kafka_config
    for p in (1, 2):
        topics = {**make_topics(kafka_topic), "flows": flows_topic}
        # No partition counts as idle here (see docs/processors.md, "idle partitions"): the result depends on the
        # data only.
        cfg = job_config(kafka_config, topics, tmp_path_factory.mktemp(f"p{p}"), parallelism=p, idle_timeout_ms=600_000)
        run_job(cfg, bounded=True)
        by_p[p] = committed_rows(kafka_bootstrap, topics["aggregates"])
        late[p] = len(read_committed(kafka_bootstrap, topics["late"])[0])
    # The last run's group again, after more records arrived: only the new ones are aggregated.
    # A bounded run commits its stopping offsets itself before run_job returns: no wait here.
    group_offsets, end_offsets = group_position(kafka_bootstrap, cfg.job.group_id, flows_topic)
    more = flow_records(seed=2, start_s=T0_S + 600, seconds=30, per_link=10)
    produce(kafka_bootstrap, flows_topic, more)
    rerun_topic = kafka_topic("job-rerun", partitions=1)
    data = cfg.model_dump(mode="json")
    data["kafka"]["topics"]["aggregates"] = rerun_topic
    run_job(GwtelConfig.model_validate(data), bounded=True)
    return BoundedRuns(
        truth=expected_aggregates(records, WINDOWS),
        by_parallelism=by_p,
        late=late,
        rerun_truth=expected_aggregates(more, WINDOWS),
        rerun=committed_rows(kafka_bootstrap, rerun_topic),
        group_offsets=group_offsets,
        end_offsets=end_offsets,
    )


def group_position(bootstrap: str, group_id: str, topic: str) -> tuple[dict[int, int | None], dict[int, int]]:
    """The group's committed offset and the end offset of each partition of ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        end = consumer.end_offsets(parts)
        return {tp.partition: consumer.committed(tp) for tp in parts}, {tp.partition: end[tp] for tp in parts}
    finally:
        consumer.close()


@pytest.mark.parametrize("parallelism", [1, 2])
def test_bounded_run_writes_exactly_the_hand_computed_aggregates(bounded_runs: BoundedRuns, parallelism: int) -> None:
    got = bounded_runs.by_parallelism[parallelism]
    assert got == bounded_runs.truth
    assert {dict(r)["kind"] for r in got} == {"bandwidth", "latency", "latency_bucket"}
    assert bounded_runs.late[parallelism] == 0  # each partition is in time order: nothing is late


def test_parallelism_one_and_two_agree(bounded_runs: BoundedRuns) -> None:
    assert bounded_runs.by_parallelism[1] == bounded_runs.by_parallelism[2]


def test_rerun_with_the_same_group_continues_where_the_last_stopped(bounded_runs: BoundedRuns) -> None:
    # A bounded run commits its group's offsets before it returns.
    assert bounded_runs.group_offsets == bounded_runs.end_offsets
    got, want = bounded_runs.rerun, bounded_runs.rerun_truth
    assert got == want, f"extra rows: {list(got - want)[:5]}; missing rows: {list(want - got)[:5]}"


def test_windows_with_many_distinct_hosts_run_at_parallelism_two_within_three_percent(
    flink_runtime: FlinkRuntime,
    kafka_bootstrap: str,
    kafka_config: GwtelConfig,
    new_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    # A 10 s window of one link with 150k distinct IPv6 remote hosts, each on both sides of its flow: one
    # busy partner at the target's rate. Rows that carried a window's addresses on to the 1 min window
    # (300k addresses in one row here) did not fit Flink's window buffer at parallelism 2: the job failed.
    # Beyond 2048 hosts the count is a HyperLogLog estimate (processors/java/gwtel/udf/HostSketch.java):
    # relative standard error 0.8%, so 3% is more than three of them.
    hosts = 150_000
    link = LINKS[0]
    records = [
        sample_flow(link_id=link, partner="many_hosts", seq=i, ip_version=6, src_ip="2001:db8:ffff::1",
                    dst_ip=f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}:5efe:c000:221:{i % 7:x}",
                    first_ns=T0_S * 10**9, last_ns=(T0_S + 1) * 10**9 + i * 40_000)
        for i in range(hosts)
    ]  # fmt: skip
    topics = make_topics(new_topic)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=20, batch_size=1 << 20)
    try:
        for rec in records:
            producer.send(topics["flows"], value=codec.encode(rec), partition=0)
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=10)
    run_job(job_config(kafka_config, topics, tmp_path, parallelism=2, idle_timeout_ms=600_000), bounded=True)
    rows = [json.loads(v) for v in read_committed(kafka_bootstrap, topics["aggregates"])[0]]
    got = {(r["window_s"], r["link_id"], r["direction"]): r for r in rows if r["kind"] == "bandwidth"}
    # every flow is egress; its responder's side is ingress, with the same remote host and no flow of its own
    flows = {"egress": hosts, "ingress": 0}
    assert set(got) == {(w, link, d) for w in WINDOWS for d in flows}
    for (_, _, direction), row in got.items():
        assert row["flows"] == flows[direction]
        assert abs(row["remote_hosts"] - hosts) <= 0.03 * hosts, row


# -- restart from a checkpoint after the process is killed -----------------------------------------------


def start_aggregate(cfg: GwtelConfig, folder: Path, name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    """`gwtel aggregate` in its own process group (the JVM is its child), output to `<folder>/<name>.log`."""
    cfg_path = folder / "gwtel.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    log_path = folder / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gwtel.cli", "--config", str(cfg_path), "aggregate", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            start_new_session=True,
        )
    return proc, log_path


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command and its JVM (same process group): a crash, nothing cleaned up or committed."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    def ok() -> bool:
        if proc.poll() is not None:
            pytest.fail(
                f"gwtel aggregate exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-3000:]}"
            )
        return check()

    if not wait_until(ok, timeout_s, interval_s=1.0):
        pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}; log:\n{log.read_text()[-3000:]}")


def metrics_port_of(log: Path) -> int:
    m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", log.read_text())
    assert m, f"no metrics line in {log}"
    return int(m.group(1))


# Metrics operators watch (docs/processors.md); each must be scraped from the running job.
WATCHED = (
    "flink_taskmanager_job_task_operator_numRecordsInPerSecond",
    "flink_taskmanager_job_task_operator_numRecordsOutPerSecond",
    "flink_taskmanager_job_task_operator_KafkaSourceReader_KafkaConsumer_records_lag_max",
    "flink_taskmanager_job_task_operator_pendingRecords",
    "flink_taskmanager_job_task_operator_currentOutputWatermark",
    "flink_taskmanager_job_task_operator_numLateRecordsDropped",
    "flink_jobmanager_job_lastCheckpointDuration",
    "flink_jobmanager_job_numberOfCompletedCheckpoints",
    "flink_jobmanager_job_numberOfFailedCheckpoints",
    "flink_jobmanager_job_uptime",
    "flink_jobmanager_job_numRestarts",
)


def withdraw_target(home: Path, log: Path) -> None:
    """A killed job cannot remove its Prometheus target file: remove it for it."""
    m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", log.read_text())
    if m:
        job_metrics.withdraw(target_path(home, job_metrics.METRICS_JOB, f"127.0.0.1:{m.group(1)}"))


@dataclass
class ResumedRun:
    truth: Counter[AggRow]
    committed_before_kill: int
    checkpoint: Path
    final: Counter[AggRow]
    late: int
    metric_names: set[str]
    metric_labels: set[str]
    completed_checkpoints: float
    announced: bool
    stop_code: int | None
    withdrawn: bool
    kept: list[Path]


@pytest.fixture(scope="module")
def resumed_run(
    flink_runtime: FlinkRuntime,
    kafka_bootstrap: str,
    kafka_config: GwtelConfig,
    new_topic: Callable[..., str],
    prometheus: PrometheusService,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ResumedRun]:
    folder = tmp_path_factory.mktemp("resume")
    topics = {**make_topics(new_topic)}
    # A watermark bound of 2 s fires windows while the job runs; partitions never count as idle here, so
    # which windows fire depends on the data only.
    cfg = job_config(kafka_config, topics, folder, watermark_bound_ms=2000, idle_timeout_ms=600_000)
    first = flow_records(seed=3, start_s=T0_S, seconds=120, per_link=40)
    second = flow_records(seed=4, start_s=T0_S + 120, seconds=120, per_link=40)
    truth = expected_aggregates(first + second, WINDOWS)
    chk_root = Path(cfg.job.checkpoint_dir)

    def committed() -> Counter[AggRow]:
        return committed_rows(kafka_bootstrap, topics["aggregates"])

    produce(kafka_bootstrap, topics["flows"], first)
    proc, log = start_aggregate(cfg, folder, "first")
    try:
        wait_for(
            lambda: bool(checkpoints.completed_checkpoints(chk_root)) and sum(committed().values()) > 0,
            240, "a completed checkpoint with committed aggregates", proc, log,
        )  # fmt: skip
    finally:
        kill_group(proc)  # the failure: SIGKILL, no chance to clean up or commit
        withdraw_target(prometheus.home, log)
    before = sum(committed().values())
    produce(kafka_bootstrap, topics["flows"], second + flush_records(T0_S + 3600))
    checkpoint = checkpoints.latest_checkpoint(chk_root)
    proc, log = start_aggregate(cfg, folder, "resumed", "--from-checkpoint", "latest")
    try:
        wait_for(lambda: sum(committed().values()) >= sum(truth.values()), 240, "every window", proc, log)
        port = metrics_port_of(log)
        instance = f'instance="127.0.0.1:{port}"'
        names: set[str] = set()
        labels: set[str] = set()
        completed = 0.0

        def scraped() -> bool:
            nonlocal names, completed
            series = prom.query(prometheus.endpoint(), f"{{{instance}}}")
            names = {s["metric"]["__name__"] for s in series}
            labels.update(key for s in series for key in s["metric"])
            done = prom.query(prometheus.endpoint(), f"flink_jobmanager_job_numberOfCompletedCheckpoints{{{instance}}}")
            completed = max((float(s["value"][1]) for s in done), default=0.0)
            return set(WATCHED) <= names and completed > 0

        wait_for(scraped, 90, "the job's metrics in Prometheus", proc, log)
        (folder / "metric-names.txt").write_text("\n".join(sorted(names)) + "\n", encoding="utf-8")
        # Three more checkpoints: anything written twice would be committed by now.
        time.sleep(3 * cfg.job.checkpoint_interval_ms / 1000)
        target = target_path(prometheus.home, job_metrics.METRICS_JOB, f"127.0.0.1:{port}")
        announced = target.is_file()
        # Ctrl-C: the command cancels the job, keeps its last checkpoint and removes its target.
        proc.send_signal(signal.SIGINT)
        try:
            stop_code: int | None = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            stop_code = None
        withdrawn = not target.exists()
    finally:
        kill_group(proc)
        withdraw_target(prometheus.home, log)
    yield ResumedRun(
        truth=truth,
        committed_before_kill=before,
        checkpoint=checkpoint,
        final=committed(),
        late=len(read_committed(kafka_bootstrap, topics["late"])[0]),
        metric_names=names,
        metric_labels=labels,
        completed_checkpoints=completed,
        announced=announced,
        stop_code=stop_code,
        withdrawn=withdrawn,
        kept=checkpoints.completed_checkpoints(chk_root),
    )


def test_killed_job_resumes_from_its_checkpoint_with_every_window_exactly_once(resumed_run: ResumedRun) -> None:
    run = resumed_run
    # The failure came mid-stream: some windows were committed, most were not.
    assert 0 < run.committed_before_kill < sum(run.truth.values())
    assert (run.checkpoint / "_metadata").is_file()
    assert run.final == run.truth  # as a multiset: no window missing, none twice
    assert not [r for r in run.final if dict(r)["partner"] == FLUSH_PARTNER]
    assert run.late == 0


def test_running_job_metrics_reach_prometheus(resumed_run: ResumedRun) -> None:
    assert set(WATCHED) <= resumed_run.metric_names
    # Series are told apart by operator and subtask, without the chain's long name or the attempt's id.
    assert {"operator_name", "task_id", "subtask_index"} <= resumed_run.metric_labels
    assert not set(REPORTER_EXCLUDED_LABELS) & resumed_run.metric_labels
    assert resumed_run.completed_checkpoints >= 1


def test_interrupted_job_cancels_keeps_its_checkpoint_and_withdraws_its_target(resumed_run: ResumedRun) -> None:
    run = resumed_run
    assert run.announced
    assert run.stop_code == 130  # `gwtel aggregate: interrupted`, within the timeout
    assert run.withdrawn
    # the resumed job's own newest checkpoint is retained after the cancel, next to the crashed one's
    assert run.kept and run.kept[-1].parent != run.checkpoint.parent
