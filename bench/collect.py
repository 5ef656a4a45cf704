"""Router flow export decoding: `gwtel collect`'s engine against pmacct's nfacctd / sfacctd, same datagrams, same run.

Workloads: IPFIX datagrams of 30 records each, NetFlow v9 datagrams of 30 records, sFlow v5 datagrams of 7 flow
samples (a raw Ethernet/IPv4/TCP header each, decoded by the agent's decoder). Figures:

- ours: datagram batches -> native decode -> FlowRecords (link, direction, partner) built and encoded as Kafka
  keys and values in the engine, as `gwtel collect` runs it, records per CPU-second of this process
  (`time.process_time`); the decode alone; and the Python reference builder (`RecordBuilder.build` of the decoded
  rows, the way records were built before the engine did it) for comparison;
- nfacctd / sfacctd: the same datagrams in a pcap read with `pcap_savefile`, the print plugin aggregating per
  5-tuple into a file; records per CPU-second of the daemon and its plugin, from the difference of two input sizes
  (so start-up and shutdown cancel out);
- receive: 100k records/s of IPFIX offered on loopback for a few seconds to a collector in its own process:
  kernel drops and records received.

Medians of `--runs` runs. Run on purpose: `.venv/bin/python bench/collect.py` (about a minute).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gwtel_native
from _results import Row, table, write

from ingest.classify import PartnerClassifier
from ingest.collect.config import CollectorConfig, parse_listen
from ingest.collect.decoded import Exported
from ingest.collect.frames import batch
from ingest.collect.listener import Listeners
from ingest.collect.records import RecordBuilder
from ingest.collect.service import RECORDS_PER_TAKE, CollectorService
from ingest.partners import PartnersConfig
from ingest.sinks import JsonlSink
from tests.exports import ipfix_data, ipfix_template, netflow9_data, netflow9_template, sflow_samples

EXPORTER = "192.0.2.1"
BATCH = 512


def _flows(seed: int) -> list[tuple[str, str, int, int, int, int, int, int, int]]:
    return [
        (
            f"10.{seed % 200}.{i // 200}.{i % 200}",
            f"203.0.{(seed + i) % 250}.9",
            1024 + i,
            443,
            6,
            1500 * (i + 1),
            i + 1,
            1,
            2,
        )
        for i in range(30)
    ]


def workload(kind: str, datagrams: int) -> tuple[list[bytes], int]:
    """(datagrams, flow records they hold), the template first where there is one."""
    if kind == "ipfix":
        return [ipfix_template()] + [ipfix_data(_flows(i)) for i in range(datagrams)], 30 * datagrams
    if kind == "netflow9":
        return [netflow9_template()] + [netflow9_data(_flows(i)) for i in range(datagrams)], 30 * datagrams
    pkts = [(f"10.0.{i}.{j}", f"203.0.113.{j}", 1024 + j, 443, 1400) for i in range(1) for j in range(7)]
    return [
        sflow_samples([(s.replace("10.0.0", f"10.{k % 250}.0"), d, sp, dp, n) for s, d, sp, dp, n in pkts])
        for k in range(datagrams)
    ], 7 * datagrams


def ours(dgrams: list[bytes], records: int, build: str, steady: bool = False) -> float:
    """Records per CPU-second: framed batches decoded natively, then (`build`) "native": FlowRecords built and
    encoded by the engine, "python": built by the reference builder, "none": not built. `steady`: the same engine
    is given the datagrams once before the timed pass, so every address is in its cache (a long-running
    collector's steady state) instead of each run asking the classifier about its ~6k new addresses."""
    batches = [batch([(EXPORTER, 0, d) for d in dgrams[i : i + BATCH]]) for i in range(0, len(dgrams), BATCH)]
    col = gwtel_native.Collector()
    builder = RecordBuilder(CollectorConfig(), PartnerClassifier(PartnersConfig.default(), country_of=lambda _ip: None))
    if build == "native":
        builder.configure(col, "bench")
    n = 0
    if steady:
        for b in batches:
            col.feed(b)
            while got := col.take_records(n, 0, RECORDS_PER_TAKE)[0][0]:
                n += got
    warm = n
    t0 = time.process_time()
    for b in batches:
        col.feed(b)
        if build == "native":
            # as CollectorService.step: the decoded records taken in pieces of RECORDS_PER_TAKE
            while got := col.take_records(n, 0, RECORDS_PER_TAKE)[0][0]:
                n += got
        elif build == "python":
            n += len(builder.build([Exported._make(t) for t in col.take()], 0, "bench"))
        else:
            n += len(col.take())
    dt = time.process_time() - t0
    assert n - warm == records, (n, warm, records)
    return (n - warm) / dt


def _pcap(dgrams: list[bytes], path: Path, dport: int) -> None:
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, p in enumerate(dgrams):
            udp = struct.pack("!HHHH", 50000, dport, 8 + len(p), 0) + p
            ip = struct.pack(
                "!BBHHHBBH4s4s",
                0x45,
                0,
                20 + len(udp),
                i & 0xFFFF,
                0,
                64,
                17,
                0,
                bytes([192, 0, 2, 1]),
                bytes([192, 0, 2, 99]),
            )
            frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + udp
            fh.write(struct.pack("<IIII", 1_700_000_000 + i // 1000, i % 1000, len(frame), len(frame)) + frame)


def _pmacct_cpu(daemon: str, dgrams: list[bytes], tmp: Path) -> float:
    """CPU seconds (user + system, daemon and plugin) for pmacct to read `dgrams` from a pcap and aggregate them."""
    port = 6343 if daemon == "sfacctd" else 2055
    pcap = tmp / f"{daemon}-{len(dgrams)}.pcap"
    _pcap(dgrams, pcap, port)
    conf = tmp / f"{daemon}.conf"
    conf.write_text(
        "daemonize: false\n"
        f"pcap_savefile: {pcap}\n"
        "plugins: print\n"
        "aggregate: src_host, dst_host, src_port, dst_port, proto\n"
        f"print_output_file: {tmp}/{daemon}.out\n"
        "print_output: csv\n"
        "print_refresh_time: 3600\n"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([daemon, "-f", str(conf)], check=True, capture_output=True, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def pmacct(daemon: str, kind: str, small: int, large: int, tmp: Path) -> float:
    """Records per CPU-second, from two input sizes: (records_large - records_small) / (cpu_large - cpu_small)."""
    d1, r1 = workload(kind, small)
    d2, r2 = workload(kind, large)
    c1 = _pmacct_cpu(daemon, d1, tmp)
    c2 = _pmacct_cpu(daemon, d2, tmp)
    return (r2 - r1) / max(c2 - c1, 1e-6)


def _receiver(port_q: mp.Queue, result_q: mp.Queue, seconds: float) -> None:  # type: ignore[type-arg]
    lst = Listeners([parse_listen("ipfix://127.0.0.1:0")], sockets_per_listener=2, receive_buffer=32 << 20)
    port_q.put(int(lst.stats[0].listen.rsplit(":", 1)[1]))
    cfg = CollectorConfig()
    builder = RecordBuilder(cfg, PartnerClassifier(PartnersConfig.default(), country_of=lambda _ip: None))
    null = open(os.devnull, "wb")  # noqa: SIM115 - the process ends with the run
    svc = CollectorService(cfg, lst, builder, JsonlSink(null), None)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        svc.step(0.05)
    # then drain what the socket buffers still hold (a backlog, not a loss), until 1 s of quiet
    drained_at = time.monotonic()
    quiet = drained_at
    while time.monotonic() - quiet < 1.0:
        if svc.step(0.1):
            quiet = time.monotonic()
    backlog_s = quiet - drained_at
    drops = sum(s.kernel_drops for s in lst.stats)
    result_q.put((svc.state.records_sent, drops, backlog_s, svc.engine.counters()["errors"]))
    lst.close()


def offered(rate: int, seconds: float) -> tuple[int, int, int, float]:
    """(records sent, records the collector built, kernel drops, seconds it took after the offer ended to catch
    up) with `rate` IPFIX records/s offered for `seconds`."""
    ctx = mp.get_context("spawn")
    port_q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    result_q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    proc = ctx.Process(target=_receiver, args=(port_q, result_q, seconds + 1))
    proc.start()
    port = port_q.get(timeout=60)
    dgrams, _ = workload("ipfix", 200)
    per_s = rate / 30
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(dgrams[0], ("127.0.0.1", port))
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < seconds:
            due = int((time.monotonic() - t0) * per_s)
            while i < due:
                s.sendto(dgrams[1 + i % 200], ("127.0.0.1", port))
                i += 1
                sent += 30
            time.sleep(0.001)
    got, drops, backlog_s, errors = result_q.get(timeout=seconds + 300)
    proc.join(30)
    assert not errors, errors
    return sent, got, drops, backlog_s


def median(f: Callable[[], float], runs: int) -> float:
    return statistics.median(f() for _ in range(runs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--datagrams", type=int, default=10_000, help="datagrams per workload for our engine")
    ap.add_argument("--offer-seconds", type=float, default=5.0)
    args = ap.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, daemon in (("ipfix", "nfacctd"), ("netflow9", "nfacctd"), ("sflow", "sfacctd")):
            dgrams, records = workload(kind, args.datagrams)
            built = median(lambda d=dgrams, r=records: ours(d, r, "native"), args.runs)  # type: ignore[misc]
            steady = median(lambda d=dgrams, r=records: ours(d, r, "native", steady=True), args.runs)  # type: ignore[misc]
            decoded = median(lambda d=dgrams, r=records: ours(d, r, "none"), args.runs)  # type: ignore[misc]
            python = median(lambda d=dgrams, r=records: ours(d, r, "python"), args.runs)  # type: ignore[misc]
            base = median(lambda k=kind, dm=daemon: pmacct(dm, k, 2000, 30000, Path(tmp)), args.runs)  # type: ignore[misc]
            rows.append(
                Row(f"{kind}: FlowRecords per CPU-second (vs {daemon})", built, "records/s", base, ">= 500k, >= 5x")
            )
            rows.append(
                Row(
                    f"{kind}: FlowRecords per CPU-second, addresses already cached (vs {daemon})",
                    steady,
                    "records/s",
                    base,
                )
            )
            rows.append(Row(f"{kind}: native decode only per CPU-second (vs {daemon})", decoded, "records/s", base))
            rows.append(
                Row(f"{kind}: FlowRecords by the Python builder per CPU-second (vs native)", python, "records/s", built)
            )
            rows.append(Row(f"{kind}: {daemon} per CPU-second (print plugin, 5-tuple)", base, "records/s"))
    sent, got, drops, backlog_s = offered(100_000, args.offer_seconds)
    rows.append(Row("IPFIX offered at 100k records/s: records received", got, "records", sent, "= sent"))
    rows.append(Row("IPFIX offered at 100k records/s: kernel drops", drops, "datagrams", None, "0"))
    rows.append(Row("IPFIX offered at 100k records/s: catching up after the offer", backlog_s, "s", args.offer_seconds))
    path = write("collect", rows)
    print(table([{"benchmark": "collect", **r.__dict__, "ratio": r.ratio} for r in rows]))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
