"""Prometheus alerting rules, generated from the configuration (partner SLOs and contracted capacities).

Agent series (`gwtel_agent_*`) are the gateway's live view; `flink_*` series are the names Flink's own
Prometheus reporter gives the job's metrics; `gwtel_loader_*` come from `gwtel load`. Thresholds that the
configuration holds (`partners.groups.<name>.slo`, `.capacity_bps`) are written into the rules as numbers, so
a changed contract means regenerating the file (`gwtel observability`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from gwtel.config import GwtelConfig

# Bandwidth above this share of the contracted capacity, sustained, warns before the link saturates.
CAPACITY_FRACTION = 0.8
RULES_FILE = "gwtel.rules.yml"
# `gwtel forecast --serve`: warn this many months before the trend of the monthly 95th percentile reaches the
# contract (an upgrade of a submarine-cable interconnect is ordered months ahead).
FORECAST_WARN_MONTHS = 6
FORECAST_STALE_S = 3 * 3600  # the exporter recomputes hourly by default


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    # Constant labels; a generated rule per partner names it, so rules of two partners never look alike.
    labels: tuple[tuple[str, str], ...] = ()

    def as_rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, **dict(self.labels)},
            "annotations": {"summary": self.summary, "description": self.description},
        }


def _num(value: float) -> str:
    """A PromQL number without float noise: 0.008, 320000000000."""
    return f"{value:.12g}" if value != int(value) else str(int(value))


def partner_alerts(cfg: GwtelConfig) -> list[Alert]:
    """One latency alert per partner and application class with an objective, on that class's own flows (the
    agents' histogram has an `app_class` label); one capacity alert per contract."""
    out: list[Alert] = []
    for partner, group in sorted(cfg.partners.groups.items()):
        for app_class, ms in sorted(group.slo.items()):
            out.append(
                Alert(
                    "GwtelPartnerLatencySLOBreach",
                    "histogram_quantile(0.95, sum by (partner, app_class, le) "
                    "(rate(gwtel_agent_partner_handshake_rtt_seconds_bucket"
                    f'{{partner="{partner}",app_class="{app_class}"}}[5m]))) > {_num(ms / 1000)}',
                    "5m",
                    "critical",
                    f"{partner}: {app_class} p95 handshake RTT above its objective of {_num(ms)} ms",
                    f"The 95th percentile of the TCP handshake round trip of {app_class} flows to {partner} has been "
                    f"above {_num(ms)} ms for 5 minutes (objective partners.groups.{partner}.slo.{app_class}; "
                    "classes: docs/classes.md).",
                    (("partner", partner), ("app_class", app_class), ("slo_ms", _num(ms))),
                )
            )
        if group.capacity_bps:
            limit = CAPACITY_FRACTION * group.capacity_bps
            out.append(
                Alert(
                    "GwtelPartnerBandwidthNearCapacity",
                    f'sum by (partner, direction) (rate(gwtel_agent_partner_bytes_total{{partner="{partner}"}}[5m])) '
                    f"* 8 > {_num(limit)}",
                    "10m",
                    "warning",
                    f"{partner} {{{{ $labels.direction }}}}: bandwidth above {_num(CAPACITY_FRACTION * 100)}% "
                    "of the contracted capacity",
                    f"Traffic {{{{ $labels.direction }}}} with {partner} has been above {_num(limit / 1e9)} Gbit/s "
                    f"({_num(CAPACITY_FRACTION * 100)}% of partners.groups.{partner}.capacity_bps = "
                    f"{_num(group.capacity_bps / 1e9)} Gbit/s) for 10 minutes.",
                    (("partner", partner),),
                )
            )
    return out


def forecast_alerts() -> list[Alert]:
    """On the `gwtel_forecast_*` gauges (processors.forecast_metrics): capacity running out, and a stale forecast."""
    return [
        Alert(
            "GwtelPartnerCapacityForecast",
            "min by (partner, direction) (gwtel_forecast_capacity_months_left) < " + str(FORECAST_WARN_MONTHS),
            "2h",
            "warning",
            "{{ $labels.partner }} {{ $labels.direction }}: contracted capacity reached within "
            f"{FORECAST_WARN_MONTHS} months at the current growth",
            "The trend of the monthly 95th percentile {{ $labels.direction }} reaches "
            'partners.groups.{{ $labels.partner }}.capacity_bps in {{ printf "%.1f" $value }} months '
            "(gwtel forecast, docs/partners.md): plan the upgrade.",
        ),
        Alert(
            "GwtelForecastStale",
            f"time() - max(gwtel_forecast_last_success_timestamp_seconds) > {FORECAST_STALE_S}",
            "10m",
            "warning",
            "the capacity forecast has not been computed for hours",
            "gwtel forecast --serve has not read ClickHouse successfully for "
            f"{FORECAST_STALE_S // 3600} hours: its months-left figures are old (see its log).",
        ),
    ]


