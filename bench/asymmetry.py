"""Cost of the asymmetric-routing query (processors.asymmetry.link_pairs) over `flows_raw` (`gwtel up` first).

N flow records of one hour (half the conversations seen twice; one in ten of those back on another link) are
built inside ClickHouse (`INSERT ... SELECT FROM numbers(N)`) in a database of their own. Medians over `--runs`:

- `link_pairs`: the query the report runs, over the whole hour;
- baseline `link_sources`: the report's existing per-link scan of the same rows (processors.queries), so the
  ratio says what the asymmetry section adds to a report over the same range;
- `count()`: the floor, reading the range alone.

Writes bench/results/asymmetry.json. Usage: `python bench/asymmetry.py [--records 1000000] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import Row, table, write

from gwtel.config import load_config
from processors.asymmetry import link_pairs, per_partner
from processors.chclient import make_client
from processors.migrate import Migrator
from processors.queries import link_sources

HOUR_MS = 3_600_000


def fill(client: Any, db: str, n: int, t0_ms: int) -> None:
    conv = "intDiv(number, 2)"
    client.command(f"""
        INSERT INTO {db}.flows_raw (schema_version, agent_id, seq, link_id, sampling_rate, ip_version, src_ip,
            src_port, dst_ip, dst_port, protocol, first_ns, last_ns, export_ns, end_reason, bytes_fwd, packets_fwd,
            bytes_rev, packets_rev, tcp_flags_fwd, tcp_flags_rev, direction, partner, remote_country)
        SELECT 1, 'bench', number, if(number % 2 = 1 AND {conv} % 10 = 0, 'jp-2', 'jp-1'), 1, 4,
            concat('10.', toString(intDiv({conv}, 65536) % 256), '.', toString(intDiv({conv}, 256) % 256), '.',
                   toString({conv} % 256)),
            1024 + {conv} % 60000, concat('203.0.113.', toString({conv} % 250)), 443, 6,
            {t0_ms} * 1000000 + number * {HOUR_MS * 1_000_000 // n}, 0, 0, 'idle',
            1200, 10, if(number % 2 = 1 AND {conv} % 10 = 0, 0, 9000), if(number % 2 = 1 AND {conv} % 10 = 0, 0, 8),
            27, 27, 'egress', ['japan', 'korea', 'belt_and_road'][{conv} % 3 + 1], 'JP'
        FROM numbers({n})
    """)


def timed(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    cfg = load_config()
    db = f"bench_asym_{uuid.uuid4().hex[:8]}"
    admin = make_client(cfg.clickhouse, database="default")
    admin.command(f"CREATE DATABASE {db}")
    try:
        client = make_client(cfg.clickhouse, database=db)
        Migrator(client, db).run()
        t0 = (time.time_ns() // 1_000_000 // HOUR_MS - 2) * HOUR_MS
        fill(client, db, args.records, t0)
        end = t0 + HOUR_MS
        got = per_partner(link_pairs(client, db, t0, end))
        print("conversations per partner:", {r.partner: (r.conversations, r.asymmetric) for r in got})
        pairs_s = timed(lambda: link_pairs(client, db, t0, end), args.runs)
        links_s = timed(lambda: link_sources(client, db, t0, end), args.runs)
        count_s = timed(lambda: client.query(f"SELECT count() FROM {db}.flows_raw").result_rows, args.runs)
        n = args.records
        rows = [
            Row("link_pairs query, seconds", pairs_s, "s", links_s, ""),
            Row("link_pairs rows/s", n / pairs_s, "rows/s", n / links_s, ""),
            Row("count() floor, seconds", count_s, "s", None, ""),
        ]
        path = write("asymmetry", rows, records=n, runs=args.runs)
        print(table([{"benchmark": "asymmetry", **r.__dict__, "ratio": r.ratio} for r in rows]))
        print(f"wrote {path}")
    finally:
        admin.command(f"DROP DATABASE IF EXISTS {db}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
