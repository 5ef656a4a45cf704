"""An embedded ClickHouse server: the chDB engine behind the ClickHouse HTTP interface.

One process owns one chDB data directory and serves the HTTP interface that clickhouse-connect speaks, so
the loader, reports and tests use the same client code as against a real ClickHouse server. Run it with
`python -m gwtel.chserver --data DIR --port N`; `gwtel.services.clickhouse.ClickHouseService` starts it.
"""

from gwtel.chserver.server import serve

__all__ = ["serve"]
