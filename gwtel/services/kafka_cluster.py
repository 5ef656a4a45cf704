"""A local three-node Apache Kafka cluster (KRaft), started by `gwtel up` when `local.kafka_brokers` is 3.

Each node is a broker and a controller with its own folder (`<GWTEL_HOME>/kafka-N/`), log and ports: node N
(0-based) listens on `local.ports.kafka + 10 N` and its controller on `local.ports.kafka_controller + 10 N`.
The three controllers form a static quorum over one cluster id, written when the first node is formatted.
Topics get replication factor 3 and `min.insync.replicas` 2 (deploy/local/kafka/cluster.properties.tmpl):
with one node down the others keep every acknowledged record and keep taking writes.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

from gwtel.config import GwtelConfig
from gwtel.errors import ServiceError
from gwtel.services.base import Health, port_open
from gwtel.services.kafka import _DEPLOY, _START_TIMEOUT_S, HOST, KafkaService, new_cluster_id

PORT_STEP = 10
CLUSTER_TEMPLATE = _DEPLOY / "cluster.properties.tmpl"


def node_ports(cfg: GwtelConfig, index: int) -> tuple[int, int]:
    """(broker port, controller port) of node `index`."""
    ports = cfg.local.ports
    return ports.kafka + PORT_STEP * index, ports.kafka_controller + PORT_STEP * index


class KafkaNode(KafkaService):
    """One node of the cluster: a KafkaService with its own ports and folder, formatted for the quorum."""

    def __init__(self, cfg: GwtelConfig, home: Path, index: int, nodes: int) -> None:
        self.name = f"kafka-{index + 1}"
        super().__init__(cfg, home)
        self.index = index
        self.port, self.controller_port = node_ports(cfg, index)
        self.voters = ",".join(f"{i + 1}@{HOST}:{node_ports(cfg, i)[1]}" for i in range(nodes))
        self.cluster_id_path = home / "kafka-cluster.id"

    def _render_properties(self) -> None:
        text = Template(CLUSTER_TEMPLATE.read_text(encoding="utf-8")).substitute(
            node_id=self.index + 1,
            voters=self.voters,
            port=self.port,
            controller_port=self.controller_port,
            data_dir=str(self.data_dir),
            partitions=self.cfg.kafka.partitions,
        )
        self.properties_path.write_text(text, encoding="utf-8")

    def _shared_cluster_id(self) -> str:
        if not self.cluster_id_path.exists():
            self.cluster_id_path.write_text(new_cluster_id(), encoding="utf-8")
        return self.cluster_id_path.read_text(encoding="utf-8").strip()

    def _format_ids(self) -> list[str]:
        # Every node formatted with the one cluster id; the static quorum comes from controller.quorum.voters.
        return ["--cluster-id", self._shared_cluster_id()]

    def launch(self) -> None:
        """Start the process without waiting: a lone first node has no quorum to become healthy with."""
        if port_open(HOST, self.port) or port_open(HOST, self.controller_port):
            raise ServiceError(
                f"{self.name}: port {self.port} or {self.controller_port} on {HOST} is already in use; "
                "set local.ports.kafka / local.ports.kafka_controller (each node adds 10 per node)"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._render_properties()
        self._format_storage()
        self.spawn(self._java("kafka.Kafka", str(self.properties_path)), cwd=self.dir)

    def _start(self) -> None:
        # One node (re)started alone joins the two that still hold the quorum.
        self.launch()
        self.wait_healthy(_START_TIMEOUT_S)


class KafkaCluster:
    """The nodes as one local service (`gwtel up/down/status` see a single `kafka`)."""

    name = "kafka"

    def __init__(self, cfg: GwtelConfig, home: Path) -> None:
        count = cfg.local.kafka_brokers
        kafka = cfg.kafka.model_copy(update={"replication_factor": count})
        self.cfg = cfg.model_copy(update={"kafka": kafka})
        self.nodes = [KafkaNode(self.cfg, home, i, count) for i in range(count)]

    def endpoint(self) -> str:
        return ",".join(n.endpoint() for n in self.nodes)

    def running(self) -> bool:
        return any(n.running() for n in self.nodes)

    def start(self) -> None:
        if all(n.running() for n in self.nodes) and self.health().ok:
            return
        self.nodes[0].fetch()  # the jars are shared by the nodes
        for node in self.nodes:
            if node.running() and not node.health().ok:
                node.stop()
            if not node.running():
                node.launch()
        for node in self.nodes:
            node.wait_healthy(_START_TIMEOUT_S)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def health(self) -> Health:
        for node in self.nodes:
            h = node.health()
            if not h.ok:
                return Health(False, f"{node.name}: {h.detail}")
        with self.nodes[0].admin(timeout_ms=3000) as admin:
            brokers = admin.describe_cluster().get("brokers") or []
        if len(brokers) != len(self.nodes):
            return Health(False, f"{len(brokers)} of {len(self.nodes)} brokers registered")
        return Health(True, f"{len(self.nodes)} KRaft nodes at {self.endpoint()}")

    def ensure_topics(self, topics: list[str] | None = None, partitions: int | None = None) -> dict[str, int]:
        """Create missing topics with one replica per node (min.insync.replicas 2 comes from the nodes)."""
        return self.nodes[0].ensure_topics(topics, partitions)
