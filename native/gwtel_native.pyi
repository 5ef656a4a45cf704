"""Types of the native agent engine (see native/src/lib.rs)."""

from collections.abc import Callable

ABI: int

# A batch of encoded FlowRecords (native/src/batch.rs): count, keys and values (each followed by a newline),
# traffic (partner, direction, link, octets, packets), handshake (partner, direction, application class, bucket
# counts, sum in s),
# records per partner.
Batch = tuple[
    int,
    bytes,
    bytes,
    list[tuple[str, str, str, int, int]],
    list[tuple[str, str, str, list[int], float]],
    list[tuple[str, int]],
]
# (fallback, domestic group, unknown country, by link, by country, by asn): PartnerClassifier.engine_rules
Rules = tuple[str, str, str, list[tuple[str, str]], list[tuple[str, str]], list[tuple[int, str]]]
# PartnerClassifier.sides_of_packed: (IPv4 addresses, IPv6 addresses) packed back to back -> (distinct answers
# (domestic, country, group | None, asn), one answer index per address as native uint32, the IPv4 ones first)
Sides = Callable[[bytes, bytes], tuple[list[tuple[bool, str, str | None, int]], bytes]]
# (default class, [(class, protocols, port ranges, dscp values, domestic prefixes, remote prefixes, asns, links)]):
# AppClassifier.engine_rules
AppRule = tuple[
    str,
    list[int],
    list[tuple[int, int]],
    list[int],
    list[tuple[bytes, int]],
    list[tuple[bytes, int]],
    list[int],
    list[str],
]
Apps = tuple[str, list[AppRule]]

def encode_record(values: tuple[object, ...]) -> tuple[bytes, bytes]: ...
def address_text(packed: bytes) -> str: ...

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
        fields: list[str],
        agent_id: str,
        link_id: str,
        sampling_rate: int,
        sampling_mode: str,
        rules: Rules,
        apps: Apps,
        handshake_bounds: list[float],
        sides: Sides | None = None,
        classify: Callable[[bytes, bytes], tuple[str, str, str, int, bool]] | None = None,
        address_cache: int = ...,
        anon_key: bytes | None = None,
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
    ) -> int | None: ...
    def poll_ring(self, timeout_ms: int, max_blocks: int) -> tuple[int, int]: ...
    def skim_ring(self, timeout_ms: int, max_blocks: int) -> tuple[int, int]: ...
    def ring_stats(self) -> tuple[int, int, int, int, int]: ...
    def close_ring(self) -> None: ...
    def advance(self, now_ns: int) -> None: ...
    def flush(self) -> None: ...
    def take(self, first_seq: int) -> Batch: ...
    def counters(self) -> dict[str, int | dict[str, int]]: ...
    def table_bytes(self) -> int: ...
    def table_breakdown(self) -> dict[str, int]: ...

# Router flow export (native/src/export): see ingest/collect/decoded.py for the tuple layouts.
ExportRecord = tuple[
    str, bytes, int, int, bytes, bytes, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int,
    bytes, int, int, int,
]  # fmt: skip
LinkRecord = tuple[bytes, int, int, int, int, int, int, int]

class Collector:
    def __init__(self, *, max_templates_per_exporter: int = 4096, max_exporters: int = 10000) -> None: ...
    def feed(self, batch: bytes) -> int: ...
    def configure_records(
        self,
        *,
        fields: list[str],
        agent_id: str,
        default_link_id: str,
        exporters: list[tuple[bytes, int | None, list[tuple[int, str, bool]]]],
        rules: Rules,
        apps: Apps,
        handshake_bounds: list[float],
        sides: Sides,
        address_cache: int = ...,
        anon_key: bytes | None = None,
    ) -> None: ...
    def take_records(self, first_seq: int, export_ns: int, max_records: int = 0) -> tuple[Batch, int]: ...
    def take(self) -> list[ExportRecord]: ...
    def take_flow_octets(self) -> list[tuple[bytes, int, str, int]]: ...
    def take_links(self) -> list[LinkRecord]: ...
    def counters(self) -> dict[str, object]: ...
    def exporters(self) -> list[bytes]: ...
    def save_templates(self, exporter: bytes) -> bytes: ...
    def load_templates(self, exporter: bytes, data: bytes) -> int: ...
