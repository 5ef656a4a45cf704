"""The aggregation logic of the Flink job: pure ``Table -> Table`` functions, the same in batch and streaming.

Input tables have the FlowRecord columns plus ``rowtime`` (the flow's ``last_ns`` as TIMESTAMP_LTZ(3)), as
the source DDL in ``processors.ddl`` declares them. Every window is a tumbling event-time window keyed by
``rowtime``: a flow record (one slice of a flow, at most the agent's active timeout long) counts in the
window of its last packet, so the sum over windows equals the sum over records exactly.

Bandwidth rows are per window x partner x direction x link x application class x sampling rate, where a flow gives its
initiator's counters to its own ``direction`` and its responder's counters to the opposite one (egress <->
ingress; other directions map to themselves). Latency rows are per window x partner x direction (the
flow's) x link x application class x metric. See docs/processors.md for the reasons.

The functions build SQL over the input table's inline name, so they run on any TableEnvironment that has
the job's Java aggregate functions registered (``processors.udf.register``; ``make_table_env`` does it).
"""

from __future__ import annotations

import math
from typing import Any

from processors.udf import BUCKET_COUNTS, KEY_STRIDE, SIDE_COUNTS
from schemas.aggregate import (
    AGGREGATE_FIELDS,
    AGGREGATE_SCHEMA_VERSION,
    HISTOGRAM_METRICS,
    SINGLE_VALUE_METRICS,
    Kind,
)
from schemas.checks import flink_rule_sql
from schemas.flow_record import FLOW_RECORD_FIELDS
from schemas.histogram import MAX_BUCKET, RTT_GAMMA

Table = Any  # pyflink.table.Table (pyflink ships no type information)

_KEYS = "`partner`, `direction`, `link_id`, `app_class`"
# The columns the record format (processors/java/gwtel/format) fills for a record the loader would refuse, and
# their types: the reason, the field, the record's line in its Kafka value (0 for a one-record value) and the
# line's text. An accepted record has only `_line` set.
PROBLEM_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_reason", "STRING"),
    ("_field", "STRING"),
    ("_line", "INT"),
    ("_value", "STRING"),
)
# The same double as schemas.histogram divides by.
_LOG_GAMMA = math.log(RTT_GAMMA)


def _query(like: Table, sql: str) -> Table:
    # pyflink keeps the owning environment on the table; str(table) registers it under an inline name.
    return like._t_env.sql_query(sql)


def _double(x: float) -> str:
    """A DOUBLE literal (a plain decimal literal would be DECIMAL in Flink SQL)."""
    text = repr(x)
    return text if "e" in text.lower() else f"{text}E0"


def bucket_sql(value: str) -> str:
    """SQL for ``schemas.histogram.bucket_of_us(value)`` on a non-null BIGINT expression.

    Same float steps as the Python function (log, floor, then the power-of-gamma guard), so the index is
    the same; the unit tests check it on the integers either side of every bucket boundary.
    """
    gamma = _double(RTT_GAMMA)
    raw = f"CAST(1 + FLOOR(LN(CAST({value} AS DOUBLE)) / {_double(_LOG_GAMMA)}) AS INT)"
    guarded = (
        f"CASE WHEN POWER({gamma}, {raw} - 1) > {value} THEN {raw} - 1 "
        f"WHEN POWER({gamma}, {raw}) <= {value} THEN {raw} + 1 ELSE {raw} END"
    )
    return f"CASE WHEN {value} <= 0 THEN 0 ELSE LEAST({guarded}, {MAX_BUCKET}) END"


def _window(source: Table, window_s: int) -> str:
    return f"TABLE(TUMBLE(TABLE {source}, DESCRIPTOR(`rowtime`), INTERVAL '{int(window_s)}' SECOND))"


def _window_cols(window_s: int) -> str:
    # window_start is wall-clock time in the session time zone; the job pins the zone to UTC.
    return (
        f"CAST({int(window_s)} AS INT) AS `window_s`, "
        "UNIX_TIMESTAMP(CAST(`window_start` AS STRING)) * 1000 AS `window_start_ms`"
    )


# Values no real flow has; the loader rejects the same (schemas.codec). Event times must also lie between
# 2000-01-01 and now + the allowed clock skew: one far-future record would otherwise move the watermark
# ahead and send every later record to the late topic (the source's rowtime clamps them, see processors.ddl).
MIN_EVENT_NS = 946_684_800 * 10**9
DEFAULT_MAX_FUTURE_SKEW_S = 900


def max_event_ns_sql(max_future_skew_s: int) -> str:
    """Latest acceptable event time, ns, evaluated per record."""
    return f"((CAST(UNIX_TIMESTAMP() AS BIGINT) + {int(max_future_skew_s)}) * 1000000000)"


