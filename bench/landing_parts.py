"""Where a landing insert's time goes, in chDB in process (no HTTP, no Kafka): per-row cost of each part.

N FlowRecords (bench/job.py's, timestamps of the last hour) are inserted in batches of `--batch` through the
streaming insert call the embedded server uses, into a fresh database migrated as `gwtel migrate` does.
Variants, alternating, medians over `--runs` (us per row and rows/s):

- `parse`: JSONEachRow into a Null table of `flows_in`'s columns (no view): ClickHouse's parse alone;
- `check`: the same with only the check view (its downstream views dropped): parse + checks;
- `landing`: the landing path as migrated (flows_in, its check view and the three views behind it);
- `raw_write`: `flows_raw` written from typed rows already in memory (INSERT ... SELECT): the MergeTree write;
- `typed_parse`: JSONEachRow into a Null table of `flows_raw`'s (narrow, LowCardinality) columns, addresses as
  text (0012's);
- `compact`, `rowbinary`: the same rows as JSONCompactEachRow / RowBinary into a Null table of `flows_in`'s
  columns: what another wire format would save on the parse;
- `landing_text`: `landing` into a database migrated only to the version before addresses became IPv6 (0012:
  addresses stored as text), the same records: what the IPv6 columns cost or save at insert;
- `http_server`: the landing inserts sent by clickhouse-connect to a private embedded server (this checkout's
  code), the server process's CPU; `http_baseline`: the same to a server from `--baseline-src` (another
  checkout, e.g. main), alternating; `http_client`: the sending process's CPU.

Figures are CPU time (user + system) per row, every thread of the process: on the shared machine wall time
mostly measures the other work. Background merges are stopped while inserts are timed; `merge` is one merge
pass over `flows_raw` (every part into one) at the end, per row: a row is merged a few times over its life.
Then the records land once into two new databases (all migrations; up to 0012) and `flows_raw`'s bytes on disk
per row (every column, and the four address columns) are compared, each table merged into one part.
`--ipv6-share` of the records carry IPv6 addresses (the rest IPv4). Last, migration 0013 is timed on the text
database (CPU and wall seconds per million rows).

The baseline is `landing`, measured in the same run. Usage: `python bench/landing_parts.py [--records 200000]`.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import job
import orjson
from _proc import cpu_s, minor_faults

from gwtel.chserver.engine import Engine
from processors.config import LoaderConfig
from processors.landing import INPUT_SETTINGS, LANDING, raw_token
from processors.loader import INSERT_SETTINGS_FIXED
from processors.migrate import discover, params_from, render

DB = "bench"


def ping(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HttpBench:
    """The landing inserts through a private embedded server's HTTP interface, as the loader sends them."""

    def __init__(self, data: Path, json_parts: list[bytes], size: int, src: Path | None = None) -> None:
        import clickhouse_connect

        self.port = free_port()
        root = src or Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": str(root)}
        argv = ["-m", "gwtel.chserver", "--data", str(data), "--port", str(self.port), "--log-level", "WARNING"]
        # cwd: `python -m` puts the working directory first on the path, before PYTHONPATH
        self.proc = subprocess.Popen([sys.executable, *argv], env=env, cwd=root)
        deadline = time.monotonic() + 60
        while not ping(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the private embedded server did not start")
            time.sleep(0.3)
        self.client = clickhouse_connect.get_client(host="127.0.0.1", port=self.port, autogenerate_session_id=False)
        migrate_db(self.client.command, DB)
        self.client.command("SYSTEM STOP MERGES")  # merges are measured apart (`merge`)
        self.parts, self.size, self.tokens = json_parts, size, 0
        self.faults: list[int] = []

    def run(self) -> tuple[float, float, float]:
        """(wall s, server CPU s, client CPU s) of one pass over the batches; page faults in `self.faults`."""
        f0 = minor_faults(self.proc.pid)
        s0, c0, w0 = cpu_s(self.proc.pid), time.process_time(), time.perf_counter()
        for i, part in enumerate(self.parts):
            self.tokens += 1
            token = raw_token(f"h{self.tokens}", 0, i * self.size, (i + 1) * self.size - 1, 0)
            settings = {**INSERT_SETTINGS_FIXED, **INPUT_SETTINGS, "insert_deduplication_token": token}
            self.client.raw_insert(f"{DB}.{LANDING}", insert_block=part, fmt="JSONEachRow", settings=settings)
        out = time.perf_counter() - w0, cpu_s(self.proc.pid) - s0, time.process_time() - c0
        self.faults.append(minor_faults(self.proc.pid) - f0)
        return out

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(30)


CHECK_DB = "bench_check"  # the landing migration without the views behind the check view
_BEHIND_CHECK = ("flows_checked_raw_mv", "flows_checked_bad_mv", "flows_checked_batch_mv")


def settings_sql(token: str, parse: bool = True) -> str:
    pairs: dict[str, object] = {**INSERT_SETTINGS_FIXED, **(INPUT_SETTINGS if parse else {"max_threads": 1})}
    pairs["insert_deduplication_token"] = f"'{token}'"
    return " SETTINGS " + ", ".join(f"{k} = {v}" for k, v in pairs.items())


TEXT_DB = "bench_text"  # migrated to the version before addresses became IPv6
TEXT_VERSION = next(m.version for m in discover() if m.name == "addresses_ipv6") - 1
ADDRESS_COLUMNS = "('src_ip', 'dst_ip', 'exporter', 'next_hop')"


def migrate_db(run: Callable[[str], object], db: str, upto: int | None = None) -> None:
    """Create `db` and apply every migration to it (up to `upto`), as `gwtel migrate` does."""
    run(f"CREATE DATABASE {db}")
    for mig in discover():
        if upto is not None and mig.version > upto:
            break
        for stmt in render(mig, params_from(db, LoaderConfig())):
            run(stmt)


def with_ipv6(values: list[bytes], share: float) -> list[bytes]:
    """`share` of the records (every k-th) turned into IPv6 flows: 2001:db8::/32 addresses from their IPv4 ones."""
    if share <= 0:
        return values
    step = max(1, round(1 / share))
    out = []
    for i, value in enumerate(values):
        if i % step:
            out.append(value)
            continue
        d = orjson.loads(value)
        for f in ("src_ip", "dst_ip"):
            a, b, c, e = (int(x) for x in d[f].split("."))
            d[f] = f"2001:db8:{a:x}:{b:x}::{c:x}:{e:x}"
        d["ip_version"] = 6
        out.append(orjson.dumps(d))
    return out


def batches(blob: list[bytes], size: int) -> list[bytes]:
    return [b"\n".join(blob[i : i + size]) for i in range(0, len(blob), size)]


class Bench:
    def __init__(self, engine: Engine, values: list[bytes], size: int) -> None:
        self.engine, self.size, self.n = engine, size, len(values)
        self.json = batches(values, size)
        self.tokens = 0
        cols = [r[0] for r in self._rows("SELECT name, type FROM system.columns WHERE database = 'bench' "
                                        "AND table = 'flows_in' ORDER BY position")]  # fmt: skip
        self.cols = cols
        compact = [orjson.dumps([d.get(c) for c in cols]) for d in map(orjson.loads, values)]
        self.compact = batches(compact, size)
        engine.query(f"CREATE TABLE {DB}.null_in AS {DB}.{LANDING} ENGINE = Null", "TabSeparated", None)
        # addresses as text: an IPv6 column cannot read an unknown exporter's ""
        engine.query(f"CREATE TABLE {DB}.null_typed AS {TEXT_DB}.flows_raw ENGINE = Null", "TabSeparated", None)
        engine.query(f"CREATE TABLE {DB}.mem_in AS {DB}.{LANDING} ENGINE = Memory", "TabSeparated", None)
        for part in self.json:
            engine.insert(f"INSERT INTO {DB}.mem_in" + settings_sql("seed"), "JSONEachRow", [part], None)
        self.rowbinary = [
            engine.query(f"SELECT * FROM {DB}.mem_in LIMIT {size} OFFSET {i}", "RowBinary", None).body
            for i in range(0, self.n, size)
        ]

    def _rows(self, sql: str) -> list[list[str]]:
        body = self.engine.query(sql, "TabSeparated", None).body.decode()
        return [line.split("\t") for line in body.splitlines()]

    def _token(self, first: int, count: int) -> str:
        self.tokens += 1
        return raw_token(f"t{self.tokens}", 0, first, first + count - 1, 0)

    def _insert(self, table: str, fmt: str, parts: list[bytes], db: str = DB) -> float:
        t0 = time.process_time()
        for i, part in enumerate(parts):
            token = self._token(i * self.size, self.size)
            self.engine.insert(f"INSERT INTO {db}.{table}" + settings_sql(token), fmt, [part], None)
        return time.process_time() - t0

    def check(self) -> float:
        return self._insert(LANDING, "JSONEachRow", self.json, CHECK_DB)

    def parse(self) -> float:
        return self._insert("null_in", "JSONEachRow", self.json)

    def landing(self) -> float:
        return self._insert(LANDING, "JSONEachRow", self.json)

    def landing_text(self) -> float:
        return self._insert(LANDING, "JSONEachRow", self.json, TEXT_DB)

    def bytes_per_row(self, db: str, upto: int | None) -> tuple[float, float]:
        """The records landed once into a new `db` (migrated up to `upto`), `flows_raw` merged into one part:
        (bytes on disk per row, of which the address columns)."""
        migrate_db(lambda sql: self.engine.query(sql, "TabSeparated", None), db, upto)
        # wide parts (one file per column, as a production part of this size would be): column sizes are known
        self.engine.query(
            f"ALTER TABLE {db}.flows_raw MODIFY SETTING min_bytes_for_wide_part = 0", "TabSeparated", None
        )
        self._insert(LANDING, "JSONEachRow", self.json, db)
        self.engine.query(f"OPTIMIZE TABLE {db}.flows_raw FINAL", "TabSeparated", None)
        [[rows, total]] = self._rows(f"SELECT sum(rows), sum(bytes_on_disk) FROM system.parts "
                                     f"WHERE database = '{db}' AND table = 'flows_raw' AND active")  # fmt: skip
        [[addr]] = self._rows(f"SELECT sum(data_compressed_bytes) FROM system.columns WHERE database = '{db}' "
                              f"AND table = 'flows_raw' AND name IN {ADDRESS_COLUMNS}")  # fmt: skip
        return int(total) / int(rows), int(addr) / int(rows)

    def retype(self, db: str) -> tuple[float, float]:
        """Migration 0013 on `db` (at 0012, holding the records): (CPU s, wall s) per million rows."""
        [[rows]] = self._rows(f"SELECT count() FROM {db}.flows_raw")
        mig = next(m for m in discover() if m.version == TEXT_VERSION + 1)
        c0, w0 = time.process_time(), time.perf_counter()
        for stmt in render(mig, params_from(db, LoaderConfig())):
            self.engine.query(stmt + " SETTINGS mutations_sync = 2" if stmt.startswith("ALTER") else stmt,
                              "TabSeparated", None)  # fmt: skip
        scale = 1e6 / int(rows)
        return (time.process_time() - c0) * scale, (time.perf_counter() - w0) * scale

    def typed_parse(self) -> float:
        return self._insert("null_typed", "JSONEachRow", self.json)

    def compact_fmt(self) -> float:
        return self._insert("null_in", "JSONCompactEachRow", self.compact)

    def rowbinary_fmt(self) -> float:
        return self._insert("null_in", "RowBinary", self.rowbinary)

    def raw_write(self) -> float:
        self.engine.query(f"TRUNCATE TABLE {DB}.flows_raw", "TabSeparated", None)
        t0 = time.process_time()
        for first in range(0, self.n, self.size):
            token = self._token(first, self.size)
            self.engine.query(
                f"INSERT INTO {DB}.flows_raw SELECT * EXCEPT (kafka_topic, kafka_partition, kafka_offset, ts), "
                f"'t', 0, {first} + rowNumberInBlock() FROM {DB}.typed LIMIT {self.size} OFFSET {first}"
                + settings_sql(token, parse=False),
                "TabSeparated",
                None,
            )
        return time.process_time() - t0

    def merge_pass(self) -> float:
        """CPU us per row of merging every part of `flows_raw` into one (each row read and written once)."""
        rows = int(self.engine.query(f"SELECT count() FROM {DB}.flows_raw", "TabSeparated", None).body)
        self.engine.query("SYSTEM START MERGES", "TabSeparated", None)
        t0 = time.process_time()
        self.engine.query(f"OPTIMIZE TABLE {DB}.flows_raw FINAL", "TabSeparated", None)
        return 1e6 * (time.process_time() - t0) / rows

    def prepare_typed(self) -> None:
        self.engine.query(f"CREATE TABLE {DB}.typed AS {DB}.flows_raw ENGINE = Memory", "TabSeparated", None)
        self.engine.query(f"INSERT INTO {DB}.typed SELECT * FROM {DB}.flows_raw", "TabSeparated", None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ipv6-share", type=float, default=0.25, help="share of IPv6 records (default 0.25)")
    ap.add_argument("--baseline-src", type=Path, default=None,
                    help="also serve the inserts from the embedded server of this checkout (e.g. main)")  # fmt: skip
    ap.add_argument("--http-only", action="store_true", help="only the embedded server variants (and the client)")
    args = ap.parse_args()
    job.T0_S = int(time.time()) - 3600  # inside every TTL
    values = with_ipv6(job.records(args.records, job.TARGET_EVENT_RATE), args.ipv6_share)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Path(tmp))
        servers: dict[str, HttpBench] = {}
        try:
            for db in (DB, CHECK_DB):
                migrate_db(lambda sql: engine.query(sql, "TabSeparated", None), db)
            migrate_db(lambda sql: engine.query(sql, "TabSeparated", None), TEXT_DB, TEXT_VERSION)
            for view in _BEHIND_CHECK:
                engine.query(f"DROP VIEW {CHECK_DB}.{view}", "TabSeparated", None)
            # Background merges would land in whichever variant runs next: each insert is timed without them,
            # and one merge pass over flows_raw is timed at the end.
            engine.query("SYSTEM STOP MERGES", "TabSeparated", None)
            bench = Bench(engine, values, args.batch)
            bench.landing()
            bench.landing_text()  # a first pass of each schema before any is timed
            stored = int(engine.query(f"SELECT count() FROM {DB}.flows_raw", "TabSeparated", None).body)
            if stored != args.records:
                raise RuntimeError(f"flows_raw holds {stored} rows for {args.records}")
            bench.prepare_typed()
            variants: dict[str, Callable[[], float]] = (
                {}
                if args.http_only
                else {
                    "landing": bench.landing,
                    "landing_text": bench.landing_text,
                    "parse": bench.parse,
                    "check": bench.check,
                    "typed_parse": bench.typed_parse,
                    "raw_write": bench.raw_write,
                    "compact": bench.compact_fmt,
                    "rowbinary": bench.rowbinary_fmt,
                }
            )
            servers["http_server"] = HttpBench(Path(tmp) / "http", bench.json, args.batch)
            if args.baseline_src:
                servers["http_baseline"] = HttpBench(Path(tmp) / "base", bench.json, args.batch, args.baseline_src)
            times: dict[str, list[float]] = {v: [] for v in [*variants, *servers, "http_client"]}
            walls: dict[str, list[float]] = {}
            for i in range(args.runs):
                order = list(variants)
                if i % 2 and order:  # the two schemas compared alternate, so that neither always runs first
                    order[:2] = order[1::-1]
                for name in order:
                    times[name].append(variants[name]())
                # Which server goes first alternates, so that neither always follows the in-process variants.
                for name, server in sorted(servers.items(), reverse=bool(i % 2)):
                    wall, cpu, client = server.run()
                    times[name].append(cpu)
                    walls.setdefault(name, []).append(wall)
                times["http_client"].append(client)
                print(f"  run {i + 1}: " + ", ".join(f"{v} {1e6 * t[-1] / args.records:.2f} us"
                                                     for v, t in times.items()), flush=True)  # fmt: skip
            faults = {name: statistics.median(s.faults) / args.records for name, s in servers.items()}
            if args.http_only:
                for name, samples in walls.items():
                    print(f"{name}: {1e6 * statistics.median(times[name]) / args.records:.2f} us/row server CPU, "
                          f"{faults[name]:.2f} page faults/row, wall clock "
                          f"{args.records / statistics.median(samples):,.0f} rows/s (medians)")  # fmt: skip
                return 0
            merge_us = bench.merge_pass()
            sizes = [bench.bytes_per_row("size_ipv6", None), bench.bytes_per_row("size_text", TEXT_VERSION)]
            retype_cpu, retype_wall = bench.retype("size_text")
        finally:
            for server in servers.values():  # also when a variant failed: no server left running
                server.close()
            engine.close()
    base = statistics.median(times["landing"])
    print(f"{'variant':<12} {'us/row':>8} {'rows/s':>10} {'x landing time':>15}")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"{name:<12} {1e6 * med / args.records:8.2f} {args.records / med:10,.0f} {med / base:15.2f}")
    print(f"{'merge':<12} {merge_us:8.2f}  (one merge pass of flows_raw, per row)")
    print(
        f"migration 0013 (addresses to IPv6) on the text database: {retype_cpu:.2f} s CPU, {retype_wall:.2f} s wall "
        "per million rows"
    )
    (ip_row, ip_addr), (text_row, text_addr) = sizes
    print(
        f"flows_raw bytes on disk per row: IPv6 {ip_row:.2f}, text {text_row:.2f} ({ip_row / text_row:.2f}x); "
        f"address columns {ip_addr:.2f} vs {text_addr:.2f} ({ip_addr / text_addr:.2f}x)"
    )
    for name, samples in walls.items():
        rate = args.records / statistics.median(samples)
        print(f"{name}: wall clock {rate:,.0f} rows/s (median; the machine is shared), "
              f"{faults[name]:.2f} page faults per row")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
