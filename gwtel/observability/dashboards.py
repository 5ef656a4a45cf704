"""The three dashboards: partner bandwidth, partner latency, pipeline health.

SQL panels read the window tables at the rollup window size (`loader.rollup_window_s`: one size, or traffic
counts once per size) and the 5-minute rollup; latency percentiles come from histogram buckets summed over
time, links and partners, then read once (never an average of percentiles). PromQL panels read the live
series: `gwtel_agent_*` (the agents), `gwtel_loader_*`, `gwtel_clickhouse_*`, and `flink_*`, which are the
names Flink's own Prometheus reporter gives the job's metrics.
"""

from __future__ import annotations

from typing import Any

from gwtel.config import GwtelConfig
from gwtel.observability.grafana import Panel, Target, custom_variable, dashboard
from processors.queries import QUANTILES
from schemas.aggregate import METRICS
from schemas.histogram import RTT_GAMMA

PARTNER_IN = "partner IN (${partner:singlequote})"
PARTNER_RE = 'partner=~"$partner"'


def _partners(cfg: GwtelConfig) -> list[str]:
    return [*sorted(cfg.partners.groups), cfg.partners.fallback]


def _mid_ms(bucket: str) -> str:
    """SQL: a histogram bucket's geometric midpoint in ms (schemas.histogram; within 1% of its values)."""
    return f"if({bucket} = 0, 0, pow({RTT_GAMMA}, {bucket} - 0.5)) / 1000"


def _capacity(cfg: GwtelConfig) -> str:
    """SQL expression: the partner's contracted capacity per direction in bit/s (0 without a contract)."""
    names = [n for n, g in sorted(cfg.partners.groups.items()) if g.capacity_bps]
    caps = [str(cfg.partners.groups[n].capacity_bps) for n in names]
    quoted = ", ".join(f"'{n}'" for n in names)
    return f"transform(partner, [{quoted}], [{', '.join(caps)}], 0)"


def bandwidth_dashboard(cfg: GwtelConfig) -> dict[str, Any]:
    db, w = cfg.clickhouse.read_database(), cfg.loader.rollup_window_s
    where = f"window_s = {w} AND $__timeFilter(window_start) AND {PARTNER_IN}"
    bps = f"sum(bytes_scaled) * 8 / greatest($__interval_s, {w})"
    panels = [
        Panel(
            "Bandwidth per partner and direction",
            "timeseries",
            [
                Target(
                    sql=f"""
SELECT $__timeInterval(window_start) AS time, concat(partner, ' ', direction) AS series, {bps} AS bps
FROM {db}.bandwidth_window
WHERE {where}
GROUP BY time, series
ORDER BY time"""
                )
            ],
            "bps",
            description=f"Sampling-corrected bits/s from the stored {w} s windows (ClickHouse).",
        ),
        Panel(
            "Bandwidth per link",
            "timeseries",
            [
                Target(
                    sql=f"""
SELECT $__timeInterval(window_start) AS time, concat(link_id, ' ', direction) AS series, {bps} AS bps
FROM {db}.bandwidth_window
WHERE {where}
GROUP BY time, series
ORDER BY time"""
                )
            ],
            "bps",
            description="Every partner of the selection together, per interconnect link and direction.",
        ),
        Panel(
            "Utilisation of the contracted capacity",
            "timeseries",
            [
                Target(
                    sql=f"""
SELECT $__timeInterval(window_start) AS time, concat(partner, ' ', direction) AS series,
       {bps} / any({_capacity(cfg)}) AS utilisation
FROM {db}.bandwidth_window
WHERE {where} AND {_capacity(cfg)} > 0
GROUP BY time, series
ORDER BY time"""
                )
            ],
            "percentunit",
            thresholds=[(0.8, "red")],
            description="Bits/s over partners.groups.<partner>.capacity_bps (per direction); the line is the "
            "GwtelPartnerBandwidthNearCapacity threshold.",
        ),
        Panel(
            "95th percentile of 5-minute samples",
            "table",
            [
                Target(
                    table=True,
                    sql=f"""
SELECT partner, direction, quantileExact(0.95)(bps) AS p95_bps, max(bps) AS peak_bps, count() AS samples
FROM (
    SELECT ts, partner, direction, sum(bytes_scaled) * 8 / 300 AS bps
    FROM {db}.bandwidth_5m
    WHERE $__timeFilter(ts) AND {PARTNER_IN}
    GROUP BY ts, partner, direction
)
GROUP BY partner, direction
ORDER BY partner, direction""",
                )
            ],
            "bps",
            description="Billing view over the dashboard's range (a month for an invoice): 5-minute slots "
            "without traffic have no row, so a sparse range reads high.",
        ),
        Panel(
            "Live bandwidth (agents)",
            "timeseries",
            [
                Target(
                    expr=f"sum by (partner, direction) (rate(gwtel_agent_partner_bytes_total{{{PARTNER_RE}}}"
                    "[$__rate_interval])) * 8",
                    legend="{{partner}} {{direction}}",
                )
            ],
            "bps",
            description="From the agents' counters, without ClickHouse: seconds old instead of minutes.",
        ),
        Panel(
            "Live packets (agents)",
            "timeseries",
            [
                Target(
                    expr=f"sum by (partner, direction) (rate(gwtel_agent_partner_packets_total{{{PARTNER_RE}}}"
                    "[$__rate_interval]))",
                    legend="{{partner}} {{direction}}",
                )
            ],
            "pps",
        ),
    ]
    return dashboard(
        "gwtel-partner-bandwidth",
        "gwtel / Partner bandwidth",
        "Traffic per partner, direction and link; utilisation of contracted capacity; 95th percentile billing.",
        panels,
        [custom_variable("partner", "Partner", _partners(cfg), multi=True)],
    )


