"""Bad capture input: every damaged file ends in a clear error or counted rejections, never a traceback or hang.

Inputs: every capture of the shared corpus (``$GWTEL_TEST_DATA/pcaps``), and damage generated from a valid
capture of known content: cut at every record boundary and inside every record, random byte flips, absurd
record lengths, an empty file, a wrong magic number, a gzip cut short. Each goes through the whole agent
(reader, decoder, fragments, flow meter); a few through the real `gwtel replay` process.
"""

from __future__ import annotations

import functools
import gzip
import random
import struct
from collections import Counter
from pathlib import Path

import pytest

from gwtel.config import GwtelConfig
from ingest.agent import Agent
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.replay import FileOutcome, replay_files
from ingest.sources import CaptureError
from ingest.synth import SynthConfig, generate
from tests.corpus.conftest import capture_files
from tests.faults import support as s

pytestmark = [pytest.mark.timeout(300)]

_HEADER = 24
_RECORD_HEADER = 16


@functools.cache
def _classifier() -> PartnerClassifier:
    return PartnerClassifier(GwtelConfig().partners)


def _agent() -> Agent:
    records: list[object] = []
    return Agent(AgentConfig(agent_id="bad-input"), _classifier(), records.append)


def _replay(path: Path) -> tuple[FileOutcome, Agent]:
    agent = _agent()
    result = replay_files(agent, [path])
    [outcome] = result.files
    return outcome, agent


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[int]]:
    """A small valid pcap and the byte offset of each of its records."""
    d = tmp_path_factory.mktemp("bad-captures")
    generate(SynthConfig(seed=3, flows=10, duration_s=10), d / "ok.pcap", d / "ok.json")
    data = (d / "ok.pcap").read_bytes()
    offsets = []
    pos = _HEADER
    while pos < len(data):
        offsets.append(pos)
        (incl,) = struct.unpack_from("<I", data, pos + 8)
        pos += _RECORD_HEADER + incl
    assert pos == len(data) and len(offsets) > 50
    return data, offsets


def test_corpus_files_end_cleanly(corpus_dir: Path) -> None:
    outcomes: Counter[str] = Counter()
    for path in capture_files(corpus_dir):
        outcome, agent = _replay(path)  # anything but CaptureError escapes and fails the test
        outcomes["error" if outcome.error else "read"] += 1
        if outcome.error is not None:
            assert str(path) in str(outcome.error)
        c = agent.counters
        assert c.packets_seen == c.packets_decoded + sum(c.rejected.values()), path.name
    print(f"corpus: {dict(outcomes)}")
    assert outcomes["read"] > 30 and outcomes["error"] >= 3


def test_cut_at_every_record_boundary_and_inside_every_record(valid: tuple[bytes, list[int]], tmp_path: Path) -> None:
    data, offsets = valid
    path = tmp_path / "cut.pcap"
    for i, off in enumerate(offsets):
        path.write_bytes(data[:off])  # a whole number of records: a shorter, valid capture
        outcome, agent = _replay(path)
        assert outcome.error is None and outcome.frames == i == agent.counters.packets_seen
        for cut in (off + 1, off + _RECORD_HEADER - 1, off + _RECORD_HEADER + 1):
            path.write_bytes(data[:cut])  # inside the record header or its data
            outcome, agent = _replay(path)
            assert isinstance(outcome.error, CaptureError), cut
            assert outcome.frames == i and outcome.error.record_no == i + 1, cut
            assert f"record {i + 1} at byte offset {off}" in str(outcome.error)


def test_file_header_damage_is_refused_before_any_frame(valid: tuple[bytes, list[int]], tmp_path: Path) -> None:
    data, _ = valid
    cases = {
        "zero-length": b"",
        "header cut": data[:10],
        "wrong magic": b"\x00\x01\x02\x03" + data[4:],
        "text file": b"this is not a capture\n" * 10,
    }
    for name, content in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.pcap"
        path.write_bytes(content)
        outcome, agent = _replay(path)
        assert isinstance(outcome.error, CaptureError), name
        assert outcome.frames == 0 and agent.counters.packets_seen == 0, name


def test_absurd_record_lengths(valid: tuple[bytes, list[int]], tmp_path: Path) -> None:
    data, offsets = valid
    off = offsets[5]
    for incl, orig in ((0xFFFF_FFFF, 60), (10_000_000, 10_000_000), (70_000, 70_000), (60, 0)):
        damaged = bytearray(data)
        struct.pack_into("<II", damaged, off + 8, incl, orig)
        path = tmp_path / "absurd.pcap"
        path.write_bytes(bytes(damaged))
        outcome, agent = _replay(path)
        if outcome.error is not None:  # at the record, or later when a shorter length shifted the framing
            assert outcome.error.record_no is not None and outcome.error.record_no >= 6, (incl, orig)
            assert outcome.frames == outcome.error.record_no - 1
        else:  # a frame longer on the wire than captured is legal: read, decoded or counted as rejected
            c = agent.counters
            assert c.packets_seen == len(offsets) == c.packets_decoded + sum(c.rejected.values())


def test_random_byte_flips(valid: tuple[bytes, list[int]], tmp_path: Path) -> None:
    data, offsets = valid
    rng = random.Random(20261126)
    outcomes: Counter[str] = Counter()
    path = tmp_path / "flipped.pcap"
    for _ in range(300):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
        outcome, agent = _replay(path)
        c = agent.counters
        assert c.packets_seen == c.packets_decoded + sum(c.rejected.values())
        assert c.packets_seen <= len(offsets) + 1_000
        outcomes["error" if outcome.error else ("rejections" if c.rejected else "clean")] += 1
    print(f"byte flips: {dict(outcomes)}")
    assert sum(outcomes.values()) == 300


def test_gzip_cut_short(valid: tuple[bytes, list[int]], tmp_path: Path) -> None:
    data, _ = valid
    packed = gzip.compress(data)
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(packed[: len(packed) // 2])
    outcome, _ = _replay(path)
    assert isinstance(outcome.error, CaptureError) and str(path) in str(outcome.error)


def test_gwtel_replay_exits_2_with_the_file_named(valid: tuple[bytes, list[int]], tmp_path: Path) -> None:
    data, offsets = valid
    config = s.write_config(GwtelConfig(), tmp_path / "config.yaml")
    files = {"empty.pcap": b"", "magic.pcap": b"\xde\xad\xbe\xef" + data[4:], "cut.pcap": data[: offsets[7] + 3]}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        out = s.run_gwtel(["replay", "--to", f"jsonl:{tmp_path / 'out.jsonl'}", str(tmp_path / name)], config, 120)
        assert out.returncode == 2, (name, out.stderr)
        assert f"capture file {tmp_path / name}" in out.stderr and "Traceback" not in out.stderr, out.stderr
    out = s.run_gwtel(["replay", "--allow-truncated", "--to", f"jsonl:{tmp_path / 'out.jsonl'}",
                       str(tmp_path / "cut.pcap")], config, 120)  # fmt: skip
    assert out.returncode == 0 and "packets 7" in out.stderr, out.stderr
