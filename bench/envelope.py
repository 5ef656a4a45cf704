"""Wire benchmark (`gwtel up` first): what carrying many FlowRecords per Kafka message would change.

The loader's path is bounded by two per-message costs before ClickHouse sees a byte: librdkafka's fetch,
checks and the Python call per message on the consumer side, and the producer's per-message work at the agent.
This measures both for the same N records (bench/job.py's) written two ways into two fresh 2-partition topics:

- `per_message`: one FlowRecord per Kafka message (the flows topic v1, as today);
- `envelope`: `--per-message` FlowRecords per message as JSON lines (one record per line), which the job's
  record format reads already (`gwtel-flow.lines`, processors/java/gwtel/format) and ClickHouse parses as
  JSONEachRow as it is.

Variants, alternating, medians over `--runs`:
- consume: a read_committed librdkafka consumer as the loader uses it (`consume` in batches, each batch's values
  joined with newlines into one insert body): records/s and this process's CPU per record (librdkafka's threads
  included);
- produce: the agent's `FlowProducer.send_batch` (acks=all, idempotent, lz4) until every message is acknowledged,
  records/s (bench/_clients.py `producer_rate`).
Baseline, same runs: the `per_message` figures. Writes bench/results/envelope.json.
Usage: `python bench/envelope.py [--records 1000000] [--per-message 500] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _clients import producer_rate
from _results import Row, table, write
from confluent_kafka import Consumer
from job import TARGET_EVENT_RATE, load_topic, records

from gwtel.config import load_config
from gwtel.pipeline import discard, isolated, prepare
from gwtel.services.kafka import KafkaService
from processors.loader_setup import FETCH_SETTINGS


def envelopes(values: list[bytes], per_message: int) -> list[bytes]:
    """The records as JSON lines, `per_message` to a message (the last one shorter)."""
    return [b"\n".join(values[i : i + per_message]) for i in range(0, len(values), per_message)]


def consume(bootstrap: str, topic: str, records: int, lines_per_message: int) -> tuple[float, float]:
    """(records/s, CPU us per record) of a loader-style read of the whole topic: batches joined into bodies."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", **FETCH_SETTINGS})  # fmt: skip
    consumer.subscribe([topic])
    expected = -(-records // lines_per_message)
    n = body = 0
    t0 = c0 = None
    while n < expected:
        msgs = consumer.consume(num_messages=max(1, 50_000 // lines_per_message), timeout=1.0)
        if msgs and t0 is None:
            t0, c0 = time.perf_counter(), time.process_time()  # group join excluded
        n += len(msgs)
        body += len(b"\n".join([m.value() for m in msgs]))  # type: ignore[misc]
    seconds = time.perf_counter() - (t0 or time.perf_counter())
    cpu = time.process_time() - (c0 or time.process_time())
    consumer.close()
    if body == 0:
        raise RuntimeError(f"{topic}: nothing read")
    return records / seconds, 1e6 * cpu / records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000, help="records (default 1000000)")
    ap.add_argument("--per-message", type=int, default=500, help="records per envelope message (default 500)")
    ap.add_argument("--runs", type=int, default=3, help="runs per variant, alternating (default 3)")
    args = ap.parse_args()
    n, k = args.records, args.per_message
    cfg = isolated(load_config(), uuid.uuid4().hex[:10])
    prepare(cfg)
    single, batched = cfg.kafka.topics.flows, f"{cfg.kafka.topics.flows}.envelope"
    KafkaService(cfg, cfg.local.home_path()).ensure_topics([batched])
    figures: dict[str, list[float]] = {v: [] for v in ("c1", "ck", "cpu1", "cpuk", "p1", "pk")}
    try:
        values = records(n, TARGET_EVENT_RATE)
        packed = envelopes(values, k)
        load_topic(cfg.kafka.bootstrap, single, values)
        load_topic(cfg.kafka.bootstrap, batched, packed)
        for i in range(args.runs):
            order = [(single, 1, "1"), (batched, k, "k")]
            for topic, lines, tag in order if i % 2 == 0 else order[::-1]:
                rate, cpu = consume(cfg.kafka.bootstrap, topic, n, lines)
                figures[f"c{tag}"].append(rate)
                figures[f"cpu{tag}"].append(cpu)
            for tag, vals, lines in ((("1", values, 1), ("k", packed, k)) if i % 2 == 0 else
                                     (("k", packed, k), ("1", values, 1))):  # fmt: skip
                figures[f"p{tag}"].append(producer_rate(cfg, vals) * lines)
            print(f"  run {i + 1}: " + ", ".join(f"{v} {f[-1]:,.1f}" for v, f in figures.items()), flush=True)
    finally:
        with KafkaService(cfg, cfg.local.home_path()).admin() as admin:
            admin.delete_topics([batched])
        discard(cfg)
    med = {v: statistics.median(f) for v, f in figures.items()}
    rows = [
        Row("loader-style consume, one record per message (the baseline)", med["c1"], "records/s", med["c1"]),
        Row(f"  the same records, {k} per message as JSON lines", med["ck"], "records/s", med["c1"]),
        Row("  consumer CPU per record, one per message", med["cpu1"], "us", med["cpu1"]),
        Row(f"  consumer CPU per record, {k} per message", med["cpuk"], "us", med["cpu1"]),
        Row("agent producer (acknowledged), one record per message", med["p1"], "records/s", med["p1"]),
        Row(f"  the same records, {k} per message", med["pk"], "records/s", med["p1"]),
    ]
    path = write("envelope", rows, records=n, per_message=k, runs=args.runs)
    print(table([{"benchmark": "envelope", **r.__dict__, "ratio": r.ratio} for r in rows]))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
