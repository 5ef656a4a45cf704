-- Rollups of the window tables to 5 minutes, 1 hour and 1 day (UTC buckets), each filled by its own
-- materialized view reading the window table directly (not chained), each with its own retention.
-- The views read one window size only, `loader.rollup_window_s` (60 s by default) when they are created:
-- the job's other sizes cover the same traffic and would double it.
-- Counters sum (SummingMergeTree); min/max and the per-window distinct-host count keep their extreme
-- (SimpleAggregateFunction); latency histograms sum per bucket, so quantiles computed from the merged
-- buckets are exact at bucket resolution across time, links and partners. Rates are not stored here: they
-- are sums over the bucket length, computed at query time. `windows` counts the window rows merged in.
-- Queries must aggregate (sum/min/max ... GROUP BY): rows with the same key merge only eventually.
-- The targets deduplicate too: the loader inserts with deduplicate_blocks_in_dependent_materialized_views=1,
-- so a retried insert that the window table drops is also dropped here, and one that the window table
-- stored only in part (a view failed) completes the views that missed it, without double counting.
CREATE TABLE IF NOT EXISTS ${db}.bandwidth_5m
(
    `ts` DateTime('UTC'),
    `partner` LowCardinality(String),
    `direction` LowCardinality(String),
    `link_id` LowCardinality(String),
    `sampling_rate` UInt32,
    `bytes` UInt64,
    `packets` UInt64,
    `retrans` UInt64,
    `flows` UInt64,
    `flows_ended` UInt64,
    `bytes_scaled` UInt64,
    `packets_scaled` UInt64,
    `retrans_scaled` UInt64,
    `remote_hosts_max` SimpleAggregateFunction(max, UInt64),
    `windows` UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, partner, direction, link_id, sampling_rate)
