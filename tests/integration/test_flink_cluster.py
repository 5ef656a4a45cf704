"""The same job submitted to a Flink session cluster over REST (`job.flink`), not run in process.

A standalone cluster (one JobManager, one TaskManager, from the distribution inside PyFlink) starts on free
loopback ports; a bounded run at parallelism 2 submitted to it writes exactly the aggregates computed in
Python from the records, the cluster reports the job finished, and its checkpoints went to the configured
folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gwtel.config import GwtelConfig
from gwtel.services.flink import FlinkRuntime
from gwtel.services.flink_cluster import FlinkCluster
from processors.job import run_job
from tests.integration.flink_truth import T0_S, expected_aggregates, flow_records, produce
from tests.integration.test_flink_job import WINDOWS, committed_rows, job_config, make_topics
from tests.ports import free_port
from tests.services import flink_rest, running

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:httplib2.*"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, flink_runtime: FlinkRuntime) -> Iterator[FlinkCluster]:
    home = tmp_path_factory.mktemp("flink-cluster-home")
    svc = FlinkCluster(home, rest_port=free_port(), rpc_port=free_port(), slots=2)
    with running(svc, "the standalone Flink cluster") as started:
        yield started


def rest(cluster: FlinkCluster, path: str) -> Any:
    return flink_rest(cluster.endpoint(), path)


def test_bounded_job_on_the_cluster_writes_the_python_aggregates(
    cluster: FlinkCluster,
    kafka_bootstrap: str,
    kafka_config: GwtelConfig,
    kafka_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    records = flow_records(seed=5, start_s=T0_S, seconds=90, per_link=40)
    topics = make_topics(kafka_topic)
    produce(kafka_bootstrap, topics["flows"], records)
    remote = cluster.job_settings()
    cfg = job_config(kafka_config, topics, tmp_path, parallelism=2, idle_timeout_ms=600_000, flink=remote)
    started: list[str] = []
    run_job(cfg, bounded=True, on_start=lambda job_id, _port: started.append(job_id))
    assert committed_rows(kafka_bootstrap, topics["aggregates"]) == expected_aggregates(records, WINDOWS)
    # It ran on the cluster, not in this process, and its checkpoints are where the configuration says.
    assert len(started) == 1
    assert {(j["jid"], j["state"]) for j in rest(cluster, "/jobs/overview")["jobs"]} >= {(started[0], "FINISHED")}
    stats = rest(cluster, f"/jobs/{started[0]}/checkpoints")
    assert stats["counts"]["completed"] >= 1
    assert str(tmp_path / "checkpoints" / started[0]) in stats["latest"]["completed"]["external_path"]