def latency_dashboard(cfg: GwtelConfig) -> dict[str, Any]:
    db, w = cfg.clickhouse.read_database(), cfg.loader.rollup_window_s
    where = f"window_s = {w} AND metric = '${{metric}}' AND $__timeFilter(window_start) AND {PARTNER_IN}"
    qs = ", ".join(str(q) for q in QUANTILES)
    percentiles = f"""
SELECT time, partner, p[1] AS p50, p[2] AS p95, p[3] AS p99
FROM (
    SELECT $__timeInterval(window_start) AS time, partner,
           arrayMap(b -> {_mid_ms("b")}, quantilesExactWeighted({qs})(bucket, samples)) AS p
    FROM {db}.latency_hist_window
    WHERE {where}
    GROUP BY time, partner
)
ORDER BY time"""
    panels = [
        Panel(
            "RTT percentiles (p50 / p95 / p99)",
            "timeseries",
            [Target(sql=percentiles)],
            "ms",
            w=24,
            description="Percentiles of the merged histogram buckets per interval (exact to one 2% bucket).",
        )
    ]
    for partner, group in sorted(cfg.partners.groups.items()):
        if not group.slo:
            continue
        objectives = ", ".join(f"{c} {ms:g} ms" for c, ms in sorted(group.slo.items()))
        panels.append(
            Panel(
                f"{partner}: p95 against its objectives",
                "timeseries",
                [
                    Target(
                        sql=f"""
SELECT $__timeInterval(window_start) AS time, direction,
       {_mid_ms("quantileExactWeighted(0.95)(bucket, samples)")} AS p95
FROM {db}.latency_hist_window
WHERE window_s = {w} AND metric = '${{metric}}' AND $__timeFilter(window_start) AND partner = '{partner}'
GROUP BY time, direction
ORDER BY time"""
                    )
                ],
                "ms",
                w=8,
                thresholds=[(ms, "red") for _, ms in sorted(group.slo.items(), key=lambda kv: kv[1])],
                description=f"Lines: partners.groups.{partner}.slo ({objectives}); the alerts read the agents' "
                "handshake RTT.",
            )
        )
    panels += [
        Panel(
            "RTT distribution",
            "heatmap",
            [
                Target(
                    sql=f"""
SELECT $__timeInterval(window_start) AS time,
       toString(round(pow({RTT_GAMMA}, intDiv(bucket, 10) * 10 + 10) / 1000, 3)) AS le_ms,
       sum(samples) AS samples
FROM {db}.latency_hist_window
WHERE {where}
GROUP BY time, le_ms
ORDER BY time"""
                )
            ],
            "ms",
            w=24,
            options={"calculate": False, "yAxis": {"unit": "ms"}, "rowsFrame": {"layout": "le"}},
            description="Samples per interval in groups of ten 2% buckets (about 22% wide), upper bound in ms.",
        ),
        Panel(
            "Percentiles over the range",
            "table",
            [
                Target(
                    table=True,
                    sql=f"""
SELECT partner, direction, n AS samples, p[1] AS p50_ms, p[2] AS p95_ms, p[3] AS p99_ms
FROM (
    SELECT partner, direction, sum(samples) AS n,
           arrayMap(b -> {_mid_ms("b")}, quantilesExactWeighted({qs})(bucket, samples)) AS p
    FROM {db}.latency_hist_window
    WHERE {where}
    GROUP BY partner, direction
)
ORDER BY partner, direction""",
                )
            ],
            "ms",
        ),
        Panel(
            "Live p95 handshake RTT per application class (agents)",
            "timeseries",
            [
                Target(
                    expr="histogram_quantile(0.95, sum by (partner, app_class, le) "
                    f"(rate(gwtel_agent_partner_handshake_rtt_seconds_bucket{{{PARTNER_RE}}}[$__rate_interval])))",
                    legend="{{partner}} {{app_class}}",
                )
            ],
            "s",
            description="What GwtelPartnerLatencySLOBreach evaluates (over 5 minutes): each class of a partner on "
            "its own flows (docs/classes.md).",
        ),
    ]
    return dashboard(
        "gwtel-partner-latency",
        "gwtel / Partner latency",
        "Round-trip time the path adds, per partner: percentile bands, objectives, distribution.",
        panels,
        [
            custom_variable("partner", "Partner", _partners(cfg), multi=True),
            custom_variable("metric", "RTT metric", list(METRICS), multi=False),
        ],
    )


