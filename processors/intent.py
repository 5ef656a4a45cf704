"""Announce a batch's offset range in Kafka before inserting it, so a retry after a crash re-forms it exactly.

Before inserting batch `first..last` of a partition the loader commits offset `first` (nothing new is
acknowledged) with commit metadata naming the range. After the insert returned it commits `last + 1` with
empty metadata. Whoever owns the partition next (the same process after a restart, or another loader after a
rebalance) reads the committed offset and its metadata: a pending range means the insert may or may not
have happened, so the first batch is pinned to that range and inserted with the same deduplication token.
ClickHouse stores it once either way. The commit is fenced by the group generation, so a loader that lost
the partition cannot announce a range the new owner would not see.
"""

from __future__ import annotations

import re
from typing import Final

_PREFIX: Final = "gwtel-loader/1 pending "
# librdkafka writes the metadata with a trailing NUL byte (and strips it when it reads): readers of both
# clients must recognise a range the other wrote.
_RE: Final = re.compile(r"^gwtel-loader/1 pending (\d+)-(\d+)\x00?$")


def pending_metadata(first: int, last: int) -> str:
    if first < 0 or last < first:
        raise ValueError(f"bad offset range {first}-{last}")
    return f"{_PREFIX}{first}-{last}"


def parse_pending(metadata: str | None, committed_offset: int | None) -> tuple[int, int] | None:
    """The pending range in commit metadata, if it belongs to the committed offset (else None)."""
    if not metadata or committed_offset is None:
        return None
    m = _RE.match(metadata)
    if m is None:
        return None
    first, last = int(m.group(1)), int(m.group(2))
    # The announcement commits `first` itself; any other offset means someone moved the group since.
    if first != committed_offset or last < first:
        return None
    return first, last
