"""Per-agent record sequence numbers that never repeat across restarts, even after a crash.

The agent reserves sequence numbers in blocks and writes the end of the reserved block (fsync, atomic rename)
before using any number in it; a restarted agent starts after the last reservation. A crash leaves a gap, never
a repeat, so (agent_id, seq) identifies a record downstream.
"""

from __future__ import annotations

import os
from pathlib import Path

BLOCK = 100_000


class SeqStore:
    def __init__(self, path: Path, block: int = BLOCK) -> None:
        self.path = path
        self.block = block
        try:
            self.reserved = int(path.read_text().strip())
        except FileNotFoundError:
            self.reserved = 0
        except ValueError:
            raise ValueError(f"{path}: not a sequence number file; delete it to start again from 0") from None
        self.next = self.reserved

    def _reserve(self) -> None:
        self.reserved = self.next + self.block
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(f"{self.reserved}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def first(self) -> int:
        """The first number this run may use (reserves its first block)."""
        self._reserve()
        return self.next

    def used(self, next_seq: int) -> None:
        """Tell the store the meter's next sequence number; reserves ahead when the block runs low."""
        self.next = next_seq
        if next_seq >= self.reserved:
            self._reserve()
