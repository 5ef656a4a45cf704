"""The local three-node KRaft cluster (`local.kafka_brokers: 3`): replication factor 3, min.insync.replicas 2,
and a node killed with SIGKILL mid-stream: every acknowledged record kept exactly once, producers and consumers
carry on while it is down, and it rejoins every partition's in-sync set when restarted.

The cluster is the test's own (a temporary home, free ports, the session home's jars), so killing a node
disturbs nobody. Truth: the (agent id, seq) range the test produced.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from gwtel.config import GwtelConfig
from gwtel.services.base import port_open
from gwtel.services.kafka_cluster import PORT_STEP, KafkaCluster, KafkaNode
from ingest.producer import FlowProducer
from tests.faults import support as s
from tests.ports import free_port
from tests.records import sample_flow
from tests.services import running

pytestmark = [pytest.mark.integration, pytest.mark.slow, *(pytest.mark.filterwarnings(w) for w in s.KAFKA_WARNINGS)]

NODES = 3
RECORDS = 20_000
KILL_AT, RESTART_AT = 5_000, 12_000


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports() -> tuple[int, int]:
    """Base broker and controller ports whose every node's pair (base + 10 N) is free."""
    for _ in range(200):
        broker, controller = free_port(), free_port()
        wanted = [p + PORT_STEP * i for p in (broker, controller) for i in range(NODES)]
        if len(set(wanted)) == len(wanted) and all(p < 65536 and _free(p) for p in wanted):
            return broker, controller
    raise AssertionError("no free ports for a three-node cluster")


@pytest.fixture(scope="module")
def cluster(kafka_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    home = tmp_path_factory.mktemp("kafka-cluster-home")
    (home / "lib").symlink_to(kafka_home / "lib", target_is_directory=True)
    broker, controller = cluster_ports()
    cfg = GwtelConfig.model_validate(
        {"local": {"kafka_brokers": NODES, "ports": {"kafka": broker, "kafka_controller": controller}}}
    )
    with running(KafkaCluster(cfg, home), "the test's own Kafka cluster") as svc:
        yield svc


def described(cluster: KafkaCluster, topic: str, count: int) -> list[dict[str, Any]]:
    """The topic's partitions once the metadata has all `count` of them with a leader (a new topic reaches
    the nodes one after the other)."""
    found: list[dict[str, Any]] = []

    def ready() -> bool:
        nonlocal found
        found = partitions(cluster, topic)
        return len(found) == count and all(p["leader_id"] >= 0 for p in found)

    s.wait_for(ready, 60, f"the metadata of {topic}", interval_s=0.5)
    return found


def partitions(svc: KafkaCluster, topic: str) -> list[dict[str, Any]]:
    with svc.nodes[-1].admin() as admin:
        [described] = admin.describe_topics([topic])
    return sorted(described["partitions"], key=lambda p: p["partition_index"])


def restart(node: KafkaNode, timeout_s: float = 120.0) -> None:
    """Start a killed node again once its ports are released (a JVM killed with SIGKILL may hold them briefly)."""
    deadline = time.monotonic() + timeout_s
    while port_open("127.0.0.1", node.port) or port_open("127.0.0.1", node.controller_port):
        assert time.monotonic() < deadline, f"{node.name}'s ports stayed taken"
        time.sleep(0.5)
    node.start()


def test_topics_have_three_replicas_and_need_two_in_sync(cluster: KafkaCluster) -> None:
    assert cluster.health().ok, cluster.health().detail
    topic = f"test.cluster.rf.{s.new_tag()}"
    cluster.ensure_topics([topic], partitions=3)
    for p in described(cluster, topic, 3):
        assert len(p["replica_nodes"]) == NODES and sorted(p["isr_nodes"]) == sorted(p["replica_nodes"]), p
    with cluster.nodes[0].admin() as admin:
        got = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    min_isr = got["topic"][topic]["min.insync.replicas"]
    assert (min_isr["value"] if isinstance(min_isr, dict) else min_isr) == "2", min_isr


def test_a_node_killed_mid_stream_loses_nothing_and_rejoins(cluster: KafkaCluster, tmp_path: Path) -> None:
    topic = f"test.cluster.flows.{s.new_tag()}"
    cluster.ensure_topics([topic], partitions=2)
    # The node that leads partition 0: killing it forces a leader election in the middle of the stream.
    leader = described(cluster, topic, 2)[0]["leader_id"]
    victim = cluster.nodes[leader - 1]
    producer = FlowProducer(cluster.endpoint(), topic, spool_dir=tmp_path / "spool", spool_max_bytes=256 << 20,
                            spill_after_s=5.0, linger_ms=5)  # fmt: skip
    agent = "cluster-agent"
    acked_at_kill = acked_at_restart = 0
    killed_at = down_s = 0.0
    read_while_down = 0
    for seq in range(RECORDS):
        producer.send(sample_flow(agent_id=agent, seq=seq))
        if seq == KILL_AT:
            s.wait_for(lambda: producer.acked >= KILL_AT // 2, 60, "records acknowledged before the kill")
            acked_at_kill = producer.acked
            killed_at = time.monotonic()
            victim.kill()
            assert not victim.running()
        elif seq == RESTART_AT:
            # Two nodes hold every partition: acknowledgements go on, and consumers read, while one is down.
            s.wait_for(lambda: producer.acked >= RESTART_AT - 1000, 120, "acknowledgements with a node down")
            acked_at_restart = producer.acked
            down_s = time.monotonic() - killed_at
            read_while_down = len(s.topic_records(cluster.endpoint(), topic))
            restart(victim)
    s.wait_for(lambda: producer.acked == RECORDS, 180, f"all {RECORDS} records acknowledged ({producer.acked})")
    s.wait_for(lambda: producer.spool_pending == 0 and not producer.spooling, 60, "the spool to drain")
    producer.close(30)
    while_down = acked_at_restart - acked_at_kill
    print(f"node {victim.name} killed: acked {acked_at_kill} before, {while_down} in {down_s:.1f} s down "
          f"(read {read_while_down}), spooled {producer.spooled}, send errors {producer.send_errors}")  # fmt: skip
    assert (producer.produced, producer.acked, producer.dropped) == (RECORDS, RECORDS, 0)
    assert while_down > 5_000
    assert read_while_down >= acked_at_restart

    # The killed node catches up and is back in every partition's in-sync set.
    s.wait_for(
        lambda: all(len(p["isr_nodes"]) == NODES for p in partitions(cluster, topic)), 120, f"{victim.name} in sync"
    )
    assert cluster.health().ok
    s.assert_exactly_once(s.topic_records(cluster.endpoint(), topic), agent, range(RECORDS))
