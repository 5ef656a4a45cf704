"""The streaming aggregation job: Kafka FlowRecords -> windows -> Kafka aggregates, late and dead-letter topics.

One statement set holds every sink, so the source is read once per format and all sinks commit their
Kafka transactions on the same checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gwtel.config import GwtelConfig
from processors import aggregate as agg
from processors import ddl
from processors.flink_env import make_table_env

# Session time zone of the job: window_start (wall-clock time) converts to epoch ms without DST gaps.
SESSION_TIME_ZONE = "UTC"
JOB_NAME = "gwtel-aggregate"


@dataclass(frozen=True, slots=True)
class SinkNames:
    aggregates: str = "aggregates"
    late: str = "late"
    dead_letter: str = "dead_letter"


def aggregate_records(flows: Any, window_sizes_s: tuple[int, ...]) -> Any:
    """Every aggregate record of every window size, in the sink's column order, from on-time flows."""
    parts = []
    for w in window_sizes_s:
        parts += [
            agg.as_records(agg.bandwidth(flows, w), "bandwidth"),
            agg.as_records(agg.latency(flows, w), "latency"),
            agg.as_records(agg.latency_buckets(flows, w), "latency_bucket"),
        ]
    out = parts[0]
    for part in parts[1:]:
        out = out.union_all(part)
    return out


def build_statement_set(
    t_env: Any,
    flows: Any,
    raw: Any,
    window_sizes_s: tuple[int, ...],
    sinks: SinkNames = SinkNames(),
    max_future_skew_s: int = agg.DEFAULT_MAX_FUTURE_SKEW_S,
) -> Any:
    """Wire sources to sinks: on-time valid rows to the windows, late rows and bad records aside.

    ``flows`` is the FlowRecord source (with a rowtime attribute), ``raw`` the same topic as text.
    """
    checked = agg.valid(flows, max_future_skew_s)
    stmt = t_env.create_statement_set()
    stmt.add_insert(sinks.aggregates, aggregate_records(agg.on_time(checked), window_sizes_s))
    stmt.add_insert(sinks.late, agg.late(checked))
    stmt.add_insert(sinks.dead_letter, agg.malformed(raw).union_all(agg.invalid(flows, max_future_skew_s)))
    return stmt


def create_tables(t_env: Any, cfg: GwtelConfig, *, bounded: bool) -> None:
    for sql in (
        ddl.flows_source_ddl(cfg, bounded=bounded),
        ddl.flows_raw_source_ddl(cfg, bounded=bounded),
        ddl.aggregates_sink_ddl(cfg),
        ddl.late_sink_ddl(cfg),
        ddl.dead_letter_sink_ddl(cfg),
    ):
        t_env.execute_sql(sql)


def checkpoint_dir(cfg: GwtelConfig) -> Path:
    path = Path(cfg.job.checkpoint_dir).expanduser()
    return path if path.is_absolute() else cfg.local.home_path() / path


def warnings_for(cfg: GwtelConfig) -> list[str]:
    """Settings that run but lose data to the late topic or split flows badly; the command prints them."""
    out = []
    idle_ms = cfg.agent.idle_timeout_s * 1000
    if cfg.job.watermark_bound_ms < idle_ms:
        out.append(
            f"job.watermark_bound_ms ({cfg.job.watermark_bound_ms}) is below agent.idle_timeout_s "
            f"({cfg.agent.idle_timeout_s} s): flows that end idle will arrive late"
        )
    smallest = min(cfg.job.window_sizes_s)
    if cfg.agent.active_timeout_s > smallest:
        out.append(
            f"agent.active_timeout_s ({cfg.agent.active_timeout_s}) exceeds the smallest window ({smallest} s): "
            "a long flow's bytes land in the window where its slice ends, not spread over the windows it spans"
        )
    return out


def run_job(cfg: GwtelConfig, *, bounded: bool) -> None:
    """Run the job on the local MiniCluster until it ends (``bounded``: at the offsets seen at start)."""
    job = cfg.job
    t_env = make_table_env(
        streaming=True,
        parallelism=job.parallelism,
        checkpoint_dir=checkpoint_dir(cfg),
        checkpoint_interval_ms=job.checkpoint_interval_ms,
        extra={"table.local-time-zone": SESSION_TIME_ZONE, "pipeline.name": JOB_NAME},
        log_dir=cfg.local.home_path() / "logs",
    )
    create_tables(t_env, cfg, bounded=bounded)
    stmt = build_statement_set(
        t_env,
        t_env.from_path("flows"),
        t_env.from_path("flows_raw"),
        job.window_sizes_s,
        max_future_skew_s=job.max_future_skew_s,
    )
    result = stmt.execute()
    try:
        result.wait()
    except KeyboardInterrupt:
        client = result.get_job_client()
        if client is not None:
            client.cancel().result()
        raise
