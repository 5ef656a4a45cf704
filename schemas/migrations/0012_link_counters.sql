-- sFlow interface counter samples (schemas.link_counter: one row per sample and direction, cumulative values
-- as the router sent them). The report turns consecutive samples into increases, handling 32/64-bit wraps and
-- agent restarts (processors.link_counters), and sets them beside the flows' sampled octets.
-- Exactly once like flows_raw: the loader's insert_deduplication_token is topic:partition:first-last offset.
CREATE TABLE IF NOT EXISTS ${db}.link_counters
(
    `schema_version` UInt8,
    `agent_id` LowCardinality(String),
    `exporter` String,
    `source_id` UInt32,
    `direction` LowCardinality(String),
    `sample_ns` Int64,
    `octets` UInt64,
    `packets` UInt64,
    `speed_bps` UInt64,
    `sequence` UInt32,
    `ts` DateTime('UTC') MATERIALIZED toDateTime(intDiv(sample_ns, 1000000000), 'UTC'),
    `kafka_topic` LowCardinality(String),
    `kafka_partition` UInt32,
    `kafka_offset` UInt64
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (exporter, source_id, direction, sample_ns)
TTL ts + INTERVAL ${ttl_flows_raw_days} DAY
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;