def rule_sql(max_future_skew_s: int) -> str:
    """The first record rule's field a row breaks, or NULL: the rules of schemas.checks, as the loader's."""
    return flink_rule_sql(max_event_ns_sql(max_future_skew_s))


def classify(flows: Table, max_future_skew_s: int = DEFAULT_MAX_FUTURE_SKEW_S) -> Table:
    """The source's rows with two more columns, both NULL for a row the windows may read: ``_problem``, the
    reason the loader would give (the format's, or ``bad_value`` for a broken record rule), and ``_where``, the
    field it names.

    ``valid_rows`` and ``invalid_rows`` split one such table, so the job runs the checks once per record
    (the planner computes a table that several branches read once; two tables with their own checks cost
    a tenth of the source thread's time).
    """
    ruled = _query(flows, f"SELECT *, CAST({rule_sql(max_future_skew_s)} AS STRING) AS `_rule` FROM {flows}")
    return _query(
        ruled,
        "SELECT *, CASE WHEN `_reason` IS NOT NULL THEN `_reason` WHEN `_rule` IS NOT NULL THEN 'bad_value' END "
        f"AS `_problem`, COALESCE(`_field`, `_rule`) AS `_where` FROM {ruled}",
    )


def valid_rows(classified: Table) -> Table:
    """The rows of ``classify`` without a problem, with the FlowRecord columns and ``rowtime``."""
    cols = ", ".join(f"`{f.name}`" for f in FLOW_RECORD_FIELDS)
    return _query(classified, f"SELECT {cols}, `rowtime` FROM {classified} WHERE `_problem` IS NULL")


def valid(flows: Table, max_future_skew_s: int = DEFAULT_MAX_FUTURE_SKEW_S) -> Table:
    """The FlowRecords the loader would store (format and record rules); ``invalid`` takes the others."""
    return valid_rows(classify(flows, max_future_skew_s))


def on_time(flows: Table) -> Table:
    """Rows after the watermark (streaming only: needs ``rowtime`` to be a rowtime attribute).

    Exactly the complement of ``late``. Windows read only these rows, so no window operator ever drops a
    row as late: its watermark is never ahead of the one this filter saw.
    """
    return _query(
        flows,
        f"SELECT * FROM {flows} WHERE CURRENT_WATERMARK(`rowtime`) IS NULL OR `rowtime` > CURRENT_WATERMARK(`rowtime`)",
    )


def late(flows: Table) -> Table:
    """FlowRecords whose end time is at or behind the watermark on arrival (streaming only)."""
    cols = ", ".join(f"`{f.name}`" for f in FLOW_RECORD_FIELDS)
    return _query(flows, f"SELECT {cols} FROM {flows} WHERE `rowtime` <= CURRENT_WATERMARK(`rowtime`)")


def bandwidth(flows: Table, window_s: int, *, distinct_hosts: bool = True) -> Table:
    """Per window x partner x direction x link x class x sampling rate: counters, scaled totals and rates.

    Each flow record enters the window as one row; one Java aggregate function (``processors.udf.SIDE_COUNTS``)
    adds its initiator's counters to its ``direction`` and, when the responder sent packets, the responder's
    to the opposite one (egress <-> ingress; other directions map to themselves), and counts the distinct
    remote addresses of the sides with packets. Each window's result becomes one row per direction.
    ``distinct_hosts=False`` leaves ``remote_hosts`` null (bench/job.py measures what the count costs).
    """
    w = int(window_s)
    remote = "CASE WHEN `direction` = 'ingress' THEN `src_ip` ELSE `dst_ip` END" if distinct_hosts else "NULL"
    opposite = (
        "CAST(CASE `direction` WHEN 'egress' THEN 'ingress' WHEN 'ingress' THEN 'egress' "
        "ELSE `direction` END AS STRING)"
    )
    ended = "CAST(CASE WHEN `end_reason` = 'active' THEN 0 ELSE 1 END AS BIGINT)"
    args = (
        f"CAST(`direction` AS STRING), {opposite}, `bytes_fwd`, `packets_fwd`, `retrans_fwd`, "
        f"`bytes_rev`, `packets_rev`, `retrans_rev`, {ended}, CAST({remote} AS STRING)"
    )
    keys = "`partner`, `link_id`, `app_class`, `sampling_rate`"
    merged = _query(
        flows,
        f"SELECT {_window_cols(w)}, {keys}, {SIDE_COUNTS}({args}) AS `d` "
        f"FROM {_window(flows, w)} GROUP BY `window_start`, `window_end`, {keys}",
    )
    hosts = "`s`.`remote_hosts`" if distinct_hosts else "CAST(NULL AS BIGINT)"
    scaled = "`s`.`bytes` * `sampling_rate`"
    return _query(
        merged,
        f"SELECT `window_s`, `window_start_ms`, `partner`, `s`.`direction` AS `direction`, `link_id`, `app_class`, "
        "`sampling_rate`, `s`.`bytes` AS `bytes`, `s`.`packets` AS `packets`, `s`.`retrans` AS `retrans`, "
        f"`s`.`flows` AS `flows`, `s`.`flows_ended` AS `flows_ended`, {hosts} AS `remote_hosts`, "
        f"{scaled} AS `bytes_scaled`, `s`.`packets` * `sampling_rate` AS `packets_scaled`, "
        "`s`.`retrans` * `sampling_rate` AS `retrans_scaled`, "
        f"CAST({scaled} AS DOUBLE) * 8 / {w} AS `bits_per_s`, "
        f"CAST(`s`.`packets` * `sampling_rate` AS DOUBLE) / {w} AS `packets_per_s` "
        f"FROM {merged} CROSS JOIN UNNEST(`d`) AS `s` "
        "(`direction`, `bytes`, `packets`, `retrans`, `flows`, `flows_ended`, `remote_hosts`)",
    )


