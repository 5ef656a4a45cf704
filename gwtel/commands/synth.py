"""`gwtel synth`: write a pcap of realistic gateway traffic and the exact ground truth of what it holds."""

from __future__ import annotations

import argparse
from pathlib import Path

from gwtel.errors import UserError
from ingest.synth import SynthConfig, generate
from schemas import expected


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "synth",
        help="generate a pcap of gateway traffic with its ground truth",
        description=(
            "Write a pcap of flows between domestic hosts and partner hosts (Japan, Korea, Belt and Road, other) "
            "with handshakes, TCP timestamps, per-partner RTTs, ICMP, DNS, VLANs and retransmissions, plus a "
            "JSON file with the exact bytes, packets and flows per window, partner and direction and every "
            "latency sample injected. Deterministic for a seed."
        ),
    )
    p.add_argument("--out", type=Path, default=Path("synth.pcap"), help="pcap to write (default: synth.pcap)")
    p.add_argument("--truth", type=Path, default=None, help="ground-truth JSON (default: <out>.truth.json)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--flows", type=int, default=2000, help="number of flows (default: 2000)")
    p.add_argument("--duration", type=int, default=60, help="seconds of traffic (default: 60)")
    p.add_argument("--window", type=int, default=10, help="window of the truth file, seconds (default: 10)")
    p.add_argument(
        "--expected",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the expected per-partner aggregates for `gwtel verify` (docs/verify.md)",
    )
    p.add_argument(
        "--sampling-rate",
        type=int,
        default=1,
        metavar="N",
        help="with --expected: the capture stands for 1:N sampled traffic; bytes and packets expected x N",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.sampling_rate < 1:
        raise UserError(f"--sampling-rate {args.sampling_rate}: give a whole number >= 1")
    truth = args.truth or args.out.with_suffix(".truth.json")
    cfg = SynthConfig(seed=args.seed, flows=args.flows, duration_s=args.duration, window_s=args.window)
    doc = generate(cfg, args.out, truth)
    print(f"wrote {args.out} ({doc['packets']} packets) and {truth}")
    if args.expected is not None:
        exp = expected.from_truth(doc, sampling_rate=args.sampling_rate)
        args.expected.write_text(expected.dump(exp), encoding="utf-8")
        print(f"wrote {args.expected} (check it with: gwtel verify --pcap {args.out} --expected {args.expected})")
    return 0
