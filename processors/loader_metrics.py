"""The loader's Prometheus metrics (`gwtel_loader_*`), registered in the registry the caller passes.

Three of them are stages of the delivery ledger (docs/observability.md): flow records stored, the packets
those records carry, and the flows the job aggregated (read from the stored bandwidth aggregates of the
rollup window size, so each flow counts once however many window sizes the job emits).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class LoaderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.records_consumed = Counter(
            "gwtel_loader_records_consumed_total",
            "Kafka records the loader read (valid or not), by topic",
            ["topic"],
            registry=registry,
        )
        self.rows_inserted = Counter(
            "gwtel_loader_rows_inserted_total",
            "Rows in inserts ClickHouse acknowledged, by table (a deduplicated retry counts again)",
            ["table"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "gwtel_loader_dead_lettered_total",
            "Records sent to the dead-letter topic, by reason",
            ["reason"],
            registry=registry,
        )
        self.flow_records_stored = Counter(
            "gwtel_loader_flow_records_stored_total",
            "Flow records stored in flows_raw and acknowledged (offsets committed)",
            registry=registry,
        )
        self.flow_packets_stored = Counter(
            "gwtel_loader_flow_packets_stored_total",
            "Packets (both directions) carried by the flow records stored in flows_raw",
            registry=registry,
        )
        self.flows_aggregated = Counter(
            "gwtel_loader_flows_aggregated_total",
            "Flows counted by the stored bandwidth aggregates of the rollup window size (the job's output)",
            registry=registry,
        )
        self.insert_retries = Counter(
            "gwtel_loader_insert_retries_total",
            "Failed attempts to insert a batch (it is retried with the same token), by table",
            ["table"],
            registry=registry,
        )
        self.insert_seconds = Histogram(
            "gwtel_loader_insert_seconds",
            "Time of one successful insert, by table",
            ["table"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.slow_batches = Counter(
            "gwtel_loader_slow_batches_total",
            "Raw batches ClickHouse could not take as they were, loaded record by record instead, by topic",
            ["topic"],
            registry=registry,
        )
        self.batches = Counter(
            "gwtel_loader_batches_total",
            "Batches whose offsets were committed, by topic",
            ["topic"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "gwtel_loader_consumer_lag",
            "Records between the committed offset and the end of the partition (read_committed)",
            ["topic", "partition"],
            registry=registry,
        )
        self.last_commit = Gauge(
            "gwtel_loader_last_commit_timestamp_seconds",
            "Unix time of the last offset commit after a stored batch",
            registry=registry,
        )
        self.clickhouse_up = Gauge(
            "gwtel_loader_clickhouse_up",
            "0 while an insert is failing and being retried, else 1",
            registry=registry,
        )
        self.clickhouse_up.set(1)
