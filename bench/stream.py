"""Whole-pipeline throughput while streaming (`gwtel up` first): writes bench/results/stream.json.

A backlog of N FlowRecords (records at `--event-rate` per second of event time, as in bench/job.py) waits in a
fresh flows topic. Then the streaming job (`gwtel aggregate`) and the loader (`gwtel load`) start as their own
processes, as deployed, and drain it: the loader stores every record in `flows_raw`, the job aggregates every
record into windows that the loader stores too. Two closing records, one per partition and 2 minutes of event
time later, move the job's watermark past the backlog's last window.

The run ends when the delivery ledger balances: `flows_raw` holds N + 2 rows and the 10 s bandwidth windows
count N flows (the ledger's `flows_aggregated`). Figures:

- records/s end to end: N / (time from the processes' start to the ledger balancing), start-up included;
- the same after start-up: from the first raw row stored;
- raw rows/s, steady: the loader's rate between 30% and 90% of N rows stored;
- the Flink job's read rate, steady (its source's records out, 30% to 90% of N), and when it has read all;
- the lag of the aggregates: from the last raw row stored to the ledger balancing.

Baseline, same run: a plain kafka-python read_committed consume of the same topic (records/s), and beside it
the same consume with librdkafka (the loader's client). The agent's side, same run: the backlog's load with
kafka-python's producer against the agent's FlowProducer (librdkafka, `send_batch`) sending the same records to
a scratch topic until acknowledged. Every process shares the machine's cores: the figures are those of the
pipeline on this machine, not of one stage.
With `--held`, the pipeline is measured running rather than starting: the backlog is written in one Kafka
transaction that stays open while the job and the loader start (both read committed records only, so they see
nothing), and is committed once the job's source reports and the loader's group is stable. The figure is then
N / (time from that commit to the ledger balancing), the sustained rate of a pipeline already up, where a cold
start includes the job's start-up (JVM, planning, MiniCluster), slowed by the loader draining beside it. The
baseline consumes run after the drain there (an open transaction hides the records).
With `--held --warm W`, W records committed before the backlog (the same stream of event time, just
earlier) are taken first, and the backlog is released once the job has read them and the loader stored them:
the rate of a pipeline that has been running, its JIT compilers done with the hot code (a JVM compiles the job's
hot paths during its first few hundred thousand records, taking up to a core of the two meanwhile: bench/job.py's
whole-run rate against its steady one). Every count is then the backlog's, after the warm-up.
Runs alternate with nothing: each builds its own backlog; `--runs` gives medians (the cores are shared).
Usage: `python bench/stream.py [--records 2000000] [--event-rate 50000] [--runs 1] [--held [--warm 1000000]]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from _clients import librdkafka_consume_rate, producer_rate
from _processes import start_pipeline, stop_pipeline
from _results import Row, table, write
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from job import TARGET_EVENT_RATE, SourceProgress, consume_rate, load_topic, records

from gwtel.config import GwtelConfig, load_config
from gwtel.pipeline import discard, isolated, prepare
from processors.chclient import make_client

S = 10**9


def closing_records(last: bytes, n: int) -> list[bytes]:
    """Two records (seq n, n + 1) 2 minutes of event time after `last`: one per partition of load_topic."""
    out = []
    for i in range(2):
        d = orjson.loads(last)
        for f in ("first_ns", "last_ns", "export_ns"):
            d[f] += 120 * S
        d["seq"] = n + i
        out.append(orjson.dumps(d))
    return out


def hold_backlog(cfg: GwtelConfig, values: list[bytes]) -> tuple[Producer, float]:
    """Write `values` (alternating partitions, as load_topic) in one transaction left open; (producer, seconds).

    Read-committed readers see none of them until the producer commits."""
    producer = Producer({**cfg.kafka.librdkafka(), "transactional.id": f"bench-stream-{uuid.uuid4().hex[:8]}",
                         "transaction.timeout.ms": 900_000, "linger.ms": 20})  # fmt: skip
    t0 = time.perf_counter()
    producer.init_transactions(30)
    producer.begin_transaction()
    topic = cfg.kafka.topics.flows
    for i, v in enumerate(values):
        while True:
            try:
                producer.produce(topic, value=v, partition=i % 2)
                break
            except BufferError:
                producer.poll(0.05)  # the local queue is full: let deliveries drain it
    if producer.flush(300) != 0:
        raise SystemExit("stream: the held backlog was not delivered in 300 s")
    return producer, time.perf_counter() - t0


def _group_stable(admin: AdminClient, group: str) -> bool:
    try:
        desc = admin.describe_consumer_groups([group])[group].result(timeout=5)
    except KafkaException:  # not known yet
        return False
    return bool(desc.members) and str(desc.state).endswith("STABLE")


# Seconds between the job's metrics scrapes and between the ledger's two ClickHouse counts: a milestone is
# seen at most this late (under 1% of a run).
_PROBE_JOB_S = 1.0
_PROBE_LEDGER_S = 0.5


def drain(
    cfg: GwtelConfig,
    n: int,
    tmp: Path,
    timeout_s: float,
    release: Callable[[], None] | None = None,
    warm: int = 0,
) -> dict[str, float]:
    """Start the job and the loader over the backlog; seconds from their start to each milestone.

    With `release`, it is called (and `released` marked) once the job's source reports and the loader's group
    is stable, and once both have taken the `warm` committed records before the backlog (the job has read them,
    the loader stored them); every count below is the backlog's, after those."""
    db = cfg.clickhouse.database
    client = make_client(cfg.clickhouse)
    procs: list[subprocess.Popen[bytes]] = []
    logs = cfg.local.home_path() / "logs"
    marks: dict[str, float] = {}
    # The probes are light: a scrape of the job's metrics (about 0.5 MB of text) costs its JVM 24-28 CPU-ms, so
    # four a second took a tenth of a core from the job, the pipeline's later stage (docs/clickhouse.md).
    progress = SourceProgress(interval_s=_PROBE_JOB_S)
    try:
        t0 = time.perf_counter()
        procs, logs = start_pipeline(cfg, tmp, "bench-stream")
        progress.start("", cfg.job.metrics_port)
        admin = AdminClient(cfg.kafka.librdkafka())
        while True:
            now = time.perf_counter() - t0
            raw = int(client.query(f"SELECT count() FROM {db}.flows_raw").result_rows[0][0]) - warm
            agg = int(
                client.query(f"SELECT sum(flows) FROM {db}.bandwidth_window WHERE window_s = 10").result_rows[0][0] or 0
            )
            if (
                release is not None
                and progress.samples
                and progress.samples[-1][1] >= warm
                and raw >= 0
                and _group_stable(admin, cfg.loader.group_id)
            ):
                release()
                marks["released"] = time.perf_counter() - t0
                release = None  # once
            if now > timeout_s:
                raise SystemExit(f"stream: the ledger did not balance in {timeout_s:.0f} s ({marks}); logs in {logs}")
            for p in procs:
                if p.poll() is not None:
                    raise SystemExit(f"stream: a pipeline process exited with {p.returncode}; logs in {logs}")
            agg -= warm  # negative until the warm-up's last windows close, after the release
            for name, reached in (
                ("first_raw", raw > 0),
                ("raw_30", raw >= 0.3 * n),
                ("raw_90", raw >= 0.9 * n),
                ("raw_all", raw >= n + 2),
                ("first_agg", agg > 0),
            ):
                if reached:
                    marks.setdefault(name, now)
            if agg > n:
                raise SystemExit(f"stream: the windows count {agg} flows, more than the {n} records")
            if raw >= n + 2 and agg == n:
                marks["balanced"] = now
                progress.stop()
                read = next((t - t0 for t, k in progress.samples if k >= warm + n + 2), None)
                if read is not None:
                    marks["job_read_all"] = read
                if (first := next((t - t0 for t, k in progress.samples if k > warm), None)) is not None:
                    marks["job_first_read"] = first
                if (rate := progress.steady_rate(n, base=warm)) is not None:
                    marks["job_steady_rate"] = rate
                return marks
            time.sleep(_PROBE_LEDGER_S)
    finally:
        progress.stop()
        stop_pipeline(procs)
        client.close()


