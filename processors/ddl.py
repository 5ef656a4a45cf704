"""Flink SQL ``CREATE TABLE`` statements for the job's Kafka source and sinks, built from the configuration.

Columns come from the field tables in ``schemas/``; topics, bootstrap servers, group id, watermark bound,
idle timeout and transaction settings come from ``GwtelConfig``. Nothing here names a host or a secret.
"""

from __future__ import annotations

from collections.abc import Mapping

from gwtel.config import GwtelConfig
from processors.aggregate import DEFAULT_MAX_FUTURE_SKEW_S, MIN_EVENT_NS, PROBLEM_COLUMNS, max_event_ns_sql
from processors.udf import FLOW_FORMAT
from schemas.aggregate import AGGREGATE_FIELDS, DEAD_LETTER_FIELDS, LATE_FIELDS
from schemas.checks import flink_format_options
from schemas.flow_record import FieldSpec, flink_columns_ddl


def rowtime_sql(max_future_skew_s: int = DEFAULT_MAX_FUTURE_SKEW_S) -> str:
    """Event time: the flow's last packet, at millisecond precision (integer division truncates, so a record
    1 ns before a window boundary stays in the earlier window). A missing or implausible last_ns (before 2000,
    or beyond now + the skew) becomes the epoch: the row cannot move the watermark, fails `valid` and the
    dead-letter path counts it, instead of a null rowtime failing the job or a far-future one making every
    later record late."""
    return f"TO_TIMESTAMP_LTZ({_plausible_ms('last_ns', max_future_skew_s)}, 3)"


def _plausible_ms(column: str, max_future_skew_s: int) -> str:
    latest = max_event_ns_sql(max_future_skew_s)
    return f"(CASE WHEN `{column}` BETWEEN {MIN_EVENT_NS} AND {latest} THEN `{column}` ELSE 0 END / 1000000)"


def cut_watermark_sql(watermark_bound_ms: int, cut_ms: int, max_future_skew_s: int = DEFAULT_MAX_FUTURE_SKEW_S) -> str:
    """Watermark of records cut at every multiple of ``cut_ms`` (the agent's ``active_timeout_s``).

    An agent that exported a record at E has made its cut at the last boundary before E (a record exported
    exactly on a boundary may be part of that boundary's cut), so every later record of it ends at or after
    that boundary: ``floor((E - 1 ms) / cut) * cut``. The bound moves E back first (another agent's clock
    trailing this one). The record's own last packet, floored to a boundary, caps it, so a record with a
    wrong export time moves the watermark no further than its event time could. Integer division
    truncates: every operand is positive for a valid record, and an invalid one contributes 0 or less."""
    if cut_ms < 1:
        raise ValueError(f"the cut interval must be at least 1 ms, got {cut_ms}")
    e = _plausible_ms("export_ns", max_future_skew_s)
    last = _plausible_ms("last_ns", max_future_skew_s)
    bound = int(watermark_bound_ms)
    return f"TO_TIMESTAMP_LTZ(LEAST(({e} - {bound + 1}) / {cut_ms} * {cut_ms}, {last} / {cut_ms} * {cut_ms}), 3)"


def flows_columns_sql(
    watermark_bound_ms: int, max_future_skew_s: int = DEFAULT_MAX_FUTURE_SKEW_S, cut_ms: int | None = None
) -> str:
    """FlowRecord columns plus ``rowtime`` and its watermark, for any connector carrying FlowRecords: from the
    agent's cut boundaries when ``cut_ms`` is given (``job.watermark_from: export_ns``), else the newest event
    time minus the bound."""
    if cut_ms is None:
        watermark = f"`rowtime` - {interval_sql(watermark_bound_ms)}"
    else:
        watermark = cut_watermark_sql(watermark_bound_ms, cut_ms, max_future_skew_s)
    problem = ",\n".join(f"  `{name}` {flink}" for name, flink in PROBLEM_COLUMNS)
    return (
        f"{flink_columns_ddl()},\n{problem},\n"
        f"  `rowtime` AS {rowtime_sql(max_future_skew_s)},\n"
        f"  WATERMARK FOR `rowtime` AS {watermark}"
    )


def cut_ms_of(cfg: GwtelConfig) -> int | None:
    """The agent's cut interval in ms when the watermark follows it, else None."""
    if cfg.job.watermark_from != "export_ns":
        return None
    return max(1, round(cfg.agent.active_timeout_s * 1000))


def flow_format_options(*, lines: bool = False) -> dict[str, str]:
    """Table options reading FlowRecords with the record format ``gwtel-flow``: each value (with ``lines``, each
    JSON line of a value) becomes a row of the record's columns, or of ``PROBLEM_COLUMNS`` when the loader would
    refuse it. The format never fails on a value, so one bad record cannot stop the job."""
    opts = {f"{FLOW_FORMAT}.{key}": value for key, value in flink_format_options().items()}
    opts[f"{FLOW_FORMAT}.problem-columns"] = ",".join(name for name, _ in PROBLEM_COLUMNS)
    opts[f"{FLOW_FORMAT}.lines"] = "true" if lines else "false"
    return {"format": FLOW_FORMAT, **opts}


