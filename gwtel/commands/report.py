"""`gwtel report`: per-partner bandwidth, 95th percentile, utilisation, handshake RTT and latency objectives."""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path

from gwtel.config import load_config
from gwtel.errors import UserError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="print per-partner bandwidth and latency for a time range",
        description="Per partner and direction: average and peak Gb/s, the 95th percentile of 5-minute rates, "
        "utilisation of the contracted capacity, late traffic; per partner: TCP handshake RTT p50/p95/p99 "
        "(both legs) and each latency objective's status. --billing prints a month's 95th percentile billing.",
    )
    p.add_argument("--from", dest="start", help="start, ISO 8601 UTC (default: first data)")
    p.add_argument("--to", dest="end", help="end, ISO 8601 UTC, exclusive (default: last data)")
    p.add_argument("--window", type=int, default=10, help="aggregate window size to read, seconds (default 10)")
    p.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML page with charts")
    p.add_argument("--billing", metavar="YYYY-MM", help="print the 95th percentile billing of a month (UTC) instead")
    p.set_defaults(func=_run)


def _ms(text: str) -> int:
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise UserError(f"{text!r} is not an ISO 8601 time (example: 2026-11-26T08:00:00Z)") from None


def _month(text: str) -> tuple[int, int]:
    try:
        d = datetime.strptime(text, "%Y-%m")
    except ValueError:
        raise UserError(f"--billing {text!r}: give a month as YYYY-MM (example: 2026-11)") from None
    return d.year, d.month


def _run(args: argparse.Namespace) -> int:
    from processors.chclient import make_client
    from processors.queries import ERROR_BUDGET_DAYS, billing_95th, time_range
    from processors.report import collect, render_billing, render_table

    cfg = load_config(args.config)
    client = make_client(cfg.clickhouse, read_only=True)
    db = cfg.clickhouse.read_database()
    groups = cfg.partners.groups
    if args.billing:
        year, month = _month(args.billing)
        rows = billing_95th(client, db, year, month, now_ms=time.time_ns() // 1_000_000)
        print(render_billing(rows, f"{year:04d}-{month:02d}"))
        return 0
    span = time_range(client, db, args.window)
    if span is None:
        print(f"no {args.window}s aggregates in {db} yet")
        return 0
    start = _ms(args.start) if args.start else span[0]
    end = _ms(args.end) if args.end else span[1]
    if end <= start:
        raise UserError("--to must be after --from")
    data = collect(
        client,
        db,
        start,
        end,
        args.window,
        capacity_bps={name: g.capacity_bps for name, g in groups.items()},
        objectives={name: g.slo for name, g in groups.items()},
        # the budget reads flows_raw: its period cannot reach past what flows_raw keeps
        budget_days=min(ERROR_BUDGET_DAYS, cfg.loader.ttl_flows_raw_days),
    )
    print(render_table(data))
    if args.html:
        from processors.report_html import collect_series, render_html

        page = render_html(data, collect_series(client, db, data), {name: g.slo for name, g in groups.items()})
        args.html.write_text(page, encoding="utf-8")
        print(f"\nwrote {args.html}")
    return 0
