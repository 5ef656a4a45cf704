"""The native agent engine: `Agent`'s per-packet work in Rust (`native/`, module `gwtel_native`), file by file.

Reading (pcap, pcapng, gzip through Python's own decompressor), decoding, fragment attribution, the flow table
and every latency tracker run in one native call per chunk of a file, with the semantics of the Python
reference (`ingest.agent`, `ingest.decode`, `ingest.flowmeter`, ...); `tests/unit/test_native_engine.py`
compares both engines record for record. The engine also classifies each finished flow and encodes its FlowRecord
(the bytes `schemas.codec.encode` writes): with a `PartnerClassifier` it asks Python about the addresses it has
not cached (`sides_of_packed`, many addresses in one call) and applies the per-flow rule itself; any other
classifier is called once per flow (slower). Python receives batches (Kafka keys and values, per-partner
aggregates) and hands them to the sink whole.

Live capture runs the same engine behind a TPACKET_V3 ring (`ingest.capture`): one engine per ring (fanout
worker), all draining into one agent, so records share one sequence and one set of counters. Paced replay
too, fed the frames the Python reader read and paced, in batches of those due together.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from os import PathLike
from typing import TYPE_CHECKING, Any

from gwtel.errors import UserError
from ingest.agent import AgentCounters, meter_config
from ingest.agent_metrics import HANDSHAKE_RTT_BUCKETS, PartnerTally
from ingest.anonymise_config import engine_key
from ingest.applications import NO_CLASSES, AppClassifier
from ingest.classification import Classifier
from ingest.classify import UNKNOWN_COUNTRY, EngineRules, PartnerClassifier
from ingest.config import AgentConfig
from ingest.decode import DecodeConfig
from ingest.flowkey import ip_text
from ingest.flowmeter import MeterStats
from ingest.fragments import FragmentStats, FragmentTracker
from ingest.packet import RawFrame
from ingest.partners import DOMESTIC
from ingest.sinks import BatchSink, EncodedBatch, RecordSink, batch_writer
from ingest.sources import CaptureError, open_capture
from schemas.flow_record import FLOW_RECORD_FIELDS
from schemas.histogram import MAX_BUCKET, bucket_of_us

if TYPE_CHECKING:
    import gwtel_native

_NS = 1_000_000_000
_GZ_CHUNK = 1 << 20
ABI = 9  # native/src/lib.rs: bumped with every change of the module's Python interface


class NativeUnavailableError(UserError):
    """agent.engine is native but the compiled module is missing or from another version."""


def load_module() -> Any:
    try:
        import gwtel_native
    except ImportError as exc:
        raise NativeUnavailableError(
            f"agent.engine is 'native' but the gwtel_native module cannot be loaded ({exc}): run `make setup` "
            "(it builds native/ with cargo and maturin) or set agent.engine: python"
        ) from None
    if getattr(gwtel_native, "ABI", None) != ABI:
        raise NativeUnavailableError("gwtel_native is from another version of the project: run `make setup` again")
    return gwtel_native


@lru_cache(maxsize=1)
def bucket_thresholds() -> list[int]:
    """Smallest microsecond value of each histogram bucket 1..MAX_BUCKET, found with `bucket_of_us` itself.

    The engine maps a sample to a bucket by binary search over these, so it uses exactly the Python
    bucketing (float edge guards included) without re-implementing its floating-point arithmetic.
    """
    out: list[int] = []
    lo = 1
    for b in range(1, MAX_BUCKET + 1):
        hi = max(lo, 1)
        while bucket_of_us(hi) < b:
            hi *= 2
        while lo < hi:  # smallest v in [lo, hi] with bucket_of_us(v) >= b
            mid = (lo + hi) // 2
            if bucket_of_us(mid) >= b:
                hi = mid
            else:
                lo = mid + 1
        out.append(lo)
    return out


class NativeMeterView:
    """What callers read from `Agent.meter`: the next sequence number and the meter's counters."""

    def __init__(self, first_seq: int, sampling_rate: int) -> None:
        self.next_seq = first_seq
        self.sampling_rate = sampling_rate
        self._stats = MeterStats()

    @property
    def stats(self) -> MeterStats:
        return self._stats


