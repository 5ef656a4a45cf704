"""The real local Prometheus: discovery of endpoints started after it, scraped values, promtool checks."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry, Counter

from gwtel.config import load_config
from gwtel.errors import ServiceError
from gwtel.metrics_http import MetricsEndpoint, serve_metrics
from gwtel.services.prometheus import PrometheusService, active_targets, find_tool, query

pytestmark = pytest.mark.integration

JOB = "gwtel_test"
WAIT_S = 30.0
T = TypeVar("T")


def poll(fetch: Callable[[], T], done: Callable[[T], bool], what: str, timeout_s: float = WAIT_S) -> T:
    """Call `fetch` until `done` holds; fail with the last observation after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = fetch()
        if done(seen):
            return seen
        if time.monotonic() >= deadline:
            pytest.fail(f"{what} not reached within {timeout_s:.0f}s; last seen: {seen!r:.2000}")
        time.sleep(0.5)


@dataclass
class Live:
    endpoint: MetricsEndpoint
    events: Counter


@pytest.fixture
def live(prometheus: PrometheusService, metrics_port: int) -> Iterator[Live]:
    """A metrics endpoint started while Prometheus is already running, with a unique instance name."""
    assert prometheus.health().ok
    registry = CollectorRegistry()
    events = Counter("gwtel_test_events", "Events counted by the integration test.", registry=registry)
    instance = f"it-{uuid.uuid4().hex[:8]}"
    endpoint = serve_metrics(JOB, instance, metrics_port, prometheus.home, registry)
    yield Live(endpoint, events)
    endpoint.close()


def targets_of(prometheus: PrometheusService, instance: str) -> list[dict[str, Any]]:
    return [t for t in active_targets(prometheus.endpoint()) if t["labels"].get("instance") == instance]


def counter_value(prometheus: PrometheusService, instance: str) -> float | None:
    result = query(prometheus.endpoint(), f'gwtel_test_events_total{{job="{JOB}",instance="{instance}"}}')
    return float(result[0]["value"][1]) if len(result) == 1 else None


def scrape(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
    return body


def test_endpoint_started_later_is_discovered_and_scraped(prometheus: PrometheusService, live: Live) -> None:
    instance = live.endpoint.instance
    live.events.inc(42)

    targets = poll(
        lambda: targets_of(prometheus, instance),
        lambda ts: len(ts) == 1 and ts[0]["health"] == "up",
        f"target {instance} up",
    )
    assert targets[0]["labels"] == {"job": JOB, "instance": instance, "gwtel_component": JOB}
    assert targets[0]["scrapeUrl"] == live.endpoint.url

    poll(lambda: counter_value(prometheus, instance), lambda v: v == 42.0, "counter value 42")
    # Later increments arrive too: Prometheus keeps scraping the discovered endpoint.
    live.events.inc(8)
    poll(lambda: counter_value(prometheus, instance), lambda v: v == 50.0, "counter value 50")


@pytest.mark.parametrize("own_registry", [True, False], ids=["test-registry", "process-registry"])
def test_promtool_check_metrics_on_live_scrape(
    prometheus: PrometheusService, metrics_port: int, own_registry: bool
) -> None:
    # The process-wide registry is what real processes serve (process_*, python_gc_*, python_info).
    registry = CollectorRegistry() if own_registry else None
    if registry is not None:
        Counter("gwtel_test_events", "Events counted by the integration test.", registry=registry).inc(5)
    with serve_metrics(JOB, f"lint-{uuid.uuid4().hex[:8]}", metrics_port, prometheus.home, registry) as ep:
        body = scrape(ep.url)
    assert body.strip()
    if own_registry:
        assert b"gwtel_test_events_total 5.0" in body
    argv = [str(find_tool("promtool")), "check", "metrics"]
    proc = subprocess.run(argv, input=body, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()


def test_generated_config_passes_promtool_and_is_loaded(prometheus: PrometheusService) -> None:
    proc = subprocess.run(
        [str(find_tool("promtool")), "check", "config", str(prometheus.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout

    # The running server uses that file: its loaded config discovers from our targets folder.
    with urllib.request.urlopen(f"{prometheus.endpoint()}/api/v1/status/config", timeout=5) as resp:
        loaded = json.load(resp)["data"]["yaml"]
    assert str(prometheus.targets_dir / "*.json") in loaded
    assert "deploy/prometheus/*.rules.yml" in loaded
    assert "scrape_interval: 5s" in loaded


def test_close_removes_target_file_and_target(prometheus: PrometheusService, live: Live) -> None:
    instance = live.endpoint.instance
    path = live.endpoint.target_file
    assert path is not None and path.parent == prometheus.targets_dir
    assert json.loads(path.read_text())[0]["labels"]["instance"] == instance
    poll(lambda: targets_of(prometheus, instance), lambda ts: len(ts) == 1, f"target {instance} discovered")

    live.endpoint.close()

    assert not path.exists()
    poll(lambda: targets_of(prometheus, instance), lambda ts: ts == [], f"target {instance} dropped")


def runtime_info(prometheus: PrometheusService) -> dict[str, Any]:
    with urllib.request.urlopen(f"{prometheus.endpoint()}/api/v1/status/runtimeinfo", timeout=5) as resp:
        info: dict[str, Any] = json.load(resp)["data"]
    return info


def test_start_when_running_reloads_without_restart(prometheus: PrometheusService) -> None:
    pid = prometheus.pid()
    before = runtime_info(prometheus)
    time.sleep(1.1)  # lastConfigTime has one-second resolution
    prometheus.start()
    after = runtime_info(prometheus)
    assert prometheus.pid() == pid
    assert after["startTime"] == before["startTime"]
    assert after["reloadConfigSuccess"] is True
    assert after["lastConfigTime"] > before["lastConfigTime"]


def test_rule_files_glob_is_checked(tmp_path: Path) -> None:
    cfg = load_config()
    svc = PrometheusService(cfg, tmp_path)
    rules = tmp_path / "rules"
    svc.rules_glob = rules / "*.rules.yml"

    svc.write_config()
    assert "SUCCESS" in svc.check_config()  # no rule files yet: the glob matches nothing, still valid

    rules.mkdir()
    (rules / "ok.rules.yml").write_text(
        "groups:\n  - name: t\n    rules:\n      - record: gwtel:test_events:rate1m\n"
        "        expr: rate(gwtel_test_events_total[1m])\n"
    )
    assert "1 rules found" in svc.check_config()

    (rules / "broken.rules.yml").write_text(
        "groups:\n  - name: b\n    rules:\n      - alert: Broken\n        expr: rate(\n"
    )
    with pytest.raises(ServiceError, match=r"broken\.rules\.yml"):
        svc.check_config()
