"""Every capture the MANIFEST marks corrupt: a clear CaptureError (or a counted skip), never a crash or hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.packet import RawFrame
from ingest.sources import CaptureError, open_capture
from tests.corpus.conftest import capture_files

pytestmark = [pytest.mark.corpus, pytest.mark.timeout(60)]


def _corrupt(corpus_dir: Path, manifest: dict[str, dict[str, str]]) -> list[tuple[Path, dict[str, str]]]:
    out = [(p, manifest[p.name]) for p in capture_files(corpus_dir) if "corrupt-file" in manifest[p.name]["categories"]]
    assert len(out) >= 5, "the corpus should hold several corrupt captures"
    return out


def _read(path: Path) -> tuple[list[RawFrame], int, CaptureError | None]:
    frames: list[RawFrame] = []
    skipped = 0
    try:
        with open_capture(path) as reader:
            for frame in reader:
                frames.append(frame)
            skipped = reader.stats.skipped_bad_timestamp
    except CaptureError as exc:
        return frames, skipped, exc
    return frames, skipped, None


def test_each_corrupt_file_is_reported_clearly(corpus_dir: Path, manifest: dict[str, dict[str, str]]) -> None:
    seen = set()
    for path, row in _corrupt(corpus_dir, manifest):
        frames, skipped, error = _read(path)
        categories = row["categories"].split(";")
        if row["link_type"] == "unreadable":
            # nothing readable: the error comes before any frame and names the file and where
            assert error is not None and not frames, path.name
            assert str(path) in str(error) and "Traceback" not in str(error)
            seen.add("unreadable")
        elif "cut short" in row["reader_warnings"]:
            # damaged midway: frames before the damage, then an error naming record and offset
            assert error is not None, path.name
            assert error.record_no is not None and error.offset is not None
            assert f"record {error.record_no} at byte offset {error.offset}" in str(error)
            assert len(frames) < int(row["packet_count"])
            seen.add("cut")
        elif "bad-timestamp" in categories:
            # framing intact: the records with impossible times are skipped and counted
            assert error is None, f"{path.name}: {error}"
            assert skipped >= 1
            assert len(frames) + skipped == int(row["packet_count"])
            seen.add("timestamp")
        elif "empty" in categories:
            # a valid file header and no records is an empty capture, not damage
            assert error is None and frames == [] and int(row["packet_count"]) == 0
            seen.add("empty")
        else:  # pragma: no cover - a new kind of corrupt file needs a decision here
            pytest.fail(f"{path.name}: no expectation for corrupt categories {categories}")
    assert seen == {"unreadable", "cut", "timestamp", "empty"}


def test_unsupported_version_and_option_overrun_messages(corpus_dir: Path) -> None:
    pcaps = corpus_dir / "pcaps"
    with pytest.raises(CaptureError, match=r"unsupported pcap version 1\.4"):
        open_capture(pcaps / "libpcap__pcap-invalid-version-1.pcap")
    _, _, error = _read(pcaps / "libpcap__shb-option-too-long.pcapng")
    assert error is not None and "header (52) and trailer" in str(error) and error.record_no == 1
    _, _, error = _read(pcaps / "ndpi__fuzz-2021-10-13.pcap")
    assert error is not None and "captured length 524501" in str(error)
    assert (error.record_no, error.offset) == (1, 24)
