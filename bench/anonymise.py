"""Address anonymisation cost: the native agent engine's packets per CPU-second over one capture with and without
Crypto-PAn on src_ip/dst_ip (`agent.anonymise`), runs alternated, medians; writes bench/results/anonymise.json.

Each run is a fresh engine, so its anonymised-address cache starts empty: every distinct address of the capture
costs its 32 (IPv4) AES blocks once per run, as after an agent's start (the count of distinct addresses per record
is printed: the share of records that paid for a new address).
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
from _results import Row, table, write

from ingest.anonymise_config import AnonymiseConfig
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.native import NativeAgent
from ingest.partners import PartnersConfig
from ingest.synth import SynthConfig, generate


def engine_run(pcap: Path, cfg: AgentConfig) -> tuple[float, int, int]:
    """(packets per CPU-second, records, distinct addresses) of one engine over the file, records classified and
    encoded."""
    run = engine_pass(NativeAgent(cfg, PartnerClassifier(PartnersConfig.default()), lambda _r: None), pcap)
    count, keys, *_ = run.batch
    addresses = {a.split(b"/")[0] for k in keys.split(b"\n") if k for a in k.split(b">")}  # "src/sp>dst/dp/proto"
    return run.packets / run.cpu_s, int(count), len(addresses)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--flows", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        pcap = Path(d) / "anon.pcap"
        generate(SynthConfig(seed=11, flows=args.flows, duration_s=60), pcap, Path(d) / "anon.json")
        key = Path(d) / "key"
        key.write_bytes(bytes(range(32)))
        anon = AgentConfig(anonymise=AnonymiseConfig(key_file=str(key)))
        plain_pps: list[float] = []
        anon_pps: list[float] = []
        records = addresses = 0
        for _ in range(args.runs):
            pps, records, addresses = engine_run(pcap, AgentConfig())
            plain_pps.append(pps)
            anon_pps.append(engine_run(pcap, anon)[0])
    plain, with_anon = statistics.median(plain_pps), statistics.median(anon_pps)
    rows = [
        Row("packets per CPU-second, anonymised", with_anon, "packets/s", plain, ">= 0.9x plain"),
        Row("packets per CPU-second, plain (baseline)", plain, "packets/s"),
    ]
    print(table([{"benchmark": "anonymise", **r.__dict__, "ratio": r.ratio} for r in rows]))
    print(f"{records} records, {addresses} distinct addresses per run; medians of {args.runs} runs alternated")
    write("anonymise", rows, records=records, addresses=addresses, runs=args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
