"""`gwtel run`: the main job on local defaults, the whole pipeline end to end on one machine.

Starts the local services if needed, generates a capture of gateway traffic (or takes ``--pcap``), replays it
through the agent into Kafka, runs the Flink job over what the topic holds, loads flows and aggregates into
ClickHouse, waits until the delivery ledger balances (every record the agent produced is a row in ClickHouse,
and the loader has read every aggregate the job committed), then prints the per-partner report.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from gwtel.config import GwtelConfig, load_config
from gwtel.errors import UserError

_LEDGER_TIMEOUT_S = 300.0


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
    # Traffic of the last minute: each run lands in its own windows, so runs never add to each other.
    w_ns = 60 * 1_000_000_000
    start = time.time_ns() // w_ns * w_ns - 2 * w_ns
    out = cfg.local.home_path() / "run"
    out.mkdir(parents=True, exist_ok=True)
    sc = SynthConfig(seed=args.seed, flows=args.flows, duration_s=60, window_s=window_s, start_ns=start)
    doc = generate(sc, out / "synth.pcap", out / "synth.truth.json")
    return out / "synth.pcap", doc


def _ledger_balanced(client: Any, db: str, agent_id: str, first_seq: int, records: int) -> int:
    rows = client.query(
        f"SELECT count() FROM {db}.flows_raw WHERE agent_id = {{a:String}} AND seq >= {{s:UInt64}}",
        parameters={"a": agent_id, "s": first_seq},
    ).result_rows[0][0]
    return int(rows)


def _caught_up(loader: Any) -> bool:
    consumer = loader.consumer
    tps = consumer.assignment()
    if not tps:
        return False
    ends = consumer.end_offsets(list(tps))
    return all(consumer.position(tp) >= ends[tp] for tp in tps) and loader.idle()


def _run(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from gwtel.commands.replay import do_replay
    from processors.chclient import make_client
    from processors.job import run_job
    from processors.loader_setup import build_loader, migrate
    from processors.report import report

    cfg = load_config(args.config)
    db = cfg.clickhouse.database
    t = _step("starting local services")
    _up(cfg)
    migrate(cfg)
    _done(t)

    truth: dict[str, Any] | None = None
    if args.pcap:
        pcap = args.pcap
    else:
        t = _step(f"generating {args.flows} flows of gateway traffic")
        pcap, truth = _synth(cfg, args)
        _done(t, f"{pcap} ({truth['packets']:,} packets)")

    t = _step(f"replaying {pcap} through the agent into Kafka topic {cfg.kafka.topics.flows}")
    run = do_replay(cfg, [pcap], "kafka")
    c = run.agent.counters
    first_seq = run.agent.meter.next_seq - c.records_emitted
    if run.result.errors and all(f.frames == 0 for f in run.result.files):
        raise UserError(str(run.result.errors[0]))
    assert run.producer is not None
    if run.producer.spool_pending:
        raise UserError(f"{run.producer.spool_pending} records are still in the agent's spool: Kafka did not take them")
    _done(t, f"{c.packets_seen:,} packets -> {c.records_emitted:,} flow records, {run.producer.acked:,} acked")

    t = _step("aggregating with the Flink job (bounded: up to what the topic holds now)")
    run_job(cfg, bounded=True)
    _done(t)

    t = _step(f"loading flows and aggregates into ClickHouse database {db} at {cfg.clickhouse.url}")
    loader = build_loader(cfg, CollectorRegistry())
    client = make_client(cfg.clickhouse)
    deadline = time.monotonic() + _LEDGER_TIMEOUT_S
    stored = 0
    try:
        while True:
            loader.step()
            stored = _ledger_balanced(client, db, cfg.agent.agent_id, first_seq, c.records_emitted)
            if stored >= c.records_emitted and _caught_up(loader):
                break
            if time.monotonic() > deadline:
                raise UserError(
                    f"the delivery ledger did not balance in {_LEDGER_TIMEOUT_S:.0f}s: agent produced "
                    f"{c.records_emitted} records, ClickHouse holds {stored}; see `gwtel status` and .gwtel/logs"
                )
    finally:
        loader.close()
    _done(t, f"ledger: {c.records_emitted:,} records produced = {stored:,} rows stored")

    window_s = min(cfg.job.window_sizes_s)
    if truth is not None:
        start_ms, end_ms = truth["start_ns"] // 1_000_000, truth["end_ns"] // 1_000_000
    else:
        from processors.queries import time_range

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
        f"  report again    gwtel report\n"
        f"  logs            {home / 'logs'}\n"
        "  Grafana         provision deploy/grafana/ (see docs) with the Prometheus and ClickHouse data sources"
    )
    return 0


def _check_truth(client: Any, db: str, start_ms: int, end_ms: int, window_s: int, truth: dict[str, Any]) -> None:
    from processors.queries import partner_traffic

    want: dict[tuple[str, str], list[int]] = {}
    for row in truth["bandwidth"]:
        k = (row["partner"], row["direction"])
        acc = want.setdefault(k, [0, 0])
        acc[0] += row["bytes"]
        acc[1] += row["packets"]
    got = {
        (r.partner, r.direction): [r.bytes, r.packets] for r in partner_traffic(client, db, start_ms, end_ms, window_s)
    }
    if got == want:
        print("\nTotals per partner and direction equal the generator's ground truth (bytes and packets, exact).")
    else:
        raise UserError(f"totals differ from the ground truth: got {got}, expected {want}")
