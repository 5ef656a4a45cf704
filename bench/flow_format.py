"""The job's record reader against the one it replaced: CPU time per Kafka value, one thread, one JVM.

`gwtel_flow` is the job's record format (processors/java/gwtel/format): the strict read and every field check.
The baseline is what the job did before per value: Flink's `json` format (`json_tree`, its JsonNode reader, or
`json_streaming`, its streaming reader and the format's default) plus the side path's token pass over the same
value (`record_problem_pass`, the former RecordProblem). The field bounds and bins the old job then checked in
SQL are not counted in the baseline, so it is a lower bound of the old cost.

Values: `bench/job.py`'s generated FlowRecords (all valid). Each round reads all of them with each reader in
turn; the first `--warmup` rounds are left out (JIT), and the figure is the median of the others, in thread CPU
time (a shared machine's load changes wall time, not this). Writes bench/results/flow_format.json.
Usage: `python bench/flow_format.py [--records 200000] [--rounds 7] [--warmup 2] [--ipv6]`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from _results import Row, table, write
from job import TARGET_EVENT_RATE, records

from processors import udf
from schemas.checks import flink_format_options
from schemas.flow_record import FLOW_RECORD_FIELDS

BENCH_SOURCE = Path(__file__).resolve().parent / "java" / "FlowFormatBench.java"
READERS = ("gwtel_flow", "gwtel_flow_addresses_as_written", "json_tree", "json_streaming", "record_problem_pass")


def as_ipv6(value: bytes) -> bytes:
    """The same record as an IPv6 flow, its addresses written in long, upper-case forms the format rewrites."""
    d = orjson.loads(value)
    _, b, c, e = (int(x) for x in d["src_ip"].split("."))
    d.update(ip_version=6, src_ip=f"2001:DB8:0:{b:x}:0:0:{c:X}:{e:04x}", dst_ip="2001:db8:0:0:0:0:0:" + d["dst_ip"])
    return orjson.dumps(d)


def run(n: int, rounds: int, ipv6: bool = False) -> dict[str, list[int]]:
    """CPU ns of each reader over the `n` values, per round (`ipv6`: every record an IPv6 flow)."""
    jar = udf.udf_jar()
    classpath = f"{jar}:{udf._flink_lib()}/*"
    with tempfile.TemporaryDirectory(prefix="gwtel-flow-bench-") as tmp:
        values = Path(tmp) / "values.bin"
        with values.open("wb") as out:
            for record in records(n, TARGET_EVENT_RATE):
                v = as_ipv6(record) if ipv6 else record
                out.write(len(v).to_bytes(4, "big") + v)
        classes = Path(tmp) / "classes"
        subprocess.run(["javac", "--release", "11", "-nowarn", "-d", str(classes), "-cp", classpath,
                        str(BENCH_SOURCE)], check=True)  # fmt: skip
        columns = ",".join(f"{f.name}:{'BINS' if f.flink.startswith('ARRAY') else f.flink}" for f in FLOW_RECORD_FIELDS)
        o = flink_format_options()
        argv = ["java", "-Xmx2g", "-cp", f"{classes}:{classpath}", "FlowFormatBench", str(values), str(rounds), columns,
                o["fields"], o["bins"], o["reasons"], o["version-field"], o["version"], o["addresses"]]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
    ns: dict[str, list[int]] = defaultdict(list)
    for line in done.stdout.splitlines():
        _round, reader, cpu_ns, _rows = line.split()
        ns[reader].append(int(cpu_ns))
    return ns


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--ipv6", action="store_true", help="every record an IPv6 flow (addresses in long forms)")
    args = ap.parse_args()
    ns = run(args.records, args.rounds, args.ipv6)
    us = {r: statistics.median(ns[r][args.warmup :]) / args.records / 1000 for r in READERS}
    for r in READERS:
        runs = ", ".join(f"{v / args.records / 1000:.2f}" for v in ns[r][args.warmup :])
        print(f"{r:<32} median {us[r]:.2f} us/value (runs: {runs})")
    strict, side = round(us["gwtel_flow"], 3), us["record_problem_pass"]
    rows = [
        Row("gwtel_flow us/value", strict, "us CPU", round(us["json_tree"] + side, 3), "<= 1x json tree + side"),
        Row("gwtel_flow us/value vs streaming json", strict, "us CPU", round(us["json_streaming"] + side, 3),
            "<= 1x json streaming + side"),
        Row("gwtel_flow us/value vs addresses as written", strict, "us CPU",
            round(us["gwtel_flow_addresses_as_written"], 3), "canonical addresses' cost"),
        *(Row(f"{r} us/value", round(us[r], 3), "us CPU") for r in READERS[1:]),
    ]  # fmt: skip
    path = write("flow_format", rows, records=args.records, rounds=args.rounds, warmup=args.warmup, ipv6=args.ipv6)
    print(table([{"benchmark": "flow_format", **r.__dict__, "ratio": r.ratio} for r in rows]))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
