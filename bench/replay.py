"""Native replay with FlowRecords into Kafka (`gwtel up` first): writes bench/results/replay.json.

A capture of `--flows` generated flows (about 24 packets each, as bench/run.py's: 1M packets for 42k flows) is
replayed with `gwtel replay`'s own call (`do_replay`: the native engine, partner and application classes, records
encoded in the engine and handed to the agent's `FlowProducer` in batches) into a fresh flows topic, and timed
until the producer is closed, i.e. every record acknowledged by the broker (acks=all, idempotent, lz4). The run
fails if a record was spooled or dropped instead: the figure is records in Kafka, not in a local file.

Baseline, same runs, alternating: the same replay writing its records as JSON lines to /dev/null (`--to
jsonl:/dev/null`): what the engine gives with no Kafka. Medians over `--runs`.
Usage: `python bench/replay.py [--flows 42000] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import Row, table, write

from gwtel.commands.replay import do_replay
from gwtel.config import GwtelConfig, load_config
from gwtel.pipeline import discard, isolated, prepare
from ingest.synth import SynthConfig, generate


def one(cfg: GwtelConfig, pcap: Path, to: str) -> tuple[float, int, int]:
    """(seconds, packets, records) of one replay of `pcap` to `to`, the output closed (Kafka: acknowledged)."""
    t0 = time.perf_counter()
    run = do_replay(cfg, [pcap], to)
    seconds = time.perf_counter() - t0
    c = run.agent.counters
    if run.producer is not None:
        p = run.producer
        if p.acked != c.records_emitted or p.spooled or p.dropped:
            raise SystemExit(
                f"replay: {c.records_emitted:,} records, {p.acked:,} acknowledged, {p.spooled:,} spooled, "
                f"{p.dropped:,} dropped: not a figure of records in Kafka"
            )
    if run.result.errors:
        raise SystemExit(f"replay: {run.result.errors}")
    return seconds, c.packets_seen, c.records_emitted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=42_000, help="flows in the generated capture (~24 packets each)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    kafka: list[float] = []
    devnull: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "replay.pcap"
        generate(SynthConfig(flows=args.flows, duration_s=600), pcap, Path(tmp) / "truth.json")
        for i in range(args.runs):
            cfg = isolated(load_config(), uuid.uuid4().hex[:10])
            prepare(cfg)
            try:
                s_null, packets, records = one(cfg, pcap, "jsonl:/dev/null")
                s_kafka, packets_k, records_k = one(cfg, pcap, "kafka")
            finally:
                discard(cfg)
            if (packets_k, records_k) != (packets, records):
                raise SystemExit(f"replay: {packets_k}/{records_k} packets/records to Kafka, {packets}/{records} not")
            kafka.append(packets / s_kafka)
            devnull.append(packets / s_null)
            print(
                f"  run {i + 1}: {packets:,} packets, {records:,} records; into Kafka {packets / s_kafka:,.0f} "
                f"packets/s ({records / s_kafka:,.0f} records/s), to /dev/null {packets / s_null:,.0f}",
                flush=True,
            )
    med = statistics.median
    per_record = packets / records
    rows = [
        Row("native replay, FlowRecords into Kafka (acknowledged), packets/s", med(kafka), "packets/s", med(devnull),
            ">= 1,000,000"),
        Row("  the same, records/s into Kafka", med(kafka) / per_record, "records/s"),
        Row("native replay, JSON lines to /dev/null (the baseline), packets/s", med(devnull), "packets/s"),
    ]  # fmt: skip
    path = write("replay", rows, flows=args.flows, packets=packets, records=records, kafka=kafka, devnull=devnull)
    print(table([{"benchmark": "replay", **r} for r in json.loads(path.read_text())["rows"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
