"""`gwtel up | down | status`: the local services (Kafka, Flink runtime, embedded ClickHouse, Prometheus)."""

from __future__ import annotations

import argparse
import time

from gwtel.config import load_config
from gwtel.services import registry


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser(
        "up",
        help="fetch, start and health-check the local services (idempotent)",
        description="Fetch (first time), start and health-check the local services. Running it twice is harmless.",
    )
    up.add_argument("services", nargs="*", metavar="SERVICE", help=f"subset of {', '.join(registry.SERVICE_NAMES)}")
    up.set_defaults(func=_up)

    down = sub.add_parser("down", help="stop the local services", description="Stop the local services.")
    down.add_argument("services", nargs="*", metavar="SERVICE", help="subset to stop (default: all)")
    down.set_defaults(func=_down)

    status = sub.add_parser(
        "status", help="show each local service's health", description="Ask each local service whether it is healthy."
    )
    status.set_defaults(func=_status)


def _up(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    home = cfg.local.home_path()
    print(f"local services home: {home} (logs in {home / 'logs'})")
    from gwtel.services.kafka import KafkaService
    from gwtel.services.kafka_cluster import KafkaCluster

    for svc in registry.select(registry.build(cfg, home), args.services):
        t0 = time.monotonic()
        svc.start()
        print(f"  {svc.name:<11} up   {svc.endpoint()}  ({time.monotonic() - t0:.1f}s)")
        if isinstance(svc, (KafkaService, KafkaCluster)):
            svc.ensure_topics()
            print(f"  topics ready: {', '.join(cfg.kafka.topics.model_dump().values())}")
    return 0


def _down(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    for svc in reversed(registry.select(registry.build(cfg), args.services)):
        was = svc.running()
        svc.stop()
        print(f"  {svc.name:<11} {'stopped' if was else 'not running'}")
    return 0


def _status(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    bad = 0
    for svc in registry.build(cfg):
        h = svc.health()
        bad += not h.ok
        print(f"  {svc.name:<11} {'healthy' if h.ok else 'DOWN':<8} {svc.endpoint():<32} {h.detail}")
    return 1 if bad else 0
