"""The metrics endpoint and its file_sd target file: shape, placement, atomic writes, withdrawal on close."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from gwtel.errors import UserError
from gwtel.metrics_http import (
    MetricsEndpoint,
    serve_metrics,
    target_groups,
    target_path,
    write_target_file,
)


@pytest.fixture
def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Counter("gwtel_unit_events", "Events seen by the unit test.", registry=reg).inc(3)
    return reg


@pytest.fixture
def endpoint(tmp_path: Path, registry: CollectorRegistry) -> Iterator[MetricsEndpoint]:
    ep = serve_metrics("agent", "qd-1", 0, tmp_path, registry)
    yield ep
    ep.close()


def assert_file_sd_shape(doc: Any) -> None:
    """What Prometheus' file discovery accepts: a list of groups of string targets and string labels."""
    assert isinstance(doc, list) and doc
    for group in doc:
        assert set(group) == {"targets", "labels"}
        assert isinstance(group["targets"], list) and group["targets"]
        for target in group["targets"]:
            host, _, port = target.rpartition(":")
            assert host and port.isdigit() and 0 < int(port) < 65536
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in group["labels"].items())
        # Names starting with __ are reserved for Prometheus and dropped after relabelling.
        assert not any(k.startswith("__") for k in group["labels"])


def test_target_groups_shape_and_labels() -> None:
    doc = target_groups("127.0.0.1:9481", "loader", "ld-2", "processors")
    assert_file_sd_shape(doc)
    assert doc == [
        {
            "targets": ["127.0.0.1:9481"],
            "labels": {"job": "loader", "instance": "ld-2", "gwtel_component": "processors"},
        }
    ]


def test_serve_metrics_writes_target_file_with_real_port(endpoint: MetricsEndpoint, tmp_path: Path) -> None:
    path = tmp_path / "prometheus" / "targets" / "agent-qd-1.json"
    assert endpoint.target_file == path
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert_file_sd_shape(doc)
    assert endpoint.port != 0
    assert doc[0]["targets"] == [f"127.0.0.1:{endpoint.port}"]
    assert doc[0]["labels"] == {"job": "agent", "instance": "qd-1", "gwtel_component": "agent"}


def test_endpoint_serves_the_registry(endpoint: MetricsEndpoint) -> None:
    with urllib.request.urlopen(endpoint.url, timeout=5) as resp:
        body = resp.read().decode()
    assert "gwtel_unit_events_total 3.0" in body.splitlines()


def test_close_removes_target_file_and_stops_server(endpoint: MetricsEndpoint) -> None:
    assert endpoint.target_file is not None
    path = endpoint.target_file
    assert path.exists()
    endpoint.close()
    assert not path.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", endpoint.port), timeout=1).close()
    endpoint.close()  # a second close is harmless


def test_component_label_and_unsafe_names(tmp_path: Path, registry: CollectorRegistry) -> None:
    with serve_metrics("flink", "job/1:a", 0, tmp_path, registry, component="processors") as ep:
        assert ep.target_file == tmp_path / "prometheus" / "targets" / "flink-job_1_a.json"
        labels = json.loads(ep.target_file.read_text())[0]["labels"]
    # The file name is sanitised; the label keeps the name the process gave.
    assert labels == {"job": "flink", "instance": "job/1:a", "gwtel_component": "processors"}
    assert not target_path(tmp_path, "flink", "job/1:a").exists()


def test_write_target_file_replaces_and_leaves_no_temporaries(tmp_path: Path) -> None:
    path = target_path(tmp_path, "agent", "qd-9")
    write_target_file(path, target_groups("127.0.0.1:9482", "agent", "qd-9", "agent"))
    write_target_file(path, target_groups("127.0.0.1:9483", "agent", "qd-9", "agent"))
    assert [p.name for p in path.parent.iterdir()] == ["agent-qd-9.json"]
    assert json.loads(path.read_text())[0]["targets"] == ["127.0.0.1:9483"]


def test_no_home_serves_without_announcing(tmp_path: Path, registry: CollectorRegistry) -> None:
    with serve_metrics("agent", "qd-3", 0, None, registry) as ep:
        assert ep.target_file is None
        with urllib.request.urlopen(ep.url, timeout=5) as resp:
            assert resp.status == 200
    assert not (tmp_path / "prometheus").exists()


def test_unwritable_home_still_serves(tmp_path: Path, registry: CollectorRegistry) -> None:
    not_a_dir = tmp_path / "home-is-a-file"
    not_a_dir.write_text("x")
    with serve_metrics("agent", "qd-4", 0, not_a_dir, registry) as ep:
        assert ep.target_file is None
        with urllib.request.urlopen(ep.url, timeout=5) as resp:
            assert b"gwtel_unit_events_total" in resp.read()


def test_port_in_use_is_a_user_error(endpoint: MetricsEndpoint, registry: CollectorRegistry) -> None:
    with pytest.raises(UserError, match=f"127.0.0.1:{endpoint.port}"):
        serve_metrics("agent", "qd-5", endpoint.port, None, registry)


def test_empty_names_rejected(registry: CollectorRegistry) -> None:
    with pytest.raises(UserError, match="job and an instance"):
        serve_metrics("", "qd-6", 0, None, registry)
