-- FlowRecord fields of router flow export (gwtel collect, docs/collect.md), added at the end of the record,
-- each with a default: the exporter's address, its input and output interface indexes, the source and
-- destination AS numbers and the next hop as exported, and one_way (1: the record counts one direction only).
-- Records of capture agents, and those written before the columns existed, read as the defaults ('' and 0).
-- Before the landing migration, whose views store every FlowRecord column into flows_raw.
ALTER TABLE ${db}.flows_raw ADD COLUMN IF NOT EXISTS `exporter` LowCardinality(String) DEFAULT '' AFTER `sampling_mode`;
ALTER TABLE ${db}.flows_raw ADD COLUMN IF NOT EXISTS `in_if` UInt32 DEFAULT 0 AFTER `exporter`;
ALTER TABLE ${db}.flows_raw ADD COLUMN IF NOT EXISTS `out_if` UInt32 DEFAULT 0 AFTER `in_if`;
ALTER TABLE ${db}.flows_raw ADD COLUMN IF NOT EXISTS `src_asn` UInt32 DEFAULT 0 AFTER `out_if`;
ALTER TABLE ${db}.flows_raw ADD COLUMN IF NOT EXISTS `dst_asn` UInt32 DEFAULT 0 AFTER `src_asn`;
ALTER TABLE ${db}.flows_raw ADD COLUMN IF NOT EXISTS `next_hop` String DEFAULT '' AFTER `dst_asn`;
ALTER TABLE ${db}.flows_raw ADD COLUMN IF NOT EXISTS `one_way` UInt8 DEFAULT 0 AFTER `next_hop`;
ALTER TABLE ${db}.flows_late ADD COLUMN IF NOT EXISTS `exporter` LowCardinality(String) DEFAULT '' AFTER `sampling_mode`;
ALTER TABLE ${db}.flows_late ADD COLUMN IF NOT EXISTS `in_if` UInt32 DEFAULT 0 AFTER `exporter`;
ALTER TABLE ${db}.flows_late ADD COLUMN IF NOT EXISTS `out_if` UInt32 DEFAULT 0 AFTER `in_if`;
ALTER TABLE ${db}.flows_late ADD COLUMN IF NOT EXISTS `src_asn` UInt32 DEFAULT 0 AFTER `out_if`;
ALTER TABLE ${db}.flows_late ADD COLUMN IF NOT EXISTS `dst_asn` UInt32 DEFAULT 0 AFTER `src_asn`;
ALTER TABLE ${db}.flows_late ADD COLUMN IF NOT EXISTS `next_hop` String DEFAULT '' AFTER `dst_asn`;
ALTER TABLE ${db}.flows_late ADD COLUMN IF NOT EXISTS `one_way` UInt8 DEFAULT 0 AFTER `next_hop`;
