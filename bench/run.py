"""Agent benchmark: replay packets/s of decode + flow meter + RTT against Scapy's rdpcap on the same file, and
memory per active flow. Run on purpose (`make bench`); prints a table and writes bench/results/agent.json.

Figures are medians of several runs; the Scapy baseline is measured in the same run on the same file (on a prefix of
it, scaled per packet, since rdpcap is ~100x slower), so the ratio holds on a noisy shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.agent import Agent
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.partners import PartnersConfig
from ingest.replay import replay_files
from ingest.synth import SynthConfig, generate
from schemas.flow_record import FlowRecord


def agent_pps(pcap: Path, classifier: PartnerClassifier) -> tuple[float, int]:
    sink: list[FlowRecord] = []
    agent = Agent(AgentConfig(), classifier, sink.append)
    t0 = time.perf_counter()
    replay_files(agent, [pcap])
    dt = time.perf_counter() - t0
    return agent.counters.packets_seen / dt, agent.counters.packets_seen


def scapy_pps(pcap: Path, count: int) -> float:
    from scapy.layers.inet import IP  # registers the layers, so rdpcap dissects instead of returning Raw
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap

    assert Ether and IP

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
    ap.add_argument("--flows", type=int, default=40_000, help="flows in the generated file (~24 packets each)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scapy-packets", type=int, default=20_000)
    args = ap.parse_args()
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    classifier = PartnerClassifier(PartnersConfig.default())
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "bench.pcap"
        generate(SynthConfig(flows=args.flows, duration_s=600), pcap, Path(tmp) / "truth.json")
        ours = [agent_pps(pcap, classifier)[0] for _ in range(args.runs)]
        scapy = [scapy_pps(pcap, args.scapy_packets) for _ in range(args.runs)]
        mem_pcap = Path(tmp) / "mem.pcap"
        generate(SynthConfig(flows=20_000, duration_s=600), mem_pcap, Path(tmp) / "mem.json")
        per_flow = bytes_per_flow(mem_pcap, classifier)
    res = {
        "agent_packets_per_s_median": statistics.median(ours),
        "scapy_rdpcap_packets_per_s_median": statistics.median(scapy),
        "ratio_vs_scapy": statistics.median(ours) / statistics.median(scapy),
        "bytes_per_active_flow": per_flow,
        "runs": args.runs,
        "flows": args.flows,
    }
    (out_dir / "agent.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"{'measure':<40} {'value':>14}  target")
    print(f"{'agent decode+meter+RTT, packets/s':<40} {res['agent_packets_per_s_median']:>14,.0f}  >= 1,000,000")
    print(f"{'Scapy rdpcap, packets/s (baseline)':<40} {res['scapy_rdpcap_packets_per_s_median']:>14,.0f}")
    print(f"{'ratio agent / Scapy':<40} {res['ratio_vs_scapy']:>14,.1f}x  >= 100x")
    print(f"{'bytes per active flow':<40} {res['bytes_per_active_flow']:>14,.0f}  <= 300")
    return 0


if __name__ == "__main__":
    sys.exit(main())
