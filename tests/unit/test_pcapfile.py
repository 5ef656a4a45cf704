"""Capture reader on generated files: formats, byte orders, resolutions, gzip, and every kind of damage."""

from __future__ import annotations

import gzip
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.utils import EDecimal, PcapNgWriter, PcapWriter

from gwtel.errors import UserError
from ingest.packet import RawFrame
from ingest.sources import MAX_CAPLEN, CaptureError, open_capture
from tests.packets import Iface, eth, pcap_bytes, pcapng_bytes

T0 = 1_700_000_000_123_456_000  # whole microseconds, so µs files keep it exactly


def _frames(n: int = 5, linktype: int = 1, step_ns: int = 1_000) -> list[RawFrame]:
    out = []
    for i in range(n):
        data = bytes(eth() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1000 + i, dport=53) / (b"d" * i))
        out.append(RawFrame(T0 + i * step_ns, linktype, data, len(data) + i))  # wire longer: cut frames
    return out


def _write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _read(path: Path) -> list[RawFrame]:
    with open_capture(path) as reader:
        return list(reader)


@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
@pytest.mark.parametrize("nanosecond", [False, True], ids=["us", "ns"])
def test_pcap_round_trip(tmp_path: Path, big_endian: bool, nanosecond: bool) -> None:
    frames = _frames()
    if nanosecond:
        frames = [RawFrame(f.ts_ns + 789, f.linktype, f.data, f.wire_len) for f in frames]
    path = _write(tmp_path, "x.bin", pcap_bytes(frames, nanosecond=nanosecond, big_endian=big_endian))
    with open_capture(path) as reader:
        assert reader.format == ("pcap-ns" if nanosecond else "pcap")
        got = list(reader)
        assert got == frames
        assert reader.stats.frames == 5
        assert reader.stats.bytes == sum(len(f.data) for f in frames)
        assert reader.stats.wire_bytes == sum(f.wire_len for f in frames)
        assert reader.stats.linktypes == {1: 5}


def test_link_type_field_fcs_bits_are_ignored(tmp_path: Path) -> None:
    path = _write(tmp_path, "fcs.pcap", pcap_bytes(_frames(1), linktype=0x1000_0000 | 1))
    assert _read(path)[0].linktype == 1


def test_scapy_written_pcap_and_pcapng(tmp_path: Path) -> None:
    pkts = [eth() / IP() / TCP(sport=i) for i in range(4)]
    for i, p in enumerate(pkts):
        p.time = 1_600_000_000 + i
    for writer, name in ((PcapWriter, "a.pcap"), (PcapNgWriter, "b.pcapng")):
        path = tmp_path / name
        w = writer(str(path))
        for p in pkts:
            w.write(p)
        w.close()
        got = _read(path)
        assert [f.data for f in got] == [bytes(p) for p in pkts]
        assert [f.ts_ns for f in got] == [(1_600_000_000 + i) * 10**9 for i in range(4)]
    nano = tmp_path / "n.pcap"
    w = PcapWriter(str(nano), nano=True)
    pkts[0].time = EDecimal("1600000000.000000123")
    w.write(pkts[0])
    w.close()
    with open_capture(nano) as reader:
        assert reader.format == "pcap-ns"
        assert next(iter(reader)).ts_ns % 10**9 == 123


@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_pcapng_several_interfaces(tmp_path: Path, big_endian: bool) -> None:
    ip_only = bytes(IP(src="192.0.2.1", dst="192.0.2.2") / UDP())
    frame_bytes = bytes(eth() / IP() / UDP())
    ifaces = [
        Iface(linktype=1),  # default resolution: microseconds
        Iface(linktype=101, tsresol=9),  # nanoseconds
        Iface(linktype=1, tsresol=0x80 | 10, tsoffset=100),  # 2^-10 s ticks, 100 s offset
    ]
    packets = [
        (0, 5_000_001, frame_bytes, 100),
        (1, 7_000_000_042, ip_only, len(ip_only)),
        (2, 1024 * 3 + 512, frame_bytes, 60),
    ]
    content = pcapng_bytes(ifaces, packets, big_endian=big_endian, extra_blocks=[(4, b"\0" * 8)])
    path = _write(tmp_path, "multi.pcap", content)  # name says pcap, content is pcapng
    with open_capture(path) as reader:
        assert reader.format == "pcapng"
        got = list(reader)
        assert reader.stats.skipped_blocks == 1
    assert [(f.linktype, f.ts_ns, f.wire_len) for f in got] == [
        (1, 5_000_001_000, 100),
        (101, 7_000_000_042, len(ip_only)),
        (1, (100 + 3) * 10**9 + 500_000_000, 60),
    ]
    assert got[1].data == ip_only