def interval_sql(ms: int) -> str:
    """A day-to-second interval literal of ``ms`` milliseconds (Flink SQL has no MILLISECOND unit)."""
    if ms < 0:
        raise ValueError(f"interval must not be negative, got {ms} ms")
    seconds, millis = divmod(int(ms), 1000)
    minutes, sec = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    return f"INTERVAL '{days} {hour:02d}:{minute:02d}:{sec:02d}.{millis:03d}' DAY TO SECOND(3)"


def columns_sql(fields: tuple[FieldSpec, ...]) -> str:
    return ",\n".join(f"  `{f.name}` {f.flink}" for f in fields)


def create_table_sql(name: str, columns: str, options: Mapping[str, str]) -> str:
    opts = ",\n".join(f"  '{k}' = '{_quote(v)}'" for k, v in options.items())
    return f"CREATE TEMPORARY TABLE `{name}` (\n{columns}\n) WITH (\n{opts}\n)"


def specific_offsets_option(offsets: Mapping[int, int]) -> str:
    """The value of the Kafka SQL connector's ``scan.bounded.specific-offsets`` for ``offsets``."""
    if not offsets:
        raise ValueError("a bounded run needs at least one partition to stop at")
    return ";".join(f"partition:{p},offset:{o}" for p, o in sorted(offsets.items()))


def _quote(value: str) -> str:
    return value.replace("'", "''")


def _kafka_source_options(cfg: GwtelConfig, *, bounded: bool, stop_at: Mapping[int, int] | None) -> dict[str, str]:
    job = cfg.job
    opts = {
        "connector": "kafka",
        "topic": cfg.kafka.topics.flows,
        "properties.bootstrap.servers": cfg.kafka.bootstrap,
        "properties.group.id": job.group_id,
        # Producers may be transactional: never read what an aborted transaction wrote.
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": job.startup_mode,
        # group-offsets: a group that never committed (its first run) starts at the beginning.
        "properties.auto.offset.reset": "earliest",
        # A partition without records stops holding the watermark (and the windows) back.
        "scan.watermark.idle-timeout": f"{job.idle_timeout_ms} ms",
        **cfg.kafka.security.flink_options(),
    }
    if bounded and stop_at is not None:
        # Stop at offsets read before the job started, which the run then commits for its groups itself
        # (processors.stop_offsets).
        opts["scan.bounded.mode"] = "specific-offsets"
        opts["scan.bounded.specific-offsets"] = specific_offsets_option(stop_at)
    elif bounded:
        # Read what the topic holds when the job starts, then finish (pcap replay, tests).
        opts["scan.bounded.mode"] = "latest-offset"
    return opts


def flows_source_ddl(
    cfg: GwtelConfig, *, name: str = "flows", bounded: bool = False, stop_at: Mapping[int, int] | None = None
) -> str:
    """The FlowRecord source: every Kafka value read with the loader's strictness (``flow_format_options``), a
    refused one as a row of its problem, which the job dead-letters.

    ``bounded``: read up to ``stop_at`` (partition -> offset), or without it up to the end offsets the
    source sees when it starts, then finish.
    """
    opts = _kafka_source_options(cfg, bounded=bounded, stop_at=stop_at)
    opts.update(flow_format_options())
    columns = flows_columns_sql(cfg.job.watermark_bound_ms, cfg.job.max_future_skew_s, cut_ms_of(cfg))
    return create_table_sql(name, columns, opts)


def _kafka_sink_options(cfg: GwtelConfig, topic: str, sink: str) -> dict[str, str]:
    job = cfg.job
    return {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": cfg.kafka.bootstrap,
        "format": "json",
        "sink.delivery-guarantee": "exactly-once",
        # Each sink of the job needs its own prefix: Flink aborts lingering transactions by prefix.
        "sink.transactional-id-prefix": f"{job.transactional_id_prefix}-{sink}",
        # Below the broker's transaction.max.timeout.ms (15 min); the default (1 h) is refused.
        "properties.transaction.timeout.ms": str(job.transaction_timeout_ms),
        **cfg.kafka.security.flink_options(),
    }


def aggregates_sink_ddl(cfg: GwtelConfig, *, name: str = "aggregates") -> str:
    opts = _kafka_sink_options(cfg, cfg.kafka.topics.aggregates, "aggregates")
    return create_table_sql(name, columns_sql(AGGREGATE_FIELDS), opts)


def late_sink_ddl(cfg: GwtelConfig, *, name: str = "late") -> str:
    opts = _kafka_sink_options(cfg, cfg.kafka.topics.late, "late")
    return create_table_sql(name, columns_sql(LATE_FIELDS), opts)


def dead_letter_sink_ddl(cfg: GwtelConfig, *, name: str = "dead_letter") -> str:
    opts = _kafka_sink_options(cfg, cfg.kafka.topics.dead_letter, "deadletter")
    return create_table_sql(name, columns_sql(DEAD_LETTER_FIELDS), opts)