def engine_classification(classifier: Classifier, link_id: str) -> dict[str, Any]:
    """The engine's classification arguments: per-address answers of a PartnerClassifier (cached in the engine),
    else the classifier itself once per flow."""
    if isinstance(classifier, PartnerClassifier):
        return {"sides": classifier.sides_of_packed, "rules": classifier.engine_rules()}

    def per_flow(src: bytes, dst: bytes) -> tuple[str, str, str, int, bool]:
        c = classifier.classify(ip_text(src), ip_text(dst), 4 if len(src) == 4 else 6, link_id)
        return c.direction, c.partner, c.remote_country, c.remote_asn, c.remote_is_initiator

    rules: EngineRules = ("unknown", DOMESTIC, UNKNOWN_COUNTRY, [], [], [])
    return {"classify": per_flow, "rules": rules}


def record_args() -> dict[str, Any]:
    """What every engine that encodes FlowRecords is given: the schema's fields (checked against the engine's) and
    the handshake histogram bounds of the per-partner metrics."""
    return {"fields": [f.name for f in FLOW_RECORD_FIELDS], "handshake_bounds": list(HANDSHAKE_RTT_BUCKETS)}


class NativeAgent:
    """Drop-in for `Agent` in file replay: `replay_file` per capture, then `finish`."""

    def __init__(
        self,
        cfg: AgentConfig,
        classifier: Classifier,
        sink: RecordSink | BatchSink,
        *,
        first_seq: int = 0,
        sampling_rate: int = 0,
        sampling_mode: str = "packet",
        apps: AppClassifier = NO_CLASSES,
    ) -> None:
        mod = load_module()
        self.cfg = cfg
        self.counters = AgentCounters()
        self.meter = NativeMeterView(first_seq, sampling_rate or cfg.sampling_rate)
        self.partners = PartnerTally()
        self.fragments = FragmentStats()
        self._write = batch_writer(sink)
        self.over_snaplen = 0  # file records longer than their snap length, read whole (as tshark reads them)
        # the engines' per-address classification cache: lookups, misses (classifier calls), cache_clears, cache_size
        self.address_cache: dict[str, int] = {}
        mc = meter_config(cfg)
        dc = DecodeConfig(decap_gre=cfg.decap_gre, decap_vxlan=cfg.decap_vxlan, decap_gtp=cfg.decap_gtp)
        ft = FragmentTracker()
        self._engine_args: dict[str, Any] = dict(
            idle_ns=round(mc.idle_timeout_s * _NS),
            active_ns=round(mc.active_timeout_s * _NS),
            grace_ns=round(mc.tcp_close_grace_s * _NS),
            tick_ns=max(1, round(mc.timer_tick_s * _NS)),
            ooo_ns=round(mc.ooo_threshold_s * _NS),
            max_flows=mc.max_flows,
            max_pending_ts=mc.max_pending_ts,
            max_pending_echo=mc.max_pending_echo,
            frag_max=ft.max_datagrams,
            frag_timeout_ns=ft.timeout_ns,
            decap_gre=dc.decap_gre,
            decap_vxlan=dc.decap_vxlan,
            decap_gtp=dc.decap_gtp,
            vxlan_port=dc.vxlan_port,
            gtp_port=dc.gtp_port,
            bucket_thresholds=bucket_thresholds(),
            agent_id=cfg.agent_id,
            link_id=cfg.link_id,
            sampling_rate=sampling_rate or cfg.sampling_rate,
            sampling_mode=sampling_mode,
            apps=apps.engine_rules(),
            **record_args(),
            **engine_classification(classifier, cfg.link_id),
            anon_key=engine_key(cfg.anonymise),
        )
        self._mod = mod
        # Engines draining into this agent (file replay: one; live capture: one per ring) and the counters each
        # reported last, summed into `counters` and `meter.stats`. `lock` serialises draining between threads.
        self.lock = threading.Lock()
        self._snapshots: dict[int, dict[str, Any]] = {}
        self._engine: gwtel_native.Engine = self.new_engine()

    def new_engine(self, **overrides: Any) -> gwtel_native.Engine:
        """One more engine of this agent's configuration (a live capture worker's); `overrides` for tests."""
        eng: gwtel_native.Engine = self._mod.Engine(**{**self._engine_args, **overrides})
        return eng

    # ------------------------------------------------------------------ files

    def replay_file(self, path: str | PathLike[str]) -> tuple[int, CaptureError | None]:
        """Meter one capture file; returns its frames and, for a file damaged midway, the damage.

        A file that cannot be opened at all raises CaptureError. A damaged one is metered up to the damage
        and the frames read before it are returned with the error, as the reference reader reports them.
        """
        with open_capture(path) as reader:  # the reference reader's own open and header checks
            compressed = reader.compressed
        eng = self._engine
        ref_error: CaptureError | None = None
        limit: int | None = None
        if compressed:
            ref_error, limit = self._gzip_damage(path)
        eng.begin(compressed, limit)
        try:
            if compressed:
                try:
                    with gzip.open(path, "rb") as g:
                        while chunk := g.read(_GZ_CHUNK):
                            eng.push(chunk)
                            self._drain()
                except (OSError, EOFError, zlib.error):
                    if ref_error is None:  # pragma: no cover - the first pass read the same stream cleanly
                        raise
            else:
                eng.push_file(str(path))
        finally:
            frames, _skipped_ts, _skipped_blocks, err, over_snaplen = eng.end()
            self.over_snaplen += over_snaplen
            self._drain()
        if ref_error is not None:
            return frames, ref_error
        if err is not None:
            return frames, CaptureError(path, err[0], err[1], err[2])
        return frames, None

    @staticmethod
    def _gzip_damage(path: str | PathLike[str]) -> tuple[CaptureError | None, int | None]:
        """A damaged gzip stream stops where the reference reader stops: its error and frame count."""
        try:
            with gzip.open(path, "rb") as g:
                while g.read(_GZ_CHUNK):
                    pass
        except (OSError, EOFError, zlib.error):
            pass
        else:
            return None, None
        with open_capture(path) as reader:
            try:
                for _ in reader:
                    pass
            except CaptureError as exc:
                return exc, reader.stats.frames
        return None, None  # pragma: no cover - the reference read it after all

    def feed_batch(self, frames: Sequence[RawFrame]) -> None:
        """Meter frames a paced replay read and paced (in order), in one native call."""
        self._engine.feed([(f.ts_ns, f.linktype, f.data, f.wire_len) for f in frames])
        self._drain()

    def tick(self, now_ns: int) -> None:
        self._engine.advance(now_ns)
        self._drain()

    def finish(self) -> None:
        self._engine.flush()
        self._drain()

    def drain(self, engine: gwtel_native.Engine) -> None:
        """Records and counters of one of this agent's engines (thread-safe; the engine must be idle)."""
        with self.lock:
            self._drain(engine)

    # ------------------------------------------------------------------ records and counters

    def _drain(self, engine: gwtel_native.Engine | None = None) -> None:
        eng = self._engine if engine is None else engine
        count, keys, values, traffic, handshake, per_partner = eng.take(self.meter.next_seq)
        if count:
            self.meter.next_seq += count
            self.counters.records_emitted += count
            self.partners.add_batch(traffic, handshake, per_partner)
            self._write(EncodedBatch(count, keys, values))
        self._snapshots[id(eng)] = eng.counters()
        self._sync_counters()

    def _sync_counters(self) -> None:
        snaps = list(self._snapshots.values())
        c: dict[str, Any] = {}
        for k in snaps[0]:
            if isinstance(snaps[0][k], dict):
                c[k] = sum((Counter(s[k]) for s in snaps), Counter())
            else:
                c[k] = sum(s[k] for s in snaps)
        ac = self.counters
        ac.packets_seen = _int(c["packets_seen"])
        ac.wire_bytes_seen = _int(c["wire_bytes_seen"])
        ac.packets_decoded = _int(c["packets_decoded"])
        ac.ip_bytes_decoded = _int(c["ip_bytes_decoded"])
        ac.rejected = Counter(c["rejected"])
        st = self.meter.stats
        st.packets = _int(c["meter_packets"])
        st.bytes = _int(c["meter_bytes"])
        st.flows_created = _int(c["flows_created"])
        st.records = _int(c["records"])
        st.exported = dict(c["exported"])
        st.evicted = _int(c["evicted"])
        st.reoriented = _int(c["reoriented"])
        st.out_of_order = _int(c["out_of_order"])
        st.active = _int(c["active"])
        fs = self.fragments
        fs.first_fragments = _int(c["frag_first"])
        fs.attributed = _int(c["frag_attributed"])
        fs.orphans = _int(c["frag_orphans"])
        fs.expired = _int(c["frag_expired"])
        fs.evicted = _int(c["frag_evicted"])
        self.address_cache = {k: _int(c[f"address_{k}"]) for k in ("lookups", "misses", "cache_clears", "cache_size")}

    def table_bytes(self) -> int:
        """Heap bytes of the native flow table and per-flow state (the engine's own allocation accounting)."""
        return self._engine.table_bytes()

    def table_breakdown(self) -> dict[str, int]:
        """`table_bytes` by component (flow slots, index, timers, TCP and latency state...)."""
        return self._engine.table_breakdown()


def _int(v: int | dict[str, int]) -> int:
    assert isinstance(v, int)
    return v
