"""The streaming aggregation job: Kafka FlowRecords -> windows -> Kafka aggregates, late and dead-letter topics.

One statement set holds every sink, so the source is read once per format and all sinks commit their
Kafka transactions on the same checkpoints.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gwtel.config import GwtelConfig
from processors import aggregate as agg
from processors import checkpoints, ddl, job_metrics, stop_offsets
from processors.flink_env import make_table_env
from schemas.aggregate import KINDS, Kind

log = logging.getLogger(__name__)

# Session time zone of the job: window_start (wall-clock time) converts to epoch ms without DST gaps.
SESSION_TIME_ZONE = "UTC"
JOB_NAME = "gwtel-aggregate"


@dataclass(frozen=True, slots=True)
class SinkNames:
    aggregates: str = "aggregates"
    late: str = "late"
    dead_letter: str = "dead_letter"


# kind -> (its rows from agg.latency_window's, the same of a longer window from a shorter one's rows)
_CASCADES: dict[Kind, tuple[Callable[[Any], Any], Callable[[Any, int], Any]]] = {
    "latency": (agg.latency_rows, agg.latency_from),
    "latency_bucket": (agg.bucket_rows, agg.latency_buckets_from),
}


def aggregate_records(
    flows: Any,
    window_sizes_s: tuple[int, ...],
    *,
    distinct_hosts: bool = True,
    kinds: Collection[Kind] = KINDS,
) -> Any:
    """Every aggregate record of every window size, in the sink's column order, from on-time flows.

    ``kinds`` leaves out the others (bench/job.py measures each kind alone).
    """
    finest = min(window_sizes_s)
    latency_kinds = [kind for kind in _CASCADES if kind in kinds]
    # One window operator for the latency summaries and histograms of the finest windows.
    fine_wide = agg.latency_window(flows, finest) if latency_kinds else None
    fine = {kind: _CASCADES[kind][0](fine_wide) for kind in latency_kinds}
    parts = []
    for w in window_sizes_s:
        # Bandwidth of every window from the flows: its distinct host count does not add up, and carrying a
        # shorter window's remote addresses to the longer one made rows too large for Flink's window
        # buffers (a window with many distinct hosts overflowed the stack at parallelism 2). Latency of a
        # longer window from the finest one's rows when that divides it (exact: sums, min, max, bucket counts).
        if "bandwidth" in kinds:
            parts.append(agg.as_records(agg.bandwidth(flows, w, distinct_hosts=distinct_hosts), "bandwidth"))
        wide = agg.latency_window(flows, w) if latency_kinds and w % finest else None
        for kind in latency_kinds:
            rows_of, longer = _CASCADES[kind]
            if w == finest:
                parts.append(agg.as_records(fine[kind], kind))
            elif wide is None:
                parts.append(agg.as_records(longer(fine[kind], w), kind))
            else:
                parts.append(agg.as_records(rows_of(wide), kind))
    if not parts:
        raise ValueError(f"no aggregate kind chosen (known: {', '.join(KINDS)})")
    out = parts[0]
    for part in parts[1:]:
        out = out.union_all(part)
    return out


def build_statement_set(
    t_env: Any,
    flows: Any,
    window_sizes_s: tuple[int, ...],
    sinks: SinkNames = SinkNames(),
    *,
    distinct_hosts: bool = True,
    max_future_skew_s: int = agg.DEFAULT_MAX_FUTURE_SKEW_S,
) -> Any:
    """Wire sources to sinks: on-time valid rows to the windows, late rows and bad records aside.

    ``flows`` is the FlowRecord source (with a rowtime attribute and the record format's problem columns).
    The planner reuses the one scan of ``flows`` for every branch (tests/unit/test_aggregate.py checks the
    plan).
    """
    # One table of checked rows for both the windows and the dead-letter path: the checks run once.
    classified = agg.classify(flows, max_future_skew_s)
    checked = agg.valid_rows(classified)
    stmt = t_env.create_statement_set()
    stmt.add_insert(
        sinks.aggregates, aggregate_records(agg.on_time(checked), window_sizes_s, distinct_hosts=distinct_hosts)
    )
    stmt.add_insert(sinks.late, agg.late(checked))
    stmt.add_insert(sinks.dead_letter, agg.invalid_rows(classified))
    return stmt


def create_tables(t_env: Any, cfg: GwtelConfig, *, bounded: bool, stop_at: Mapping[int, int] | None = None) -> None:
    for sql in (
        ddl.flows_source_ddl(cfg, bounded=bounded, stop_at=stop_at),
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
    if cfg.job.watermark_from == "last_ns" and cfg.job.watermark_bound_ms < idle_ms:
        out.append(
            f"job.watermark_bound_ms ({cfg.job.watermark_bound_ms}) is below agent.idle_timeout_s "
            f"({cfg.agent.idle_timeout_s} s): flows that end idle will arrive late"
        )
    cut_ms = round(cfg.agent.active_timeout_s * 1000)
    uneven = [w for w in cfg.job.window_sizes_s if cut_ms < 1 or (w * 1000) % cut_ms]
    if uneven:
        out.append(
            f"agent.active_timeout_s ({cfg.agent.active_timeout_s}) does not divide the window sizes {uneven}: "
            "a record's packets can span two windows and land whole in the window of its last packet"
        )
    return out


def run_job(
    cfg: GwtelConfig,
    *,
    bounded: bool,
    restore_from: Path | None = None,
    on_start: Callable[[str, int], None] | None = None,
    tuning: Mapping[str, str] | None = None,
    distinct_hosts: bool = True,
) -> None:
    """Run the job on the local MiniCluster until it ends (``bounded``: at the offsets seen at start).

    A bounded run that ends well commits those offsets for its consumer groups (``processors.stop_offsets``),
    so a rerun with the same group starts exactly where this one stopped.

    ``restore_from`` (a checkpoint folder, see ``processors.checkpoints``) resumes from that state.
    ``on_start(job_id, metrics_port)`` is called once the job is submitted. ``tuning`` (extra Flink
    settings) and ``distinct_hosts`` are the variants bench/job.py compares.
    """
    with _stop_requests() as stop:
        job = cfg.job
        home = cfg.local.home_path()
        # Every run writes a new job folder of checkpoints; older runs' are not needed once newer ones exist.
        for old in checkpoints.prune(checkpoint_dir(cfg), job.checkpoint_retain_runs, protect=restore_from):
            log.info("removed the checkpoints of an older run: %s", old)
        port = job_metrics.choose_port(job.metrics_port)
        t_env = make_table_env(
            streaming=True,
            parallelism=job.parallelism,
            checkpoint_dir=checkpoint_dir(cfg),
            checkpoint_interval_ms=job.checkpoint_interval_ms,
            extra={
                "table.local-time-zone": SESSION_TIME_ZONE,
                "pipeline.name": JOB_NAME,
                "pipeline.auto-watermark-interval": f"{job.watermark_interval_ms} ms",
                **job.flink,
                **(tuning or {}),
            },
            log_dir=home / "logs",
            metrics_port=port,
            restore_from=restore_from,
        )
        stop_at = stop_offsets.end_offsets(cfg.kafka.kafka_python(), cfg.kafka.topics.flows) if bounded else None
        create_tables(t_env, cfg, bounded=bounded, stop_at=stop_at)
        stmt = build_statement_set(
            t_env,
            t_env.from_path("flows"),
            job.window_sizes_s,
            distinct_hosts=distinct_hosts,
            max_future_skew_s=job.max_future_skew_s,
        )
        result = stmt.execute()
        client = result.get_job_client()
        target = job_metrics.announce(home, port)
        try:
            if on_start is not None:
                on_start(str(client.get_job_id()) if client is not None else "", port)
            if client is not None:
                _wait_unless_stopped(client, stop)
            result.wait()  # raises when the job failed
        finally:
            job_metrics.withdraw(target)
        if stop_at is not None:
            stop_offsets.commit(cfg.kafka.kafka_python(), job.group_id, cfg.kafka.topics.flows, stop_at)


@contextlib.contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set an event instead of raising inside a call to the JVM.

    A KeyboardInterrupt in the middle of a py4j call leaves the gateway connection half-read, and the
    cancel that follows then waits forever. Only the main thread can take signals; elsewhere the event
    is never set and the caller stops the job its own way.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda _signum, _frame: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_unless_stopped(client: Any, stop: threading.Event, poll_s: float = 1.0) -> None:
    """Wait for the job to end; on a stop request cancel it (the last checkpoint is kept) and raise."""
    # The result future is local to this process; asking the job's status would fail once a bounded
    # job's MiniCluster has shut down.
    done = client.get_job_execution_result()
    while not stop.wait(poll_s):
        if done.done():
            return
    client.cancel().result()
    raise KeyboardInterrupt
