"""Live capture benchmark: the agent's rings against a bare ring read and `tcpdump -w /dev/null`, on a veth pair.

Run on purpose, as root: `python bench/capture.py`. A network namespace and a veth pair are created (and removed).
Gateway-like traffic from the generator (`ingest.synth`), frames cut to their first 96 bytes, is offered from inside
the namespace by the transmit-ring sender `gwtel-send` (native/src/bin/gwtel-send.rs, release build) pinned to CPU 1,
while one reader process pinned to CPU 0 captures the host end:

- bare ring: the same TPACKET_V3 ring as the agent, frames counted and not metered (`Engine.skim_ring`);
- agent: `gwtel capture` (ring, native metering, records written as JSON lines to /dev/null);
- tcpdump: `tcpdump -w /dev/null` with a buffer as large as the agent's ring.

Each reader gets two offers: as fast as the sender goes (one thread), and paced at --pps (500k packets/s). Figures
per reader and offer (medians of --runs runs): packets read, packets per second of the offer (packets read / send
time), packets per CPU-second of the reader process (getrusage of the child, user + system, less its start-up),
kernel drops (the reader's ring), frames the veth pair lost before any ring, and the CPU of each core during the
offer (user, system, softirq from /proc/stat). Before that, the sender alone (no reader): gwtel-send with one
thread, with two threads on both cores, and tcpreplay --topspeed, and how closely it holds the paced rate. If the
agent drops at the paced rate, alternatives (larger ring, shorter block timeout, two fanout workers) are measured
side by side. Bytes per active flow come from the engine's own allocation accounting, metering the generated
capture with timeouts long enough that every flow stays in the table. The two cores are shared with other people:
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import cpu_s

from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.native import NativeAgent
from ingest.partners import PartnersConfig
from ingest.sinks import JsonlSink
from ingest.sources import open_capture
from ingest.sources.live import LiveOptions, filter_program, interface_index, interface_linktype
from ingest.synth import SynthConfig, generate
from tests.integration.txsend import offer, sender_binary

ROOT = Path(__file__).resolve().parents[1]
GWTEL = [sys.executable, "-m", "gwtel.cli"]
RING_BLOCK, RING_BLOCKS = 1 << 20, 64  # the agent's default ring (agent.capture)
READER_CPU, SENDER_CPU = "0", "1"


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

    def __init__(self, kind: str, iface: str, workdir: Path, ring: dict[str, int] | None = None) -> None:
        self.kind = kind
        self.err = workdir / f"{kind}-{uuid.uuid4().hex[:6]}.err"
        self.out = workdir / f"{kind}-{uuid.uuid4().hex[:6]}.out"
        if kind == "bare_ring":
            argv = [sys.executable, __file__, "--bare-reader", iface]
        elif kind == "agent":
            cfg = workdir / "agent.yaml"
            capture = ", ".join(f"{k}: {v}" for k, v in (ring or {}).items())
            cfg.write_text(
                f"agent: {{agent_id: bench-{uuid.uuid4().hex[:6]}, metrics_port: 0, capture: {{{capture}}}}}\n"
            )
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
        with (
            open(self.out, "wb") as out,
            open(self.err, "wb") as err,
        ):  # the reader on one core, the sender on the other
            self.proc = subprocess.Popen(["taskset", "-c", READER_CPU, *argv], stdout=out, stderr=err, cwd=ROOT)
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


def ns_read(ns: str, path: str) -> int:
    proc = subprocess.run(["ip", "netns", "exec", ns, "cat", path], capture_output=True, text=True, check=True)
    return int(proc.stdout)


def link_lost(host_if: str, ns: str, ns_if: str) -> int:
    """Frames the veth pair lost before any capture ring: dropped at the sender's end, or not received at ours."""
    host = Path(f"/sys/class/net/{host_if}/statistics")
    return (
        ns_read(ns, f"/sys/class/net/{ns_if}/statistics/tx_dropped")
        + int((host / "rx_dropped").read_text())
        - int((host / "rx_packets").read_text())
    )


def core_ticks() -> dict[str, list[int]]:
    """Per CPU (user + nice, system, softirq, all) ticks from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        f = line.split()
        if f[0].startswith("cpu") and f[0] != "cpu":
            t = [int(x) for x in f[1:]]
            out[f[0]] = [t[0] + t[1], t[2], t[6], sum(t)]
    return out


def core_shares(before: dict[str, list[int]], after: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """Share of each core's time in user, system and softirq between two core_ticks()."""
    out = {}
    for cpu, a in after.items():
        d = [x - y for x, y in zip(a, before[cpu], strict=True)]
        out[cpu] = {k: d[i] / max(d[3], 1) for i, k in enumerate(("user", "system", "softirq"))}
    return out


