"""Ordered ClickHouse migrations (`NNNN_name.sql`), applied by `processors.migrate`."""
