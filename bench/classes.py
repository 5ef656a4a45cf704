"""What application classes cost the native engine: the same capture metered with no rules (the baseline, measured
in the same run) and with a rule set like docs/classes.md's (port ranges, DSCP, remote prefixes, ASNs), one rule
list walked per finished flow. Prints packets and records per CPU second of each, medians of `--runs`, and the
ratio. `python bench/classes.py [--flows N] [--runs K]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _engine import engine_pass

from ingest.applications import NO_CLASSES, AppClassifier, ApplicationsConfig
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.native import NativeAgent
from ingest.partners import PartnersConfig
from ingest.synth import SynthConfig, generate

RULES = ApplicationsConfig.model_validate(
    {
        "default": "bulk",
        "rules": [
            {"class": "trading", "protocols": ["tcp"], "server_ports": ["9000-9099", 7001], "dscp": ["EF"],
             "remote_prefixes": ["203.0.113.0/25", "2001:db8:77::/48"]},
            {"class": "vr", "protocols": ["udp"], "server_ports": ["40000-40999"]},
            {"class": "trading", "asns": [64500, 64501], "links": ["hk-1"]},
            {"class": "voice", "dscp": [46, "cs5"], "domestic_prefixes": ["10.9.0.0/16"]},
            {"class": "web", "protocols": ["tcp"], "server_ports": [80, 443, "8000-8999"]},
        ],
    }
)  # fmt: skip


def run(pcap: Path, apps: AppClassifier) -> tuple[float, float]:
    """(packets, records) per CPU second of the engine over the file, records classified and encoded."""
    agent = NativeAgent(AgentConfig(), PartnerClassifier(PartnersConfig.default()), lambda _r: None, apps=apps)
    p = engine_pass(agent, pcap)
    return p.packets / p.cpu_s, int(p.batch[0]) / p.cpu_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--flows", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "synth.pcap"
        generate(SynthConfig(seed=5, flows=args.flows), pcap, Path(tmp) / "truth.json")
        figures: dict[str, list[tuple[float, float]]] = {"no rules": [], "5 rules": []}
        for _ in range(args.runs):  # alternated, so both see the same load
            figures["no rules"].append(run(pcap, NO_CLASSES))
            figures["5 rules"].append(run(pcap, AppClassifier(RULES)))
    med = {k: (statistics.median(p for p, _ in v), statistics.median(r for _, r in v)) for k, v in figures.items()}
    for name, (pps, rps) in med.items():
        print(f"{name:9s} {pps / 1e6:6.3f}M packets/CPU-s  {rps / 1e3:8.1f}k records/CPU-s  (median of {args.runs})")
    print(f"ratio 5 rules / no rules: {med['5 rules'][0] / med['no rules'][0]:.3f} (packets/CPU-s)")


if __name__ == "__main__":
    main()
