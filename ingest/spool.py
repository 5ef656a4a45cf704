"""A bounded, append-only, on-disk queue of Kafka records that survives an agent restart.

Layout of the spool directory:
- ``<20-digit id>.seg``: segment files, appended in id order, each a run of frames
  ``u32 payload length | u32 CRC-32 of payload | payload`` with payload ``u16 key length | key | value``
  (little-endian);
- ``cursor``: ``<segment id> <offset>``, the first byte not yet acknowledged, replaced atomically.
Segments before the cursor's are deleted. Records are read back in exactly the order they were appended.

Opening validates every frame from the start; the first frame that is short or fails its CRC ends the
segment: the file is truncated there and the event counted (``corrupt_tails``, ``corrupt_bytes``), which is
what a crash in the middle of a write leaves behind. Each frame is written with one unbuffered ``write``,
so an agent crash loses nothing written; segment files are fsynced when they are closed, so a power cut
can lose at most the open segment's latest frames. The cursor is not fsynced: after a power cut it can be
older than the truth, which re-sends records (duplicates, visible by agent_id + seq), never loses them.

Not thread-safe: the owner (``ingest.producer.FlowProducer``) serializes calls.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

_HEADER: Final = struct.Struct("<II")
_KEYLEN: Final = struct.Struct("<H")
MAX_RECORD_BYTES: Final = 16 * 1024 * 1024  # larger lengths in a header can only be garbage
_SUFFIX: Final = ".seg"

Pos = tuple[int, int]
"""(segment id, offset just after a record): identifies a record and orders records."""


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    pos: Pos
    key: bytes
    value: bytes


class SpoolError(Exception):
    """The spool directory cannot be used (permissions, not a directory)."""


def _frame(key: bytes, value: bytes) -> bytes:
    payload = _KEYLEN.pack(len(key)) + key + value
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _parse(payload: bytes) -> tuple[bytes, bytes] | None:
    if len(payload) < _KEYLEN.size:
        return None
    (klen,) = _KEYLEN.unpack_from(payload)
    if _KEYLEN.size + klen > len(payload):
        return None
    return payload[_KEYLEN.size : _KEYLEN.size + klen], payload[_KEYLEN.size + klen :]


def _scan(path: Path) -> tuple[int, int]:
    """(number of valid frames, length of the valid prefix) of one segment file."""
    count = 0
    good = 0
    with open(path, "rb") as f:
        while True:
            head = f.read(_HEADER.size)
            if len(head) < _HEADER.size:
                return count, good
            length, crc = _HEADER.unpack(head)
            if length > MAX_RECORD_BYTES:
                return count, good
            payload = f.read(length)
            if len(payload) < length or zlib.crc32(payload) != crc or _parse(payload) is None:
                return count, good
            count += 1
            good += _HEADER.size + length


class Spool:
    """Bounded FIFO of (key, value) records on disk; ``commit`` removes what Kafka acknowledged."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, segment_bytes: int | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(64 * 1024, max_bytes // 16)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"spool directory {self.dir}: {exc.strerror}") from None
        self.corrupt_tails = 0
        self.corrupt_bytes = 0
        self.pending_records = 0
        self._sizes: dict[int, int] = {}  # segment id -> bytes on disk
        self._writer: BinaryIO | None = None
        self._write_id = 0
        self._cursor: Pos = (0, 0)
        self._open()

    # -- start-up ---------------------------------------------------------------------------------------
    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:020d}{_SUFFIX}"

    def _open(self) -> None:
        ids = sorted(int(p.name[: -len(_SUFFIX)]) for p in self.dir.glob(f"*{_SUFFIX}") if p.stem.isdigit())
        cursor = self._read_cursor()
        if cursor is None:
            cursor = (ids[0], 0) if ids else (0, 0)
        for seg in ids:
            if seg < cursor[0]:
                self._path(seg).unlink()  # acknowledged before the last stop
                continue
            size = self._path(seg).stat().st_size
            count, good = _scan(self._path(seg))
            if good < size:
                self.corrupt_tails += 1
                self.corrupt_bytes += size - good
                os.truncate(self._path(seg), good)
            self._sizes[seg] = good
            self.pending_records += count
        if cursor[0] in self._sizes:
            # Frames before the cursor in its segment were acknowledged already.
            acked, _ = _scan_prefix(self._path(cursor[0]), cursor[1])
            self.pending_records -= acked
            cursor = (cursor[0], min(cursor[1], self._sizes[cursor[0]]))
        elif self._sizes:
            cursor = (min(self._sizes), 0)
        self._cursor = cursor
        self._write_id = max([*self._sizes, cursor[0]])

    def _read_cursor(self) -> Pos | None:
        try:
            seg, off = (self.dir / "cursor").read_text(encoding="ascii").split()
            return int(seg), int(off)
        except (OSError, ValueError):
            return None

    def _write_cursor(self) -> None:
        tmp = self.dir / "cursor.tmp"
        tmp.write_text(f"{self._cursor[0]} {self._cursor[1]}\n", encoding="ascii")
        os.replace(tmp, self.dir / "cursor")

    # -- queue operations -------------------------------------------------------------------------------
    @property
    def size_bytes(self) -> int:
        """Bytes on disk, including acknowledged frames of the first segment until it is deleted."""
        return sum(self._sizes.values())

    def empty(self) -> bool:
        return self.pending_records == 0

    def append(self, key: bytes, value: bytes) -> Pos | None:
        """Append one record; return its position, or None when the spool is full (nothing written)."""
        frame = _frame(key, value)
        if len(frame) - _HEADER.size > MAX_RECORD_BYTES or self.size_bytes + len(frame) > self.max_bytes:
            return None
        seg = self._write_id
        if self._writer is None or self._sizes.get(seg, 0) >= self.segment_bytes:
            self._roll()
            seg = self._write_id
        assert self._writer is not None
        self._writer.write(frame)
        self._sizes[seg] = self._sizes.get(seg, 0) + len(frame)
        self.pending_records += 1
        return (seg, self._sizes[seg])

    def _roll(self) -> None:
        if self._writer is not None:
            self._close_writer()
            self._write_id += 1
        elif self._sizes.get(self._write_id, 0) >= self.segment_bytes:
            self._write_id += 1
        # Unbuffered: one write() per frame, visible to readers and to a restart at once.
        self._writer = open(self._path(self._write_id), "ab", buffering=0)  # noqa: SIM115
        self._sizes.setdefault(self._write_id, 0)

    def _close_writer(self) -> None:
        if self._writer is not None:
            os.fsync(self._writer.fileno())
            self._writer.close()
            self._writer = None

    def read(self, max_records: int) -> list[SpooledRecord]:
        """Up to ``max_records`` unacknowledged records from the cursor on, oldest first (not removed)."""
        out: list[SpooledRecord] = []
        seg, off = self._cursor
        for sid in sorted(s for s in self._sizes if s >= seg):
            start = off if sid == seg else 0
            end = self._sizes[sid]
            if start >= end:
                continue
            with open(self._path(sid), "rb") as f:
                f.seek(start)
                pos = start
                while pos < end and len(out) < max_records:
                    length, _crc = _HEADER.unpack(f.read(_HEADER.size))
                    kv = _parse(f.read(length))
                    assert kv is not None  # validated at open or written by us
                    pos += _HEADER.size + length
                    out.append(SpooledRecord((sid, pos), kv[0], kv[1]))
            if len(out) >= max_records:
                break
        return out

    def commit(self, pos: Pos, records: int) -> None:
        """Kafka acknowledged every record up to and including the one at ``pos`` (``records`` of them)."""
        if pos <= self._cursor:
            return
        self.pending_records = max(0, self.pending_records - records)
        self._cursor = pos
        for sid in [s for s in self._sizes if s < pos[0]]:
            self._path(sid).unlink(missing_ok=True)
            del self._sizes[sid]
        if self.pending_records == 0:
            # Everything acknowledged: start over in a fresh segment so the disk space comes back.
            self._close_writer()
            for sid in list(self._sizes):
                self._path(sid).unlink(missing_ok=True)
            self._sizes.clear()
            self._write_id += 1
            self._cursor = (self._write_id, 0)
        self._write_cursor()

    def close(self) -> None:
        self._close_writer()
        with contextlib.suppress(OSError):
            self._write_cursor()


def _scan_prefix(path: Path, limit: int) -> tuple[int, int]:
    """Frames that end at or before ``limit`` bytes (the acknowledged part of the cursor's segment)."""
    count = 0
    pos = 0
    with open(path, "rb") as f:
        while True:
            head = f.read(_HEADER.size)
            if len(head) < _HEADER.size:
                break
            length, _ = _HEADER.unpack(head)
            if pos + _HEADER.size + length > limit:
                break
            f.seek(length, os.SEEK_CUR)
            pos += _HEADER.size + length
            count += 1
    return count, pos
