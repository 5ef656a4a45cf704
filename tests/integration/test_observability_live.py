"""Observability on the real services, sharing one pipeline run over a generated capture with known truth.

The delivery ledger balances stage by stage; every dashboard query runs (PromQL through the real Prometheus
HTTP API after the run, SQL with the ClickHouse plugin's macros expanded against the embedded ClickHouse) and
returns rows of the expected shape; every process's live scrape passes `promtool check metrics`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry

from gwtel.config import ClickHouseConfig, GwtelConfig
from gwtel.metrics_http import MetricsEndpoint, serve_metrics, target_path
from gwtel.observability.dashboards import DASHBOARDS
from gwtel.observability.sqlmacros import TimeRange, expand_promql, expand_sql
from gwtel.pipeline import PipelineResult, run_pipeline
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.flink import FlinkRuntime
from gwtel.services.kafka import KafkaService
from gwtel.services.prometheus import PrometheusService, find_tool, query
from ingest.synth import SynthConfig, generate
from processors.chclient import make_client
from processors.loader_setup import migrate
from schemas.aggregate import METRICS
from tests.integration.test_end_to_end import unique_config
from tests.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
# Series other components export (the agent's live per-partner metrics server, Flink's Prometheus reporter):
# their panels must parse and run here; they return rows once those processes are scraped.
EXTERNAL = re.compile(
    r"^(flink_.*|gwtel_agent_partner_\w+|gwtel_agent_records_produced_total|gwtel_agent_spool_bytes"
    r"|gwtel_agent_flows_exported_total)$"
)
PROMQL_BUILTINS = {"rate_interval": "1m", "interval": "15s", "range": "30m"}


@dataclass
class Observed:
    cfg: GwtelConfig
    truth: dict[str, Any]
    result: PipelineResult
    registry: CollectorRegistry
    endpoint: MetricsEndpoint
    prometheus: PrometheusService
    client: Any


@pytest.fixture(scope="module")
def observed(
    kafka_service: KafkaService,
    clickhouse_service: ClickHouseService,
    flink_runtime: FlinkRuntime,
    prometheus: PrometheusService,
    kafka_config: GwtelConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Observed]:
    tag = uuid.uuid4().hex[:10]
    cfg = unique_config(kafka_config, tag)
    cfg = cfg.model_copy(
        update={"clickhouse": ClickHouseConfig(url=clickhouse_service.endpoint(), database=f"obs_{tag}")}
    )
    kafka_service.ensure_topics(list(cfg.kafka.topics.model_dump().values()), partitions=2)
    migrate(cfg)
    d = tmp_path_factory.mktemp("obs")
    truth = generate(SynthConfig(seed=11, flows=300, duration_s=60), d / "known.pcap", d / "known.json")
    registry = CollectorRegistry()
    # Served while the pipeline runs, so Prometheus scrapes the ledger as it moves.
    endpoint = serve_metrics("gwtel_it_pipeline", f"obs-{tag}", 0, prometheus.home, registry)
    client = make_client(cfg.clickhouse)
    try:
        result = run_pipeline(cfg, d / "known.pcap", ledger_timeout_s=240, registry=registry)
        yield Observed(cfg, truth, result, registry, endpoint, prometheus, client)
    finally:
        endpoint.close()
        client.command(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")
        client.close()


def total(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Sum of a metric's samples (all label values, or those matching `labels`)."""
    out = 0.0
    for fam in registry.collect():
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                out += s.value
    return out


