-- Application classes in the windows (docs/classes.md): the job keys its bandwidth and latency windows also by
-- `app_class`, so each window table gets the column; rows written before read as the default class.
-- The sort keys stay as they are: rows of two classes of one key are two rows, and every query sums rows.
-- The rollups (0003) keep summing over classes: their per-partner figures include every class.
ALTER TABLE ${db}.bandwidth_window ADD COLUMN IF NOT EXISTS `app_class` LowCardinality(String) DEFAULT 'default' AFTER `link_id`;
ALTER TABLE ${db}.latency_window ADD COLUMN IF NOT EXISTS `app_class` LowCardinality(String) DEFAULT 'default' AFTER `link_id`;
ALTER TABLE ${db}.latency_hist_window ADD COLUMN IF NOT EXISTS `app_class` LowCardinality(String) DEFAULT 'default' AFTER `link_id`;
-- Late FlowRecords count in the window of their own class: the view of 0008, with `app_class`.
DROP VIEW IF EXISTS ${db}.flows_late_bandwidth_mv;
CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.flows_late_bandwidth_mv TO ${db}.bandwidth_window AS
SELECT
    window_s,
    intDiv(intDiv(last_ns, 1000000), window_s * 1000) * (window_s * 1000) AS window_start_ms,
    partner,
    tupleElement(side, 1) AS direction,
    link_id,
    app_class,
    sampling_rate,
    tupleElement(side, 2) AS bytes,
    tupleElement(side, 3) AS packets,
    tupleElement(side, 4) AS retrans,
    tupleElement(side, 5) AS flows,
    tupleElement(side, 6) AS flows_ended,
    toUInt64(0) AS remote_hosts,
    bytes * sampling_rate AS bytes_scaled,
    packets * sampling_rate AS packets_scaled,
    retrans * sampling_rate AS retrans_scaled,
    toFloat64(bytes_scaled) * 8 / window_s AS bits_per_s,
    toFloat64(packets_scaled) / window_s AS packets_per_s,
    kafka_topic,
    kafka_partition,
    kafka_offset
FROM
(
    SELECT
        *,
        toUInt32(arrayJoin(${window_sizes_s})) AS window_s,
        arrayJoin(arrayFilter(
            s -> tupleElement(s, 7) = 1,
            [
                (toString(direction), bytes_fwd, packets_fwd, toUInt64(retrans_fwd), toUInt64(1),
                 toUInt64(end_reason != 'active'), toUInt8(1)),
                (multiIf(direction = 'egress', 'ingress', direction = 'ingress', 'egress', toString(direction)),
                 bytes_rev, packets_rev, toUInt64(retrans_rev), toUInt64(0), toUInt64(0), toUInt8(packets_rev > 0))
            ]
        )) AS side
    FROM ${db}.flows_late
);
