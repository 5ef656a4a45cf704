"""A request body held as the pieces it was read in, so a large insert is never copied whole.

Every whole copy of a body of tens of MB (a join, a decode, a slice) is fresh memory to the allocator: page
faults and zeroing in the kernel, about as costly per row as ClickHouse's own parse of the data. A body is read
in pieces of at most `PIECE` bytes, an insert's statement is found in its first bytes, and the data after it is
handed to the engine piece by piece (only the piece holding the statement's end is sliced).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

# Small enough for the allocator to reuse a freed piece's memory (glibc raises its mmap threshold up to 32 MiB).
PIECE = 8 << 20


@dataclass
class Body:
    pieces: list[bytes] = field(default_factory=list)

    @classmethod
    def of(cls, data: bytes) -> Body:
        return cls([data] if data else [])

    def __len__(self) -> int:
        return sum(map(len, self.pieces))

    def whole(self) -> bytes:
        """The body as one bytes object (a copy when it came in several pieces): for small bodies only."""
        if len(self.pieces) == 1:
            return self.pieces[0]
        return b"".join(self.pieces)

    def head(self, n: int) -> bytes:
        """The first `n` bytes at most, joining only the pieces they span."""
        out: list[bytes] = []
        size = 0
        for piece in self.pieces:
            if size >= n:
                break
            out.append(piece[: n - size])
            size += len(out[-1])
        return out[0] if len(out) == 1 else b"".join(out)

    def tail(self, start: int) -> Iterator[bytes]:
        """The bytes from offset `start` on, piece by piece: the pieces after the one holding `start` as read."""
        for piece in self.pieces:
            if start >= len(piece):
                start -= len(piece)
                continue
            yield piece[start:] if start else piece
            start = 0
