"""Live capture benchmark: the agent's rings against a bare ring read and `tcpdump -w /dev/null`, on a veth pair.

Run on purpose, as root: `python bench/capture.py`. A network namespace and a veth pair are created (and removed).
Gateway-like traffic from the generator (`ingest.synth`), frames cut to their first 96 bytes, is offered by tcpreplay
inside the namespace, as fast as it goes (`--topspeed`), then at 500k packets/s; one reader process captures the
host end each time:

- bare ring: the same TPACKET_V3 ring as the agent, frames counted and not metered (`Engine.skim_ring`);
- agent: `gwtel capture` (ring, native metering, records written as JSON lines to /dev/null);
- tcpdump: `tcpdump -w /dev/null` with a buffer as large as the agent's ring.

Figures per reader (medians of --runs runs): packets read, packets per second of the offer (packets read / send
time), packets per CPU-second of the reader process (getrusage of the child, user + system, less its start-up),
kernel drops. Bytes
per active flow come from the engine's own allocation accounting, metering the generated capture with timeouts
long enough that every flow stays in the table. The two cores are shared with the sender and with other people:
compare the ratios of one run, not the absolute rates. Writes bench/results/capture.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.native import NativeAgent
from ingest.partners import PartnersConfig
from ingest.sinks import JsonlSink
from ingest.sources import open_capture
from ingest.sources.live import LiveOptions, filter_program, interface_index, interface_linktype
from ingest.synth import SynthConfig, generate

ROOT = Path(__file__).resolve().parents[1]
GWTEL = [sys.executable, "-m", "gwtel.cli"]
RING_BLOCK, RING_BLOCKS = 1 << 20, 64


def headers_only(src: Path, dst: Path, keep: int) -> int:
    """Copy a capture with every frame cut to ``keep`` bytes (on the wire too): the sender then offers packets at
    the rate of a busy link instead of copying payloads nobody reads (the agent keeps 128 bytes by default, and
    counts bytes from the IP length fields, which stay as generated). Returns the frame count."""
    n = 0
    with open_capture(src) as reader, open(dst, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
        for f in reader:
            data = f.data[:keep]
            out.write(struct.pack("<IIII", f.ts_ns // 1_000_000_000, f.ts_ns % 1_000_000_000, len(data), len(data)))
            out.write(data)
            n += 1
    return n


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process, all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


# --------------------------------------------------------------------------- the bare ring reader (a child process)
def bare_reader(iface: str) -> int:
    """Count frames of a ring until SIGTERM; print a JSON line of counts."""
    stop = False

    def on_term(_s: int, _f: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    agent = NativeAgent(AgentConfig(), PartnerClassifier(PartnersConfig()), lambda _r: None)
    eng = agent.new_engine()
    opts = LiveOptions(iface, promisc=False)
    eng.open_ring(
        ifindex=interface_index(iface) or 0,
        linktype=interface_linktype(iface),
        filter=filter_program(opts, interface_linktype(iface)),
        block_size=RING_BLOCK,
        block_count=RING_BLOCKS,
        block_timeout_ms=opts.block_timeout_ms,
        promisc=False,
    )
    print("ready", flush=True)
    frames = 0
    while not stop:
        n, _blocks = eng.skim_ring(100, 64)
        frames += n
    packets, drops, _freeze, _down, _damaged = eng.ring_stats()
    print(json.dumps({"read": frames, "kernel_packets": packets, "drops": drops}), flush=True)
    return 0


# --------------------------------------------------------------------------- one run
class Reader:
    """One capture process: started, ready, stopped with SIGTERM, its counts and its CPU time."""

    def __init__(self, kind: str, iface: str, workdir: Path) -> None:
        self.kind = kind
        self.err = workdir / f"{kind}-{uuid.uuid4().hex[:6]}.err"
        self.out = workdir / f"{kind}-{uuid.uuid4().hex[:6]}.out"
        if kind == "bare_ring":
            argv = [sys.executable, __file__, "--bare-reader", iface]
        elif kind == "agent":
            cfg = workdir / "agent.yaml"
            cfg.write_text(f"agent: {{agent_id: bench-{uuid.uuid4().hex[:6]}, metrics_port: 0}}\n")
            argv = [
                *GWTEL,
                "--config",
                str(cfg),
                "capture",
                "--iface",
                iface,
                "--no-promisc",
                "--to",
                "jsonl:/dev/null",
            ]
        else:
            argv = [
                "tcpdump",
                "-i",
                iface,
                "-w",
                "/dev/null",
                "-n",
                "-p",
                "-s",
                "128",
                "-B",
                str(RING_BLOCK * RING_BLOCKS >> 10),
            ]
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT)
        deadline = time.monotonic() + 60
        ready = {
            "bare_ring": (self.out, "ready"),
            "agent": (self.err, "metrics on"),
            "tcpdump": (self.err, "listening"),
        }
        path, word = ready[kind]
        while word not in path.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not start: {self.err.read_text()}")
            time.sleep(0.1)
        time.sleep(0.5)
        self.cpu_at_ready = cpu_s(self.proc.pid)  # start-up (imports) is not capture work

    def stop(self) -> dict[str, float]:
        self.proc.send_signal(signal.SIGTERM)
        _pid, _status, ru = os.wait4(self.proc.pid, 0)
        self.proc.returncode = 0
        cpu = ru.ru_utime + ru.ru_stime - self.cpu_at_ready
        err, out = self.err.read_text(), self.out.read_text()
        if self.kind == "bare_ring":
            d = json.loads(out.strip().splitlines()[-1])
            read, drops = d["read"], d["drops"]
        elif self.kind == "agent":
            m = re.search(r"packets ([\d,]+), .*kernel drops ([\d,]+)", err)
            assert m, err
            read, drops = (int(g.replace(",", "")) for g in m.groups())
        else:
            read = int(re.search(r"(\d+) packets captured", err).group(1))  # type: ignore[union-attr]
            drops = int(re.search(r"(\d+) packets dropped by kernel", err).group(1))  # type: ignore[union-attr]
        return {"read": read, "drops": drops, "cpu_s": cpu, "max_rss_kib": ru.ru_maxrss}


def offer(ns: str, ns_if: str, pcap: Path, loops: int, pps: int | None) -> tuple[int, float]:
    """tcpreplay in the namespace: (packets sent, seconds)."""
    rate = ["--topspeed"] if pps is None else [f"--pps={pps}"]
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, "tcpreplay", "-q", "-K", "-i", ns_if, *rate, f"--loop={loops}", str(pcap)],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    m = re.search(r"Actual: (\d+) packets .* in ([\d.]+) seconds", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return int(m.group(1)), float(m.group(2))


def run_once(
    kind: str, host_if: str, ns: str, ns_if: str, pcap: Path, loops: int, pps: int | None, wd: Path
) -> dict[str, Any]:
    reader = Reader(kind, host_if, wd)
    try:
        sent, secs = offer(ns, ns_if, pcap, loops, pps)
        time.sleep(1.0)  # the reader empties the ring
    finally:
        r = reader.stop()
    r.update(sent=sent, send_s=secs, offered_pps=sent / secs, read_pps=r["read"] / secs)
    r["pkts_per_cpu_s"] = r["read"] / max(r["cpu_s"], 1e-9)
    return r


def file_replay(pcap: Path, loops: int) -> dict[str, float]:
    """The same engine metering the same capture from the file, in this process, FlowRecords out (encoded and
    written as JSON lines to /dev/null, as the live agent's `--to jsonl:/dev/null`): packets per CPU-second."""
    with open(os.devnull, "wb") as null:
        agent = NativeAgent(AgentConfig(), PartnerClassifier(PartnersConfig()), JsonlSink(null))
        before = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(loops):
            agent.replay_file(pcap)
        agent.finish()
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    packets = agent.counters.packets_seen
    return {
        "packets": packets,
        "records": agent.counters.records_emitted,
        "cpu_s": cpu,
        "pkts_per_cpu_s": packets / max(cpu, 1e-9),
    }


def bytes_per_flow(pcap: Path) -> dict[str, float]:
    """Flow table bytes per active flow after metering the whole capture with nothing expired."""
    cfg = AgentConfig(idle_timeout_s=1e6, active_timeout_s=1e6)
    agent = NativeAgent(cfg, PartnerClassifier(PartnersConfig()), lambda _r: None)
    agent.replay_file(pcap)
    active = agent.meter.stats.active
    return {"active_flows": active, "bytes_per_flow": agent.table_bytes() / max(active, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--loops", type=int, default=40, help="times tcpreplay sends the generated capture per run")
    ap.add_argument("--flows", type=int, default=20_000)
    ap.add_argument("--bare-reader", metavar="IF", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_reader:
        return bare_reader(args.bare_reader)
    tag = uuid.uuid4().hex[:8]
    ns, host_if, ns_if = f"gwtel-b{tag}", f"gwb{tag}", f"gwm{tag}"
    with tempfile.TemporaryDirectory(prefix="gwtel-bench-") as tmp:
        wd = Path(tmp)
        full = wd / "gateway.pcap"
        generate(SynthConfig(seed=7, flows=args.flows, duration_s=60), full, wd / "truth.json")
        mem = bytes_per_flow(full)
        pcap = wd / "gateway-headers.pcap"
        headers_only(full, pcap, 96)
        results: dict[str, Any] = {"memory": mem}
        results["file_replay"] = statistics.median(file_replay(pcap, 2)["pkts_per_cpu_s"] for _ in range(args.runs))
        try:
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
            Path(f"/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6").write_text("1")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{ns_if}.disable_ipv6=1")
            sh("ip", "link", "set", host_if, "up")
            sh("ip", "-n", ns, "link", "set", ns_if, "up")
            top: dict[str, list[dict[str, Any]]] = {k: [] for k in ("bare_ring", "agent", "tcpdump")}
            for _ in range(args.runs):  # interleaved, so a busy moment of the machine hits every reader
                for kind, runs in top.items():
                    runs.append(run_once(kind, host_if, ns, ns_if, pcap, args.loops, None, wd))
            paced = [
                run_once("agent", host_if, ns, ns_if, pcap, max(1, args.loops // 2), 500_000, wd)
                for _ in range(args.runs)
            ]
        finally:
            subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    med = {k: {f: statistics.median(r[f] for r in runs) for f in runs[0]} for k, runs in top.items()}
    med_paced = {f: statistics.median(r[f] for r in paced) for f in paced[0]}
    results.update(topspeed_runs=top, paced_runs=paced, medians=med, paced_median=med_paced)
    results["agent_vs_bare_ring"] = med["agent"]["read_pps"] / med["bare_ring"]["read_pps"]
    results["agent_vs_tcpdump"] = med["agent"]["read_pps"] / med["tcpdump"]["read_pps"]
    print(f"offered (tcpreplay --topspeed): {med['agent']['offered_pps']:,.0f} packets/s median")
    for kind, m in med.items():
        print(
            f"{kind:<10} read {m['read_pps']:>10,.0f} packets/s of the offer, {m['pkts_per_cpu_s']:>10,.0f} per "
            f"CPU-second, kernel drops {m['drops']:>9,.0f} of {m['sent']:,.0f} sent"
        )
    print(f"agent / bare ring: {results['agent_vs_bare_ring']:.2f}; agent / tcpdump: {results['agent_vs_tcpdump']:.2f}")
    print(
        f"agent at {med_paced['offered_pps']:,.0f} packets/s offered: kernel drops {med_paced['drops']:,.0f} of "
        f"{med_paced['sent']:,.0f}, {med_paced['pkts_per_cpu_s']:,.0f} packets per CPU-second"
    )
    print(f"memory: {mem['bytes_per_flow']:.0f} bytes per active flow ({mem['active_flows']:,.0f} flows)")
    fr = results["file_replay"]
    print(
        f"the same engine metering the same capture from the file: {fr:,.0f} packets per CPU-second; "
        f"agent live / file: {med['agent']['pkts_per_cpu_s'] / fr:.2f}"
    )
    out = Path(__file__).with_name("results") / "capture.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
