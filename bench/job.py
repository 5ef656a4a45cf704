"""Flink job benchmark: flow records/s from Kafka to the aggregates topic, at parallelism 1 and 2.

Needs the local services (`gwtel up`; the configuration from $GWTEL_CONFIG). N FlowRecords are loaded into a
fresh 2-partition topic once; then each variant of the job runs bounded over it, in a fresh process (its own
JVM), writing to a fresh aggregates topic.

The records' event times advance at `--event-rate` records per second (default 50,000: the target). That is
what a gateway sending that many records produces, and it decides how many aggregates the job writes: about
1.5 per 100 records at 50k/s, about one per record at 500/s (a quiet gateway's records replayed fast), when
the sink and the global windows carry as much as the source.

Figures per run:

- `seconds`: wall time of the run, from creating the environment to the last aggregate committed (visible to
  read_committed consumers): the end-to-end lag of a backlog of N records;
- `startup_s`: the same job over an empty topic (JVM, job submission, final checkpoint), measured in the
  same session per parallelism;
- `records_per_s`: N / (seconds - startup_s), the rate over the whole run once started (JIT warm-up included);
- `steady_records_per_s`: the rate between 30% and 90% of the records read by the FlowRecord source (its
  `numRecordsOut`, scraped from the job's Prometheus endpoint every 0.25 s): the rate once the JIT compilers
  have done most of their work (they take up to a core in the first tens of seconds of a run).

Baselines, same session: a plain read_committed Kafka consume of the first 200k records of the topic
(kafka-python), records/s; and the variant `source_only`: Flink's Kafka source with the job's record format
(`gwtel-flow`) and its record rules, every valid record into a blackhole sink (what reading the topic costs the
job before any window). `source_json` reads the same with Flink's own `json` format and no check at all (how
the job read records before its strict format): the strict reader should cost no more.
`bandwidth_only`, `latency_only` and `buckets_only` run one kind of aggregate of the job alone, into a
blackhole. Writes bench/results/job.json.
Usage: `python bench/job.py [--records 1000000] [--event-rate 50000] [--parallelism 1,2] [--runs 1]`.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _clients import delete_at_exit
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from gwtel.config import GwtelConfig, load_config
from gwtel.services.kafka import KafkaService
from schemas import codec
from schemas.aggregate import AGGREGATE_FIELDS, Kind
from schemas.flow_record import FLOW_RECORD_FIELDS, FieldSpec, FlowRecord, HistBin, flink_columns_ddl

S = 10**9
T0_S = 1_767_225_600
# Records per second of event time. A gateway that sends the target's 50k records/s fills a 10 s window
# with 500k records, and the job writes about 1.5 aggregates per 100 records. SPARSE is a quiet gateway's
# records replayed fast (300k over 10 minutes): every window holds few records and the job writes about
# one aggregate per record, so the sink and the global windows carry as much as the source.
TARGET_EVENT_RATE = 50_000
SPARSE_EVENT_RATE = 500
BASELINE_RECORDS = 200_000
PARTNERS = ("japan", "korea", "belt_and_road", "other")
LINKS = ("jp-1", "jp-2", "kr-1", "bri-1")

# name -> run_job keyword arguments (tuning = extra Flink settings)
VARIANTS: dict[str, dict[str, Any]] = {
    "job": {},
    # Not the job but parts of it, each into a blackhole (run_partial; PARTIAL): the source with its JSON
    # parse alone (the ceiling for any window logic), and each kind of aggregate alone.
    "source_only": {},
    "bandwidth_only": {},
    "latency_only": {},
    "buckets_only": {},
    "source_json": {},
    "no_distinct_hosts": {"distinct_hosts": False},
    # Chained operators deep-copy every row they pass on (the job sets pipeline.object-reuse: true).
    "copying_chain": {"tuning": {"pipeline.object-reuse": "false"}},
    # State on the heap instead of RocksDB (the job's default): what the state backend costs.
    "hashmap_state": {"tuning": {"state.backend.type": "hashmap"}},
    # A watermark every 1 s instead of the job's 200 ms: fewer flushes of every window buffer (later windows).
    "watermark_1s": {"tuning": {"pipeline.auto-watermark-interval": "1 s"}},
    # Measured wrong, kept to show it: the mini-batch assigner runs in processing time and replaces the
    # event-time watermark, so every record is behind it and goes to the late topic (no aggregates).
    "mini_batch": {
        "tuning": {
            "table.exec.mini-batch.enabled": "true",
            "table.exec.mini-batch.allow-latency": "1 s",
            "table.exec.mini-batch.size": "5000",
            "table.optimizer.agg-phase-strategy": "TWO_PHASE",
        }
    },
}


PARTIAL_KINDS: dict[str, Kind] = {
    "bandwidth_only": "bandwidth",
    "latency_only": "latency",
    "buckets_only": "latency_bucket",
}
PARTIAL = frozenset({"source_only", "source_json", *PARTIAL_KINDS})


def records(n: int, event_rate: int, seed: int = 7) -> list[bytes]:
    """n encoded FlowRecords, ``event_rate`` of them per second of event time, shaped like the agent's."""
    rng = random.Random(seed)
    out = []
    span_ms = max(1, n * 1000 // event_rate)
    for i in range(n):
        last_ns = (T0_S * 1000 + i * span_ms // n) * 1_000_000 + rng.randrange(1_000_000)
        hist = tuple(HistBin(b, rng.randrange(1, 5)) for b in sorted(rng.sample(range(400, 600), 2)))
        packets_rev = rng.randrange(0, 40)
        rec = FlowRecord(
            schema_version=1, agent_id="bench", seq=i, link_id=LINKS[i % len(LINKS)], sampling_rate=1,
            ip_version=4, src_ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            src_port=rng.randrange(1024, 65535), dst_ip=f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            dst_port=443, protocol=6, vlan=0, first_ns=last_ns - rng.randrange(10 * S), last_ns=last_ns,
            export_ns=last_ns + S, end_reason=rng.choice(("fin", "active", "idle")),
            bytes_fwd=rng.randrange(40, 10**6), packets_fwd=rng.randrange(1, 900),
            bytes_rev=packets_rev * 1400, packets_rev=packets_rev, tcp_flags_fwd=0x1B, tcp_flags_rev=0x1B,
            retrans_fwd=rng.randrange(3), retrans_rev=0, hs_rtt_ext_us=rng.randrange(500, 90_000),
            hs_rtt_int_us=rng.randrange(50, 900), ts_rtt_count=sum(h.c for h in hist), ts_rtt_min_us=1000,
            ts_rtt_max_us=40_000, ts_rtt_sum_us=90_000, ts_rtt_hist=hist, icmp_rtt_count=0,
            icmp_rtt_min_us=None, icmp_rtt_max_us=None, icmp_rtt_sum_us=0, icmp_rtt_hist=(), dns_rtt_count=0,
            dns_rtt_min_us=None, dns_rtt_max_us=None, dns_rtt_sum_us=0, dns_rtt_hist=(),
            direction=rng.choice(("egress", "ingress")), partner=PARTNERS[i % len(PARTNERS)],
            remote_country="JP", remote_asn=0,
        )  # fmt: skip
        # A copy of exact size: orjson's own result kept about 8 kB of heap per record (2M records: 16 GB).
        out.append(bytes(memoryview(codec.encode(rec))))
    return out


def load_topic(bootstrap: str, topic: str, values: list[bytes]) -> float:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20, batch_size=1 << 20
    )
    t0 = time.perf_counter()
    for i, v in enumerate(values):
        producer.send(topic, value=v, partition=i % 2)  # in time order within each partition
    producer.flush(timeout=300)
    producer.close(timeout=10)
    return time.perf_counter() - t0


def consume_rate(bootstrap: str, topic: str, expected: int) -> float:
    """The baseline: read every record of `topic` (read_committed, as the job does), records/s."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    t0 = time.perf_counter()
    n = 0
    while n < expected:
        for msgs in consumer.poll(timeout_ms=1000, max_records=50_000).values():
            n += len(msgs)
    dt = time.perf_counter() - t0
    consumer.close()
    return n / dt


def count_committed(bootstrap: str, topic: str) -> int:
    """Records a read_committed consumer sees in `topic` (transaction markers excluded)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    end = consumer.end_offsets(parts)
    n = 0
    while any(consumer.position(tp) < end[tp] for tp in parts):
        for msgs in consumer.poll(timeout_ms=1000, max_records=50_000).values():
            n += len(msgs)
    consumer.close()
    return n


def topic_size(bootstrap: str, topic: str) -> int:
    """Records in `topic`, from its offsets: load_topic writes without transactions, so no markers."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    ends = consumer.end_offsets(parts)
    starts = consumer.beginning_offsets(parts)
    consumer.close()
    return sum(ends[tp] - starts[tp] for tp in parts)


# The FlowRecord source's own counter (`source_json`'s source is `Source:_flows_json_N_`).
_SOURCE_OUT = re.compile(
    r"^flink_taskmanager_job_task_operator_numRecordsOut\{[^}]*"
    r'operator_name="Source:_flows(?:_json)?_\d+_"[^}]*\} (\S+)$',
    re.M,
)


class SourceProgress:
    """Samples (seconds, records read by the FlowRecord source) from the job's metrics every `interval_s`."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, _job_id: str, port: int) -> None:
        self._thread = threading.Thread(target=self._poll, args=(port,), daemon=True)
        self._thread.start()

    def _poll(self, port: int) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    text = resp.read().decode()
            except OSError:
                continue  # not serving yet, or the job just ended
            found = _SOURCE_OUT.findall(text)
            if found:
                self.samples.append((time.perf_counter(), sum(float(v) for v in found)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def steady_rate(self, total: int, lo: float = 0.3, hi: float = 0.9, base: int = 0) -> float | None:
        """Records/s between the first samples at or past ``lo`` and ``hi`` of ``total`` records read after the
        first ``base`` (None: too few)."""
        first = next(((t, n) for t, n in self.samples if n >= base + lo * total), None)
        last = next(((t, n) for t, n in self.samples if n >= base + hi * total), None)
        if first is None or last is None or last[0] - first[0] < 1.5:
            return None
        return (last[1] - first[1]) / (last[0] - first[0])


def run_variant(cfg_path: Path, variant: str, parallelism: int, flows: str) -> dict[str, Any]:
    """One bounded run in a fresh process; returns its `seconds` and the aggregates written."""
    argv = [sys.executable, __file__, "--child", variant, str(parallelism), flows, str(cfg_path)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{variant} p{parallelism} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def partial_table(t_env: Any, cfg: GwtelConfig, part: str) -> tuple[Any, tuple[FieldSpec, ...]]:
    """What a partial variant writes to its blackhole, and the sink's columns."""
    from processors import aggregate as agg
    from processors.job import aggregate_records

    names = ", ".join(f"`{f.name}`" for f in FLOW_RECORD_FIELDS)
    if part == "source_json":
        return t_env.sql_query(f"SELECT {names} FROM `flows_json` WHERE `schema_version` = 1"), FLOW_RECORD_FIELDS
    valid = agg.valid(t_env.from_path("flows"), cfg.job.max_future_skew_s)
    if part == "source_only":
        return t_env.sql_query(f"SELECT {names} FROM {valid}"), FLOW_RECORD_FIELDS
    # The same windows as the job, one kind of aggregate only.
    kind = PARTIAL_KINDS[part]
    return aggregate_records(agg.on_time(valid), cfg.job.window_sizes_s, kinds=(kind,)), AGGREGATE_FIELDS


def run_partial(cfg: GwtelConfig, part: str, on_start: Callable[[str, int], None]) -> None:
    """One part of the job alone (PARTIAL), into a blackhole sink: what that part costs."""
    from processors import ddl, job_metrics
    from processors.flink_env import make_table_env
    from processors.job import SESSION_TIME_ZONE, checkpoint_dir, create_tables

    port = job_metrics.choose_port(0)
    t_env = make_table_env(
        streaming=True,
        parallelism=cfg.job.parallelism,
        checkpoint_dir=checkpoint_dir(cfg),
        checkpoint_interval_ms=cfg.job.checkpoint_interval_ms,
        extra={"table.local-time-zone": SESSION_TIME_ZONE},
        metrics_port=port,
    )
    create_tables(t_env, cfg, bounded=True)
    if part == "source_json":
        # The same Kafka source with Flink's JSON format (its options as the job had them before gwtel-flow).
        opts = {**ddl._kafka_source_options(cfg, bounded=True, stop_at=None), "format": "json",
                "json.ignore-parse-errors": "true", "json.fail-on-missing-field": "false"}  # fmt: skip
        t_env.execute_sql(ddl.create_table_sql("flows_json", flink_columns_ddl(), opts))
    table, fields = partial_table(t_env, cfg, part)
    t_env.execute_sql(ddl.create_table_sql("sink", ddl.columns_sql(fields), {"connector": "blackhole"}))
    result = table.execute_insert("sink")
    on_start("", port)
    result.wait()


def child(variant: str, parallelism: int, flows: str, cfg_path: Path) -> None:
    from processors.job import run_job

    base = load_config(cfg_path)
    svc = KafkaService(base, base.local.home_path())
    tag = uuid.uuid4().hex[:10]
    sinks = {k: f"bench.{k}.{tag}" for k in ("aggregates", "late", "dead_letter")}
    svc.ensure_topics(list(sinks.values()), partitions=1)
    delete_at_exit(svc, list(sinks.values()))
    data = base.model_dump(mode="json")
    data["kafka"]["topics"] = {"flows": flows, **sinks}
    data["job"].update(
        {
            "parallelism": parallelism,
            "group_id": f"bench-{tag}",
            "transactional_id_prefix": f"bench-{tag}",
            "checkpoint_dir": str(Path("/tmp") / f"gwtel-bench-{tag}"),
            "metrics_port": 0,
        }
    )
    cfg = GwtelConfig.model_validate(data)
    progress = SourceProgress()
    t0 = time.perf_counter()
    try:
        if variant in PARTIAL:
            run_partial(cfg, variant, progress.start)
        else:
            run_job(cfg, bounded=True, on_start=progress.start, **VARIANTS[variant])
    finally:
        progress.stop()
    seconds = time.perf_counter() - t0
    counts = {k: count_committed(cfg.kafka.bootstrap, sinks[k]) for k in ("aggregates", "late")}
    total = topic_size(cfg.kafka.bootstrap, flows)
    print(json.dumps({"seconds": seconds, "steady": progress.steady_rate(total), **counts}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument(
        "--event-rate",
        type=int,
        default=TARGET_EVENT_RATE,
        help=f"records per second of event time, i.e. how busy the gateway was (a stress case: {SPARSE_EVENT_RATE})",
    )
    ap.add_argument("--parallelism", default="1,2")
    ap.add_argument("--runs", type=int, default=1, help="runs per variant and parallelism (median reported)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--child", nargs=4, metavar=("VARIANT", "P", "TOPIC", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        variant, p, topic, cfg_path = args.child
        child(variant, int(p), topic, Path(cfg_path))
        return 0

    cfg = load_config()
    svc = KafkaService(cfg, cfg.local.home_path())
    tag = uuid.uuid4().hex[:10]
    flows, empty = f"bench.flows.{tag}", f"bench.empty.{tag}"
    svc.ensure_topics([flows, empty], partitions=2)
    delete_at_exit(svc, [flows, empty])
    values = records(args.records, args.event_rate)
    mb = sum(map(len, values)) / 1e6
    load_s = load_topic(cfg.kafka.bootstrap, flows, values)
    print(f"loaded {args.records} records ({mb:.0f} MB JSON) in {load_s:.1f} s", flush=True)
    # A rate: the first records are enough (kafka-python reads 7-10k/s; all of a 1M topic takes minutes).
    sample = min(args.records, BASELINE_RECORDS)
    baseline = statistics.median(consume_rate(cfg.kafka.bootstrap, flows, sample) for _ in range(3))
    print(f"baseline: plain Kafka consume (kafka-python, read_committed) {baseline:,.0f} records/s", flush=True)

    cfg_path = Path("/tmp") / f"gwtel-bench-{tag}.yaml"
    import yaml

    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    results: dict[str, Any] = {
        "records": args.records,
        "event_rate": args.event_rate,
        "json_mb": round(mb, 1),
        "baseline_consume_records_per_s": round(baseline),
        "runs": [],
    }
    for p in (int(x) for x in args.parallelism.split(",")):
        startup = statistics.median(run_variant(cfg_path, "job", p, empty)["seconds"] for _ in range(args.runs))
        print(f"p{p}: startup (empty topic) {startup:.1f} s", flush=True)
        reference: tuple[int, int] | None = None
        source_steady: float | None = None
        for variant in args.variants.split(","):
            outs = [run_variant(cfg_path, variant, p, flows) for _ in range(args.runs)]
            secs = statistics.median(o["seconds"] for o in outs)
            counts = (outs[0]["aggregates"], outs[0]["late"])
            # A variant that writes other records than the first one is wrong, however fast (the partial
            # ones write to a blackhole: they are parts of the job, not variants of it).
            if variant not in PARTIAL:
                reference = reference or counts
            same = counts == reference or variant in PARTIAL
            # Below the startup time the run is inside the noise of this machine: no rate.
            rate = args.records / (secs - startup) if secs > startup * 1.1 else None
            steadies = [o["steady"] for o in outs if o["steady"]]
            steady = statistics.median(steadies) if steadies else None
            if variant == "source_only":
                source_steady = steady
            results["runs"].append(
                {
                    "variant": variant,
                    "parallelism": p,
                    "seconds": round(secs, 1),
                    "startup_s": round(startup, 1),
                    "records_per_s": round(rate) if rate else None,
                    "vs_baseline": round(rate / baseline, 3) if rate else None,
                    "steady_records_per_s": round(steady) if steady else None,
                    "aggregates": counts[0],
                    "late": counts[1],
                    "same_output_as_first": same,
                }
            )
            shown = f"{rate:>9,.0f} records/s ({rate / baseline:.2f}x plain consume)" if rate else "rate: within noise"
            verdict = "" if same else f"  WRONG: {counts[0]} aggregates, {counts[1]} late vs {reference}"
            shown += f", steady {steady:,.0f}/s ({steady / baseline:.2f}x)" if steady else ", steady: too short"
            if steady and source_steady and variant != "source_only":
                shown += f" = {steady / source_steady:.2f}x source_only"
            print(f"p{p} {variant:<18} {secs:6.1f} s end to end, {shown}{verdict}", flush=True)
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "job.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
