"""Grafana dashboards and provisioning: generated, up to date, and well-formed for the pinned Grafana version."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from gwtel.config import GwtelConfig
from gwtel.observability.generate import REPO_ROOT, artifacts, stale, write
from gwtel.observability.grafana import CLICKHOUSE_PLUGIN, SCHEMA_VERSION
from gwtel.observability.sqlmacros import MacroError, TimeRange, expand_promql, expand_sql

GRAFANA = REPO_ROOT / "deploy" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))


def provisioned() -> dict[str, str]:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "gwtel.yaml").read_text())
    return {d["uid"]: d["type"] for d in doc["datasources"]}


def panels_of(path: Path) -> list[dict[str, Any]]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return list(doc["panels"])


def test_committed_files_are_generated_from_the_default_config() -> None:
    assert stale(GwtelConfig()) == [], "run `gwtel observability` and commit the result"


def test_write_then_check_round_trip(tmp_path: Path) -> None:
    cfg = GwtelConfig()
    assert sorted(write(cfg, tmp_path)) == sorted(artifacts(cfg))
    assert stale(cfg, tmp_path) == []
    (tmp_path / "deploy/grafana/dashboards/pipeline-health.json").write_text("{}")
    assert stale(cfg, tmp_path) == ["deploy/grafana/dashboards/pipeline-health.json"]


def test_three_dashboards_with_fixed_uids() -> None:
    docs = [json.loads(p.read_text()) for p in DASHBOARD_FILES]
    assert [d["uid"] for d in docs] == ["gwtel-partner-bandwidth", "gwtel-partner-latency", "gwtel-pipeline-health"]
    assert all(d["schemaVersion"] == SCHEMA_VERSION for d in docs)


def test_datasources_provisioned_with_fixed_uids_and_http() -> None:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "gwtel.yaml").read_text())
    by_uid = {d["uid"]: d for d in doc["datasources"]}
    assert set(by_uid) == {"gwtel-prometheus", "gwtel-clickhouse"}
    ch = by_uid["gwtel-clickhouse"]
    assert ch["type"] == CLICKHOUSE_PLUGIN
    assert ch["jsonData"]["protocol"] == "http" and ch["jsonData"]["port"] == 8123
    assert ch["secureJsonData"]["password"] == "$GWTEL_CLICKHOUSE_PASSWORD"  # from Grafana's environment
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "gwtel.yaml").read_text())["providers"]
    assert providers[0]["type"] == "file"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_panels_are_well_formed(path: Path) -> None:
    panels = panels_of(path)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    uids = provisioned()
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        cell = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & cell, f"{p['title']} overlaps another panel"
        cells |= cell
        assert p["fieldConfig"]["defaults"]["unit"], f"{p['title']}: no unit"
        assert p["targets"], f"{p['title']}: no query"
        assert uids.get(p["datasource"]["uid"]) == p["datasource"]["type"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        for t in p["targets"]:
            assert uids.get(t["datasource"]["uid"]) == t["datasource"]["type"], p["title"]
            query = t.get("expr") or t.get("rawSql")
            assert query and query.strip(), f"{p['title']}: empty query"
            if t.get("queryType") == "timeseries":
                assert re.search(r"\bAS time\b", t["rawSql"]), f"{p['title']}: a time series needs a `time` column"


def test_slo_lines_come_from_the_configuration() -> None:
    panels = {p["title"]: p for p in panels_of(GRAFANA / "dashboards" / "partner-latency.json")}
    steps = panels["japan: p95 against its objectives"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 8, 60]  # partners.yaml: japan slo {trading: 60, vr: 8}


RANGE = TimeRange(datetime(2026, 1, 2, 3, 0, tzinfo=UTC), datetime(2026, 1, 2, 4, 0, tzinfo=UTC), 60)


def test_sql_macros_expand_like_the_plugin() -> None:
    sql = (
        "SELECT $__timeInterval(window_start) AS time FROM t WHERE $__timeFilter(window_start) "
        "AND partner IN (${partner:singlequote}) AND metric = '${metric}' AND x < $__interval_s "
        "AND ts BETWEEN $__fromTime AND $__toTime AND $__timeFilter_ms(ms)"
    )
    out = expand_sql(sql, RANGE, {"partner": ["japan", "korea"], "metric": ["hs_rtt_ext"]})
    assert out == (
        "SELECT toStartOfInterval(toDateTime(window_start), INTERVAL 60 second) AS time FROM t WHERE "
        "window_start >= toDateTime(1767322800) AND window_start <= toDateTime(1767326400) "
        "AND partner IN ('japan','korea') AND metric = 'hs_rtt_ext' AND x < 60 "
        "AND ts BETWEEN toDateTime(1767322800) AND toDateTime(1767326400) "
        "AND ms >= fromUnixTimestamp64Milli(1767322800000) AND ms <= fromUnixTimestamp64Milli(1767326400000)"
    )


@pytest.mark.parametrize("sql", ["SELECT $__unknownMacro(x)", "SELECT $nope", "SELECT $__timeFilter()"])
def test_unknown_macros_are_errors(sql: str) -> None:
    with pytest.raises(MacroError):
        expand_sql(sql, RANGE, {})


def test_promql_variables_use_regex_format() -> None:
    out = expand_promql(
        'rate(x{partner=~"$partner"}[$__rate_interval])',
        {"partner": ["japan", "belt_and_road"]},
        {"rate_interval": "1m"},
    )
    assert out == 'rate(x{partner=~"(japan|belt_and_road)"}[1m])'


def test_metrics_reference_lists_every_process_metric() -> None:
    from gwtel.observability.metrics_doc import describe, render_metrics_doc
    from processors.loader_metrics import LoaderMetrics

    registry = CollectorRegistry()
    LoaderMetrics(registry)
    docs = {m.name: m for m in describe(registry)}
    assert docs["gwtel_loader_rows_inserted_total"].labels == ("table",)
    assert docs["gwtel_loader_insert_seconds"].type == "histogram"
    text = render_metrics_doc()
    assert "| `gwtel_loader_flow_records_stored_total` | counter | - |" in text
    assert "| `gwtel_agent_packets_rejected_total` | counter | link, reason |" in text
    assert "| `gwtel_clickhouse_http_requests_total` | counter | kind, status |" in text
    assert all(name.startswith("gwtel_") for name in re.findall(r"^\| `(\w+)`", text, re.M))