TTL ts + INTERVAL ${ttl_5m_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.bandwidth_5m_mv TO ${db}.bandwidth_5m AS
SELECT
    toStartOfFiveMinutes(window_start) AS ts, partner, direction, link_id, sampling_rate,
    sum(bytes) AS bytes, sum(packets) AS packets, sum(retrans) AS retrans,
    sum(flows) AS flows, sum(flows_ended) AS flows_ended,
    sum(bytes_scaled) AS bytes_scaled, sum(packets_scaled) AS packets_scaled,
    sum(retrans_scaled) AS retrans_scaled,
    max(remote_hosts) AS remote_hosts_max, count() AS windows
FROM ${db}.bandwidth_window
WHERE window_s = ${rollup_window_s}
GROUP BY ts, partner, direction, link_id, sampling_rate;

CREATE TABLE IF NOT EXISTS ${db}.latency_5m
(
    `ts` DateTime('UTC'),
    `partner` LowCardinality(String),
    `direction` LowCardinality(String),
    `link_id` LowCardinality(String),
    `metric` LowCardinality(String),
    `samples` SimpleAggregateFunction(sum, UInt64),
    `sum_us` SimpleAggregateFunction(sum, UInt64),
    `min_us` SimpleAggregateFunction(min, Nullable(UInt32)),
    `max_us` SimpleAggregateFunction(max, Nullable(UInt32)),
    `windows` SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, partner, direction, link_id, metric)
TTL ts + INTERVAL ${ttl_5m_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.latency_5m_mv TO ${db}.latency_5m AS
SELECT
    toStartOfFiveMinutes(window_start) AS ts, partner, direction, link_id, metric,
    sum(samples) AS samples, sum(sum_us) AS sum_us, min(min_us) AS min_us, max(max_us) AS max_us,
    count() AS windows
FROM ${db}.latency_window
WHERE window_s = ${rollup_window_s}
GROUP BY ts, partner, direction, link_id, metric;

CREATE TABLE IF NOT EXISTS ${db}.latency_hist_5m
(
    `ts` DateTime('UTC'),
    `partner` LowCardinality(String),
    `direction` LowCardinality(String),
    `link_id` LowCardinality(String),
    `metric` LowCardinality(String),
    `bucket` UInt16,
    `samples` UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, partner, direction, link_id, metric, bucket)
TTL ts + INTERVAL ${ttl_5m_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.latency_hist_5m_mv TO ${db}.latency_hist_5m AS
SELECT
    toStartOfFiveMinutes(window_start) AS ts, partner, direction, link_id, metric, bucket, sum(samples) AS samples
FROM ${db}.latency_hist_window
WHERE window_s = ${rollup_window_s}
GROUP BY ts, partner, direction, link_id, metric, bucket;

CREATE TABLE IF NOT EXISTS ${db}.bandwidth_1h
(
    `ts` DateTime('UTC'),
    `partner` LowCardinality(String),
    `direction` LowCardinality(String),
    `link_id` LowCardinality(String),
    `sampling_rate` UInt32,
    `bytes` UInt64,
    `packets` UInt64,
    `retrans` UInt64,
    `flows` UInt64,
    `flows_ended` UInt64,
    `bytes_scaled` UInt64,
    `packets_scaled` UInt64,
    `retrans_scaled` UInt64,
    `remote_hosts_max` SimpleAggregateFunction(max, UInt64),
    `windows` UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, partner, direction, link_id, sampling_rate)
TTL ts + INTERVAL ${ttl_1h_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.bandwidth_1h_mv TO ${db}.bandwidth_1h AS
SELECT
    toStartOfHour(window_start) AS ts, partner, direction, link_id, sampling_rate,
    sum(bytes) AS bytes, sum(packets) AS packets, sum(retrans) AS retrans,
    sum(flows) AS flows, sum(flows_ended) AS flows_ended,
    sum(bytes_scaled) AS bytes_scaled, sum(packets_scaled) AS packets_scaled,
    sum(retrans_scaled) AS retrans_scaled,
    max(remote_hosts) AS remote_hosts_max, count() AS windows
FROM ${db}.bandwidth_window
WHERE window_s = ${rollup_window_s}
GROUP BY ts, partner, direction, link_id, sampling_rate;

CREATE TABLE IF NOT EXISTS ${db}.latency_1h
(
    `ts` DateTime('UTC'),
    `partner` LowCardinality(String),
    `direction` LowCardinality(String),
    `link_id` LowCardinality(String),
    `metric` LowCardinality(String),
    `samples` SimpleAggregateFunction(sum, UInt64),
    `sum_us` SimpleAggregateFunction(sum, UInt64),
    `min_us` SimpleAggregateFunction(min, Nullable(UInt32)),
    `max_us` SimpleAggregateFunction(max, Nullable(UInt32)),
    `windows` SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, partner, direction, link_id, metric)
TTL ts + INTERVAL ${ttl_1h_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.latency_1h_mv TO ${db}.latency_1h AS
SELECT
    toStartOfHour(window_start) AS ts, partner, direction, link_id, metric,
    sum(samples) AS samples, sum(sum_us) AS sum_us, min(min_us) AS min_us, max(max_us) AS max_us,
    count() AS windows
FROM ${db}.latency_window
WHERE window_s = ${rollup_window_s}
GROUP BY ts, partner, direction, link_id, metric;

CREATE TABLE IF NOT EXISTS ${db}.latency_hist_1h
(
    `ts` DateTime('UTC'),
    `partner` LowCardinality(String),
    `direction` LowCardinality(String),
    `link_id` LowCardinality(String),
    `metric` LowCardinality(String),
    `bucket` UInt16,
    `samples` UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, partner, direction, link_id, metric, bucket)
TTL ts + INTERVAL ${ttl_1h_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.latency_hist_1h_mv TO ${db}.latency_hist_1h AS
SELECT
    toStartOfHour(window_start) AS ts, partner, direction, link_id, metric, bucket, sum(samples) AS samples
FROM ${db}.latency_hist_window
WHERE window_s = ${rollup_window_s}
GROUP BY ts, partner, direction, link_id, metric, bucket;

CREATE TABLE IF NOT EXISTS ${db}.bandwidth_1d
(
    `ts` DateTime('UTC'),
    `partner` LowCardinality(String),
    `direction` LowCardinality(String),
    `link_id` LowCardinality(String),
    `sampling_rate` UInt32,
    `bytes` UInt64,
    `packets` UInt64,
    `retrans` UInt64,
    `flows` UInt64,
    `flows_ended` UInt64,
    `bytes_scaled` UInt64,
    `packets_scaled` UInt64,
    `retrans_scaled` UInt64,
    `remote_hosts_max` SimpleAggregateFunction(max, UInt64),
    `windows` UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYear(ts)
ORDER BY (ts, partner, direction, link_id, sampling_rate)
TTL ts + INTERVAL ${ttl_1d_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.bandwidth_1d_mv TO ${db}.bandwidth_1d AS
SELECT
    toStartOfDay(window_start) AS ts, partner, direction, link_id, sampling_rate,
    sum(bytes) AS bytes, sum(packets) AS packets, sum(retrans) AS retrans,
    sum(flows) AS flows, sum(flows_ended) AS flows_ended,
    sum(bytes_scaled) AS bytes_scaled, sum(packets_scaled) AS packets_scaled,
    sum(retrans_scaled) AS retrans_scaled,
    max(remote_hosts) AS remote_hosts_max, count() AS windows
FROM ${db}.bandwidth_window
WHERE window_s = ${rollup_window_s}
GROUP BY ts, partner, direction, link_id, sampling_rate;

CREATE TABLE IF NOT EXISTS ${db}.latency_1d
(
    `ts` DateTime('UTC'),
    `partner` LowCardinality(String),
    `direction` LowCardinality(String),
    `link_id` LowCardinality(String),
    `metric` LowCardinality(String),
    `samples` SimpleAggregateFunction(sum, UInt64),
    `sum_us` SimpleAggregateFunction(sum, UInt64),
    `min_us` SimpleAggregateFunction(min, Nullable(UInt32)),
    `max_us` SimpleAggregateFunction(max, Nullable(UInt32)),
    `windows` SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYear(ts)
ORDER BY (ts, partner, direction, link_id, metric)
TTL ts + INTERVAL ${ttl_1d_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.latency_1d_mv TO ${db}.latency_1d AS
SELECT
    toStartOfDay(window_start) AS ts, partner, direction, link_id, metric,
    sum(samples) AS samples, sum(sum_us) AS sum_us, min(min_us) AS min_us, max(max_us) AS max_us,
    count() AS windows
FROM ${db}.latency_window
WHERE window_s = ${rollup_window_s}
GROUP BY ts, partner, direction, link_id, metric;

CREATE TABLE IF NOT EXISTS ${db}.latency_hist_1d
(
    `ts` DateTime('UTC'),
    `partner` LowCardinality(String),
    `direction` LowCardinality(String),
    `link_id` LowCardinality(String),
    `metric` LowCardinality(String),
    `bucket` UInt16,
    `samples` UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYear(ts)
ORDER BY (ts, partner, direction, link_id, metric, bucket)
TTL ts + INTERVAL ${ttl_1d_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.latency_hist_1d_mv TO ${db}.latency_hist_1d AS
SELECT
    toStartOfDay(window_start) AS ts, partner, direction, link_id, metric, bucket, sum(samples) AS samples
FROM ${db}.latency_hist_window
WHERE window_s = ${rollup_window_s}
GROUP BY ts, partner, direction, link_id, metric, bucket;
