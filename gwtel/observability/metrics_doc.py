"""docs/metrics.md: every `gwtel_*` metric each long-running process exports, read from the collectors themselves.

Each process's collectors are instantiated (nothing is started or connected) and described: name as scraped,
type, labels, help. A metric added in code appears here when the file is regenerated, and the test of the
committed file fails until it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from gwtel.config import GwtelConfig


@dataclass(frozen=True)
class MetricDoc:
    name: str
    type: str
    labels: tuple[str, ...]
    help: str


def _agent_registry() -> CollectorRegistry:
    from ingest.agent import Agent
    from ingest.agent_metrics import AgentCollector, RingCollector
    from ingest.classify import PartnerClassifier

    cfg = GwtelConfig()
    registry = CollectorRegistry()
    registry.register(AgentCollector(Agent(cfg.agent, PartnerClassifier(cfg.partners), lambda _rec: None)))
    registry.register(RingCollector(cfg.agent.link_id, list))  # gwtel capture's rings
    return registry


def _loader_registry() -> CollectorRegistry:
    from processors.loader_metrics import LoaderMetrics

    registry = CollectorRegistry()
    LoaderMetrics(registry)
    return registry


def _clickhouse_registry() -> CollectorRegistry:
    from gwtel.chserver.metrics import ServerMetrics

    return ServerMetrics().registry


def _forecast_registry() -> CollectorRegistry:
    from processors.forecast_metrics import ForecastMetrics

    registry = CollectorRegistry()
    ForecastMetrics(registry)
    return registry


# (process, how it runs, where it serves, registry builder)
SOURCES: tuple[tuple[str, str, str, Callable[[], CollectorRegistry]], ...] = (
    ("agent", "`gwtel replay`, capture agents", "`agent.metrics_port`", _agent_registry),
    ("loader", "`gwtel load`", "`loader.metrics_port`", _loader_registry),
    (
        "embedded ClickHouse",
        "`gwtel up` (`python -m gwtel.chserver`)",
        "`local.ports.clickhouse_metrics`",
        _clickhouse_registry,
    ),
    ("capacity forecast", "`gwtel forecast --serve`", "`--metrics-port` (9479)", _forecast_registry),
)


def _collectors(registry: CollectorRegistry) -> Iterable[Collector]:
    # The registry keeps no public list of its collectors; its mapping is the only complete one.
    return list(registry._collector_to_names)


def describe(registry: CollectorRegistry) -> list[MetricDoc]:
    out: dict[str, MetricDoc] = {}
    for collector in _collectors(registry):
        if isinstance(collector, MetricWrapperBase):
            name = collector._name + ("_total" if collector._type == "counter" else "")
            kind = collector._type or "unknown"
            out[name] = MetricDoc(name, kind, tuple(collector._labelnames), collector._documentation)
            continue
        for fam in collector.collect():
            labels: list[str] = list(getattr(fam, "_labelnames", ()))
            for s in fam.samples:
                labels += [k for k in s.labels if k not in labels and k not in ("le", "quantile")]
            name = fam.name + ("_total" if fam.type == "counter" else "")
            out[name] = MetricDoc(name, fam.type or "unknown", tuple(labels), fam.documentation)
    return sorted(out.values(), key=lambda m: m.name)


def render_metrics_doc(_cfg: GwtelConfig | None = None) -> str:
    lines = [
        "# Metrics reference",
        "",
        "Generated from the collectors by `gwtel observability` (gwtel/observability/metrics_doc.py): do not edit.",
        "Every process also exports the client library's `process_*` and `python_*` series where it runs in its",
        "own process. Counters are scraped with the `_total` suffix; histograms as `_bucket`, `_sum`, `_count`.",
        "How the stages add up, and the alerts and dashboards that read them: [observability.md](observability.md).",
    ]
    for process, runs, port, build in SOURCES:
        lines += ["", f"## {process}", "", f"Exported by {runs}; port: {port}.", ""]
        lines += ["| metric | type | labels | meaning |", "|---|---|---|---|"]
        for m in describe(build()):
            labels = ", ".join(m.labels) or "-"
            lines.append(f"| `{m.name}` | {m.type} | {labels} | {m.help.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
