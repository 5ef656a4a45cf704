"""Loader benchmark (`gwtel up` first): flow records/s from Kafka into ClickHouse's `flows_raw`, alone.

N FlowRecords (bench/job.py's, at `--event-rate` per second of event time) are loaded into a fresh 2-partition
topic once. Each run then loads the whole topic into a database of its own, and stops when the loader has
acknowledged N rows. Variants, alternating, medians over `--runs`:

- `loader`: as `gwtel load` builds it (consumer group, batches, deduplication tokens, commits after insert):
  the landing path, where ClickHouse parses and checks the records' bytes. N / (time from the loader's
  creation to its last commit), group join included;
- `per_record`: the same loader with the flows topic on the slow path (each record decoded and checked in
  Python, rows encoded by clickhouse-connect), the design before the landing path;
- `clickhouse`: the landing inserts alone, without Kafka: the topic's values joined per batch of
  `loader.batch_rows` and inserted with their tokens, what ClickHouse (embedded here) takes per second;
- `clickhouse_threads`: the same inserts from `--insert-threads` clients at once (batch i from client
  i mod threads), as the loader sends the batches of different partitions (`loader.insert_threads`, which the
  `loader` variant sets to the same number);
- `loader_no_merges`: `loader` with the background merges of `flows_raw` stopped in its database: what
  ClickHouse's merges of the parts the run writes cost it (merges are not optional in production: a row is merged a
  few times over its life; this only says where the server's time goes);
- `gwtel load` as processes, one and then `--processes` in one consumer group (a partition each), start-up
  included (`--processes 0` skips both).

With `--baseline-url` (a ClickHouse server of other code, e.g. `python -m gwtel.chserver` run from a checkout of
main), `loader_baseline` and `clickhouse_baseline` repeat `loader` (with `insert_threads` 1: one insert at a
time, as before) and `clickhouse` against it in the same runs. `--per-record-records 0` skips `per_record`.

Baseline, same runs: a plain kafka-python read_committed consume of the same topic (records/s; its inverse is
kafka-python's cost per message, printed in us). The loader's own CPU per record is printed too (its process,
librdkafka's threads included), and the embedded ClickHouse server's CPU per record during the `loader` runs,
its merge threads apart from the rest (bench/landing_parts.py splits the rest further).
Writes bench/results/loader.json.
Usage: `python bench/loader.py [--records 2000000] [--runs 3] [--processes 2] [--baseline-url URL]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clients import librdkafka_consume_rate
from _proc import thread_cpu_s
from _processes import start_loaders, stop_pipeline
from _results import Row, table, write
from job import TARGET_EVENT_RATE, consume_rate, load_topic, records
from prometheus_client import CollectorRegistry

from gwtel.config import GwtelConfig, load_config
from gwtel.pipeline import discard, drop_database, isolated, prepare
from gwtel.services.clickhouse import ClickHouseService
from processors.chclient import make_client
from processors.landing import INPUT_SETTINGS, LANDING, raw_token
from processors.loader import INSERT_SETTINGS_FIXED, Route
from processors.loader_setup import build_loader, migrate, tune_memory
from processors.rows import flow_rows

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


# ClickHouse names the threads of its background merges and mutations so.
_MERGE_THREADS = "MergeMutate"


def server_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of the server `pid` so far: its merge threads (`merges`) and every other thread."""
    split = thread_cpu_s(pid, _MERGE_THREADS)
    return {"merges": split["named"], "other": split["other"]}


def local_server_pid(cfg: GwtelConfig) -> int | None:
    """The pid of the embedded server `gwtel up` runs, when `cfg` loads into it (another server's CPU is not
    this machine's to read)."""
    svc = ClickHouseService(cfg, cfg.local.home_path())
    return svc.pid() if cfg.clickhouse.url.rstrip("/") == svc.endpoint() else None