def one_run(n: int, event_rate: int, timeout_s: float, held: bool, warm: int = 0) -> tuple[float, dict[str, float]]:
    """(baseline consume records/s, milestones and client rates) of one drain of a fresh backlog of `n` records,
    after `warm` records the pipeline takes first (with `held`)."""
    cfg = isolated(load_config(), uuid.uuid4().hex[:10])
    prepare(cfg)
    flows = cfg.kafka.topics.flows
    try:
        # One stream of event time: the warm-up is its first `warm` records, the backlog the rest.
        values = records(warm + n, event_rate)
        if warm:
            print(f"loading {warm:,} warm-up records into {flows}", flush=True)
            load_topic(cfg.kafka.bootstrap, flows, values[:warm])
            del values[:warm]
        backlog = [*values, *closing_records(values[-1], warm + n)]
        print(f"loading {n:,} records into {flows}{' in one open transaction' if held else ''}", flush=True)
        if held:
            holder, loaded_s = hold_backlog(cfg, backlog)
        else:
            loaded_s = load_topic(cfg.kafka.bootstrap, flows, backlog)
        produced = producer_rate(cfg, values)
        del values, backlog

        def baselines() -> tuple[float, float]:
            boot = cfg.kafka.bootstrap
            total = warm + n + 2
            return consume_rate(boot, flows, total), librdkafka_consume_rate(boot, flows, total)

        if not held:
            baseline, librdkafka = baselines()
        how = "the held transaction" if held else "kafka-python"
        print(f"producers: {how} {(n + 2) / loaded_s:,.0f}/s, FlowProducer.send_batch {produced:,.0f}/s; "
              "draining with gwtel aggregate + gwtel load", flush=True)  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            release = (lambda: holder.commit_transaction(60)) if held else None
            m = drain(cfg, n, Path(tmp), timeout_s, release=release, warm=warm)
        if held:  # the records were hidden until the drain released them
            baseline, librdkafka = baselines()
        print(f"baseline consume {baseline:,.0f} records/s (librdkafka {librdkafka:,.0f})", flush=True)
        m.update(librdkafka_consume=librdkafka, backlog_produce=(n + 2) / loaded_s, flow_producer=produced)
    finally:
        discard(cfg)
    print(f"milestones (s from start): {json.dumps({k: round(v, 1) for k, v in m.items()})}", flush=True)
    return baseline, m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2_000_000, help="records in the backlog (default 2000000)")
    ap.add_argument("--event-rate", type=int, default=TARGET_EVENT_RATE, help="records per second of event time")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the ledger (default 1800)")
    ap.add_argument("--runs", type=int, default=1, help="runs, each on a backlog of its own; medians (default 1)")
    ap.add_argument("--held", action="store_true", help="release the backlog once the pipeline runs (see above)")
    ap.add_argument("--warm", type=int, default=0, help="with --held: records the pipeline takes first (see above)")
    args = ap.parse_args()
    n = args.records
    if args.warm and not args.held:
        ap.error("--warm needs --held: without it the warm-up is simply part of the backlog")
    if args.warm % 2:
        ap.error("--warm must be even: records alternate between the topic's two partitions")
    runs = [one_run(n, args.event_rate, args.timeout, args.held, args.warm) for _ in range(args.runs)]

    def med(f: Callable[[dict[str, float]], float]) -> float:
        return statistics.median(f(m) for _b, m in runs)

    baseline = statistics.median(b for b, _m in runs)
    nan = float("nan")
    if args.held:
        rows = [
            Row(
                "records/s end to end, pipeline running: backlog released -> ledger balanced"
                + (f" ({args.warm:,} records taken first)" if args.warm else ""),
                med(lambda m: n / (m["balanced"] - m["released"])),
                "records/s",
                baseline,
                ">= 50,000",
            ),
            Row(
                "  start-up: processes started -> both reading (the backlog released)",
                med(lambda m: m["released"]),
                "s",
            ),
        ]
    else:
        rows = [
            Row(
                "records/s end to end, backlog drained (start-up included)",
                med(lambda m: n / m["balanced"]),
                "records/s",
                baseline,
                ">= 50,000",
            ),
            Row(
                "records/s end to end, from the first row stored",
                med(lambda m: n / (m["balanced"] - m["first_raw"])),
                "records/s",
                baseline,
                ">= 50,000",
            ),
        ]
    rows += [
        Row("raw rows/s stored by the loader, steady (30-90%)", med(lambda m: 0.6 * n / (m["raw_90"] - m["raw_30"])),
            "records/s", baseline),
        Row("Flink job records/s read, steady (30-90%)", med(lambda m: m.get("job_steady_rate", nan)), "records/s",
            baseline),
        Row("plain consume with librdkafka (the loader's client)", med(lambda m: m["librdkafka_consume"]),
            "records/s", baseline),
        Row("agent's FlowProducer.send_batch (librdkafka), acknowledged", med(lambda m: m["flow_producer"]),
            "records/s", med(lambda m: m["backlog_produce"])),
        Row(f"  {'the held transaction (librdkafka)' if args.held else 'kafka-python producer'}, same records (the "
            "producer's baseline)", med(lambda m: m["backlog_produce"]), "records/s", baseline),
        Row("  start-up: processes started -> first raw row", med(lambda m: m["first_raw"]), "s"),
        Row("  start-up: processes started -> the job's first record read", med(lambda m: m.get("job_first_read", nan)),
            "s"),
        Row("  processes started -> the job has read every record", med(lambda m: m.get("job_read_all", nan)), "s"),
        Row("  start-up: processes started -> first window row", med(lambda m: m["first_agg"]), "s"),
        Row("  lag of the aggregates: last raw row -> ledger balanced", med(lambda m: m["balanced"] - m["raw_all"]),
            "s"),
    ]  # fmt: skip
    runs_out = [{"baseline": b, **m} for b, m in runs]
    path = write("stream", rows, records=n, event_rate=args.event_rate, warm=args.warm, runs=runs_out)
    print(table([{"benchmark": "stream", **r} for r in json.loads(path.read_text())["rows"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
