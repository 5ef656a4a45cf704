"""`gwtel forecast`: per partner and direction, the trend of the monthly 95th percentile and the months left
until the contracted capacity; `--serve` keeps it published as Prometheus gauges for the alert rule."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from gwtel.config import GwtelConfig, load_config

FORECAST_JOB = "gwtel-forecast"
DEFAULT_PORT = 9479


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "forecast",
        help="print (or serve as metrics) the capacity forecast per partner and direction",
        description="Theil-Sen trend of each complete month's 95th percentile billing figure (up to 12 months) "
        "and the months left until partners.groups.<name>.capacity_bps at that growth (docs/partners.md). "
        "--serve recomputes it every --interval seconds and serves gwtel_forecast_* gauges until interrupted.",
    )
    p.add_argument("--serve", action="store_true", help="keep running and serve the forecast as metrics")
    p.add_argument("--interval", type=float, default=3600.0, help="seconds between computations (default 3600)")
    p.add_argument("--metrics-port", type=int, default=DEFAULT_PORT, help=f"with --serve (default {DEFAULT_PORT})")
    p.add_argument(
        "--metrics-host", default="127.0.0.1", help="address to serve on (default 127.0.0.1; 0.0.0.0 in a pod)"
    )
    p.set_defaults(func=_run)


def _capacities(cfg: GwtelConfig) -> dict[str, int]:
    return {name: g.capacity_bps for name, g in cfg.partners.groups.items()}


def _run(args: argparse.Namespace) -> int:
    from processors.chclient import make_client
    from processors.forecast import collect_forecasts
    from processors.report import render_forecast

    cfg = load_config(args.config)
    client = make_client(cfg.clickhouse)
    db = cfg.clickhouse.read_database()
    if not args.serve:
        print(render_forecast(collect_forecasts(client, db, time.time_ns() // 1_000_000, _capacities(cfg))))
        return 0
    return _serve(args, cfg, client, db)


def _serve(args: argparse.Namespace, cfg: GwtelConfig, client: Any, db: str) -> int:
    from gwtel.metrics_http import process_registry, serve_metrics
    from processors.forecast import collect_forecasts
    from processors.forecast_metrics import ForecastMetrics

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("gwtel.forecast")
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    registry = process_registry()
    metrics = ForecastMetrics(registry)
    home = cfg.local.home_path()
    with serve_metrics(
        FORECAST_JOB, db, args.metrics_port, home, registry, component="forecast", host=args.metrics_host
    ):
        while not stop.is_set():
            try:
                forecasts = collect_forecasts(client, db, time.time_ns() // 1_000_000, _capacities(cfg))
            except Exception as exc:  # ClickHouse away: keep the last figures, say so, try again next round
                metrics.runs.labels("error").inc()
                log.warning("forecast not computed (%s); the last figures stay published", exc)
            else:
                metrics.publish(forecasts, time.time())
                log.info("forecast computed for %d partner directions", len(forecasts))
            stop.wait(max(args.interval, 1.0))
    return 0