def count_topic(cfg: GwtelConfig, topic: str) -> int:
    """Committed records in a topic (the job writes transactions: markers take offsets, so count, not subtract)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=cfg.kafka.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        consumer_timeout_ms=3000,
        enable_auto_commit=False,
    )
    try:
        return sum(1 for _ in consumer)
    finally:
        consumer.close()


def test_ledger_balances_on_a_known_capture(observed: Observed) -> None:
    r, cfg = observed.registry, observed.cfg
    seen = total(r, "gwtel_agent_packets_seen_total")
    decoded = total(r, "gwtel_agent_packets_decoded_total")
    rejected = total(r, "gwtel_agent_packets_rejected_total")
    in_flows = total(r, "gwtel_loader_flow_packets_stored_total")
    # The agent's ledger name; older agents count the same records per end reason.
    produced_name = "gwtel_agent_records_produced_total"
    if not has_samples(r, produced_name):
        produced_name = "gwtel_agent_records_exported_total"
    produced = total(r, produced_name)
    consumed = total(r, "gwtel_loader_records_consumed_total", topic=cfg.kafka.topics.flows)
    dead = total(r, "gwtel_loader_dead_lettered_total")
    stored = total(r, "gwtel_loader_flow_records_stored_total")
    aggregated = total(r, "gwtel_loader_flows_aggregated_total")
    late = count_topic(cfg, cfg.kafka.topics.late)
    job_dead = count_topic(cfg, cfg.kafka.topics.dead_letter) - dead  # the loader's own dead letters share it

    assert seen == observed.truth["packets"] == observed.result.packets
    assert decoded == seen - rejected
    assert in_flows == decoded  # every decoded packet is in exactly one stored flow record
    assert produced == observed.result.records > 0
    assert consumed == produced
    assert stored == consumed - dead
    assert aggregated == stored - late - job_dead
    rows = observed.client.query(f"SELECT count() FROM {cfg.clickhouse.database}.flows_raw").result_rows[0][0]
    assert rows == stored == observed.result.rows_stored


def prom_value(observed: Observed, promql: str) -> float | None:
    res = query(observed.prometheus.endpoint(), promql)
    return float(res[0]["value"][1]) if len(res) == 1 else None


def wait_scraped(observed: Observed) -> None:
    """Until Prometheus holds the final ledger values of this run (and one more scrape after them)."""
    inst = observed.endpoint.instance
    want = total(observed.registry, "gwtel_loader_flow_records_stored_total")
    deadline = time.monotonic() + 60
    while prom_value(observed, f'gwtel_loader_flow_records_stored_total{{instance="{inst}"}}') != want:
        if time.monotonic() > deadline:
            pytest.fail(f"Prometheus did not scrape {observed.endpoint.url} within 60s")
        time.sleep(1)


def test_ledger_as_prometheus_sees_it(observed: Observed) -> None:
    wait_scraped(observed)
    inst = observed.endpoint.instance
    for name in (
        "gwtel_agent_packets_seen_total",
        "gwtel_agent_packets_decoded_total",
        "gwtel_loader_flow_packets_stored_total",
        "gwtel_loader_records_consumed_total",
        "gwtel_loader_flow_records_stored_total",
        "gwtel_loader_flows_aggregated_total",
    ):
        assert prom_value(observed, f'sum({name}{{instance="{inst}"}})') == total(observed.registry, name), name


def live(observed: Observed, name: str) -> bool:
    """An instant query of `name` (a histogram: its buckets) returns series now; stale series do not count."""
    return any(prom_value(observed, f"count({n})") for n in (name, f"{name}_bucket"))


def has_samples(registry: CollectorRegistry, name: str) -> bool:
    return any(s.name.startswith(name) for fam in registry.collect() for s in fam.samples)


def expected_labels(expr: str) -> set[str]:
    """Labels a panel's series carry: those of its outer `by (...)` (without `le`), none for a bare sum."""
    m = re.search(r"\b(?:sum|max|min|avg) by \(([^)]*)\)", expr)
    return set() if m is None else {x.strip() for x in m.group(1).split(",")} - {"le"}


def dashboard_targets(cfg: GwtelConfig, field: str) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for name, build in DASHBOARDS.items():
        for panel in build(cfg)["panels"]:
            out += [(name, panel["title"], t) for t in panel["targets"] if field in t]
    return out


def test_every_promql_panel_runs_on_the_real_prometheus(observed: Observed) -> None:
    wait_scraped(observed)
    # Rates over $__rate_interval need two samples in it: the loader's series may be younger than a minute.
    inst = observed.endpoint.instance
    deadline = time.monotonic() + 60
    while (prom_value(observed, f'count_over_time(gwtel_loader_clickhouse_up{{instance="{inst}"}}[1m])') or 0) < 3:
        assert time.monotonic() < deadline, "fewer than 3 scrapes of the pipeline's endpoint in a minute"
        time.sleep(1)
    partners = [*sorted(observed.cfg.partners.groups), observed.cfg.partners.fallback]
    checked = ran_only = 0
    for dash, title, target in dashboard_targets(observed.cfg, "expr"):
        expr = expand_promql(target["expr"], {"partner": partners}, PROMQL_BUILTINS)
        series = query(observed.prometheus.endpoint(), expr)  # raises on a query Prometheus rejects
        used = {re.sub(r"_(bucket|sum|count)$", "", n) for n in re.findall(r"\b((?:gwtel|flink)_\w+)", expr)}
        missing = {n for n in used if not live(observed, n)}
        if missing:
            # Exported by another component, or nothing to report in this run (no rejects, no lag measured
            # before the loader caught up): then the run's own registry holds no sample of it either.
            unexplained = {n for n in missing if not EXTERNAL.match(n) and has_samples(observed.registry, n)}
            assert not unexplained, f"{dash} / {title}: {unexplained} should have been scraped"
            ran_only += 1
            continue
        assert series, f"{dash} / {title}: no series for {expr}"
        want = expected_labels(expr)
        for s in series:
            got = set(s["metric"]) - {"__name__"}
            assert got == want, f"{dash} / {title}: labels {got}, expected {want}"
        checked += 1
    assert checked >= 10, (checked, ran_only)


