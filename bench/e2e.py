"""End-to-end benchmark on the real local services (`gwtel up` first): writes bench/results/e2e.json.

1. Throughput and lag (batch replay): a generated capture goes agent -> Kafka -> Flink (bounded) -> loader ->
   ClickHouse through gwtel.pipeline, as `gwtel run` does. Flow records/s through Kafka, Flink and the loader, and
   the lag from the last record acknowledged by Kafka to the delivery ledger balancing. Baseline, same run, same
   records: a bare kafka-python producer (acks=all, lz4) and consumer moving them through one topic.
2. Freshness (streaming): the streaming job (`gwtel aggregate`) and the loader (`gwtel load`) run as their own
   processes while records are produced at a steady pace with their last packet stamped "now". Freshness =
   when a row is first visible in ClickHouse minus the flow's last packet time, for the raw flow row and for
   the 10 s bandwidth window holding it; median and p95. Baseline, same run: the same records' arrival at a
   plain Kafka consumer.
Each part uses its own topics and database (gwtel.pipeline.isolated), removed at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _processes import start_pipeline, stop_pipeline
from _results import Row, table, write
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from gwtel.commands.replay import do_replay
from gwtel.config import GwtelConfig, load_config
from gwtel.pipeline import discard, isolated, prepare, run_pipeline
from ingest.producer import FlowProducer
from ingest.synth import SynthConfig, generate
from processors.chclient import make_client
from schemas import codec

NS = 1_000_000_000


def _q(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]


# -- 1. throughput ---------------------------------------------------------------------------------------
def kafka_baseline(cfg: GwtelConfig, lines: list[bytes]) -> float:
    """Records/s of a bare produce (acks=all) + consume of the same encoded records through one topic."""
    from gwtel.services.kafka import KafkaService

    topic = f"{cfg.kafka.topics.flows}.baseline"
    svc = KafkaService(cfg, cfg.local.home_path())
    svc.ensure_topics([topic], partitions=cfg.kafka.partitions)
    try:
        t0 = time.perf_counter()
        prod = KafkaProducer(
            bootstrap_servers=cfg.kafka.bootstrap, acks="all", linger_ms=20, compression_type="lz4",
            batch_size=256 * 1024,
        )  # fmt: skip
        for v in lines:
            prod.send(topic, v)
        prod.flush()
        prod.close()
        cons = KafkaConsumer(
            topic, bootstrap_servers=cfg.kafka.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
            max_poll_records=5000, group_id=f"bench-{uuid.uuid4().hex[:8]}",
        )  # fmt: skip
        n = 0
        while n < len(lines):
            n += sum(len(b) for b in cons.poll(timeout_ms=1000).values())
        cons.close()
        return len(lines) / (time.perf_counter() - t0)
    finally:
        with svc.admin() as admin:
            admin.delete_topics([topic])


def throughput(base: GwtelConfig, flows: int, tmp: Path) -> tuple[list[Row], list[bytes]]:
    pcap = tmp / "e2e.pcap"
    generate(SynthConfig(seed=7, flows=flows, duration_s=600), pcap, tmp / "truth.json")
    cfg = isolated(base, uuid.uuid4().hex[:10])
    prepare(cfg)
    try:
        jsonl = tmp / "records.jsonl"
        do_replay(cfg, [pcap], f"jsonl:{jsonl}")
        lines = [ln.encode() for ln in jsonl.read_text().splitlines()]
        baseline = kafka_baseline(cfg, lines)
        res = run_pipeline(cfg, pcap, log=lambda m: print(f"    {m}", flush=True))
    finally:
        discard(cfg)
    s = res.seconds
    through = res.records / (s["aggregate"] + s["load"])
    rows = [
        Row("flow records/s, Kafka -> Flink -> loader -> ClickHouse", through, "records/s", baseline, ">= 50,000"),
        Row(
            "flow records/s, with the agent replaying the capture",
            res.records / (s["replay"] + s["aggregate"] + s["load"]),
            "records/s",
            baseline,
        ),
        Row("lag: last record in Kafka -> ledger balanced", s["aggregate"] + s["load"], "s", None),
        Row("  of which Flink bounded job (with start-up)", s["aggregate"], "s", None),
    ]
    return rows, lines


# -- 2. freshness -----------------------------------------------------------------------------------------
class Poller(threading.Thread):
    """Notes when each flow row and each 10 s window first shows up in ClickHouse."""

    def __init__(self, cfg: GwtelConfig) -> None:
        super().__init__(daemon=True)
        self.cfg = cfg
        self.seq_seen: dict[int, int] = {}
        self.window_seen: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        db = self.cfg.clickhouse.database
        client = make_client(self.cfg.clickhouse)
        low = 0
        while not self.stop.is_set():
            now = time.time_ns()
            for (seq,) in client.query(f"SELECT seq FROM {db}.flows_raw WHERE seq >= {low}").result_rows:
                self.seq_seen.setdefault(int(seq), now)
            while low in self.seq_seen:
                low += 1
            for (w,) in client.query(
                f"SELECT DISTINCT window_start_ms FROM {db}.bandwidth_window WHERE window_s = 10"
            ).result_rows:
                self.window_seen.setdefault(int(w), now)
            self.stop.wait(0.2)
        client.close()


class KafkaWatch(threading.Thread):
    """Baseline: when each record reaches a plain consumer of the flows topic."""

    def __init__(self, cfg: GwtelConfig) -> None:
        super().__init__(daemon=True)
        self.cfg = cfg
        self.seen: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        # Partitions assigned by hand: no group join or rebalance delays the baseline.
        cons = KafkaConsumer(bootstrap_servers=self.cfg.kafka.bootstrap, enable_auto_commit=False)
        topic = self.cfg.kafka.topics.flows
        parts = [TopicPartition(topic, p) for p in sorted(cons.partitions_for_topic(topic) or ())]
        if not parts:
            raise SystemExit(f"freshness baseline: topic {topic} has no partitions")
        cons.assign(parts)
        cons.seek_to_beginning(*parts)
        while not self.stop.is_set():
            for batch in cons.poll(timeout_ms=200).values():
                now = time.time_ns()
                for m in batch:
                    self.seen.setdefault(int(json.loads(m.value)["seq"]), now)
        cons.close()


def freshness(
    base: GwtelConfig, lines: list[bytes], measure_s: float, tail_s: float, rate: float, tmp: Path
) -> list[Row]:
    cfg = isolated(base, uuid.uuid4().hex[:10])
    prepare(cfg)
    poller, watch = Poller(cfg), KafkaWatch(cfg)
    sent: dict[int, int] = {}  # seq -> last_ns
    procs: list[subprocess.Popen[bytes]] = []
    logs = cfg.local.home_path() / "logs"
    try:
        procs, logs = start_pipeline(cfg, tmp, "bench-e2e")
        poller.start()
        watch.start()
        producer = FlowProducer(
            cfg.kafka.bootstrap, cfg.kafka.topics.flows, spool_dir=cfg.local.home_path() / cfg.agent.spool_dir,
            spool_max_bytes=cfg.agent.spool_max_bytes,
        )  # fmt: skip
        records = [codec.decode(v) for v in lines]
        # Let the job start (its first records would otherwise wait for the MiniCluster, not for the pipeline).
        warm_until = time.monotonic() + 25
        start = time.monotonic()
        seq = 0
        while True:
            elapsed = time.monotonic() - start
            if elapsed > 25 + measure_s + tail_s:
                break
            due = start + seq / rate
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            now = time.time_ns()
            rec = records[seq % len(records)]
            span = rec.last_ns - rec.first_ns
            rec = dataclasses.replace(
                rec, agent_id=cfg.agent.agent_id, seq=seq, first_ns=now - span, last_ns=now, export_ns=now
            )
            producer.send(rec)
            if warm_until <= time.monotonic() <= warm_until + measure_s:
                sent[seq] = now
            seq += 1
        producer.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(s in poller.seq_seen for s in sent):
            time.sleep(0.5)
    finally:
        poller.stop.set()
        watch.stop.set()
        stop_pipeline(procs)
        poller.join(5)
        watch.join(5)
        discard(cfg)
    w_ns = 10 * NS
    raw = [(poller.seq_seen[s] - t) / NS for s, t in sent.items() if s in poller.seq_seen]
    agg = [
        (poller.window_seen[t // w_ns * w_ns // 1_000_000] - t) / NS
        for t in sent.values()
        if t // w_ns * w_ns // 1_000_000 in poller.window_seen
    ]
    kafka = [(watch.seen[s] - t) / NS for s, t in sent.items() if s in watch.seen]
    print(
        f"    freshness over {len(sent):,} records: raw rows {len(raw):,}, windows {len(agg):,}, kafka {len(kafka):,}"
    )
    if not raw or not agg:
        raise SystemExit("freshness: rows did not show up in ClickHouse; see the logs in " + str(logs))
    if not kafka:
        raise SystemExit("freshness: the baseline consumer saw none of the records")
    bound = cfg.job.watermark_bound_ms / 1000
    target = f"<= {10 + 10} s (window + 10 s)"
    return [
        Row("freshness, 10 s window row, median", statistics.median(agg), "s", statistics.median(kafka), target),
        Row("freshness, 10 s window row, p95", _q(agg, 0.95), "s", _q(kafka, 0.95), target),
        Row("freshness, raw flow row, median", statistics.median(raw), "s", statistics.median(kafka)),
        Row("freshness, raw flow row, p95", _q(raw, 0.95), "s", _q(kafka, 0.95)),
        Row("  window floor: window + watermark bound", 10 + bound, "s", None),
        Row("  records lost in the freshness run", len(sent) - len(raw), "records", None, "0"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=30_000, help="flows in the throughput capture (default 30000)")
    ap.add_argument("--measure", type=float, default=40.0, help="seconds of paced records measured (default 40)")
    ap.add_argument("--rate", type=float, default=200.0, help="records/s in the freshness run (default 200)")
    args = ap.parse_args()
    base = load_config()
    with tempfile.TemporaryDirectory() as tmp:
        print("throughput and lag (batch replay)", flush=True)
        rows, lines = throughput(base, args.flows, Path(tmp))
        # After the measured records, the stream goes on long enough for the watermark to close their windows.
        tail = base.job.watermark_bound_ms / 1000 + base.job.checkpoint_interval_ms / 1000 + 15
        print(f"freshness (streaming, {args.rate:.0f} records/s for {args.measure:.0f} s)", flush=True)
        rows += freshness(base, lines, args.measure, tail, args.rate, Path(tmp))
    path = write("e2e", rows, flows=args.flows, rate=args.rate, measure_s=args.measure)
    print(table([{"benchmark": "e2e", **r} for r in json.loads(path.read_text())["rows"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