def test_pcapng_new_section_resets_interfaces(tmp_path: Path) -> None:
    frame_bytes = bytes(eth() / IP() / UDP())
    one = pcapng_bytes([Iface(linktype=1)], [(0, 1, frame_bytes, len(frame_bytes))])
    two = pcapng_bytes([Iface(linktype=101)], [(0, 2, frame_bytes[14:], len(frame_bytes) - 14)], big_endian=True)
    got = _read(_write(tmp_path, "s.pcapng", one + two))
    assert [(f.linktype, f.ts_ns) for f in got] == [(1, 1000), (101, 2000)]


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_gzip_compressed_files(tmp_path: Path, kind: str) -> None:
    frames = _frames(50)
    if kind == "pcap":
        raw = pcap_bytes(frames)
    else:
        raw = pcapng_bytes([Iface()], [(0, f.ts_ns // 1000, f.data, f.wire_len) for f in frames])
    path = _write(tmp_path, "c.cap", gzip.compress(raw))
    with open_capture(path) as reader:
        assert reader.compressed
        assert list(reader) == frames


def test_invalid_timestamps_are_skipped_and_counted(tmp_path: Path) -> None:
    content = bytearray(pcap_bytes(_frames(3)))
    # second record's microsecond field := 1,000,000
    second = 24 + 16 + len(_frames(3)[0].data)
    struct.pack_into("<I", content, second + 4, 1_000_000)
    with open_capture(_write(tmp_path, "ts.pcap", bytes(content))) as reader:
        got = list(reader)
        assert reader.stats.skipped_bad_timestamp == 1
    assert [f.data for f in got] == [_frames(3)[0].data, _frames(3)[2].data]


# -- files that cannot be read at all ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "empty file"),
        (b"\xd4\xc3", "too short"),
        (b"GIF89a" + b"\0" * 40, "not a pcap or pcapng file"),
        (pcap_bytes([])[:20], "header cut short"),
        (pcap_bytes([], version=(1, 4)), "unsupported pcap version 1.4"),
    ],
    ids=["empty", "two-bytes", "bad-magic", "short-header", "version-1"],
)
def test_unreadable_files_fail_before_any_frame(tmp_path: Path, content: bytes, words: str) -> None:
    path = _write(tmp_path, "bad.pcap", content)
    with pytest.raises(CaptureError) as info:
        open_capture(path)
    assert words in str(info.value)
    assert str(path) in str(info.value)
    assert isinstance(info.value, UserError)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(tmp_path / "nope.pcap")
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(tmp_path)


def test_empty_gzip_stream(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="empty file"):
        open_capture(_write(tmp_path, "e.gz", gzip.compress(b"")))


def test_header_only_pcap_is_a_valid_empty_capture(tmp_path: Path) -> None:
    assert _read(_write(tmp_path, "h.pcap", pcap_bytes([]))) == []


# -- damage midway --------------------------------------------------------------------------------------------


def _record_offsets(frames: list[RawFrame]) -> list[int]:
    offsets, pos = [], 24
    for f in frames:
        offsets.append(pos)
        pos += 16 + len(f.data)
    return [*offsets, pos]


def test_pcap_cut_at_every_byte(tmp_path: Path) -> None:
    frames = _frames(4)
    content = pcap_bytes(frames)
    bounds = _record_offsets(frames)
    for cut in range(24, len(content) + 1):
        path = _write(tmp_path, "cut.pcap", content[:cut])
        got: list[RawFrame] = []
        with open_capture(path) as reader:
            if cut in bounds:  # cut at a record boundary: a shorter but whole file
                got = list(reader)
                assert got == frames[: bounds.index(cut)]
                continue
            with pytest.raises(CaptureError) as info:
                got.extend(reader)
        damaged = max(i for i, b in enumerate(bounds) if b < cut)
        assert got == frames[:damaged], cut
        assert info.value.record_no == damaged + 1
        assert info.value.offset == bounds[damaged]
        assert f"record {damaged + 1} at byte offset {bounds[damaged]}" in str(info.value)


def test_pcapng_cut_at_every_byte(tmp_path: Path) -> None:
    frames = _frames(3)
    content = pcapng_bytes([Iface()], [(0, f.ts_ns // 1000, f.data, f.wire_len) for f in frames])
    # blocks: SHB 28, IDB 20, then EPBs of 32 + padded data
    bounds = [0, 28, 48]
    for f in frames:
        bounds.append(bounds[-1] + 32 + len(f.data) + (-len(f.data) % 4))
    assert bounds[-1] == len(content)
    for cut in range(4, len(content)):
        path = _write(tmp_path, "cut.pcapng", content[:cut])
        got: list[RawFrame] = []
        try:
            with open_capture(path) as reader:
                got.extend(reader)
        except CaptureError as exc:
            block = max(i for i, b in enumerate(bounds) if b < cut)
            assert exc.record_no == block + 1, cut
            assert exc.offset == bounds[block]
            assert got == frames[: max(0, block - 2)]
        else:
            assert cut in bounds
            assert got == frames[: max(0, bounds.index(cut) - 2)]


@pytest.mark.parametrize("caplen", [MAX_CAPLEN + 1, 0xFFFF_FFFF])
def test_absurd_captured_length(tmp_path: Path, caplen: int) -> None:
    frames = _frames(2)
    content = bytearray(pcap_bytes(frames))
    at = _record_offsets(frames)[1]
    struct.pack_into("<I", content, at + 8, caplen)
    with open_capture(_write(tmp_path, "big.pcap", bytes(content))) as reader:
        it = iter(reader)
        assert next(it) == frames[0]
        with pytest.raises(CaptureError, match=r"captured length .* exceeds") as info:
            next(it)
    assert (info.value.record_no, info.value.offset) == (2, at)


def test_captured_length_above_snaplen_is_read_whole_and_counted(tmp_path: Path) -> None:
    # As tshark reads it: every captured byte of the record (libpcap would keep the first snaplen bytes).
    frames = _frames(2)
    path = _write(tmp_path, "snap.pcap", pcap_bytes(frames, snaplen=len(frames[0].data) - 1))
    with open_capture(path) as reader:
        assert list(reader) == frames
        assert (reader.stats.frames, reader.stats.over_snaplen) == (2, 2)


def test_snaplen_one_with_an_eight_byte_record(tmp_path: Path) -> None:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 1, 1)
    record = struct.pack("<IIII", 1_700_000_000, 5, 8, 60) + bytes(range(8))
    path = _write(tmp_path, "snap1.pcap", header + record)
    with open_capture(path) as reader:
        got = list(reader)
        assert reader.stats.over_snaplen == 1
    assert [(f.ts_ns, f.data, f.wire_len) for f in got] == [(1_700_000_000_000_005_000, bytes(range(8)), 60)]


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        (lambda b: struct.pack_into("<I", b, 52, 30), "bad pcapng block length 30"),
        (lambda b: struct.pack_into("<I", b, 52, 8), "bad pcapng block length 8"),
        (lambda b: struct.pack_into("<I", b, 52, 0x7FFF_FFF0), "bad pcapng block length"),
        (lambda b: struct.pack_into("<I", b, len(b) - 4, 1234), "trailer (1234) differ"),
        (lambda b: struct.pack_into("<I", b, 56, 3), "interface 3, but only 1"),
        (lambda b: struct.pack_into("<I", b, 68, 4000), "overruns its block"),
        (lambda b: struct.pack_into("<I", b, 8, 0x01020304), "bad byte-order magic"),
        (lambda b: struct.pack_into("<H", b, 12, 2), "unsupported pcapng version 2.0"),
    ],
    ids=["len-not-multiple-of-4", "len-too-small", "len-huge", "trailer", "iface", "caplen", "bom", "version"],
)
def test_damaged_pcapng_blocks(tmp_path: Path, patch: object, words: str) -> None:
    frame_bytes = bytes(eth() / IP() / UDP())
    content = bytearray(pcapng_bytes([Iface()], [(0, 1, frame_bytes, len(frame_bytes))]))
    patch(content)  # type: ignore[operator]
    with pytest.raises(CaptureError) as info, open_capture(_write(tmp_path, "d.pcapng", bytes(content))) as r:
        list(r)
    assert words in str(info.value)


def test_truncated_and_corrupt_gzip(tmp_path: Path) -> None:
    packed = gzip.compress(pcap_bytes(_frames(200)))
    with (
        pytest.raises(CaptureError, match="read failed"),
        open_capture(_write(tmp_path, "t.gz", packed[: len(packed) // 2])) as reader,
    ):
        list(reader)
    broken = bytearray(packed)
    broken[len(broken) // 2] ^= 0xFF
    with pytest.raises(CaptureError), open_capture(_write(tmp_path, "b.gz", bytes(broken))) as reader:
        list(reader)


def test_streams_the_file(tmp_path: Path) -> None:
    """Frames come out before the reader reaches the end: it never needs the whole file."""
    frames = _frames(3)
    content = pcap_bytes(frames) + b"\x01" * 7  # trailing garbage: a cut record header
    with open_capture(_write(tmp_path, "s.pcap", content)) as reader:
        it = iter(reader)
        assert [next(it) for _ in range(3)] == frames
        with pytest.raises(CaptureError, match="record header cut short"):
            next(it)


# -- fuzz ---------------------------------------------------------------------------------------------------

SEED_FILES = [
    pcap_bytes(_frames(2)),
    pcap_bytes(_frames(2), nanosecond=True, big_endian=True),
    pcapng_bytes([Iface(), Iface(linktype=101, tsresol=9)], [(0, 1, b"abcd", 4), (1, 2, b"\x45" * 20, 20)]),
]


def _read_only_capture_errors(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f"
        path.write_bytes(content)
        try:
            with open_capture(path) as reader:
                for frame in reader:
                    assert len(frame.data) <= MAX_CAPLEN
        except CaptureError as exc:
            assert str(path) in str(exc)


@settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow])
@given(content=st.binary(max_size=300))
def test_random_bytes_give_only_capture_errors(content: bytes) -> None:
    _read_only_capture_errors(content)


@settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEED_FILES),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 400),
    compress=st.booleans(),
)
def test_mutated_files_give_only_capture_errors(
    seed: bytes, flips: list[tuple[int, int]], cut: int, compress: bool
) -> None:
    data = bytearray(seed)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    content = bytes(data[:cut])
    _read_only_capture_errors(gzip.compress(content) if compress else content)
