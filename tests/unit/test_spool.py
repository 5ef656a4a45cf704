"""The on-disk spool: order, restart, corrupt tail, bound, acknowledgement."""

from __future__ import annotations

import os
from pathlib import Path

from ingest.spool import Spool


def _fill(spool: Spool, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        assert spool.append(f"k{i}".encode(), f"value-{i}".encode()) is not None


def _values(spool: Spool, n: int = 10_000) -> list[bytes]:
    return [r.value for r in spool.read(n)]


def _expected(r: range) -> list[bytes]:
    return [f"value-{i}".encode() for i in r]


def test_reads_back_in_append_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    _fill(spool, 100)
    assert len(list(tmp_path.glob("*.seg"))) > 5  # really spans segments
    recs = spool.read(1000)
    assert [r.value for r in recs] == _expected(range(100))
    assert [r.key for r in recs[:2]] == [b"k0", b"k1"]
    assert [r.pos for r in recs] == sorted(r.pos for r in recs)
    assert spool.pending_records == 100
    assert _values(spool, 3) == _expected(range(3))  # read does not remove


def test_commit_removes_prefix_and_frees_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    _fill(spool, 100)
    recs = spool.read(1000)
    spool.commit(recs[59].pos, 60)
    assert _values(spool) == _expected(range(60, 100))
    assert spool.pending_records == 40
    first_seg = min(int(p.stem) for p in tmp_path.glob("*.seg"))
    assert first_seg == recs[59].pos[0]  # earlier segments deleted
    spool.commit(recs[99].pos, 40)
    assert spool.empty() and spool.read(10) == []
    assert list(tmp_path.glob("*.seg")) == [] and spool.size_bytes == 0
    _fill(spool, 3, start=100)  # usable again after draining
    assert _values(spool) == _expected(range(100, 103))


def test_restart_keeps_unacknowledged_records_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=300)
    _fill(spool, 50)
    recs = spool.read(1000)
    spool.commit(recs[19].pos, 20)
    spool.close()

    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=300)
    assert again.pending_records == 30
    assert again.corrupt_tails == 0
    assert _values(again) == _expected(range(20, 50))
    _fill(again, 5, start=50)  # appends go after the survivors
    assert _values(again) == _expected(range(20, 55))


def test_restart_without_close_loses_nothing_written(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    _fill(spool, 10)
    # No close(): a crashed agent. Writes are unbuffered, so a new instance sees them all.
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert _values(again) == _expected(range(10))


def test_corrupt_tail_is_truncated_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    _fill(spool, 10)
    spool.close()
    (seg,) = tmp_path.glob("*.seg")
    good_size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(b"\x30\x00\x00\x00\x01\x02")  # a header and the start of a frame: a write cut short

    again = Spool(tmp_path, max_bytes=1 << 20)
    assert again.corrupt_tails == 1 and again.corrupt_bytes == 6
    assert seg.stat().st_size == good_size
    assert _values(again) == _expected(range(10))
    _fill(again, 1, start=10)
    assert _values(Spool(tmp_path, max_bytes=1 << 20)) == _expected(range(11))


def test_flipped_bit_ends_the_segment_at_the_bad_frame(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    _fill(spool, 10)
    pos3 = spool.read(10)[3].pos[1]  # end of record 3 = start of record 4
    spool.close()
    (seg,) = tmp_path.glob("*.seg")
    data = bytearray(seg.read_bytes())
    data[pos3 + 12] ^= 0x01  # inside record 4's payload
    seg.write_bytes(bytes(data))

    again = Spool(tmp_path, max_bytes=1 << 20)
    assert again.corrupt_tails == 1
    assert again.corrupt_bytes == len(data) - pos3
    assert _values(again) == _expected(range(4))


def test_full_spool_refuses_and_keeps_what_it_has(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000, segment_bytes=256)
    accepted = 0
    refused = 0
    for i in range(100):
        if spool.append(b"k", f"value-{i}".encode().ljust(40, b".")) is None:
            refused += 1
        else:
            accepted += 1
    frame = 8 + 2 + 1 + 40
    assert accepted == 1000 // frame and refused == 100 - accepted
    assert spool.size_bytes <= 1000
    assert sum(p.stat().st_size for p in tmp_path.glob("*.seg")) == spool.size_bytes
    assert [r.value for r in spool.read(100)] == [f"value-{i}".encode().ljust(40, b".") for i in range(accepted)]
    # Acknowledging frees room again.
    spool.commit(spool.read(100)[-1].pos, accepted)
    assert spool.append(b"k", b"after") is not None


def test_cursor_survives_restart_mid_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    _fill(spool, 10)
    spool.commit(spool.read(10)[4].pos, 5)
    spool.close()
    cursor = (tmp_path / "cursor").read_text().split()
    assert int(cursor[1]) > 0
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert again.pending_records == 5
    assert _values(again) == _expected(range(5, 10))
    assert os.path.getsize(next(tmp_path.glob("*.seg"))) > 0
