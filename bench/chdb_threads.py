"""Can one chDB process run two landing inserts at once? Two threads, each on its own connection, in process.

N FlowRecords (bench/job.py's, timestamps of the last hour) are cut into JSONEachRow batches of `--batch` rows
and inserted into the landing table of a freshly migrated database through the streaming insert call the
embedded server uses, each batch with its own deduplication token:

- `serial`: one thread, one connection, every batch one after the other (the embedded server before: one lock);
- `threads`: two threads, each with its own connection to the same data directory, half the batches each.

The variants alternate over `--runs`; wall time and CPU time of the process (every thread) are medians. The
ratio `serial wall / threads wall` is what a second core gives; `CPU` shows whether the work per row grows.
The GIL check counts a Python loop's iterations on another thread during one insert against the same time idle:
near 1.0 means the insert call releases the GIL. Correctness is checked at the end: every batch stored once in
`flows_raw` and `flows_batches`, and the same batch sent by both threads at once (same token) stored once.

Usage: `python bench/chdb_threads.py [--records 400000] [--batch 100000] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import job
from chdb import _chdb
from landing_parts import batches, migrate_db, settings_sql

from processors.landing import BATCHES, LANDING, raw_token

DB = "bench"


def count(conn: Any, sql: str) -> int:
    return int(conn.query(sql, "TabSeparated").bytes())


class Inserts:
    def __init__(self, path: Path, parts: list[bytes], size: int) -> None:
        self.conns = [_chdb.connect(str(path)) for _ in range(2)]  # type: ignore[attr-defined]
        self.parts, self.size, self.tokens = parts, size, 0
        self.lock = threading.Lock()

    def token(self, i: int) -> str:
        with self.lock:
            self.tokens += 1
            return raw_token(f"t{self.tokens}", 0, i * self.size, (i + 1) * self.size - 1, 0)

    def insert(self, conn: Any, part: bytes, token: str) -> None:
        handle = conn.send_insert(f"INSERT INTO {DB}.{LANDING}" + settings_sql(token), "JSONEachRow")
        conn.insert_append(handle, part)
        conn.insert_done(handle)

    def serial(self) -> None:
        for i, part in enumerate(self.parts):
            self.insert(self.conns[0], part, self.token(i))

    def threads(self) -> None:
        def work(k: int) -> None:
            for i in range(k, len(self.parts), 2):
                self.insert(self.conns[k], self.parts[i], self.token(i))

        ts = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def gil_ratio(self) -> float:
        """Python loop iterations during one insert over the same time idle (1.0: the GIL is released)."""
        stop = threading.Event()
        counted = [0]

        def spin() -> None:
            while not stop.is_set():
                counted[0] += 1

        t = threading.Thread(target=spin)
        t0 = time.perf_counter()
        t.start()
        self.insert(self.conns[0], self.parts[0], self.token(0))
        stop.set()
        t.join()
        busy_s, during = time.perf_counter() - t0, counted[0]
        stop.clear()
        counted[0] = 0
        t = threading.Thread(target=spin)
        t.start()
        time.sleep(busy_s)
        stop.set()
        t.join()
        return during / max(counted[0], 1)

    def same_token_twice(self) -> tuple[int, int]:
        """The same batch and token sent from both connections at once: (rows added to flows_raw, batch rows)."""
        before = count(self.conns[0], f"SELECT count() FROM {DB}.flows_raw")
        batches_before = count(self.conns[0], f"SELECT count() FROM {DB}.{BATCHES}")
        token = raw_token("twice", 0, 0, self.size - 1, 0)
        ts = [threading.Thread(target=self.insert, args=(c, self.parts[0], token)) for c in self.conns]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        after = count(self.conns[0], f"SELECT count() FROM {DB}.flows_raw")
        return after - before, count(self.conns[0], f"SELECT count() FROM {DB}.{BATCHES}") - batches_before


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=400_000)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    job.T0_S = int(time.time()) - 3600  # inside every TTL
    parts = batches(job.records(args.records, job.TARGET_EVENT_RATE), args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        ins = Inserts(Path(tmp), parts, args.batch)
        try:
            migrate_db(lambda sql: ins.conns[0].query(sql, "TabSeparated"), DB)
            ins.conns[0].query("SYSTEM STOP MERGES", "TabSeparated")  # merges would land in the next variant
            ins.serial()  # warm-up
            gil = ins.gil_ratio()
            walls: dict[str, list[float]] = {"serial": [], "threads": []}
            cpus: dict[str, list[float]] = {"serial": [], "threads": []}
            for i in range(args.runs):
                for name in sorted(walls, reverse=bool(i % 2)):
                    c0, w0 = time.process_time(), time.perf_counter()
                    getattr(ins, name)()
                    walls[name].append(time.perf_counter() - w0)
                    cpus[name].append(time.process_time() - c0)
                print(f"  run {i + 1}: " + ", ".join(
                    f"{n} {args.records / walls[n][-1]:,.0f} rows/s ({1e6 * cpus[n][-1] / args.records:.2f} CPU-us/row)"
                    for n in walls), flush=True)  # fmt: skip
            stored = count(ins.conns[0], f"SELECT count() FROM {DB}.flows_raw")
            landed = count(ins.conns[0], f"SELECT sum(stored) FROM {DB}.{BATCHES}")
            expected = ins.tokens * args.batch  # every token once, the GIL check's included
            twice = ins.same_token_twice()
        finally:
            for conn in ins.conns:
                conn.close()
    base = statistics.median(walls["serial"])
    for name, samples in walls.items():
        wall, cpu = statistics.median(samples), statistics.median(cpus[name])
        print(f"{name:<8} {args.records / wall:10,.0f} rows/s wall  {1e6 * cpu / args.records:6.2f} CPU-us/row  "
              f"{base / wall:5.2f}x serial")  # fmt: skip
    print(f"GIL: a Python thread ran {gil:.2f}x its idle rate during an insert (1.0: released)")
    print(f"flows_raw {stored:,} rows, flows_batches {landed:,} rows stored, expected {expected:,}")
    print(f"one batch sent by both threads at once with one token: flows_raw +{twice[0]:,}, flows_batches +{twice[1]}")
    ok = stored == landed == expected and twice == (args.batch, 1)
    print("correct" if ok else "WRONG")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
