-- Late FlowRecords v1: the records the Flink job wrote to the late topic (kafka.topics.late) because their
-- flow had ended at or behind the watermark when they arrived. They are in no window, rollup or bandwidth
-- figure; kept here, with the same columns as flows_raw, so queries and the report can show how much
-- traffic arrived too late to be counted (processors.queries.late_traffic).
-- Same retention as flows_raw (loader.ttl_flows_raw_days); same deduplication token scheme.
CREATE TABLE IF NOT EXISTS ${db}.flows_late
(
    `schema_version` UInt8,
    `agent_id` LowCardinality(String),
    `seq` UInt64,
    `link_id` LowCardinality(String),
    `sampling_rate` UInt32,
    `ip_version` UInt8,
    `src_ip` String,
    `src_port` UInt16,
    `dst_ip` String,
    `dst_port` UInt16,
    `protocol` UInt8,
    `vlan` UInt16,
    `first_ns` Int64,
    `last_ns` Int64,
    `export_ns` Int64,
    `end_reason` LowCardinality(String),
    `bytes_fwd` UInt64,
    `packets_fwd` UInt64,
    `bytes_rev` UInt64,
    `packets_rev` UInt64,
    `tcp_flags_fwd` UInt8,
    `tcp_flags_rev` UInt8,
    `retrans_fwd` UInt32,
    `retrans_rev` UInt32,
    `hs_rtt_ext_us` Nullable(UInt32),
    `hs_rtt_int_us` Nullable(UInt32),
    `ts_rtt_count` UInt32,
    `ts_rtt_min_us` Nullable(UInt32),
    `ts_rtt_max_us` Nullable(UInt32),
    `ts_rtt_sum_us` UInt64,
    `ts_rtt_hist` Array(Tuple(b UInt16, c UInt64)),
    `icmp_rtt_count` UInt32,
    `icmp_rtt_min_us` Nullable(UInt32),
    `icmp_rtt_max_us` Nullable(UInt32),
    `icmp_rtt_sum_us` UInt64,
    `icmp_rtt_hist` Array(Tuple(b UInt16, c UInt64)),
    `dns_rtt_count` UInt32,
    `dns_rtt_min_us` Nullable(UInt32),
    `dns_rtt_max_us` Nullable(UInt32),
    `dns_rtt_sum_us` UInt64,
    `dns_rtt_hist` Array(Tuple(b UInt16, c UInt64)),
    `direction` LowCardinality(String),
    `partner` LowCardinality(String),
    `remote_country` LowCardinality(String),
    `remote_asn` UInt32,
    `ts` DateTime('UTC') MATERIALIZED toDateTime(intDiv(first_ns, 1000000000), 'UTC'),
    `kafka_topic` LowCardinality(String),
    `kafka_partition` UInt32,
    `kafka_offset` UInt64
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (toStartOfFiveMinutes(ts), partner, direction, link_id)
TTL ts + INTERVAL ${ttl_flows_raw_days} DAY
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;