class Pair:
    """The namespace, the veth pair and the sender binary of one benchmark."""

    def __init__(self, ns: str, host_if: str, ns_if: str, sender: Path) -> None:
        self.ns, self.host_if, self.ns_if, self.sender = ns, host_if, ns_if, sender

    def offer(self, pcap: Path, loops: int, pps: int | None, threads: int = 1) -> dict[str, Any]:
        """gwtel-send in the namespace (one thread on SENDER_CPU, or one per core); the sender's report, the frames
        the pair lost and the cores' shares while it sent."""
        lost0, ticks0 = link_lost(self.host_if, self.ns, self.ns_if), core_ticks()
        cpus = SENDER_CPU if threads == 1 else ",".join(str(c) for c in range(threads))
        r = offer(self.sender, self.ns, self.ns_if, pcap, loops=loops, pps=pps, threads=threads, cpus=cpus)
        time.sleep(0.2)  # the receive side of the last frames
        r["lost_before_ring"] = link_lost(self.host_if, self.ns, self.ns_if) - lost0 + r["sent"]
        r["cores"] = core_shares(ticks0, core_ticks())
        return r

    def tcpreplay(self, pcap: Path, loops: int) -> dict[str, Any]:
        """tcpreplay --topspeed in the namespace, the former sender, as a baseline: its packets/s and CPU."""
        proc = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                "taskset",
                "-c",
                SENDER_CPU,
                "tcpreplay",
                "-q",
                "-K",
                "--topspeed",
                "-i",
                self.ns_if,
                f"--loop={loops}",
                str(pcap),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        )
        m = re.search(r"Actual: (\d+) packets .* in ([\d.]+) seconds", proc.stdout)
        assert m, proc.stdout + proc.stderr
        sent, secs = int(m.group(1)), float(m.group(2))
        return {"sent": sent, "seconds": secs, "pps": sent / secs}


