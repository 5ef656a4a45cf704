"""Grafana JSON building blocks for one pinned Grafana version, and the provisioning files.

Targets Grafana 11.2 (dashboard schemaVersion 39) with the grafana-clickhouse-datasource plugin 4.x over the
ClickHouse HTTP interface. Datasources have fixed uids, so dashboards imported into any Grafana find them once
the provisioning file (or datasources with the same uids) is in place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from gwtel.config import GwtelConfig

GRAFANA_VERSION = "11.2.0"
SCHEMA_VERSION = 39
CLICKHOUSE_PLUGIN = "grafana-clickhouse-datasource"
CLICKHOUSE_PLUGIN_VERSION = "4.5.0"
PROMETHEUS_UID = "gwtel-prometheus"
CLICKHOUSE_UID = "gwtel-clickhouse"
PROMETHEUS_DS = {"type": "prometheus", "uid": PROMETHEUS_UID}
CLICKHOUSE_DS = {"type": CLICKHOUSE_PLUGIN, "uid": CLICKHOUSE_UID}
# The plugin's query formats (its `Format` enum) and query types.
CH_FORMAT_TIMESERIES = 0
CH_FORMAT_TABLE = 1


@dataclass(frozen=True)
class Target:
    """One query of a panel: PromQL (`expr`) or ClickHouse SQL (`sql`), never both."""

    expr: str = ""
    sql: str = ""
    legend: str = ""
    instant: bool = False
    table: bool = False  # SQL returned as a table instead of time series

    def as_json(self, ref: str) -> dict[str, Any]:
        if self.sql:
            return {
                "datasource": CLICKHOUSE_DS,
                "editorType": "sql",
                "format": CH_FORMAT_TABLE if self.table else CH_FORMAT_TIMESERIES,
                "pluginVersion": CLICKHOUSE_PLUGIN_VERSION,
                "queryType": "table" if self.table else "timeseries",
                "rawSql": self.sql.strip(),
                "refId": ref,
            }
        return {
            "datasource": PROMETHEUS_DS,
            "editorMode": "code",
            "expr": self.expr,
            "instant": self.instant,
            "legendFormat": self.legend or "__auto",
            "range": not self.instant,
            "refId": ref,
        }


@dataclass
class Panel:
    title: str
    kind: str  # timeseries, stat, bargauge, table, heatmap
    targets: list[Target]
    unit: str
    w: int = 12
    h: int = 8
    description: str = ""
    thresholds: list[tuple[float, str]] = field(default_factory=list)  # (value, color); lines on time series
    options: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)

    def datasource(self) -> dict[str, str]:
        kinds = {bool(t.sql) for t in self.targets}
        if len(kinds) != 1:
            raise ValueError(f"panel {self.title!r} mixes PromQL and SQL targets")
        return CLICKHOUSE_DS if kinds.pop() else PROMETHEUS_DS

    def as_json(self, pid: int, x: int, y: int) -> dict[str, Any]:
        steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
        steps += [{"color": color, "value": value} for value, color in self.thresholds]
        custom = dict(self.custom)
        if self.thresholds and self.kind == "timeseries":
            custom["thresholdsStyle"] = {"mode": "line+area" if len(self.thresholds) == 1 else "line"}
        return {
            "id": pid,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": self.datasource(),
            "gridPos": {"x": x, "y": y, "w": self.w, "h": self.h},
            "targets": [t.as_json(chr(ord("A") + i)) for i, t in enumerate(self.targets)],
            "fieldConfig": {
                "defaults": {
                    "unit": self.unit,
                    "custom": custom,
                    "thresholds": {"mode": "absolute", "steps": steps},
                },
                "overrides": [],
            },
            "options": self.options,
        }


def layout(panels: list[Panel]) -> list[dict[str, Any]]:
    """Left to right in rows of 24 columns; ids 1, 2, ... in reading order."""
    out = []
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        if x + p.w > 24:
            x, y, row_h = 0, y + row_h, 0
        out.append(p.as_json(i, x, y))
        x += p.w
        row_h = max(row_h, p.h)
    return out


def custom_variable(name: str, label: str, values: list[str], *, multi: bool) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "custom",
        "query": ",".join(values),
        "multi": multi,
        "includeAll": multi,
        "current": {
            "selected": True,
            "text": ["All"] if multi else values[0],
            "value": ["$__all"] if multi else values[0],
        },
        "options": [],
        "hide": 0,
    }


def dashboard(
    uid: str, title: str, description: str, panels: list[Panel], variables: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["gwtel"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["gwtel"], "title": "gwtel", "asDropdown": True}],
        "panels": layout(panels),
    }


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def datasources_provisioning(cfg: GwtelConfig) -> str:
    """Both datasources with their fixed uids; the ClickHouse password comes from Grafana's environment."""
    ch = urlsplit(cfg.clickhouse.url)
    doc = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "gwtel Prometheus",
                "uid": PROMETHEUS_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": cfg.prometheus.url,
                "jsonData": {"timeInterval": "5s"},
                "editable": False,
            },
            {
                "name": "gwtel ClickHouse",
                "uid": CLICKHOUSE_UID,
                "type": CLICKHOUSE_PLUGIN,
                "jsonData": {
                    "protocol": "http",
                    "host": ch.hostname,
                    "port": ch.port or (443 if ch.scheme == "https" else 8123),
                    "secure": ch.scheme == "https",
                    # Dashboards only read: the read-only user when one is configured.
                    "username": cfg.clickhouse.read_user or cfg.clickhouse.user,
                    "defaultDatabase": cfg.clickhouse.read_database(),
                },
                # Grafana expands $VAR from its own environment when it reads this file.
                "secureJsonData": {"password": f"${_grafana_password_env(cfg)}"},
                "editable": False,
            },
        ],
    }
    head = "# Generated by `gwtel observability` (gwtel/observability/grafana.py). Grafana >= 11.2, plugin 4.x.\n"
    return head + yaml.safe_dump(doc, sort_keys=False)


def dashboards_provisioning() -> str:
    doc = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "gwtel",
                "folder": "gwtel",
                "type": "file",
                "disableDeletion": False,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                # Copy deploy/grafana/dashboards/ here, or point this at the checkout.
                "options": {"path": "/var/lib/grafana/dashboards/gwtel", "foldersFromFilesStructure": False},
            }
        ],
    }
    head = "# Generated by `gwtel observability` (gwtel/observability/grafana.py).\n"
    return head + yaml.safe_dump(doc, sort_keys=False)


def _grafana_password_env(cfg: GwtelConfig) -> str:
    ch = cfg.clickhouse
    return ch.read_password_env if ch.read_user is not None else ch.password_env
