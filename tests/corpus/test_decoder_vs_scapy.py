"""Every frame of every readable corpus capture: the decoder against Scapy's dissection, field by field."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ingest.decode import (
    BAD_L4_HEADER,
    NOT_IP,
    REJECT_REASONS,
    TRUNCATED_L4,
    UNSUPPORTED_LINKTYPE,
    DecodeConfig,
    decode,
)
from ingest.packet import DecodedPacket
from ingest.sources import CaptureError, open_capture
from tests.corpus.conftest import capture_files
from tests.packets import dissect, expected_fields

pytestmark = pytest.mark.corpus

ALL_DECAP = DecodeConfig(decap_gre=True, decap_vxlan=True, decap_gtp=True)


def _readable(corpus_dir: Path, manifest: dict[str, dict[str, str]]) -> list[Path]:
    out = []
    for path in capture_files(corpus_dir):
        row = manifest.get(path.name)
        assert row is not None, f"{path.name} is not in MANIFEST.tsv"
        if "corrupt-file" not in row["categories"]:
            out.append(path)
    return out


def _compare(path: Path, cfg: DecodeConfig) -> tuple[Counter[str], list[str]]:
    counts: Counter[str] = Counter()
    problems: list[str] = []
    with open_capture(path) as reader:
        for no, frame in enumerate(reader, 1):
            got = decode(frame, cfg)
            pkt = dissect(frame)
            exp = None if pkt is None else expected_fields(pkt, decap=cfg != DecodeConfig())
            where = f"{path.name} frame {no}"
            if isinstance(got, str):
                counts[got] += 1
                assert got in REJECT_REASONS
                problems += _check_reject(where, got, frame.linktype, pkt, exp)
                continue
            counts["decoded"] += 1
            if exp is None:
                problems.append(f"{where}: decoded {got.src_ip.hex()}>{got.dst_ip.hex()} but Scapy sees no IP")
                continue
            problems += _check_fields(where, got, exp)
    return counts, problems


def _check_reject(where: str, got: str, linktype: int, pkt: Any, exp: dict[str, Any] | None) -> list[str]:
    if got == UNSUPPORTED_LINKTYPE:
        return [] if pkt is None else [f"{where}: Scapy reads link type {linktype}, the decoder does not"]
    if got == NOT_IP:
        return [] if exp is None else [f"{where}: not_ip, but Scapy finds {exp}"]
    if got in (TRUNCATED_L4, BAD_L4_HEADER):
        # Scapy falls back to raw bytes where the transport header is incomplete
        if exp is not None and exp.get("l4") == "raw":
            return []
        return [f"{where}: {got}, but Scapy dissects {exp}"]
    if exp is not None:
        return [f"{where}: {got}, but Scapy finds {exp}"]
    return []


def _check_fields(where: str, got: DecodedPacket, exp: dict[str, Any]) -> list[str]:
    problems = []
    exp = dict(exp)
    l4 = exp.pop("l4")
    if l4 == "raw" and not got.l4_present:
        return [f"{where}: l4 missing"]
    for key, value in exp.items():
        if getattr(got, key) != value:
            problems.append(f"{where}: {key} = {getattr(got, key)!r}, Scapy says {value!r}")
    if l4 == "udp" and "dns_id" not in exp and got.dns_id is not None:
        pass  # Scapy needs 12 header bytes for DNS, the decoder only the first 4
    return problems


@pytest.mark.parametrize("cfg", [DecodeConfig(), ALL_DECAP], ids=["plain", "decap"])
def test_every_frame_matches_scapy(corpus_dir: Path, manifest: dict[str, dict[str, str]], cfg: DecodeConfig) -> None:
    files = _readable(corpus_dir, manifest)
    assert len(files) >= 40, "the corpus should hold dozens of readable captures"
    total: Counter[str] = Counter()
    problems: list[str] = []
    for path in files:
        counts, found = _compare(path, cfg)
        total += counts
        problems += found
    assert not problems, f"{len(problems)} mismatches:\n" + "\n".join(problems[:60])
    assert total["decoded"] > 100_000


def test_frame_counts_match_manifest(corpus_dir: Path, manifest: dict[str, dict[str, str]]) -> None:
    for path in _readable(corpus_dir, manifest):
        row = manifest[path.name]
        with open_capture(path) as reader:
            frames = sum(1 for _ in reader)
            assert frames + reader.stats.skipped_bad_timestamp == int(row["packet_count"]), path.name
            assert reader.stats.skipped_bad_timestamp == 0, path.name


def test_ip_len_counts_the_original_length_of_cut_frames(corpus_dir: Path) -> None:
    """zeek__tcp_timestamp.pcap: every frame cut at 96 bytes; wire bytes per MANIFEST 1,057,964."""
    path = corpus_dir / "pcaps" / "zeek__tcp_timestamp.pcap"
    with open_capture(path) as reader:
        frames = list(reader)
    decoded = [decode(f) for f in frames]
    assert all(isinstance(d, DecodedPacket) for d in decoded)
    # Ethernet frames: wire length = 14-byte header + IP length (no padding at these sizes)
    assert sum(d.ip_len + 14 for d in decoded if isinstance(d, DecodedPacket)) == 1_057_964
    assert sum(f.wire_len for f in frames) == 1_057_964


def test_unreadable_frames_are_counted_not_lost(corpus_dir: Path, manifest: dict[str, dict[str, str]]) -> None:
    """Every frame ends as a packet or one reason: the totals add up per file."""
    for path in _readable(corpus_dir, manifest):
        with open_capture(path) as reader:
            outcomes = Counter("decoded" if isinstance(r, DecodedPacket) else r for r in (decode(f) for f in reader))
        assert sum(outcomes.values()) == reader.stats.frames, path.name


def test_capture_error_is_raised_only_for_damaged_files(corpus_dir: Path, manifest: dict[str, dict[str, str]]) -> None:
    for path in _readable(corpus_dir, manifest):
        try:
            with open_capture(path) as reader:
                for _ in reader:
                    pass
        except CaptureError as exc:  # pragma: no cover - the assertion below reports it
            pytest.fail(f"{path.name}: {exc}")
