"""Prometheus metrics of the ClickHouse HTTP server, on their own registry and port.

Labels are bounded: `kind` is one of KINDS, `status` an HTTP status code, `code` a ClickHouse error code.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

KINDS = ("ping", "select", "insert", "command", "invalid")

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gwtel_clickhouse_http_requests",
            "HTTP requests served, by request kind and HTTP status.",
            ["kind", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "gwtel_clickhouse_http_request_duration_seconds",
            "Time from reading the request to having the response ready, by request kind.",
            ["kind"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.inserted_rows = Counter(
            "gwtel_clickhouse_inserted_rows", "Rows written by INSERT requests (as the engine reports).", registry=r
        )
        self.inserted_bytes = Counter(
            "gwtel_clickhouse_insert_body_bytes",
            "Bytes of INSERT request bodies as received (before decompression).",
            registry=r,
        )
        self.errors = Counter(
            "gwtel_clickhouse_errors", "Requests that failed, by ClickHouse error code.", ["code"], registry=r
        )
        self.sessions = Gauge("gwtel_clickhouse_sessions", "Open HTTP sessions (session_id).", registry=r)
        self.engine_wait = Histogram(
            "gwtel_clickhouse_engine_lock_wait_seconds",
            "Time a request waited for a free engine connection (each runs one statement at a time).",
            buckets=_BUCKETS,
            registry=r,
        )
        for kind in KINDS:
            self.duration.labels(kind=kind)

    def track_sessions(self, count: Callable[[], int]) -> None:
        self.sessions.set_function(lambda: float(count()))
