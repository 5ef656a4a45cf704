-- Late FlowRecords count in their windows. A record that reached the Flink job after its window had closed
-- is stored in flows_late (0004) and, through this view, added to bandwidth_window as extra rows of the
-- window its last packet falls in, at every window size the job emits (`job.window_sizes_s`, fixed when the
-- view is created, like the rollups' window size). bandwidth_window is summed by every query and its
-- rollup views (0003) fire on these rows too, so rates, peaks and the 95th percentile billing include late
-- traffic. The rows keep the late topic's Kafka coordinates (`kafka_topic`), so late additions stay
-- visible (processors.queries.late_traffic reads flows_late itself).
-- The same split as the job's bandwidth windows (processors.aggregate.bandwidth): the initiator's
-- counters, the flow and its end go to `direction`; the responder's counters, when it sent packets, to the
-- opposite direction (egress <-> ingress, other directions to themselves). `remote_hosts` is 0: distinct
-- counts do not add up across rows (the window's own row has its count).
-- Exactly once: the loader inserts flows_late with its deduplication token and
-- deduplicate_blocks_in_dependent_materialized_views = 1, so a replayed late batch is dropped here too.
CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.flows_late_bandwidth_mv TO ${db}.bandwidth_window AS
SELECT
    window_s,
    intDiv(intDiv(last_ns, 1000000), window_s * 1000) * (window_s * 1000) AS window_start_ms,
    partner,
    tupleElement(side, 1) AS direction,
    link_id,
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
