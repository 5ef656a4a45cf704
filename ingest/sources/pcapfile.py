"""Capture file reader: classic pcap (µs and ns, either byte order) and pcapng, optionally gzip-compressed.

The format is chosen from the magic number, never from the file name. The file is streamed record by
record. Damage is reported as `CaptureError`:

- a file that cannot be read at all (empty, bad magic, bad or unsupported header) fails in `open_capture`,
  before any frame;
- damage midway (record cut short, absurd captured length, bad pcapng block length) ends the iteration with
  `CaptureError` naming the record number (1-based; pcapng counts blocks) and the byte offset of the
  record; every frame before the damage has already been yielded.

Invalid timestamps (a sub-second field of 1e6 µs / 1e9 ns or more, or a pcapng time before the epoch) are
counted in `stats.skipped_bad_timestamp` and the record is skipped: the record framing is intact, so the rest
of the file is still trustworthy, while a made-up time would put the packet in the wrong window.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

from gwtel.errors import UserError
from ingest import linktypes
from ingest.packet import RawFrame

MAX_CAPLEN: Final = 256 * 1024  # larger captured lengths only appear in damaged files
MAX_BLOCK_LEN: Final = 16 * 1024 * 1024  # pcapng: a non-packet block (names, stats) beyond this is damage
_READ_BUFFER: Final = 1 << 20

_GZIP_MAGIC: Final = b"\x1f\x8b"
_PCAP_US: Final = 0xA1B2C3D4
_PCAP_NS: Final = 0xA1B23C4D
_PCAPNG_SHB: Final = 0x0A0D0D0A
_PCAPNG_BOM: Final = 0x1A2B3C4D

# pcapng block types
_IDB: Final = 0x00000001
_OPB: Final = 0x00000002  # obsolete Packet Block
_SPB: Final = 0x00000003
_EPB: Final = 0x00000006

_OPT_ENDOFOPT: Final = 0
_OPT_IF_TSRESOL: Final = 9
_OPT_IF_TSOFFSET: Final = 14

_NS_PER_S: Final = 1_000_000_000


class CaptureError(UserError):
    """A capture file that cannot be read, or stops being readable at a given record."""

    def __init__(
        self, path: str | PathLike[str], reason: str, record_no: int | None = None, offset: int | None = None
    ) -> None:
        self.path = str(path)
        self.reason = reason
        self.record_no = record_no
        self.offset = offset
        where = ""
        if record_no is not None:
            where += f" record {record_no}"
        if offset is not None:
            where += f" at byte offset {offset}"
        super().__init__(f"capture file {self.path}:{where + ':' if where else ''} {reason}")


@dataclass(slots=True)
class CaptureStats:
    """What the reader consumed; the decoder and meter count from here on."""

    frames: int = 0  # frames yielded
    bytes: int = 0  # captured bytes yielded
    wire_bytes: int = 0  # original lengths of the frames yielded
    skipped_bad_timestamp: int = 0  # records dropped for an invalid timestamp (see module doc)
    skipped_blocks: int = 0  # pcapng blocks that carry no packet (names, statistics, custom, ...)
    over_snaplen: int = 0  # records longer than their snap length: read whole, as tshark reads them
    linktypes: dict[int, int] = field(default_factory=dict)  # frames per link type


class _Stream:
    """Counts the bytes consumed and turns decompression/OS errors into CaptureError."""

    __slots__ = ("_f", "_path", "offset")

    def __init__(self, f: BinaryIO, path: str) -> None:
        self._f = f
        self._path = path
        self.offset = 0

    def read(self, n: int, record_no: int | None) -> bytes:
        try:
            data = self._f.read(n)
        except (OSError, EOFError, zlib.error) as exc:
            # gzip damage surfaces here (BadGzipFile is an OSError, a cut stream an EOFError)
            raise CaptureError(self._path, f"read failed: {exc}", record_no, self.offset) from None
        self.offset += len(data)
        return data


def _open_stream(path: str) -> tuple[BinaryIO, BinaryIO, bool]:
    """Return (stream to read, underlying file, compressed?): GzipFile leaves a passed file open."""
    try:
        raw = io.BufferedReader(io.FileIO(path, "rb"), buffer_size=_READ_BUFFER)
    except OSError as exc:
        raise CaptureError(path, f"cannot open: {exc.strerror or exc}") from None
    try:
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            gz = gzip.GzipFile(fileobj=raw, mode="rb")
            return io.BufferedReader(gz, buffer_size=_READ_BUFFER), raw, True
    except OSError as exc:
        raw.close()
        raise CaptureError(path, f"cannot read: {exc.strerror or exc}") from None
    return raw, raw, False


class CaptureReader:
    """Iterable of RawFrame over one capture file; use as a context manager so the file is closed."""

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = str(path)
        self.stats = CaptureStats()
        self.compressed = False
        self.format = ""  # "pcap", "pcap-ns" or "pcapng"
        self._iterated = False
        f, self._raw, self.compressed = _open_stream(self.path)
        self._f: BinaryIO | None = f
        self._s = _Stream(f, self.path)
        try:
            self._read_file_header()
        except BaseException:
            self.close()
            raise

    # -- context manager -------------------------------------------------------------------------------
    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._raw.close()
            self._f = None

    # -- header ----------------------------------------------------------------------------------------
    def _fail(self, reason: str, record_no: int | None = None, offset: int | None = None) -> CaptureError:
        if self.compressed and offset is not None:
            reason += " (offset in the uncompressed stream)"
        return CaptureError(self.path, reason, record_no, offset)

    def _read_file_header(self) -> None:
        head = self._s.read(4, None)
        if not head:
            raise self._fail("empty file (0 bytes" + (" after decompression)" if self.compressed else ")"))
        if len(head) < 4:
            raise self._fail(f"file too short for a capture header ({len(head)} bytes)")
        le = struct.unpack("<I", head)[0]
        be = struct.unpack(">I", head)[0]
        if _PCAPNG_SHB in (le, be):
            self.format = "pcapng"
            self._pending_shb_type = head
            return
        if _PCAP_US in (le, be):
            self.format = "pcap"
        elif _PCAP_NS in (le, be):
            self.format = "pcap-ns"
        else:
            raise self._fail(f"not a pcap or pcapng file (magic number 0x{be:08x})")
        self._endian = "<" if le in (_PCAP_US, _PCAP_NS) else ">"
        rest = self._s.read(20, None)
        if len(rest) < 20:
            raise self._fail(f"pcap file header cut short ({4 + len(rest)} of 24 bytes)")
        major, minor, _zone, _sigfigs, snaplen, lt_field = struct.unpack(self._endian + "HHiIII", rest)
        if major != 2:
            raise self._fail(f"unsupported pcap version {major}.{minor} (only 2.x is readable)")
        self._snaplen = snaplen
        self._linktype = lt_field & linktypes.LINKTYPE_MASK

    # -- iteration -------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[RawFrame]:
        if self._iterated:
            raise self._fail("a capture reader can be iterated only once")
        self._iterated = True
        if self._f is None:
            raise self._fail("reader is closed")
        if self.format == "pcapng":
            return self._iter_pcapng()
        return self._iter_pcap()

    def _count(self, frame: RawFrame) -> None:
        st = self.stats
        st.frames += 1
        st.bytes += len(frame.data)
        st.wire_bytes += frame.wire_len
        st.linktypes[frame.linktype] = st.linktypes.get(frame.linktype, 0) + 1

    def _iter_pcap(self) -> Iterator[RawFrame]:
        s = self._s
        hdr_struct = struct.Struct(self._endian + "IIII")
        nano = self.format == "pcap-ns"
        frac_limit = _NS_PER_S if nano else 1_000_000
        frac_mul = 1 if nano else 1000
        # A record longer than the header's snap length is read whole and counted, as tshark reads it (libpcap
        # keeps the first snap-length bytes): its bytes are in the file. libpcap's ceiling stays the absurdity
        # bound. Writers that leave snaplen 0 mean "no limit".
        snaplen = self._snaplen
        linktype = self._linktype
        record_no = 0
        read = s.read
        st = self.stats
        lts = st.linktypes
        lts[linktype] = 0
        while True:
            record_no += 1
            start = s.offset
            hdr = read(16, record_no)
            if not hdr:
                return
            if len(hdr) < 16:
                raise self._fail(f"record header cut short ({len(hdr)} of 16 bytes)", record_no, start)
            sec, frac, caplen, wire_len = hdr_struct.unpack(hdr)
            if caplen > MAX_CAPLEN:
                raise self._fail(
                    f"captured length {caplen} exceeds the 256 KiB limit ({MAX_CAPLEN}): damaged record header",
                    record_no,
                    start,
                )
            if snaplen and caplen > snaplen:
                st.over_snaplen += 1
            data = read(caplen, record_no)
            if len(data) < caplen:
                raise self._fail(f"record cut short: {len(data)} of {caplen} captured bytes present", record_no, start)
            if frac >= frac_limit:
                self.stats.skipped_bad_timestamp += 1
                continue
            # A wire length below the captured length is a writer bug; the bytes we hold did exist.
            wire_len = max(wire_len, caplen)
            # counted inline: this loop is the reader's hot path
            st.frames += 1
            st.bytes += caplen
            st.wire_bytes += wire_len
            lts[linktype] += 1
            yield RawFrame(sec * _NS_PER_S + frac * frac_mul, linktype, data, wire_len)

    def _iter_pcapng(self) -> Iterator[RawFrame]:
        s = self._s
        read = s.read
        endian = "<"
        # per interface: (linktype, snaplen, ticks->ns multiplier, divisor, binary shift, offset ns)
        ifaces: list[tuple[int, int, int, int, int, int]] = []
        block_no = 0
        last_ts = 0
        first = self._pending_shb_type
        while True:
            block_no += 1
            start = s.offset - (4 if first else 0)
            btype_raw = first if first else read(4, block_no)
            first = b""
            if not btype_raw:
                return
            if len(btype_raw) < 4:
                raise self._fail(f"block header cut short ({len(btype_raw)} of 8 bytes)", block_no, start)
            if btype_raw == b"\x0a\x0d\x0d\x0a":
                # Section Header Block: its byte-order magic decides how every later length is read.
                rest = read(8, block_no)
                if len(rest) < 8:
                    raise self._fail("section header block cut short", block_no, start)
                bom_raw = rest[4:8]
                if bom_raw == b"\x4d\x3c\x2b\x1a":
                    endian = "<"
                elif bom_raw == b"\x1a\x2b\x3c\x4d":
                    endian = ">"
                else:
                    raise self._fail(f"bad byte-order magic in section header (0x{bom_raw.hex()})", block_no, start)
                blen = struct.unpack(endian + "I", rest[:4])[0]
                body = self._block_body(blen, 12, block_no, start, endian)
                major, minor = struct.unpack_from(endian + "HH", body, 0)
                if major != 1:
                    raise self._fail(
                        f"unsupported pcapng version {major}.{minor} (only 1.x is readable)", block_no, start
                    )
                ifaces = []  # interface ids are per section
                continue
            btype = struct.unpack(endian + "I", btype_raw)[0]
            blen_raw = read(4, block_no)
            if len(blen_raw) < 4:
                raise self._fail("block header cut short", block_no, start)
            blen = struct.unpack(endian + "I", blen_raw)[0]
            body = self._block_body(blen, 8, block_no, start, endian)
            if btype in (_EPB, _OPB):
                if btype == _EPB:
                    if len(body) < 20:
                        raise self._fail("enhanced packet block too short", block_no, start)
                    iface, ts_hi, ts_lo, caplen, wire_len = struct.unpack_from(endian + "IIIII", body, 0)
                else:
                    if len(body) < 20:
                        raise self._fail("packet block too short", block_no, start)
                    iface, _drops, ts_hi, ts_lo, caplen, wire_len = struct.unpack_from(endian + "HHIIII", body, 0)
                if iface >= len(ifaces):
                    raise self._fail(
                        f"packet on interface {iface}, but only {len(ifaces)} interface(s) described",
                        block_no,
                        start,
                    )
                lt, snaplen, mul, div, shift, off_ns = ifaces[iface]
                if caplen > MAX_CAPLEN:
                    raise self._fail(f"captured length {caplen} exceeds the 256 KiB limit", block_no, start)
                if snaplen and caplen > snaplen:
                    self.stats.over_snaplen += 1  # read whole, as for pcap records
                if 20 + caplen > len(body):
                    raise self._fail(f"captured length {caplen} overruns its block ({blen} bytes)", block_no, start)
                ticks = (ts_hi << 32) | ts_lo
                ts = ((ticks * mul) >> shift) // div + off_ns
                if ts < 0:
                    self.stats.skipped_bad_timestamp += 1
                    continue
                last_ts = ts
                frame = RawFrame(ts, lt, body[20 : 20 + caplen], max(wire_len, caplen))
                self._count(frame)
                yield frame
            elif btype == _SPB:
                if not ifaces:
                    raise self._fail("simple packet block before any interface description", block_no, start)
                if len(body) < 4:
                    raise self._fail("simple packet block too short", block_no, start)
                lt, snaplen, *_ = ifaces[0]
                wire_len = struct.unpack_from(endian + "I", body, 0)[0]
                caplen = min(wire_len, snaplen) if snaplen else wire_len
                caplen = min(caplen, len(body) - 4)
                # A simple packet block carries no time: it takes the previous packet's (documented gap).
                frame = RawFrame(last_ts, lt, body[4 : 4 + caplen], max(wire_len, caplen))
                self._count(frame)
                yield frame
            elif btype == _IDB:
                ifaces.append(self._parse_idb(body, endian, block_no, start))
            else:
                self.stats.skipped_blocks += 1

    def _block_body(self, blen: int, consumed: int, block_no: int, start: int, endian: str) -> bytes:
        """Read the rest of a block (`consumed` bytes already read); return the body without the trailer."""
        if blen < 12 or blen % 4 or blen > MAX_BLOCK_LEN:
            raise self._fail(f"bad pcapng block length {blen}", block_no, start)
        if blen < consumed + 4:
            raise self._fail(f"pcapng block length {blen} too small for its type", block_no, start)
        rest = self._s.read(blen - consumed, block_no)
        if len(rest) < blen - consumed:
            raise self._fail(f"block cut short: {consumed + len(rest)} of {blen} bytes present", block_no, start)
        trailer = struct.unpack_from(endian + "I", rest, len(rest) - 4)[0]
        if trailer != blen:
            raise self._fail(f"block length in header ({blen}) and trailer ({trailer}) differ", block_no, start)
        return rest[:-4]

    def _parse_idb(self, body: bytes, endian: str, block_no: int, start: int) -> tuple[int, int, int, int, int, int]:
        if len(body) < 8:
            raise self._fail("interface description block too short", block_no, start)
        lt, _reserved, snaplen = struct.unpack_from(endian + "HHI", body, 0)
        tsresol = 6
        tsoffset = 0
        pos = 8
        while pos + 4 <= len(body):
            code, olen = struct.unpack_from(endian + "HH", body, pos)
            pos += 4
            if code == _OPT_ENDOFOPT:
                break
            if pos + olen > len(body):
                raise self._fail(f"interface option {code} overruns its block", block_no, start)
            if code == _OPT_IF_TSRESOL and olen >= 1:
                tsresol = body[pos]
            elif code == _OPT_IF_TSOFFSET and olen >= 8:
                tsoffset = struct.unpack_from(endian + "q", body, pos)[0]
            pos += (olen + 3) & ~3
        # ns = ((ticks * mul) >> shift) // div: exact integer arithmetic for every resolution
        if tsresol & 0x80:
            mul, div, shift = _NS_PER_S, 1, tsresol & 0x7F
        else:
            exp = tsresol
            mul, div, shift = (10 ** (9 - exp), 1, 0) if exp <= 9 else (1, 10 ** (exp - 9), 0)
        return lt, snaplen, mul, div, shift, tsoffset * _NS_PER_S


def open_capture(path: str | PathLike[str] | Path) -> CaptureReader:
    """Open a capture file; raises CaptureError at once if the file cannot be read at all."""
    return CaptureReader(path)
