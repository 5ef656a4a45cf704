"""`gwtel migrate` and `gwtel load`: the ClickHouse schema, and the Kafka -> ClickHouse loader."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from types import FrameType

from gwtel import preflight
from gwtel.config import load_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mig = sub.add_parser(
        "migrate",
        help="create or upgrade the ClickHouse tables (idempotent)",
        description="Apply the ClickHouse migrations not applied yet to clickhouse.database and set each "
        "table's retention to the loader.ttl_* settings. Running it again changes nothing.",
    )
    mig.set_defaults(func=_migrate)

    load = sub.add_parser(
        "load",
        help="load flows and aggregates from Kafka into ClickHouse",
        description="Migrate, then consume the flows and aggregates topics and insert them into ClickHouse "
        "exactly once, until interrupted (SIGINT/SIGTERM). Metrics on loader.metrics_port.",
    )
    load.add_argument("--no-migrate", action="store_true", help="do not apply migrations at start")
    load.add_argument(
        "--metrics-port", type=int, default=None, help="serve /metrics here (default: loader.metrics_port; 0: off)"
    )
    load.set_defaults(func=_load)


# Imported inside the handlers so `gwtel --help` does not load the Kafka and ClickHouse clients.


def _migrate(args: argparse.Namespace) -> int:
    from processors.loader_setup import migrate

    cfg = load_config(args.config)
    applied, altered = migrate(cfg)
    db = cfg.clickhouse.database
    print(f"{db}: applied migrations {', '.join(f'{v:04d}' for v in applied) or 'none (up to date)'}")
    if altered:
        print(f"{db}: retention changed on {', '.join(altered)}")
    return 0


def _load(args: argparse.Namespace) -> int:
    from prometheus_client import REGISTRY

    from gwtel.metrics_http import serve_metrics
    from processors import faults
    from processors.loader_setup import build_loader, migrate, tune_memory

    fault = faults.configured()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its INFO lines are per-connection chatter
    cfg = load_config(args.config)
    # ClickHouse is needed at start only to migrate: the loader itself waits out a later outage.
    preflight.check(cfg, args.config, kafka=True, clickhouse=not args.no_migrate)
    if not args.no_migrate:
        applied, _ = migrate(cfg)
        logging.getLogger("gwtel.loader").info("migrations applied: %s", applied or "none")
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    loader = build_loader(cfg, REGISTRY, after_insert=faults.loader_after_insert(fault))
    tune_memory()
    endpoint = None
    try:
        port = cfg.loader.metrics_port if args.metrics_port is None else args.metrics_port
        if port:
            # Served once the loader's metrics exist; announced to the local Prometheus by a target file
            # that is removed again at exit.
            instance = f"{socket.gethostname()}-{os.getpid()}"
            endpoint = serve_metrics(
                "loader", instance, port, cfg.local.home_path(), REGISTRY, host=cfg.prometheus.metrics_host
            )
        loader.run(stop.is_set)
    finally:
        loader.close()
        if endpoint is not None:
            endpoint.close()
    return 0
