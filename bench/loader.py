"""Loader benchmark (`gwtel up` first): flow records/s from Kafka into ClickHouse's `flows_raw`, alone.

N FlowRecords (bench/job.py's, at `--event-rate` per second of event time) are loaded into a fresh 2-partition
topic once. Each run then loads the whole topic with the loader as `gwtel load` builds it (consumer group,
batches, deduplication tokens, commits after insert, its garbage-collector setting), into a database of its
own, and stops when the loader has acknowledged N rows. Figures are medians over `--runs`:

- records/s: N / (time from the loader's creation to its last commit), group join included;
- the same with the loader's own garbage-collector setting left at Python's defaults (`default_gc`);
- `gwtel load` as processes, one and then two in one consumer group (`--processes`, default 2; a partition
  each): N / (time from starting them to N rows in `flows_raw`), interpreter start-up included. The ratio
  of the two says how the loader scales when cores are free for it.

Baseline, same session: a plain kafka-python read_committed consume of the same topic (records/s).
Writes bench/results/loader.json. Usage: `python bench/loader.py [--records 300000] [--runs 3] [--processes 2]`.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _processes import start_loaders, stop_pipeline
from _results import Row, table, write
from job import TARGET_EVENT_RATE, consume_rate, load_topic, records
from prometheus_client import CollectorRegistry

from gwtel.config import GwtelConfig, load_config
from gwtel.pipeline import discard, drop_database, isolated, prepare
from processors.chclient import make_client
from processors.loader_setup import build_loader, migrate, tune_gc

# No new row for this long means records were lost (or a loader hangs): fail instead of waiting forever.
_STALL_S = 120


def own(base: GwtelConfig) -> GwtelConfig:
    """`base` with a database and consumer group of the run's own."""
    tag = uuid.uuid4().hex[:10]
    return base.model_copy(
        update={
            "clickhouse": base.clickhouse.model_copy(update={"database": f"{base.clickhouse.database}_{tag}"}),
            "loader": base.loader.model_copy(update={"group_id": f"{base.loader.group_id}-{tag}"}),
        }
    )


def one_run(base: GwtelConfig, n: int, tuned: bool) -> float:
    """Records/s of one loader over the whole topic, in a database and consumer group of its own."""
    cfg = own(base)
    migrate(cfg)
    gc.collect()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)  # Python's defaults
    if tuned:
        tune_gc()
    t0 = time.perf_counter()
    registry = CollectorRegistry()
    loader = build_loader(cfg, registry)
    try:
        while (registry.get_sample_value("gwtel_loader_flow_records_stored_total") or 0) < n:
            loader.step()
        seconds = time.perf_counter() - t0
    finally:
        loader.close()
        drop_database(cfg)
    return n / seconds


def processes_run(base: GwtelConfig, n: int, count: int) -> float:
    """Records/s of `count` `gwtel load` processes sharing one consumer group, until `flows_raw` holds N rows."""
    cfg = own(base)
    migrate(cfg)
    client = make_client(cfg.clickhouse)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        procs = start_loaders(cfg, Path(tmp), f"bench-loader-{count}", count)
        try:
            last, progress = -1, time.monotonic()
            while (stored := int(client.command("SELECT count() FROM flows_raw"))) < n:
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"a gwtel load process exited after {stored} rows; see its log")
                if stored != last:
                    last, progress = stored, time.monotonic()
                elif time.monotonic() - progress > _STALL_S:
                    raise RuntimeError(f"flows_raw stuck at {stored} of {n} rows for {_STALL_S} s")
                time.sleep(0.1)
            seconds = time.perf_counter() - t0
        finally:
            stop_pipeline(procs)
            client.close()
            drop_database(cfg)
    if stored != n:
        raise RuntimeError(f"flows_raw holds {stored} rows for {n} records")
    return n / seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=300_000, help="records in the topic (default 300000)")
    ap.add_argument("--event-rate", type=int, default=TARGET_EVENT_RATE, help="records per second of event time")
    ap.add_argument("--runs", type=int, default=3, help="runs per variant, alternating (default 3)")
    ap.add_argument("--processes", type=int, default=2, help="loader processes in the last variant (default 2)")
    args = ap.parse_args()
    n = args.records
    cfg = isolated(load_config(), uuid.uuid4().hex[:10])
    prepare(cfg)
    procs = f"processes{args.processes}"
    rates: dict[str, list[float]] = {"loader": [], "default_gc": [], "processes1": [], procs: []}
    try:
        load_topic(cfg.kafka.bootstrap, cfg.kafka.topics.flows, records(n, args.event_rate))
        baseline = consume_rate(cfg.kafka.bootstrap, cfg.kafka.topics.flows, n)
        print(f"baseline consume {baseline:,.0f} records/s", flush=True)
        for i in range(args.runs):
            for variant in ("loader", "default_gc"):
                rates[variant].append(one_run(cfg, n, tuned=variant == "loader"))
                print(f"  run {i + 1} {variant}: {rates[variant][-1]:,.0f} records/s", flush=True)
            for count, variant in ((1, "processes1"), (args.processes, procs)):
                rates[variant].append(processes_run(cfg, n, count))
                print(f"  run {i + 1} {variant}: {rates[variant][-1]:,.0f} records/s", flush=True)
    finally:
        discard(cfg)
    rows = [
        Row("loader records/s into flows_raw (median)", statistics.median(rates["loader"]), "records/s", baseline),
        Row("  with Python's default GC thresholds", statistics.median(rates["default_gc"]), "records/s", baseline),
        Row("gwtel load, 1 process (start-up included)", statistics.median(rates["processes1"]), "records/s", baseline),
        Row(
            f"gwtel load, {args.processes} processes, one group",
            statistics.median(rates[procs]),
            "records/s",
            statistics.median(rates["processes1"]),
        ),
    ]
    path = write("loader", rows, records=n, event_rate=args.event_rate, runs=rates)
    print(table([{"benchmark": "loader", **r} for r in json.loads(path.read_text())["rows"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
