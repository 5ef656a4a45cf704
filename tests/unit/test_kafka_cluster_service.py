"""`local.kafka_brokers: 3`: `gwtel up` builds the three-node cluster service, each node with its own ports,
folder and a properties file for one static quorum (the cluster itself runs in tests/faults/test_kafka_cluster.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gwtel.config import GwtelConfig
from gwtel.services import registry
from gwtel.services.kafka import KafkaService
from gwtel.services.kafka_cluster import KafkaCluster


def test_the_switch_picks_the_cluster_and_lays_out_its_nodes(tmp_path: Path) -> None:
    one = registry.build(GwtelConfig(), tmp_path)[0]
    assert type(one) is KafkaService
    cfg = GwtelConfig.model_validate(
        {"local": {"kafka_brokers": 3, "ports": {"kafka": 19092, "kafka_controller": 19093}}}
    )
    [kafka] = [s for s in registry.build(cfg, tmp_path) if s.name == "kafka"]
    assert isinstance(kafka, KafkaCluster)
    assert kafka.endpoint() == "127.0.0.1:19092,127.0.0.1:19102,127.0.0.1:19112"
    assert [n.dir.name for n in kafka.nodes] == ["kafka-1", "kafka-2", "kafka-3"]
    assert kafka.cfg.kafka.replication_factor == 3
    for i, node in enumerate(kafka.nodes):
        node.dir.mkdir(parents=True)
        node._render_properties()
        props = dict(
            line.split("=", 1)
            for line in node.properties_path.read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        assert props["node.id"] == str(i + 1)
        assert props["controller.quorum.voters"] == "1@127.0.0.1:19093,2@127.0.0.1:19103,3@127.0.0.1:19113"
        assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{19092 + 10 * i},CONTROLLER://127.0.0.1:{19093 + 10 * i}"
        assert (props["default.replication.factor"], props["min.insync.replicas"]) == ("3", "2")
        assert node.data_dir == tmp_path / f"kafka-{i + 1}" / "data"


def test_only_one_or_three_brokers() -> None:
    with pytest.raises(ValueError, match="kafka_brokers"):
        GwtelConfig.model_validate({"local": {"kafka_brokers": 2}})
