"""Live capture benchmark: packets/s the agent meters from an AF_PACKET socket, against bare socket reads.

Run on purpose, as root: `python bench/capture.py`. A network namespace and a veth pair are created (and removed);
a sender in the namespace writes UDP frames of 2000 flows as fast as it can, and the host end is read either by
the bare live source (baseline: recvmsg + timestamps, nothing else) or by the whole agent (decode, meter,
enrich). Reading goes until every frame was read or dropped; the rate is frames read per second of reading.
Kernel drops show when the reader was the bottleneck. Writes bench/results/capture.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.agent import Agent
from ingest.capture import capture_live
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.packet import RawFrame
from ingest.partners import PartnersConfig
from ingest.sources.live import KernelStats, LiveOptions, LiveSource

SENDER = """
import socket, struct, sys
iface, n = sys.argv[1], int(sys.argv[2])
def frame(i):
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 60, 0, 0, 64, 17, 0,
                     bytes([10, 77, i >> 8 & 255, i & 255]), bytes([198, 18, 1, 10]))
    eth = bytes.fromhex('02005e005302' '02005e005301' '0800')
    return eth + ip + struct.pack('!HHHH', 40000 + i % 2000, 53, 40, 0) + b'x' * 32
frames = [frame(i) for i in range(2000)]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for i in range(n):
    s.send(frames[i % 2000])
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


class Timed:
    """The live source, noting when the first and the last frame were read."""

    def __init__(self, source: LiveSource) -> None:
        self.source = source
        self.read_count = 0
        self.first = self.last = 0.0
        self.drops = 0
        self.link_down_events = 0

    def read(self) -> RawFrame | None:
        frame = self.source.read()
        if frame is not None:
            self.last = time.perf_counter()
            self.first = self.first or self.last
            self.read_count += 1
        return frame

    def kernel_stats(self) -> KernelStats:
        ks = self.source.kernel_stats()
        self.drops += ks.drops
        return ks


def run_once(host_if: str, ns: str, ns_if: str, n: int, with_agent: bool) -> dict[str, float]:
    source = Timed(LiveSource(LiveOptions(host_if, promisc=False)))
    stop = threading.Event()
    agent = Agent(AgentConfig(), PartnerClassifier(PartnersConfig.default()), lambda _r: None)

    def bare() -> None:
        last_stats = time.monotonic()
        while not stop.is_set():
            source.read()
            if time.monotonic() - last_stats > 1.0:
                source.kernel_stats()
                last_stats = time.monotonic()
        source.kernel_stats()

    reader = threading.Thread(target=(lambda: capture_live(agent, source, stop)) if with_agent else bare)
    reader.start()
    t0 = time.perf_counter()
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SENDER, ns_if, str(n)], check=True, timeout=600)
    send_s = time.perf_counter() - t0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and source.read_count + source.drops < n:
        time.sleep(0.5)
    stop.set()
    reader.join()
    source.source.close()
    read_s = max(source.last - source.first, 1e-9)
    return {
        "frames": n,
        "read": source.read_count,
        "drops": source.drops,
        "send_pps": n / send_s,
        "read_pps": source.read_count / read_s,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300_000)
    args = ap.parse_args()
    tag = uuid.uuid4().hex[:8]
    ns, host_if, ns_if = f"gwtel-b{tag}", f"gwb{tag}", f"gwm{tag}"
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
        Path(f"/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6").write_text("1")
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{ns_if}.disable_ipv6=1")
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", ns, "link", "set", ns_if, "up")
        bare = run_once(host_if, ns, ns_if, args.frames, with_agent=False)
        agent = run_once(host_if, ns, ns_if, args.frames, with_agent=True)
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    result = {"bare_socket": bare, "agent": agent, "agent_vs_bare": agent["read_pps"] / bare["read_pps"]}
    for name, r in (("bare socket reads", bare), ("whole agent", agent)):
        print(
            f"{name:<18} read {r['read']:>9,.0f} of {r['frames']:,} frames, drops {r['drops']:>9,.0f}, "
            f"{r['read_pps']:>9,.0f} frames/s read (sender {r['send_pps']:,.0f}/s)"
        )
    print(f"agent / bare socket: {result['agent_vs_bare']:.2f}")
    out = Path(__file__).with_name("results") / "capture.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
