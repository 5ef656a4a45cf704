"""Per-partition batches bounded by size and age, and the insert deduplication token of a batch.

A batch is a run of consecutive records of one Kafka partition, named by the offsets of its first and last
record. Its token `topic:partition:first-last` is what ClickHouse deduplicates a retried insert on, so a retry
must cover exactly the same records. That is why a batch can be *pinned*: after a restart or a rebalance the
loader reads the range the previous owner announced before inserting (see `processors.intent`) and pins the
first batch to it, so it ends at the same offset no matter how the size and time bounds fall this time.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


def dedup_token(topic: str, partition: int, first: int, last: int) -> str:
    """The `insert_deduplication_token` of the batch holding offsets `first`..`last` of a partition."""
    if first < 0 or last < first:
        raise ValueError(f"bad offset range {first}-{last}")
    return f"{topic}:{partition}:{first}-{last}"


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    topic: str
    partition: int
    first: int
    last: int
    items: tuple[T, ...]

    @property
    def token(self) -> str:
        return dedup_token(self.topic, self.partition, self.first, self.last)


class PartitionBatcher(Generic[T]):
    """Collects the records of one partition, in offset order, into batches.

    Unpinned, a batch is ready when it holds `max_rows` records or its first record waited `max_seconds`.
    Pinned to `first..last`, it ignores both bounds and is ready exactly when record `last` is in.
    """

    def __init__(
        self,
        topic: str,
        partition: int,
        max_rows: int,
        max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_rows < 1 or max_seconds <= 0:
            raise ValueError("max_rows must be >= 1 and max_seconds > 0")
        self.topic = topic
        self.partition = partition
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self._clock = clock
        self._offsets: list[int] = []
        self._items: list[T] = []
        self._started = 0.0
        self.pin: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def next_offset(self) -> int | None:
        """One past the last offset added (None when empty)."""
        return self._offsets[-1] + 1 if self._offsets else None

    def pin_to(self, first: int, last: int) -> None:
        """Make the next batch exactly `first..last` (the range a previous owner may have inserted)."""
        if self._items:
            raise ValueError("pin a batcher only while it is empty")
        if last < first:
            raise ValueError(f"bad pinned range {first}-{last}")
        self.pin = (first, last)

    def closes_before(self, offset: int) -> bool:
        """True when the current batch must be taken before the record at `offset` is added."""
        return self.pin is not None and bool(self._items) and offset > self.pin[1]

    def add(self, offset: int, item: T) -> None:
        if self._offsets and offset <= self._offsets[-1]:
            raise ValueError(f"offset {offset} is not after {self._offsets[-1]} in {self.topic}:{self.partition}")
        if self.pin is not None and not self._items and offset > self.pin[1]:
            # Every record of the announced range is gone (retention): a batch of later records must not
            # carry its token, or ClickHouse would drop it as a retry of what the range may have stored.
            self.pin = None
        if self.closes_before(offset):
            raise ValueError(f"offset {offset} is past the pinned range {self.pin}; take the batch first")
        if not self._items:
            self._started = self._clock()
        self._offsets.append(offset)
        self._items.append(item)

    def add_many(self, offsets: Sequence[int], items: Sequence[T]) -> int:
        """Add the leading records that belong to the current batch, in one step; return how many.

        Unpinned, that is up to the size bound; pinned, up to the end of the pinned range. 0 means the
        current batch must be taken first (`closes_before`). The loader's raw path adds a poll's records this
        way instead of one call per record.
        """
        if not offsets:
            return 0
        if self._offsets and offsets[0] <= self._offsets[-1]:
            raise ValueError(f"offset {offsets[0]} is not after {self._offsets[-1]} in {self.topic}:{self.partition}")
        if self.pin is not None and not self._items and offsets[0] > self.pin[1]:
            self.pin = None  # the announced range is gone (retention), as in `add`
        room = bisect_right(offsets, self.pin[1]) if self.pin is not None else self.max_rows - len(self._items)
        n = min(room, len(offsets))
        if n <= 0:
            return 0
        if not self._items:
            self._started = self._clock()
        self._offsets.extend(offsets[:n])
        self._items.extend(items[:n])
        return n

    def ready(self) -> bool:
        if not self._items:
            return False
        if self.pin is not None:
            return self._offsets[-1] >= self.pin[1]
        return len(self._items) >= self.max_rows or self._clock() - self._started >= self.max_seconds

    def take(self) -> Batch[T]:
        """The current batch (ready or not: a caller may flush early); the batcher is empty afterwards."""
        if not self._items:
            raise ValueError("no records to take")
        first, last = self._offsets[0], self._offsets[-1]
        if self.pin is not None:
            # The announced range names the batch even if retention removed its first records since:
            # the token must equal the one a previous attempt may have inserted with.
            first, last = self.pin
        batch = Batch(self.topic, self.partition, first, last, tuple(self._items))
        self._offsets.clear()
        self._items.clear()
        self.pin = None
        return batch