def one_run(
    base: GwtelConfig,
    n: int,
    raw: bool,
    cpu: list[float] | None = None,
    merges: bool = True,
    server: dict[str, list[float]] | None = None,
) -> float:
    """Records/s of one loader over the whole topic, in a database and consumer group of its own.

    `cpu` receives the loader's own CPU per record in us (this process, librdkafka's threads included;
    ClickHouse's parse runs in the server's process); `server` the embedded server's, per thread group (when the
    loader writes to the local one, else nothing). `merges=False` stops the background merges of the run's `flows_raw`.
    """
    cfg = own(base)
    migrate(cfg)
    if not merges:
        with make_client(cfg.clickhouse) as client:
            client.command("SYSTEM STOP MERGES flows_raw")
    tune_memory()
    pid = local_server_pid(cfg) if server is not None else None
    s0 = server_cpu_s(pid) if pid is not None else {}
    c0 = time.process_time()
    t0 = time.perf_counter()
    registry = CollectorRegistry()
    loader = build_loader(cfg, registry)
    if not raw:
        flows = cfg.kafka.topics.flows
        loader.routes[flows] = Route(flows, flow_rows, raw=False)
    try:
        while (registry.get_sample_value("gwtel_loader_flow_records_stored_total") or 0) < n:
            loader.step()
        seconds = time.perf_counter() - t0
        if cpu is not None:
            cpu.append(1e6 * (time.process_time() - c0) / n)
        if pid is not None and server is not None:
            for group, s1 in server_cpu_s(pid).items():
                server.setdefault(group, []).append(1e6 * (s1 - s0[group]) / n)
    finally:
        loader.close()
        drop_database(cfg)
    return n / seconds


def at_url(base: GwtelConfig, url: str, insert_threads: int) -> GwtelConfig:
    """`base` against the ClickHouse server at `url`, its loader sending `insert_threads` inserts at once."""
    return base.model_copy(
        update={
            "clickhouse": base.clickhouse.model_copy(update={"url": url}),
            "loader": base.loader.model_copy(update={"insert_threads": insert_threads}),
        }
    )


