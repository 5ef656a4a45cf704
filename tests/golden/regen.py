"""Regenerate the golden captures and their expected aggregates (`make golden`).

Each case is a small `gwtel synth` capture (gzip-compressed, deterministic for its seed) and the expected
per-partner aggregates computed from the generator's own ground truth. Cases sit in different hours so one
pipeline run can replay them all and check each on its own time range. `--check` regenerates into a temporary
folder and fails when the committed files differ (the generator changed: rerun without --check and review).
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ingest.synth import EPOCH_NS, SynthConfig, generate
from schemas import expected

HERE = Path(__file__).resolve().parent
HOUR_NS = 3600 * 1_000_000_000


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    synth: SynthConfig
    window_s: int = 10  # window of the expected aggregates: a size the job emits
    sampling_rate: int = 1


CASES = (
    Case(
        "mixed",
        "TCP with handshakes and timestamps, ICMP, DNS, half on two 802.1Q VLANs, six 10 s windows",
        SynthConfig(seed=11, flows=150, duration_s=60, start_ns=EPOCH_NS),
    ),
    Case(
        "retrans",
        "TCP only, 40% of response bursts retransmitted, 10% RTT outliers, ingress-heavy",
        SynthConfig(
            seed=12,
            flows=120,
            duration_s=60,
            tcp_share=1.0,
            retrans_share=0.4,
            outlier_share=0.1,
            ingress_share=0.6,
            start_ns=EPOCH_NS + HOUR_NS,
        ),
    ),
    Case(
        "sampled",
        "1:100 packet sampling: bytes and packets scaled x100; checked on 1 min windows",
        SynthConfig(seed=13, flows=120, duration_s=120, start_ns=EPOCH_NS + 2 * HOUR_NS),
        window_s=60,
        sampling_rate=100,
    ),
    Case(
        "icmp_dns",
        "mostly ICMP echo and DNS, few TCP flows, twelve 10 s windows",
        SynthConfig(seed=14, flows=300, duration_s=120, tcp_share=0.2, icmp_share=0.4, start_ns=EPOCH_NS + 3 * HOUR_NS),
    ),
)


def pcap_path(case: Case, folder: Path = HERE) -> Path:
    return folder / f"{case.name}.pcap.gz"


def expected_path(case: Case, folder: Path = HERE) -> Path:
    return folder / f"{case.name}.expected.json"


def write_case(case: Case, folder: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / f"{case.name}.pcap"
        truth = generate(case.synth, raw, Path(tmp) / "truth.json")
        # mtime=0 and no file name in the header: the same capture always gives the same bytes.
        with (
            pcap_path(case, folder).open("wb") as out,
            gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0) as gz,
        ):
            gz.write(raw.read_bytes())
    exp = expected.from_truth(truth, window_s=case.window_s, sampling_rate=case.sampling_rate)
    exp = exp.model_copy(update={"description": f"golden case {case.name}: {case.what} (tests/golden/regen.py)"})
    expected_path(case, folder).write_text(expected.dump(exp), encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="fail when the committed files are not up to date")
    args = ap.parse_args()
    if not args.check:
        for case in CASES:
            write_case(case, HERE)
            print(
                f"wrote {pcap_path(case).name} ({pcap_path(case).stat().st_size:,} bytes), {expected_path(case).name}"
            )
        return 0
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            write_case(case, Path(tmp))
            for fresh, committed in (
                (pcap_path(case, Path(tmp)), pcap_path(case)),
                (expected_path(case, Path(tmp)), expected_path(case)),
            ):
                if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
                    stale.append(committed.name)
    if stale:
        print(f"out of date: {', '.join(stale)}; run `make golden` and review the diff", file=sys.stderr)
        return 1
    print("golden files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