def fixed_range(truth: dict[str, Any]) -> TimeRange:
    start = datetime.fromtimestamp(truth["start_ns"] // 10**9, UTC)
    end = datetime.fromtimestamp(truth["end_ns"] // 10**9, UTC)
    # Whole 5-minute buckets around the capture, so the rollup's bucket starts fall inside.
    start = start.replace(minute=start.minute - start.minute % 5, second=0) - timedelta(minutes=5)
    return TimeRange(start, end + timedelta(minutes=5), 60)


def test_every_sql_panel_runs_on_clickhouse(observed: Observed) -> None:
    rng = fixed_range(observed.truth)
    partners = [*sorted(observed.cfg.partners.groups), observed.cfg.partners.fallback]
    targets = dashboard_targets(observed.cfg, "rawSql")
    assert len(targets) >= 8
    for metric in ("hs_rtt_ext", METRICS[-1]):
        for dash, title, target in targets:
            sql = expand_sql(target["rawSql"], rng, {"partner": partners, "metric": [metric]})
            res = observed.client.query(sql)
            assert res.result_rows, f"{dash} / {title} ({metric}): no rows\n{sql}"
            cols = list(res.column_names)
            assert len(cols) == len(set(cols)) >= 2, (title, cols)
            if target["queryType"] == "timeseries":
                assert cols[0] == "time", (title, cols)
                times = [row[0] for row in res.result_rows]
                assert all(rng.start <= t.replace(tzinfo=UTC) <= rng.end for t in times), title
                assert times == sorted(times), f"{title}: time series must come sorted by time"
            for row in res.result_rows:
                assert None not in row, (title, row)


def promtool_check_metrics(body: bytes) -> None:
    assert body.strip()
    proc = subprocess.run(
        [str(find_tool("promtool")), "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()


def scrape(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
    return body


def test_promtool_accepts_the_agent_and_loader_scrape(observed: Observed) -> None:
    body = scrape(observed.endpoint.url)
    assert b"gwtel_agent_packets_seen_total" in body and b"gwtel_loader_flow_records_stored_total" in body
    promtool_check_metrics(body)


def test_promtool_accepts_the_clickhouse_server_scrape(clickhouse_service: ClickHouseService) -> None:
    body = scrape(clickhouse_service.metrics_url())
    assert b"gwtel_clickhouse_http_requests_total" in body
    promtool_check_metrics(body)


def test_gwtel_load_serves_metrics_and_announces_itself(observed: Observed, tmp_path: Path) -> None:
    """`gwtel load` as its own process: Prometheus discovers it, promtool accepts its scrape, exit withdraws it."""
    cfg = observed.cfg.model_copy(update={"loader": observed.cfg.loader.model_copy(update={"group_id": "obs-proc"})})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "GWTEL_HOME": str(observed.prometheus.home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gwtel.cli", "--config", str(path), "load", "--no-migrate", "--metrics-port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    target = target_path(observed.prometheus.home, "loader", f"{socket.gethostname()}-{proc.pid}")
    try:
        deadline = time.monotonic() + 60
        while not target.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "gwtel load announced no target"
            time.sleep(0.2)
        assert json.loads(target.read_text())[0]["targets"] == [f"127.0.0.1:{port}"]
        body = scrape(f"http://127.0.0.1:{port}/metrics")
        assert b"gwtel_loader_clickhouse_up 1.0" in body
        promtool_check_metrics(body)
        instance = urllib.parse.quote(f"{socket.gethostname()}-{proc.pid}")
        deadline = time.monotonic() + 30
        while prom_value(observed, f'up{{job="loader",instance="{urllib.parse.unquote(instance)}"}}') != 1.0:
            assert time.monotonic() < deadline, "Prometheus did not scrape gwtel load"
            time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == 0
    assert not target.exists()


def test_local_prometheus_loads_every_alert(prometheus: PrometheusService) -> None:
    """`gwtel up` (start, or reload when running) gives the local Prometheus the committed rules."""
    prometheus.start()
    with urllib.request.urlopen(f"{prometheus.endpoint()}/api/v1/rules?type=alert", timeout=10) as resp:
        groups = json.load(resp)["data"]["groups"]
    loaded = {(g["name"], r["name"]) for g in groups for r in g["rules"] if g["file"].endswith("gwtel.rules.yml")}
    doc = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "gwtel.rules.yml").read_text())
    assert loaded == {(g["name"], r["alert"]) for g in doc["groups"] for r in g["rules"]}
    assert all(r["health"] != "err" for g in groups for r in g["rules"]), groups  # "unknown" until evaluated