def _sum_increase(metric: str) -> str:
    return f"sum(increase({metric}[$__range]))"


def pipeline_dashboard(cfg: GwtelConfig) -> dict[str, Any]:
    flows_topic = cfg.kafka.topics.flows
    ledger = [
        ("packets seen", "gwtel_agent_packets_seen_total"),
        ("packets decoded", "gwtel_agent_packets_decoded_total"),
        ("packets rejected", "gwtel_agent_packets_rejected_total"),
        ("packets in stored flows", "gwtel_loader_flow_packets_stored_total"),
        ("records produced", "gwtel_agent_records_produced_total"),
        ("records consumed", f'gwtel_loader_records_consumed_total{{topic="{flows_topic}"}}'),
        ("flows aggregated", "gwtel_loader_flows_aggregated_total"),
        ("rows stored", "gwtel_loader_flow_records_stored_total"),
        ("dead-lettered", "gwtel_loader_dead_lettered_total"),
    ]
    lag_metric = "flink_taskmanager_job_task_operator_KafkaSourceReader_KafkaConsumer_records_lag_max"
    panels = [
        Panel(
            "Delivery ledger over the range",
            "bargauge",
            [Target(expr=_sum_increase(m), legend=name, instant=True) for name, m in ledger],
            "short",
            w=12,
            h=10,
            options={"orientation": "horizontal", "displayMode": "basic", "reduceOptions": {"calcs": ["lastNotNull"]}},
            description="Each stage equals the one before minus what the stage counts as rejected: a stage "
            "shorter than that is where records went missing (docs/observability.md).",
        ),
        Panel(
            "Ledger stage rates",
            "timeseries",
            [
                Target(expr=f"sum(rate({m}[$__rate_interval]))", legend=name)
                for name, m in ledger
                if name != "packets seen"
            ],
            "short",
            w=12,
            h=10,
        ),
        Panel(
            "Packets rejected by the decoder",
            "timeseries",
            [
                Target(
                    expr="sum by (reason) (rate(gwtel_agent_packets_rejected_total[$__rate_interval]))",
                    legend="{{reason}}",
                )
            ],
            "pps",
            w=8,
        ),
        Panel(
            "Kernel drops per link",
            "timeseries",
            [Target(expr="sum by (link) (rate(gwtel_agent_kernel_drops_total[$__rate_interval]))", legend="{{link}}")],
            "pps",
            w=8,
        ),
        Panel(
            "Dead letters by reason",
            "timeseries",
            [
                Target(
                    expr="sum by (reason) (rate(gwtel_loader_dead_lettered_total[$__rate_interval]))",
                    legend="{{reason}}",
                )
            ],
            "short",
            w=8,
        ),
        Panel(
            "Loader consumer lag",
            "timeseries",
            [Target(expr="sum by (topic) (gwtel_loader_consumer_lag)", legend="{{topic}}")],
            "short",
            w=8,
        ),
        Panel(
            "Job consumer lag (Flink)",
            "timeseries",
            [Target(expr=f"max by (job_name) ({lag_metric})", legend="{{job_name}}")],
            "short",
            w=8,
        ),
        Panel(
            "Agent spool",
            "timeseries",
            [Target(expr="sum by (instance) (gwtel_agent_spool_bytes)", legend="{{instance}}")],
            "bytes",
            w=8,
        ),
        Panel(
            "Checkpoints (Flink)",
            "timeseries",
            [
                Target(
                    expr="sum by (job_name) "
                    "(increase(flink_jobmanager_job_numberOfFailedCheckpoints[$__rate_interval]))",
                    legend="failed {{job_name}}",
                ),
                Target(
                    expr="sum by (job_name) "
                    "(increase(flink_jobmanager_job_numberOfCompletedCheckpoints[$__rate_interval]))",
                    legend="completed {{job_name}}",
                ),
            ],
            "short",
            w=12,
        ),
        Panel(
            "Last checkpoint duration (Flink)",
            "timeseries",
            [Target(expr="max by (job_name) (flink_jobmanager_job_lastCheckpointDuration)", legend="{{job_name}}")],
            "ms",
            w=12,
        ),
        Panel(
            "Job records in / out per second (Flink)",
            "timeseries",
            [
                Target(
                    expr=f"sum by (job_name) (flink_taskmanager_job_task_numRecords{way}PerSecond)",
                    legend=f"{way.lower()} {{{{job_name}}}}",
                )
                for way in ("In", "Out")
            ],
            "rps",
            w=24,
            description="Flink's task metrics: what the job reads from the flows topic and writes on.",
        ),
        Panel(
            "Rows inserted per table",
            "timeseries",
            [
                Target(
                    expr="sum by (table) (rate(gwtel_loader_rows_inserted_total[$__rate_interval]))", legend="{{table}}"
                )
            ],
            "short",
            w=8,
        ),
        Panel(
            "Insert time p95 (loader)",
            "timeseries",
            [
                Target(
                    expr="histogram_quantile(0.95, sum by (table, le) "
                    "(rate(gwtel_loader_insert_seconds_bucket[$__rate_interval])))",
                    legend="{{table}}",
                )
            ],
            "s",
            w=8,
        ),
        Panel(
            "ClickHouse requests",
            "timeseries",
            [
                Target(
                    expr="sum by (kind, status) (rate(gwtel_clickhouse_http_requests_total[$__rate_interval]))",
                    legend="{{kind}} {{status}}",
                )
            ],
            "reqps",
            w=8,
        ),
        Panel(
            "Flow records stored (ClickHouse)",
            "timeseries",
            [
                Target(
                    sql=f"""
SELECT $__timeInterval(ts) AS time, count() AS flow_records
FROM {cfg.clickhouse.read_database()}.flows_raw
WHERE $__timeFilter(ts)
GROUP BY time
ORDER BY time"""
                )
            ],
            "short",
            w=24,
            description="Rows in flows_raw by flow start time: the ledger's last stage as stored.",
        ),
    ]
    return dashboard(
        "gwtel-pipeline-health",
        "gwtel / Pipeline health",
        "Where records go: the delivery ledger, drops, lag, checkpoints and storage.",
        panels,
        [],
    )


DASHBOARDS = {
    "partner-bandwidth.json": bandwidth_dashboard,
    "partner-latency.json": latency_dashboard,
    "pipeline-health.json": pipeline_dashboard,
}
