"""Flow records -> aggregates -> ClickHouse: the Flink job, the loader, queries and the report."""
