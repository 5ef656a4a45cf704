"""End-to-end benchmark on the real local services (`gwtel up` first): writes bench/results/e2e.json.

1. Throughput and lag (batch replay): a generated capture goes agent -> Kafka -> Flink (bounded) -> loader ->
   ClickHouse through gwtel.pipeline, as `gwtel run` does. Flow records/s through Kafka, Flink and the loader, and
   the lag from the last record acknowledged by Kafka to the delivery ledger balancing. Baseline, same run, same
   records: a bare kafka-python producer (acks=all, lz4) and consumer moving them through one topic.
2. Freshness (streaming): the streaming job (`gwtel aggregate`) and the loader (`gwtel load`) run as their own
   processes while an agent (the reference meter, with the configuration's agent settings) meters a generated
   capture in real time, its packets stamped "now", and produces its records as it exports them. Freshness =
   when a row is first visible in ClickHouse minus the flow's last packet time (the record's `last_ns`), for
   the raw flow row and for the 10 s bandwidth window holding it; median and p95. So the agent's export delay
   counts. Baseline, same run: the same records' arrival at a plain Kafka consumer.
Each part uses its own topics and database (gwtel.pipeline.isolated), removed at the end.
"""

from __future__ import annotations

import argparse
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
from ingest.agent import Agent
from ingest.classify import PartnerClassifier
from ingest.packet import RawFrame
from ingest.producer import FlowProducer
from ingest.sources import open_capture
from ingest.synth import SynthConfig, generate
from processors.chclient import make_client
from schemas.flow_record import FlowRecord

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


def throughput(base: GwtelConfig, flows: int, tmp: Path) -> list[Row]:
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
    return rows


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


def paced_frames(pcap: Path, start_ns: int) -> list[RawFrame]:
    """The capture's frames moved so that its first window starts at ``start_ns`` (a 10 s boundary)."""
    with open_capture(pcap) as r:
        frames = list(r)
    shift = start_ns - frames[0].ts_ns // (10 * NS) * (10 * NS)
    return [RawFrame(f.ts_ns + shift, f.linktype, f.data, f.wire_len) for f in frames]


def freshness(base: GwtelConfig, measure_s: float, tail_s: float, rate: float, tmp: Path) -> list[Row]:
    cfg = isolated(base, uuid.uuid4().hex[:10])
    prepare(cfg)
    # About `rate` records/s: the generator's flows are short (one record each, most of them).
    duration = int(25 + measure_s + tail_s) // 10 * 10 + 10
    pcap = tmp / "fresh.pcap"
    generate(SynthConfig(seed=5, flows=int(rate * duration), duration_s=duration), pcap, tmp / "fresh.json")
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
        # Let the job start (its first records would otherwise wait for the MiniCluster, not for the pipeline).
        t0 = (time.time_ns() // (10 * NS) + 3) * 10 * NS
        frames = paced_frames(pcap, t0)
        warm_from, warm_until = t0 + 25 * NS, t0 + round((25 + measure_s) * NS)

        def export(rec: FlowRecord) -> None:
            producer.send(rec)
            if warm_from <= rec.last_ns <= warm_until:
                sent[rec.seq] = rec.last_ns

        agent = Agent(cfg.agent, PartnerClassifier(cfg.partners), export)
        next_tick = 0
        for frame in frames:
            now = time.time_ns()
            while frame.ts_ns > now:
                time.sleep(min(0.1, (frame.ts_ns - now) / NS))
                now = time.time_ns()
                if now >= next_tick:  # the live capture loop's tick: cuts and timeouts with no packet
                    agent.tick(now)
                    next_tick = now + NS // 10
            agent.feed(frame)
        end = frames[-1].ts_ns + round(tail_s * NS)
        while time.time_ns() < end:
            agent.tick(time.time_ns())
            time.sleep(0.1)
        agent.finish()
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
    return [
        Row("freshness, 10 s window row, median", statistics.median(agg), "s", statistics.median(kafka), "<= 20 s"),
        Row("freshness, 10 s window row, p95", _q(agg, 0.95), "s", _q(kafka, 0.95), "<= 25 s"),
        Row("freshness, raw flow row, median", statistics.median(raw), "s", statistics.median(kafka)),
        Row("freshness, raw flow row, p95", _q(raw, 0.95), "s", _q(kafka, 0.95)),
        Row("  records measured", len(sent), "records", None),
        Row("  records lost in the freshness run", len(sent) - len(raw), "records", None, "0"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=30_000, help="flows in the throughput capture (default 30000)")
    ap.add_argument("--measure", type=float, default=40.0, help="seconds of paced records measured (default 40)")
    ap.add_argument("--rate", type=float, default=200.0, help="flows/s in the freshness run (default 200)")
    ap.add_argument("--config", type=Path, help="configuration file (default: the usual search)")
    ap.add_argument("--freshness-only", action="store_true", help="skip the throughput part")
    args = ap.parse_args()
    base = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        rows: list[Row] = []
        if not args.freshness_only:
            print("throughput and lag (batch replay)", flush=True)
            rows = throughput(base, args.flows, Path(tmp))
        # After the measured records, the stream goes on long enough for the watermark to close their windows.
        tail = 10 + base.job.watermark_bound_ms / 1000 + base.job.checkpoint_interval_ms / 1000 + 15
        print(f"freshness (streaming, {args.rate:.0f} flows/s for {args.measure:.0f} s)", flush=True)
        rows += freshness(base, args.measure, tail, args.rate, Path(tmp))
    path = write("e2e", rows, flows=args.flows, rate=args.rate, measure_s=args.measure)
    print(table([{"benchmark": "e2e", **r} for r in json.loads(path.read_text())["rows"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
