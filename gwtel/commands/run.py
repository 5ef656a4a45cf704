"""`gwtel run`: the main job on local defaults, the whole pipeline end to end on one machine.

Starts the local services if needed, generates a capture of gateway traffic (or takes ``--pcap``), replays it
through the agent into Kafka, runs the Flink job over what the topic holds, loads flows and aggregates into
ClickHouse, waits until the delivery ledger balances (see gwtel.pipeline), then prints the per-partner report.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from gwtel import preflight
from gwtel.config import GwtelConfig, load_config
from gwtel.errors import UserError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run the whole pipeline on local defaults and print the per-partner report",
        description=(
            "Start the local services, generate (or take) a capture, replay it through agent -> Kafka -> "
            "Flink -> loader -> ClickHouse, wait until the data has landed, and print per-partner bandwidth and "
            "latency."
        ),
    )
    p.add_argument("--pcap", type=Path, help="replay this capture instead of generating one")
    p.add_argument("--flows", type=int, default=3000, help="flows to generate (default 3000)")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=_run)


def _step(msg: str) -> float:
    print(f"==> {msg}", flush=True)
    return time.monotonic()


def _done(t0: float, extra: str = "") -> None:
    print(f"    done in {time.monotonic() - t0:.1f}s{'  ' + extra if extra else ''}", flush=True)


def _up(cfg: GwtelConfig) -> None:
    from gwtel.services import registry
    from gwtel.services.kafka import KafkaService

    for svc in registry.build(cfg):
        svc.start()
        print(f"    {svc.name:<11} {svc.endpoint()}")
        if isinstance(svc, KafkaService):
            svc.ensure_topics()


def _synth(cfg: GwtelConfig, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    from ingest.synth import SynthConfig, generate

    window_s = min(cfg.job.window_sizes_s)
    # Traffic of the last minutes: each run lands in its own windows, so runs never add to each other.
    w_ns = 60 * 1_000_000_000
    start = time.time_ns() // w_ns * w_ns - 2 * w_ns
    out = cfg.local.home_path() / "run"
    out.mkdir(parents=True, exist_ok=True)
    sc = SynthConfig(seed=args.seed, flows=args.flows, duration_s=60, window_s=window_s, start_ns=start)
    doc = generate(sc, out / "synth.pcap", out / "synth.truth.json")
    return out / "synth.pcap", doc


def _run(args: argparse.Namespace) -> int:
    from gwtel.pipeline import run_pipeline
    from processors.chclient import make_client
    from processors.loader_setup import migrate
    from processors.queries import time_range
    from processors.report import report

    cfg = load_config(args.config)
    db = cfg.clickhouse.database
    t = _step("starting local services")
    _up(cfg)
    preflight.check(cfg, args.config, kafka=True, clickhouse=True)
    migrate(cfg)
    _done(t)

    truth: dict[str, Any] | None = None
    if args.pcap:
        pcap = args.pcap
    else:
        t = _step(f"generating {args.flows} flows of gateway traffic")
        pcap, truth = _synth(cfg, args)
        _done(t, f"{pcap} ({truth['packets']:,} packets)")

    t = _step("running the pipeline: agent -> Kafka -> Flink -> loader -> ClickHouse")
    run_pipeline(cfg, pcap, log=lambda msg: print(f"    {msg}", flush=True))
    _done(t)

    client = make_client(cfg.clickhouse)
    window_s = min(cfg.job.window_sizes_s)
    if truth is not None:
        start_ms, end_ms = truth["start_ns"] // 1_000_000, truth["end_ns"] // 1_000_000
    else:
        span = time_range(client, db, window_s)
        if span is None:
            raise UserError("no aggregates reached ClickHouse")
        start_ms, end_ms = span
    print()
    print(report(client, db, start_ms, end_ms, window_s))
    if truth is not None:
        _check_truth(client, db, start_ms, end_ms, window_s, truth)
    home = cfg.local.home_path()
    print(
        "\nWhere to look next:\n"
        f"  Prometheus      {cfg.prometheus.url}  (targets: {cfg.prometheus.url}/targets)\n"
        f"  ClickHouse      {cfg.clickhouse.url}  database {db} (clickhouse-connect, or the HTTP interface)\n"
        "  report again    gwtel report\n"
        f"  logs            {home / 'logs'}\n"
        "  Grafana         add the Prometheus and ClickHouse (grafana-clickhouse-datasource, HTTP) data sources above"
    )
    return 0


def _check_truth(client: Any, db: str, start_ms: int, end_ms: int, window_s: int, truth: dict[str, Any]) -> None:
    from gwtel.pipeline import truth_totals
    from processors.queries import partner_traffic

    want = truth_totals(truth)
    rows = partner_traffic(client, db, start_ms, end_ms, window_s)
    got = {(r.partner, r.direction): [r.bytes, r.packets] for r in rows}
    if got != want:
        raise UserError(f"totals differ from the ground truth: got {got}, expected {want}")
    print("\nTotals per partner and direction equal the generator's ground truth (bytes and packets, exact).")