def latency_window(flows: Table, window_s: int) -> Table:
    """Per window x partner x direction x link, one row: every metric's samples, min, max and sum in its own
    columns, and the window's merged histograms (``h``, see ``bucket_rows``).

    Each flow record enters the window as one row, in one window operator for both the summaries and the
    histograms; ``latency_rows`` and ``bucket_rows`` turn its rows into the long format after the window.
    (A row per metric, or per bucket, and record cost several times more through the window operators.)
    """
    w = int(window_s)
    aggs = []
    for m in SINGLE_VALUE_METRICS:
        aggs += [
            f"SUM(CASE WHEN `{m}_us` IS NULL THEN 0 ELSE 1 END) AS `{m}_n`",
            f"MIN(`{m}_us`) AS `{m}_lo`",
            f"MAX(`{m}_us`) AS `{m}_hi`",
            f"SUM(`{m}_us`) AS `{m}_total`",
        ]
    for m in HISTOGRAM_METRICS:
        # Only records with samples count, as if the others were not there.
        has = f"`{m}_count` > 0"
        aggs += [
            f"SUM(CASE WHEN {has} THEN `{m}_count` ELSE 0 END) AS `{m}_n`",
            f"MIN(CASE WHEN {has} THEN `{m}_min_us` END) AS `{m}_lo`",
            f"MAX(CASE WHEN {has} THEN `{m}_max_us` END) AS `{m}_hi`",
            f"SUM(CASE WHEN {has} THEN `{m}_sum_us` ELSE 0 END) AS `{m}_total`",
        ]
    # Histograms, a single value being a histogram of one bucket, merged by processors.udf.BUCKET_COUNTS.
    hist = "ARRAY<ROW<`b` INT, `c` BIGINT>>"
    hists = [
        f"CASE WHEN `{m}_us` IS NULL THEN CAST(NULL AS {hist}) "
        f"ELSE CAST(ARRAY[ROW({bucket_sql(f'`{m}_us`')}, CAST(1 AS BIGINT))] AS {hist}) END"
        for m in SINGLE_VALUE_METRICS
    ] + [f"CAST(`{m}_hist` AS {hist})" for m in HISTOGRAM_METRICS]
    aggs.append(f"{BUCKET_COUNTS}({', '.join(hists)}) AS `h`")
    return _query(
        flows,
        f"SELECT {_window_cols(w)}, {_KEYS}, `window_time` AS `rowtime`, {', '.join(aggs)} "
        f"FROM {_window(flows, w)} GROUP BY `window_start`, `window_end`, `window_time`, {_KEYS}",
    )


def latency_rows(wide: Table) -> Table:
    """``latency_window``'s rows as one row per metric with samples: samples, min_us, max_us, sum_us."""
    rows = ", ".join(
        f"ROW({_name(m)}, CAST(`{m}_n` AS BIGINT), `{m}_lo`, `{m}_hi`, CAST(`{m}_total` AS BIGINT))"
        for m in (*SINGLE_VALUE_METRICS, *HISTOGRAM_METRICS)
    )
    return _query(
        wide,
        f"SELECT `window_s`, `window_start_ms`, {_KEYS}, `l`.`metric`, `l`.`samples`, `l`.`min_us`, `l`.`max_us`, "
        f"`l`.`sum_us`, `rowtime` FROM {wide} CROSS JOIN UNNEST(ARRAY[{rows}]) "
        "AS `l` (`metric`, `samples`, `min_us`, `max_us`, `sum_us`) WHERE `l`.`samples` > 0",
    )


def latency(flows: Table, window_s: int) -> Table:
    """Per window x partner x direction x link x metric: samples, min_us, max_us, sum_us."""
    return latency_rows(latency_window(flows, window_s))