def run_once(
    kind: str, pair: Pair, pcap: Path, loops: int, pps: int | None, wd: Path, ring: dict[str, int] | None = None
) -> dict[str, Any]:
    reader = Reader(kind, pair.host_if, wd, ring)
    try:
        sent = pair.offer(pcap, loops, pps)
        time.sleep(1.0)  # the reader empties the ring
    finally:
        r: dict[str, Any] = dict(reader.stop())
    secs = sent["seconds"]
    r.update(
        sent=sent["sent"],
        send_s=secs,
        offered_pps=sent["pps"],
        read_pps=r["read"] / secs,
        lost_before_ring=sent["lost_before_ring"],
        sender_cpu_s=sent["cpu_user_s"] + sent["cpu_sys_s"],
        cores=sent["cores"],
    )
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


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Field by field medians of runs (numbers, and the per-core shares)."""
    out: dict[str, Any] = {}
    for f, v in runs[0].items():
        if isinstance(v, int | float):
            out[f] = statistics.median(r[f] for r in runs)
        elif f == "cores":
            out[f] = {c: {k: statistics.median(r[f][c][k] for r in runs) for k in v[c]} for c in v}
    return out


# Agent ring alternatives measured at the paced rate beside the default (agent.capture settings).
ALTERNATIVES: dict[str, dict[str, int]] = {
    "default (64 x 1 MiB, 50 ms)": {},
    "256 x 1 MiB": {"block_count": 256},
    "64 x 1 MiB, 10 ms": {"block_timeout_ms": 10},
    "2 fanout workers": {"workers": 2},
}


def sender_alone(pair: Pair, pcap: Path, frames: int, runs: int, pps: int) -> dict[str, Any]:
    """What the senders offer with no reader: gwtel-send on one core and on both, tcpreplay on one, and how closely
    gwtel-send holds a paced rate."""
    rows: dict[str, list[dict[str, Any]]] = {"gwtel-send, 1 thread": [], "gwtel-send, 2 threads": []}
    rows["tcpreplay --topspeed"], rows[f"gwtel-send paced at {pps:,}"] = [], []
    for _ in range(runs):
        rows["gwtel-send, 1 thread"].append(pair.offer(pcap, max(1, 3_000_000 // frames), None))
        rows["gwtel-send, 2 threads"].append(pair.offer(pcap, max(2, 6_000_000 // frames), None, threads=2))
        rows["tcpreplay --topspeed"].append(pair.tcpreplay(pcap, max(1, 1_000_000 // frames)))
        rows[f"gwtel-send paced at {pps:,}"].append(pair.offer(pcap, max(1, 3 * pps // frames), pps))
    return {k: {"runs": v, "median": median_of(v)} for k, v in rows.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="about how long each offer lasts")
    ap.add_argument("--pps", type=int, default=500_000, help="the paced offer")
    ap.add_argument("--flows", type=int, default=20_000)
    ap.add_argument("--bare-reader", metavar="IF", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_reader:
        return bare_reader(args.bare_reader)
    tag = uuid.uuid4().hex[:8]
    ns, host_if, ns_if = f"gwtel-b{tag}", f"gwb{tag}", f"gwm{tag}"
    pair = Pair(ns, host_if, ns_if, sender_binary(release=True))
    with tempfile.TemporaryDirectory(prefix="gwtel-bench-") as tmp:
        wd = Path(tmp)
        full = wd / "gateway.pcap"
        generate(SynthConfig(seed=7, flows=args.flows, duration_s=60), full, wd / "truth.json")
        mem = bytes_per_flow(full)
        pcap = wd / "gateway-headers.pcap"
        frames = headers_only(full, pcap, 96)
        results: dict[str, Any] = {"memory": mem, "capture_frames": frames}
        results["file_replay"] = statistics.median(file_replay(pcap, 2)["pkts_per_cpu_s"] for _ in range(args.runs))
        top_loops = max(1, round(800_000 * args.seconds / frames))
        paced_loops = max(1, round(args.pps * args.seconds / frames))
        try:
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
            Path(f"/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6").write_text("1")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{ns_if}.disable_ipv6=1")
            sh("ip", "link", "set", host_if, "up")
            sh("ip", "-n", ns, "link", "set", ns_if, "up")
            results["sender_alone"] = sender_alone(pair, pcap, frames, args.runs, args.pps)
            kinds = ("bare_ring", "agent", "tcpdump")
            top: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
            paced: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
            alts: dict[str, list[dict[str, Any]]] = {k: [] for k in ALTERNATIVES}
            for _ in range(args.runs):  # interleaved, so a busy moment of the machine hits every reader
                for kind in kinds:
                    top[kind].append(run_once(kind, pair, pcap, top_loops, None, wd))
                    paced[kind].append(run_once(kind, pair, pcap, paced_loops, args.pps, wd))
                for name, ring in ALTERNATIVES.items():
                    if ring:  # the default is the agent's paced run above
                        alts[name].append(run_once("agent", pair, pcap, paced_loops, args.pps, wd, ring))
            alts[next(iter(ALTERNATIVES))] = paced["agent"]
        finally:
            subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    med = {k: median_of(runs) for k, runs in top.items()}
    med_paced = {k: median_of(runs) for k, runs in paced.items()}
    med_alts = {k: median_of(runs) for k, runs in alts.items()}
    results.update(topspeed_runs=top, paced_runs=paced, alternative_runs=alts)
    results.update(medians=med, paced_medians=med_paced, alternative_medians=med_alts)
    results["agent_vs_bare_ring"] = med["agent"]["read_pps"] / med["bare_ring"]["read_pps"]
    results["agent_vs_tcpdump"] = med["agent"]["read_pps"] / med["tcpdump"]["read_pps"]

    print("the sender alone (no reader), medians:")
    for name, row in results["sender_alone"].items():
        m = row["median"]
        cpu = f", {m['cpu_user_s'] + m['cpu_sys_s']:.2f} CPU-s for {m['seconds']:.2f} s" if "cpu_sys_s" in m else ""
        print(f"  {name:<28} {m['pps']:>12,.0f} packets/s{cpu}")
    for title, meds in (("as fast as gwtel-send goes (1 thread)", med), (f"paced at {args.pps:,}", med_paced)):
        print(f"offer {title}: {statistics.median(m['offered_pps'] for m in meds.values()):,.0f} packets/s median")
        for kind, m in meds.items():
            c = m["cores"]
            print(
                f"  {kind:<10} read {m['read_pps']:>10,.0f} packets/s, {m['pkts_per_cpu_s']:>10,.0f} per CPU-second, "
                f"kernel drops {m['drops']:>8,.0f} of {m['sent']:,.0f} sent, lost before the ring "
                f"{m['lost_before_ring']:,.0f}; cpu0 (reader) user/sys/softirq "
                f"{c['cpu0']['user']:.2f}/{c['cpu0']['system']:.2f}/{c['cpu0']['softirq']:.2f}, cpu1 (sender) "
                f"{c['cpu1']['user']:.2f}/{c['cpu1']['system']:.2f}/{c['cpu1']['softirq']:.2f}"
            )
    print(f"agent / bare ring: {results['agent_vs_bare_ring']:.2f}; agent / tcpdump: {results['agent_vs_tcpdump']:.2f}")
    print(f"agent ring alternatives at {args.pps:,} packets/s offered:")
    for name, m in med_alts.items():
        print(
            f"  {name:<28} kernel drops {m['drops']:>8,.0f} of {m['sent']:,.0f}, read {m['read_pps']:>10,.0f} "
            f"packets/s, {m['pkts_per_cpu_s']:>10,.0f} per CPU-second"
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
