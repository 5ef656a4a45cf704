"""Types of the native agent engine (see native/src/lib.rs)."""

from collections.abc import Callable

ABI: int

_Summary = tuple[int, int, int, int, tuple[tuple[int, int], ...]]
Record = tuple[
    str, int, int, bytes, int, bytes, int, int, int, int, int, int, int, int, int, int, int, int, int,
    int | None, int | None, _Summary | None, _Summary | None, _Summary | None,
]  # fmt: skip

class Engine:
    def __init__(
        self,
        *,
        idle_ns: int,
        active_ns: int,
        grace_ns: int,
        tick_ns: int,
        ooo_ns: int,
        max_flows: int,
        max_pending_ts: int,
        max_pending_echo: int,
        frag_max: int,
        frag_timeout_ns: int,
        decap_gre: bool,
        decap_vxlan: bool,
        decap_gtp: bool,
        vxlan_port: int,
        gtp_port: int,
        bucket_thresholds: list[int],
        domestic: Callable[[bytes], bool] | None = None,
        remote_is_initiator: Callable[[bytes, bytes], bool] | None = None,
    ) -> None: ...
    def begin(self, compressed: bool, limit: int | None = None) -> None: ...
    def push(self, data: bytes) -> None: ...
    def push_file(self, path: str) -> None: ...
    def feed(self, frames: list[tuple[int, int, bytes, int]]) -> None: ...
    def end(self) -> tuple[int, int, int, tuple[str, int | None, int | None] | None, int]: ...
    def open_ring(
        self,
        *,
        ifindex: int,
        linktype: int,
        filter: bytes,
        block_size: int,
        block_count: int,
        block_timeout_ms: int,
        fanout_group: int | None = None,
        fanout_defrag: bool = True,
        promisc: bool = True,
        loopback: bool = False,
    ) -> None: ...
    def poll_ring(self, timeout_ms: int, max_blocks: int) -> tuple[int, int]: ...
    def skim_ring(self, timeout_ms: int, max_blocks: int) -> tuple[int, int]: ...
    def ring_stats(self) -> tuple[int, int, int, int, int]: ...
    def close_ring(self) -> None: ...
    def advance(self, now_ns: int) -> None: ...
    def flush(self) -> None: ...
    def take(self) -> list[Record]: ...
    def counters(self) -> dict[str, int | dict[str, int]]: ...
    def table_bytes(self) -> int: ...
    def table_breakdown(self) -> dict[str, int]: ...