def _latency_windows(src: Table, w: int, n: str, lo: str, hi: str, total: str) -> Table:
    # `window_time` goes on as `rowtime`, the event time a longer window built from these rows reads.
    return _query(
        src,
        f"SELECT {_window_cols(w)}, {_KEYS}, `metric`, SUM({n}) AS `samples`, MIN({lo}) AS `min_us`, "
        f"MAX({hi}) AS `max_us`, SUM({total}) AS `sum_us`, `window_time` AS `rowtime` "
        f"FROM {_window(src, w)} "
        f"GROUP BY `window_start`, `window_end`, `window_time`, {_KEYS}, `metric`",
    )


def latency_from(finer: Table, window_s: int) -> Table:
    """``latency`` of a longer window from a shorter one's rows (every column is a sum, min or max)."""
    return _latency_windows(finer, int(window_s), "`samples`", "`min_us`", "`max_us`", "`sum_us`")


def bucket_rows(wide: Table) -> Table:
    """``latency_window``'s merged histograms as one row per metric and bucket: the number of samples."""
    # The map's key is metric position * KEY_STRIDE + bucket (processors/java/gwtel/udf/BucketCounts.java).
    names = ", ".join(_name(m) for m in (*SINGLE_VALUE_METRICS, *HISTOGRAM_METRICS))
    return _query(
        wide,
        f"SELECT `window_s`, `window_start_ms`, {_KEYS}, (ARRAY[{names}])[`k` / {KEY_STRIDE} + 1] AS `metric`, "
        f"MOD(`k`, {KEY_STRIDE}) AS `bucket`, `n` AS `samples`, `rowtime` "
        f"FROM {wide} CROSS JOIN UNNEST(`h`) AS `e` (`k`, `n`)",
    )


def latency_buckets(flows: Table, window_s: int) -> Table:
    """Per window x partner x direction x link x metric x bucket: the number of samples (long format)."""
    return bucket_rows(latency_window(flows, window_s))


def _name(metric: str) -> str:
    # STRING, not CHAR(n): an ARRAY of literals of different lengths would be padded to the longest.
    return f"CAST('{metric}' AS STRING)"


def _bucket_windows(src: Table, w: int, n: str) -> Table:
    return _query(
        src,
        f"SELECT {_window_cols(w)}, {_KEYS}, `metric`, `bucket`, SUM({n}) AS `samples`, `window_time` AS `rowtime` "
        f"FROM {_window(src, w)} "
        f"GROUP BY `window_start`, `window_end`, `window_time`, {_KEYS}, `metric`, `bucket`",
    )


def latency_buckets_from(finer: Table, window_s: int) -> Table:
    """``latency_buckets`` of a longer window from a shorter one's rows."""
    return _bucket_windows(finer, int(window_s), "`samples`")


def as_records(table: Table, kind: Kind) -> Table:
    """The rows of ``bandwidth``/``latency``/``latency_buckets`` in the aggregate sink's column order."""
    present = set(table.get_schema().get_field_names())
    cols = []
    for f in AGGREGATE_FIELDS:
        if f.name == "schema_version":
            expr = str(AGGREGATE_SCHEMA_VERSION)
        elif f.name == "kind":
            expr = f"'{kind}'"
        elif f.name in present:
            expr = f"`{f.name}`"
        else:
            expr = "NULL"
        cols.append(f"CAST({expr} AS {f.flink}) AS `{f.name}`")
    return _query(table, f"SELECT {', '.join(cols)} FROM {table}")


def invalid_rows(classified: Table) -> Table:
    """Dead-letter rows for the rows of ``classify`` with a problem: the loader's reason, the field, the record's
    text (the line of its Kafka value; for a broken record rule its agent_id, seq and link_id as JSON) and its
    line index. The complement of ``valid_rows``."""
    return _query(
        classified,
        "SELECT CAST('aggregate' AS STRING) AS `stage`, `_problem` AS `reason`, `_where` AS `field`, "
        f"COALESCE(`_value`, {_identity_json()}) AS `value`, `_line` AS `line` "
        f"FROM {classified} WHERE `_problem` IS NOT NULL",
    )


def _identity_json() -> str:
    # A record the format accepted and a rule refused: the format keeps no text of accepted records (it would
    # cost a string per record), so enough to find the record again (and to reconcile sequence numbers).
    return "JSON_OBJECT(KEY 'agent_id' VALUE `agent_id`, KEY 'seq' VALUE `seq`, KEY 'link_id' VALUE `link_id`)"


def invalid(flows: Table, max_future_skew_s: int = DEFAULT_MAX_FUTURE_SKEW_S) -> Table:
    """Dead-letter rows for the source's rows the loader would refuse: the complement of ``valid``."""
    return invalid_rows(classify(flows, max_future_skew_s))