def pipeline_alerts(cfg: GwtelConfig) -> list[Alert]:
    """Alerts on the pipeline itself: capture, spool, lag, checkpoints, stalls, dead letters, targets."""
    return [
        Alert(
            "GwtelPartnerTrafficStopped",
            "sum by (partner) (increase(gwtel_agent_partner_bytes_total[10m])) == 0\n"
            "and on (partner) sum by (partner) (increase(gwtel_agent_partner_bytes_total[1d])) > 0",
            "5m",
            "critical",
            "{{ $labels.partner }}: traffic dropped to zero",
            "No bytes to or from {{ $labels.partner }} for 15 minutes, after traffic earlier in the day: "
            "a link, a route or the agent's classification changed.",
        ),
        Alert(
            "GwtelCaptureKernelDrops",
            "sum by (instance, link) (increase(gwtel_agent_kernel_drops_total[5m])) > 0",
            "2m",
            "warning",
            "{{ $labels.link }}: the capture socket drops packets in the kernel",
            "The agent {{ $labels.instance }} lost packets on link {{ $labels.link }} before reading them: "
            "bandwidth and latency of that link are undercounted. Give the agent more CPU or a larger ring.",
        ),
        Alert(
            "GwtelAgentSpoolGrowing",
            "gwtel_agent_spool_bytes > 0 and deriv(gwtel_agent_spool_bytes[10m]) > 0",
            "10m",
            "warning",
            "{{ $labels.instance }}: the agent's disk spool keeps growing",
            "Kafka does not take the agent's records fast enough (or at all); they wait on disk, and are lost "
            "when the spool is full. Check the brokers and the agent's network.",
        ),
        Alert(
            "GwtelLoaderLagGrowing",
            "sum by (instance, topic) (gwtel_loader_consumer_lag) > 0\n"
            "and sum by (instance, topic) (deriv(gwtel_loader_consumer_lag[10m])) > 0",
            "10m",
            "warning",
            "{{ $labels.topic }}: the loader falls behind",
            "The loader {{ $labels.instance }} has been consuming {{ $labels.topic }} slower than it is written "
            "for 10 minutes: ClickHouse is slow or the loader is short of CPU.",
        ),
        Alert(
            "GwtelJobLagGrowing",
            "max by (job_name) (flink_taskmanager_job_task_operator_KafkaSourceReader_KafkaConsumer_records_lag_max)"
            " > 0\nand max by (job_name) "
            "(deriv(flink_taskmanager_job_task_operator_KafkaSourceReader_KafkaConsumer_records_lag_max[10m])) > 0",
            "10m",
            "warning",
            "{{ $labels.job_name }}: the aggregation job falls behind the flows topic",
            "The Flink job's Kafka source lag has grown for 10 minutes (Flink's metric "
            "KafkaSourceReader.KafkaConsumer.records-lag-max).",
        ),
        Alert(
            "GwtelCheckpointFailures",
            "increase(flink_jobmanager_job_numberOfFailedCheckpoints[10m]) > 0",
            "1m",
            "critical",
            "{{ $labels.job_name }}: checkpoints fail",
            "The Flink job failed checkpoints in the last 10 minutes: its exactly-once Kafka transactions commit "
            "only on checkpoints, so aggregates stop reaching the loader until checkpoints succeed.",
        ),
        Alert(
            "GwtelLateRecordsDropped",
            "sum by (job_name) (increase(flink_taskmanager_job_task_operator_numLateRecordsDropped[10m])) > 0",
            "1m",
            "critical",
            "{{ $labels.job_name }}: window operators dropped late records",
            "Flink dropped records behind the window operators' watermark (numLateRecordsDropped): they are in "
            "no window and not on the late topic. At parallelism above 1 a partition that paused longer than "
            "job.idle_timeout_ms and resumed does this; raise job.idle_timeout_ms (docs/processors.md).",
        ),
        Alert(
            "GwtelPipelineStalled",
            "sum(rate(gwtel_agent_records_produced_total[10m])) > 0\n"
            "unless sum(rate(gwtel_loader_flow_records_stored_total[10m])) > 0",
            "10m",
            "critical",
            "records are produced but no rows are stored",
            "Agents produce flow records, but no loader has stored any in ClickHouse for 10 minutes. "
            "The Pipeline health dashboard's ledger shows the stage where they stop.",
        ),
        Alert(
            "GwtelDeadLetters",
            "sum by (reason) (increase(gwtel_loader_dead_lettered_total[10m])) > 0",
            "1m",
            "warning",
            "records dead-lettered ({{ $labels.reason }})",
            f"The loader sent records to {cfg.kafka.topics.dead_letter} with reason {{{{ $labels.reason }}}}; "
            "they carry their source topic, partition and offset in headers.",
        ),
        Alert(
            "GwtelClickHouseInsertsFailing",
            "max by (instance) (gwtel_loader_clickhouse_up) == 0",
            "5m",
            "critical",
            "{{ $labels.instance }}: inserts into ClickHouse keep failing",
            "The loader has been retrying an insert for 5 minutes; nothing is lost, but nothing new is stored.",
        ),
        Alert(
            "GwtelTargetDown",
            'up{gwtel_component!=""} == 0',
            "5m",
            "warning",
            "{{ $labels.gwtel_component }} {{ $labels.instance }} cannot be scraped",
            "Prometheus has not reached {{ $labels.instance }} for 5 minutes: the process is down or hung, and "
            "its alerts cannot fire.",
        ),
    ]


def rules_document(cfg: GwtelConfig) -> dict[str, Any]:
    return {
        "groups": [
            {"name": "gwtel-partners", "rules": [a.as_rule() for a in (*partner_alerts(cfg), *forecast_alerts())]},
            {"name": "gwtel-pipeline", "rules": [a.as_rule() for a in pipeline_alerts(cfg)]},
        ]
    }


def render_rules(cfg: GwtelConfig) -> str:
    head = (
        "# Generated by `gwtel observability` from the configuration (gwtel/observability/rules.py):\n"
        "# edit the code or the configuration and regenerate, never this file.\n"
    )
    body = yaml.safe_dump(rules_document(cfg), sort_keys=False, width=200, allow_unicode=True)
    return head + body
