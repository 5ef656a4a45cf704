-- Aggregate records of the Flink job, one table per kind, at the job's window size (`window_s`, 10 s by
-- default), exactly as they arrive from the aggregates topic. Columns follow schemas.aggregate
-- (AGGREGATE_FIELDS) through processors.tables, where the per-kind columns are listed; a kind table is dense,
-- so the wide record's Nullable types are dropped (only a latency window's min/max may be empty).
-- `window_start` is derived from window_start_ms and drives partitioning, TTL and the sort key.
-- The job emits several window sizes (10 s and 60 s by default) into the same tables: a query on them
-- picks one `window_s`, or it counts the same traffic once per size.
-- Plain MergeTree: every row stays as delivered, with its Kafka coordinates; the rollups (0003) sum.
-- non_replicated_deduplication_window > 0 makes a retried insert with the same token a no-op.
CREATE TABLE IF NOT EXISTS ${db}.bandwidth_window
(
    `window_s` UInt32,
    `window_start_ms` Int64,
    `partner` LowCardinality(String),
    `direction` LowCardinality(String),
    `link_id` LowCardinality(String),
    `sampling_rate` UInt32,
    `bytes` UInt64,
    `packets` UInt64,
    `retrans` UInt64,
    `flows` UInt64,
    `flows_ended` UInt64,
    `remote_hosts` UInt64,
    `bytes_scaled` UInt64,
    `packets_scaled` UInt64,
    `retrans_scaled` UInt64,
    `bits_per_s` Float64,
    `packets_per_s` Float64,
    `kafka_topic` LowCardinality(String),
    `kafka_partition` UInt32,
    `kafka_offset` UInt64,
    `window_start` DateTime('UTC') MATERIALIZED toDateTime(intDiv(window_start_ms, 1000), 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(window_start)
ORDER BY (toStartOfFiveMinutes(window_start), partner, direction, link_id, window_s, window_start)
TTL window_start + INTERVAL ${ttl_window_days} DAY
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS ${db}.latency_window
(
    `window_s` UInt32,
    `window_start_ms` Int64,
    `partner` LowCardinality(String),
    `direction` LowCardinality(String),
    `link_id` LowCardinality(String),
    `metric` LowCardinality(String),
    `samples` UInt64,
    `min_us` Nullable(UInt32),
    `max_us` Nullable(UInt32),
    `sum_us` UInt64,
    `kafka_topic` LowCardinality(String),
    `kafka_partition` UInt32,
    `kafka_offset` UInt64,
    `window_start` DateTime('UTC') MATERIALIZED toDateTime(intDiv(window_start_ms, 1000), 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(window_start)
ORDER BY (toStartOfFiveMinutes(window_start), partner, direction, link_id, metric, window_s, window_start)
TTL window_start + INTERVAL ${ttl_window_days} DAY
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;

-- Long format: one row per non-empty log bucket (schemas.histogram) of one metric in one window.
CREATE TABLE IF NOT EXISTS ${db}.latency_hist_window
(
    `window_s` UInt32,
    `window_start_ms` Int64,
    `partner` LowCardinality(String),
    `direction` LowCardinality(String),
    `link_id` LowCardinality(String),
    `metric` LowCardinality(String),
    `bucket` UInt16,
    `samples` UInt64,
    `kafka_topic` LowCardinality(String),
    `kafka_partition` UInt32,
    `kafka_offset` UInt64,
    `window_start` DateTime('UTC') MATERIALIZED toDateTime(intDiv(window_start_ms, 1000), 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(window_start)
ORDER BY (toStartOfFiveMinutes(window_start), partner, direction, link_id, metric, window_s, bucket)
TTL window_start + INTERVAL ${ttl_window_days} DAY
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;
