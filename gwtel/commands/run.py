"""`gwtel run`: the main job on local defaults, the whole pipeline end to end on one machine.

Starts the local services if needed, generates a capture of gateway traffic (or takes ``--pcap``), replays it
through the agent into Kafka, runs the Flink job over what the topic holds, loads flows and aggregates into
ClickHouse, waits until the delivery ledger balances (see gwtel.pipeline), then prints the per-partner report.

A ``--pcap`` capture that starts before the tables' retention (a public trace from years ago) would vanish at
insert (ClickHouse drops rows older than a table's TTL): such a run goes into its own topics and database, with
a retention that keeps it, as `gwtel verify` does, and says so. Its timestamps stay as captured.
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


def _capture_start_ns(path: Path) -> int | None:
    """The first packet's time, or None when the file holds none (the replay reports why)."""
    from ingest.sources import CaptureError, open_capture

    try:
        with open_capture(path) as reader:
            for frame in reader:
                return frame.ts_ns
    except CaptureError:  # the replay itself says what is wrong with the file
        return None
    return None


def _keep_old_capture(cfg: GwtelConfig, pcap: Path) -> GwtelConfig:
    """`cfg`, or for a capture older than the retention, `cfg` with the capture's own database that keeps it."""
    from gwtel.pipeline import isolated
    from schemas.expected import format_time

    start = _capture_start_ns(pcap)
    keep_days = min(cfg.loader.ttl_flows_raw_days, cfg.loader.ttl_window_days)
    if start is None or start >= time.time_ns() - keep_days * 86_400 * 1_000_000_000:
        return cfg
    own = isolated(cfg, f"pcap_{time.strftime('%Y%m%d_%H%M%S', time.gmtime())}")
    print(
        f"    {pcap} starts {format_time(start // 1_000_000)}, before the tables' retention ({keep_days} days): "
        f"ClickHouse would drop its rows at insert. It goes into its own database {own.clickhouse.database} "
        f"(topics gwtel.run-*), which keeps it; drop it with `DROP DATABASE {own.clickhouse.database}` when done",
        flush=True,
    )
    return own


def _run(args: argparse.Namespace) -> int:
    from gwtel.pipeline import prepare, run_pipeline, start_services
    from processors.chclient import make_client
    from processors.queries import time_range
    from processors.report import report

    cfg = load_config(args.config)
    t = _step("starting local services")
    start_services(cfg, say=lambda msg: print(f"    {msg}", flush=True))
    preflight.check(cfg, args.config, kafka=True, clickhouse=True)
    if args.pcap:
        cfg = _keep_old_capture(cfg, args.pcap)
    db = cfg.clickhouse.database
    prepare(cfg)
    _done(t)

    truth: dict[str, Any] | None = None
    if args.pcap:
        pcap = args.pcap
    else:
        t = _step(f"generating {args.flows} flows of gateway traffic")
        pcap, truth = _synth(cfg, args)
        _done(t, f"{pcap} ({truth['packets']:,} packets)")

    t = _step("running the pipeline: agent -> Kafka -> Flink -> loader -> ClickHouse")
    # Returns when the delivery ledger balances (records produced = rows stored), not after a fixed wait.
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
    groups = cfg.partners.groups
    print(
        report(
            client,
            db,
            start_ms,
            end_ms,
            window_s,
            capacity_bps={name: g.capacity_bps for name, g in groups.items()},
            objectives={name: g.slo for name, g in groups.items()},
        )
    )
    if truth is not None:
        _check_truth(client, db, window_s, truth)
    client.close()
    print(_next_steps(cfg, start_ms, end_ms))
    return 0


def _next_steps(cfg: GwtelConfig, start_ms: int, end_ms: int) -> str:
    from schemas.expected import format_time

    home = cfg.local.home_path()
    db = cfg.clickhouse.database
    return (
        "\nWhere to look next:\n"
        f"  Prometheus      {cfg.prometheus.url}  (every process it scrapes: {cfg.prometheus.url}/targets)\n"
        f"  ClickHouse      {cfg.clickhouse.url}  database {db} (clickhouse-connect, or the HTTP interface)\n"
        f"  report again    gwtel report --from {format_time(start_ms)} --to {format_time(end_ms)}\n"
        "  HTML report     gwtel report --html report.html\n"
        "  Grafana         docs/observability.md: add the Prometheus and ClickHouse data sources above, import the "
        "dashboards\n"
        "  replay testing  gwtel verify --pcap FILE --expected FILE  (docs/verify.md)\n"
        f"  logs            {home / 'logs'}"
    )


def _check_truth(client: Any, db: str, window_s: int, truth: dict[str, Any]) -> None:
    from gwtel.compare import compare
    from schemas.expected import from_truth

    # The same check as `gwtel verify`: every window, partner and direction exact, percentiles within a bucket.
    result = compare(client, db, from_truth(truth, window_s=window_s))
    if not result.ok:
        raise UserError("ClickHouse differs from the generator's ground truth:\n" + result.render())
    print(
        f"\nClickHouse equals the generator's ground truth: {result.checks} checks (bytes, packets and flows per "
        "window, partner and direction exact; latency percentiles within one histogram bucket)."
    )