def clickhouse_run(base: GwtelConfig, values: list[bytes], threads: int = 1) -> float:
    """Records/s of the landing inserts alone: the values in batches of `loader.batch_rows`, no Kafka, batch i
    sent by client i mod `threads` (each its own thread and client)."""
    cfg = own(base)
    migrate(cfg)
    size = cfg.loader.batch_rows
    clients = [make_client(cfg.clickhouse) for _ in range(threads)]
    errors: list[BaseException] = []

    def send(k: int) -> None:
        try:
            for first in range(k * size, len(values), threads * size):
                chunk = values[first : first + size]
                token = raw_token("bench", 0, first, first + len(chunk) - 1, 0)
                settings = {**INSERT_SETTINGS_FIXED, **INPUT_SETTINGS, "insert_deduplication_token": token}
                clients[k].raw_insert(LANDING, insert_block=b"\n".join(chunk), fmt="JSONEachRow", settings=settings)
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    try:
        senders = [threading.Thread(target=send, args=(k,)) for k in range(threads)]
        t0 = time.perf_counter()
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        seconds = time.perf_counter() - t0
        if errors:
            raise errors[0]
        stored = int(clients[0].command("SELECT count() FROM flows_raw"))
    finally:
        for client in clients:
            client.close()
        drop_database(cfg)
    if stored != len(values):
        raise RuntimeError(f"flows_raw holds {stored} rows for {len(values)} records")
    return len(values) / seconds


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
    ap.add_argument("--records", type=int, default=2_000_000, help="records in the topic (default 2000000)")
    ap.add_argument("--event-rate", type=int, default=TARGET_EVENT_RATE, help="records per second of event time")
    ap.add_argument("--runs", type=int, default=3, help="runs per variant, alternating (default 3)")
    ap.add_argument("--processes", type=int, default=2, help="loader processes in the last variant (0: skip)")
    ap.add_argument(
        "--per-record-records",
        type=int,
        default=300_000,
        help="records the per-record variant loads, a prefix of the topic (default 300000; 0: skip)",
    )
    ap.add_argument(
        "--insert-threads",
        type=int,
        default=2,
        help="loader.insert_threads of the `loader` variant and clients of `clickhouse_threads` (default 2)",
    )
    ap.add_argument(
        "--baseline-url",
        default=None,
        help="a ClickHouse server of other code, measured in the same runs (one insert at a time)",
    )
    args = ap.parse_args()  # fmt: skip
    n = args.records
    cfg = isolated(load_config(), uuid.uuid4().hex[:10])
    prepare(cfg)
    threads = args.insert_threads
    cfg = at_url(cfg, cfg.clickhouse.url, threads)
    variants = ["baseline", "librdkafka", "loader", "loader_no_merges", "clickhouse", "clickhouse_threads"]
    if args.per_record_records:
        variants.append("per_record")
    before = at_url(cfg, args.baseline_url, 1) if args.baseline_url else None
    if before is not None:
        migrate(before)
        variants += ["loader_baseline", "clickhouse_baseline"]
    if args.processes:
        variants += ["processes1", f"processes{args.processes}"]
    rates: dict[str, list[float]] = {v: [] for v in variants}
    loader_cpu: list[float] = []
    server_cpu: dict[str, list[float]] = {}
    slow_n = min(n, args.per_record_records)
    try:
        values = records(n, args.event_rate)
        load_topic(cfg.kafka.bootstrap, cfg.kafka.topics.flows, values)
        for i in range(args.runs):
            # Each figure beside a plain consume of the same topic in the same run: the machine is shared.
            rates["baseline"].append(consume_rate(cfg.kafka.bootstrap, cfg.kafka.topics.flows, n))
            rates["librdkafka"].append(librdkafka_consume_rate(cfg.kafka.bootstrap, cfg.kafka.topics.flows, n))
            # Which server goes first alternates, so that neither always follows the other's merges.
            for name in sorted(("new", "baseline") if before is not None else ("new",), reverse=bool(i % 2)):
                if name == "new":
                    rates["loader"].append(one_run(cfg, n, raw=True, cpu=loader_cpu, server=server_cpu))
                    rates["loader_no_merges"].append(one_run(cfg, n, raw=True, merges=False))
                    rates["clickhouse"].append(clickhouse_run(cfg, values))
                    rates["clickhouse_threads"].append(clickhouse_run(cfg, values, threads))
                elif before is not None:
                    rates["loader_baseline"].append(one_run(before, n, raw=True))
                    rates["clickhouse_baseline"].append(clickhouse_run(before, values))
            if args.per_record_records:
                rates["per_record"].append(one_run(cfg, slow_n, raw=False))
            if args.processes:
                for count in (1, args.processes):
                    rates[f"processes{count}"].append(processes_run(cfg, n, count))
            print(f"  run {i + 1}: " + ", ".join(f"{v} {rates[v][-1]:,.0f}/s" for v in variants), flush=True)
    finally:
        discard(cfg)
    med = {v: statistics.median(r) for v, r in rates.items()}
    base = med["baseline"]
    print(f"kafka-python plain consume: {base:,.0f} records/s = {1e6 / base:.1f} us per message", flush=True)
    rows = [
        Row("plain kafka-python consume (the baseline)", base, "records/s", base),
        Row("  confluent-kafka (librdkafka, the loader's client) plain consume", med["librdkafka"], "records/s", base),
        Row("loader records/s into flows_raw (median)", med["loader"], "records/s", base, ">= 150,000"),
        Row("  the loader process's own CPU per record", statistics.median(loader_cpu), "us"),
    ]
    rows += [
        Row(f"  the ClickHouse server's CPU per record, {group} threads", statistics.median(us), "us")
        for group, us in server_cpu.items()
    ]
    rows += [
        Row("  the loader with flows_raw's merges stopped", med["loader_no_merges"], "records/s", med["loader"]),
        Row("  ClickHouse landing inserts alone (no Kafka), one at a time", med["clickhouse"], "records/s", base),
        Row(f"  the same from {threads} clients at once", med["clickhouse_threads"], "records/s", med["clickhouse"]),
    ]
    if args.per_record_records:
        rows.append(Row(f"  per-record Python path ({slow_n:,} records)", med["per_record"], "records/s", base))
    if before is not None:
        rows += [
            Row("loader into flows_raw, baseline server, one insert at a time", med["loader_baseline"], "records/s",
                med["loader"]),
            Row("  ClickHouse landing inserts alone, baseline server", med["clickhouse_baseline"], "records/s",
                med["clickhouse"]),
        ]  # fmt: skip
    if args.processes:
        rows += [
            Row("gwtel load, 1 process (start-up included)", med["processes1"], "records/s", base),
            Row(f"gwtel load, {args.processes} processes, one group", med[f"processes{args.processes}"],
                "records/s", med["processes1"]),
        ]  # fmt: skip
    path = write(
        "loader", rows, records=n, event_rate=args.event_rate, runs=rates, loader_cpu_us=loader_cpu,
        server_cpu_us=server_cpu,
    )  # fmt: skip
    print(table([{"benchmark": "loader", **r} for r in json.loads(path.read_text())["rows"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
