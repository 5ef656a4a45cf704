-- FlowRecord field sampling_mode (added at the end of the record, default 'packet'): how the agent sampled
-- the packets of the flow, 1:N at random per packet or 1:N whole flows by a symmetric flow hash
-- (docs/capture.md). Records written before the column existed read as 'packet', which they were.
ALTER TABLE ${db}.flows_raw ADD COLUMN IF NOT EXISTS `sampling_mode` LowCardinality(String) DEFAULT 'packet' AFTER `remote_asn`;
ALTER TABLE ${db}.flows_late ADD COLUMN IF NOT EXISTS `sampling_mode` LowCardinality(String) DEFAULT 'packet' AFTER `remote_asn`;
