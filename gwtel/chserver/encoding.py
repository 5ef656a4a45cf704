"""HTTP Content-Encoding of request bodies and responses (lz4, zstd, gzip, deflate).

clickhouse-connect compresses each insert block as its own frame (lz4, zstd) or member (gzip), so a body is a
series of frames; decoding yields them one by one so an insert is fed to the engine in pieces.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator

import lz4.frame  # type: ignore[import-untyped]
import zstandard

from gwtel.chserver.body import PIECE, Body
from gwtel.chserver.errors import ChError, Codes

SUPPORTED = ("lz4", "zstd", "gzip", "deflate")


def _method(encoding: str | None) -> str:
    return (encoding or "").strip().lower()


def is_identity(encoding: str | None) -> bool:
    return _method(encoding) in ("", "identity")


def decode_body(body: Body, encoding: str | None) -> Iterator[bytes]:
    """Decompressed pieces of `body` (its pieces as read when not compressed); raises ChError on an unknown
    method or corrupt input."""
    if is_identity(encoding):
        yield from body.tail(0)
        return
    enc = _method(encoding)
    data = body.whole()
    try:
        if enc == "lz4":
            rest = data
            while rest:
                d = lz4.frame.LZ4FrameDecompressor()
                yield d.decompress(rest)
                if not d.eof:
                    raise ChError(Codes.CANNOT_DECOMPRESS, "Cannot decompress lz4 body: truncated frame")
                rest = d.unused_data
        elif enc == "zstd":
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
            while piece := reader.read(PIECE):
                yield piece
        elif enc in ("gzip", "x-gzip"):
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                while piece := gz.read(PIECE):
                    yield piece
        elif enc == "deflate":
            rest = data
            while rest:
                z = zlib.decompressobj()
                yield z.decompress(rest) + z.flush()
                if not z.eof:
                    raise ChError(Codes.CANNOT_DECOMPRESS, "Cannot decompress deflate body: truncated stream")
                rest = z.unused_data
        else:
            raise ChError(
                Codes.UNKNOWN_COMPRESSION_METHOD,
                f"Unknown HTTP Content-Encoding '{enc[:40]}'; supported: {', '.join(SUPPORTED)}",
            )
    except ChError:
        raise
    except (RuntimeError, OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        raise ChError(Codes.CANNOT_DECOMPRESS, f"Cannot decompress {enc} body: {exc}") from None


def choose_encoding(accept: str | None) -> str | None:
    """The first method in the client's Accept-Encoding that this server can produce."""
    if not accept:
        return None
    for part in accept.split(","):
        name = part.split(";", 1)[0].strip().lower()
        if name in SUPPORTED:
            return name
    return None


def encode(data: bytes, encoding: str) -> bytes:
    if encoding == "lz4":
        return bytes(lz4.frame.compress(data))
    if encoding == "zstd":
        return zstandard.ZstdCompressor(level=1).compress(data)
    if encoding == "gzip":
        return gzip.compress(data, compresslevel=3)
    if encoding == "deflate":
        return zlib.compress(data, 3)
    raise ValueError(encoding)
