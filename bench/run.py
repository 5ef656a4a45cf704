"""Agent benchmark: replay packets/s of decode + flow meter + RTT for both engines against Scapy's rdpcap on the same
file, and memory per active flow. Run on purpose (`make bench`); prints a table and writes bench/results/agent.json.

Figures are medians of several runs; the Scapy baseline is measured in the same run on the same file (on a prefix of
it, scaled per packet, since rdpcap is ~100x slower), so the ratio holds on a noisy shared machine.

Native engine figures:
- "decode+meter+RTT": the engine alone over the file (reading, decoding, fragments, flow table, every RTT tracker),
  finished flows classified and encoded as FlowRecords in the engine, handed to Python as one batch. The classifier
  is asked once per new address (the engine keeps the answer), so the first sight of an address costs the Python
  classifier's time.
- "end to end": `NativeAgent` with a fresh PartnerClassifier, batches of encoded records handed to a sink.
- bytes per active flow: the engine's own allocation accounting (capacity x element size of the flow table, its
  index, timer wheel and per-flow TCP/latency state; allocator headers not included) on a capture whose flows are
  all still open at its end (the generated file without its FIN/RST segments: mid-flow state of every kind),
  printed by component (flow slots, IPv6 address side table, index, timers, TCP, latency, handshake, pending
  timestamps/requests, histogram bins).
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _engine import engine_pass

from ingest.agent import Agent
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.native import NativeAgent
from ingest.packet import RawFrame
from ingest.partners import PartnersConfig
from ingest.replay import replay_files
from ingest.sinks import EncodedBatch
from ingest.sources import open_capture
from ingest.synth import SynthConfig, generate
from schemas.flow_record import FlowRecord


def agent_pps(pcap: Path, classifier: PartnerClassifier) -> tuple[float, int]:
    sink: list[FlowRecord] = []
    agent = Agent(AgentConfig(), classifier, sink.append)
    t0 = time.perf_counter()
    replay_files(agent, [pcap])
    dt = time.perf_counter() - t0
    return agent.counters.packets_seen / dt, agent.counters.packets_seen


class _KeepBatches:
    """A sink keeping the encoded batches (as the Python row's sink keeps its records)."""

    def __init__(self) -> None:
        self.batches: list[EncodedBatch] = []

    def __call__(self, rec: FlowRecord) -> None:
        raise AssertionError("the native engine hands over batches")

    def write_batch(self, batch: EncodedBatch) -> None:
        self.batches.append(batch)


def native_pps(pcap: Path) -> float:
    """End to end: fresh classifier, FlowRecords encoded in batches (the sink keeps them, as the Python row does)."""
    sink = _KeepBatches()
    agent = NativeAgent(AgentConfig(), PartnerClassifier(PartnersConfig.default()), sink)
    t0 = time.perf_counter()
    replay_files(agent, [pcap])
    return agent.counters.packets_seen / (time.perf_counter() - t0)


def native_core_pps(pcap: Path, classifier: PartnerClassifier) -> tuple[float, float]:
    """The engine alone: one call over the file, finished flows as one batch of records (see the module docstring).

    Returns packets per wall-clock second and per CPU second of this process (one thread: the second is what one
    core does when the shared machine is busy with other work).
    """
    p = engine_pass(NativeAgent(AgentConfig(), classifier, lambda _r: None), pcap)
    assert p.batch[0]
    return p.packets / p.wall_s, p.packets / p.cpu_s


def _open_flows_pcap(src: Path, dst: Path) -> None:
    """`src` without FIN/RST segments: every flow is still open at the end of the file."""

    def keep(f: RawFrame) -> bool:
        d = f.data
        l2 = 18 if d[12:14] == b"\x81\x00" else 14
        if d[l2 + 9] != 6:
            return True
        hl = (d[l2] & 15) * 4
        return not d[l2 + hl + 13] & 0x05

    with open_capture(src) as reader, dst.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for f in reader:
            if keep(f):
                sec, ns = divmod(f.ts_ns, 1_000_000_000)
                out.write(struct.pack("<IIII", sec, ns // 1000, len(f.data), f.wire_len) + f.data)


def native_bytes_per_flow(pcap: Path, classifier: PartnerClassifier) -> tuple[float, int, dict[str, float]]:
    """Bytes per active flow, the count of active flows, and the bytes per active flow of each component."""
    cfg = AgentConfig(idle_timeout_s=1e9, active_timeout_s=1e9)
    agent = NativeAgent(cfg, classifier, lambda _r: None)
    eng = agent._engine
    eng.begin(False)
    eng.push_file(str(pcap))
    active = max(int(eng.counters()["active"]), 1)  # type: ignore[arg-type]
    parts = {k: v / active for k, v in agent.table_breakdown().items()}
    return eng.table_bytes() / active, active, parts


def scapy_pps(pcap: Path, count: int) -> float:
    from scapy.layers.inet import IP  # registers the layers, so rdpcap dissects instead of returning Raw
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap

    _layers = (Ether, IP)  # imported for their side effect only

    t0 = time.perf_counter()
    pkts = rdpcap(str(pcap), count=count)
    return len(pkts) / (time.perf_counter() - t0)


def bytes_per_flow(pcap: Path, classifier: PartnerClassifier) -> float:
    # Every flow stays open (huge timeouts, no flush) so the table holds them all at the end.
    cfg = AgentConfig(idle_timeout_s=1e9, active_timeout_s=1e9)
    agent = Agent(cfg, classifier, lambda _r: None)
    from ingest.sources import open_capture

    with open_capture(pcap) as reader:
        frames = list(reader)
    for f in frames[:200]:  # warm caches and lazily built state outside the measurement
        agent.feed(f)
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    for f in frames[200:]:
        agent.feed(f)
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in snap.compare_to(base, "filename"))
    return grown / max(agent.meter.stats.active, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--flows", type=int, default=42_000, help="flows in the generated file (~24 packets each: 1M)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scapy-packets", type=int, default=20_000)
    args = ap.parse_args()
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    classifier = PartnerClassifier(PartnersConfig.default())
    warm = PartnerClassifier(PartnersConfig.default(), cache_size=1 << 22)
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "bench.pcap"
        generate(SynthConfig(flows=args.flows, duration_s=600), pcap, Path(tmp) / "truth.json")
        native_core_pps(pcap, warm)  # learns the file's addresses (see the module docstring)
        core_runs = [native_core_pps(pcap, warm) for _ in range(args.runs)]
        core = [r[0] for r in core_runs]
        core_cpu = [r[1] for r in core_runs]
        native = [native_pps(pcap) for _ in range(args.runs)]
        scapy = [scapy_pps(pcap, args.scapy_packets) for _ in range(args.runs)]
        ours = [agent_pps(pcap, classifier)[0] for _ in range(args.runs)]
        mem_pcap = Path(tmp) / "mem.pcap"
        generate(SynthConfig(flows=20_000, duration_s=600), mem_pcap, Path(tmp) / "mem.json")
        open_pcap = Path(tmp) / "open.pcap"
        _open_flows_pcap(mem_pcap, open_pcap)
        native_mem, native_mem_flows, native_mem_parts = native_bytes_per_flow(open_pcap, warm)
        native_mem_end, _, _ = native_bytes_per_flow(mem_pcap, warm)
        per_flow = bytes_per_flow(mem_pcap, classifier)
    med = statistics.median
    res = {
        "python_agent_packets_per_s_median": med(ours),
        "native_core_packets_per_s_median": med(core),
        "native_core_packets_per_cpu_s_median": med(core_cpu),
        "native_end_to_end_packets_per_s_median": med(native),
        "scapy_rdpcap_packets_per_s_median": med(scapy),
        "ratio_native_core_vs_scapy": med(core) / med(scapy),
        "ratio_native_end_to_end_vs_scapy": med(native) / med(scapy),
        "ratio_python_vs_scapy": med(ours) / med(scapy),
        "ratio_native_end_to_end_vs_python": med(native) / med(ours),
        "native_bytes_per_active_flow_open_flows": native_mem,
        "native_open_flows": native_mem_flows,
        "native_bytes_per_active_flow_open_flows_breakdown": native_mem_parts,
        "native_bytes_per_active_flow_end_of_file": native_mem_end,
        "python_bytes_per_active_flow_tracemalloc": per_flow,
        "runs": args.runs,
        "flows": args.flows,
    }
    (out_dir / "agent.json").write_text(json.dumps(res, indent=1) + "\n")
    rows = [
        ("native decode+meter+RTT, packets/s", res["native_core_packets_per_s_median"], ">= 1,000,000"),
        ("native decode+meter+RTT, packets/CPU-s", res["native_core_packets_per_cpu_s_median"], ""),
        ("native end to end (records), packets/s", res["native_end_to_end_packets_per_s_median"], ""),
        ("python agent, packets/s", res["python_agent_packets_per_s_median"], ""),
        ("Scapy rdpcap, packets/s (baseline)", res["scapy_rdpcap_packets_per_s_median"], ""),
    ]
    print(f"{'measure':<44} {'value':>14}  target")
    for name, value, target in rows:
        print(f"{name:<44} {value:>14,.0f}  {target}")
    print(f"{'ratio native decode+meter+RTT / Scapy':<44} {res['ratio_native_core_vs_scapy']:>14,.1f}x  >= 100x")
    print(f"{'ratio native end to end / Scapy':<44} {res['ratio_native_end_to_end_vs_scapy']:>14,.1f}x")
    print(f"{'ratio python agent / Scapy':<44} {res['ratio_python_vs_scapy']:>14,.1f}x")
    print(f"{'ratio native end to end / python agent':<44} {res['ratio_native_end_to_end_vs_python']:>14,.1f}x")
    print(f"{'native bytes per active flow (all open)':<44} {native_mem:>14,.0f}  <= 300")
    for part, value in native_mem_parts.items():
        print(f"{'  of which ' + part:<44} {value:>14,.1f}")
    print(f"{'native bytes per active flow (end of file)':<44} {native_mem_end:>14,.0f}")
    print(f"{'python bytes per active flow (tracemalloc)':<44} {per_flow:>14,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
