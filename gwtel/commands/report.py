"""`gwtel report`: per-partner bandwidth and latency from ClickHouse for a time range."""

from __future__ import annotations

import argparse
from datetime import datetime

from gwtel.config import load_config
from gwtel.errors import UserError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="print per-partner bandwidth and latency for a time range",
        description="Per partner and direction: bytes, packets, flows, average and peak Mb/s, and the TCP "
        "handshake RTT beyond the gateway (p50/p95/p99 from merged histogram buckets).",
    )
    p.add_argument("--from", dest="start", help="start, ISO 8601 UTC (default: first data)")
    p.add_argument("--to", dest="end", help="end, ISO 8601 UTC, exclusive (default: last data)")
    p.add_argument("--window", type=int, default=10, help="aggregate window size to read, seconds (default 10)")
    p.set_defaults(func=_run)


def _ms(text: str) -> int:
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise UserError(f"{text!r} is not an ISO 8601 time (example: 2026-11-26T08:00:00Z)") from None


def _run(args: argparse.Namespace) -> int:
    from processors.chclient import make_client
    from processors.queries import time_range
    from processors.report import report

    cfg = load_config(args.config)
    client = make_client(cfg.clickhouse)
    db = cfg.clickhouse.database
    span = time_range(client, db, args.window)
    if span is None:
        print(f"no {args.window}s aggregates in {db} yet")
        return 0
    start = _ms(args.start) if args.start else span[0]
    end = _ms(args.end) if args.end else span[1]
    print(report(client, db, start, end, args.window))
    return 0
