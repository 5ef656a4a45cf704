"""The native agent engine: `Agent`'s per-packet work in Rust (`native/`, module `gwtel_native`), file by file.

Reading (pcap, pcapng, gzip through Python's own decompressor), decoding, fragment attribution, the flow table
and every latency tracker run in one native call per chunk of a file, with the semantics of the Python
reference (`ingest.agent`, `ingest.decode`, `ingest.flowmeter`, ...); `tests/unit/test_native_engine.py`
compares both engines record for record. Python still classifies each finished flow and builds its
FlowRecord; during metering the engine only needs to know which side is remote (for the TS, ICMP and DNS
trackers), which it asks once per address (`PartnerClassifier`) or once per flow (any other classifier).

Live capture runs the same engine behind a TPACKET_V3 ring (`ingest.capture`): one engine per ring (fanout
worker), all draining into one agent, so records share one sequence and one set of counters. Paced replay
too, fed the frames the Python reader read and paced, in batches of those due together.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from os import PathLike
from typing import TYPE_CHECKING, Any

from gwtel.errors import UserError
from ingest.agent import AgentCounters, RecordSink, meter_config
from ingest.agent_metrics import PartnerTally
from ingest.classification import Classifier
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.decode import DecodeConfig
from ingest.flowkey import ip_text
from ingest.flowmeter import MeterStats
from ingest.fragments import FragmentStats, FragmentTracker
from ingest.packet import RawFrame
from ingest.sources import CaptureError, open_capture
from schemas.flow_record import FLOW_SCHEMA_VERSION, FlowRecord, HistBin
from schemas.histogram import MAX_BUCKET, bucket_of_us

if TYPE_CHECKING:
    import gwtel_native

_NS = 1_000_000_000
_GZ_CHUNK = 1 << 20
_Summary = tuple[int, int | None, int | None, int, tuple[HistBin, ...]]
_NO_SUMMARY: _Summary = (0, None, None, 0, ())


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
    if getattr(gwtel_native, "ABI", None) != 4:
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


def _summary(s: tuple[int, int, int, int, tuple[tuple[int, int], ...]] | None) -> _Summary:
    if s is None:
        return _NO_SUMMARY
    return s[0], s[1], s[2], s[3], tuple(HistBin(b, c) for b, c in s[4])


class NativeAgent:
    """Drop-in for `Agent` in file replay: `replay_file` per capture, then `finish`."""

    def __init__(
        self,
        cfg: AgentConfig,
        classifier: Classifier,
        sink: RecordSink,
        *,
        first_seq: int = 0,
        sampling_rate: int = 0,
        sampling_mode: str = "packet",
    ) -> None:
        mod = load_module()
        self.cfg = cfg
        self.counters = AgentCounters()
        self.meter = NativeMeterView(first_seq, sampling_rate or cfg.sampling_rate)
        self.partners = PartnerTally()
        self.fragments = FragmentStats()
        self._classifier = classifier
        self._sink = sink
        self._sampling = sampling_rate or cfg.sampling_rate
        self._sampling_mode = sampling_mode
        self.over_snaplen = 0  # file records longer than their snap length, read whole (as tshark reads them)
        mc = meter_config(cfg)
        dc = DecodeConfig(decap_gre=cfg.decap_gre, decap_vxlan=cfg.decap_vxlan, decap_gtp=cfg.decap_gtp)
        ft = FragmentTracker()
        domestic: Callable[[bytes], bool] | None = None
        pair: Callable[[bytes, bytes], bool] | None = None
        if isinstance(classifier, PartnerClassifier):
            side = classifier.side

            def domestic(addr: bytes) -> bool:
                s = side(ip_text(addr))
                return s is not None and s.domestic

        else:
            link = cfg.link_id

            def pair(src: bytes, dst: bytes) -> bool:
                c = classifier.classify(ip_text(src), ip_text(dst), 4 if len(src) == 4 else 6, link)
                return c.remote_is_initiator

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
            domestic=domestic,
            remote_is_initiator=pair,
        )
        self._mod = mod
        # Engines draining into this agent (file replay: one; live capture: one per ring) and the counters each
        # reported last, summed into `counters` and `meter.stats`. `lock` serialises draining between threads.
        self.lock = threading.Lock()
        self._snapshots: dict[int, dict[str, Any]] = {}
        self._engine: gwtel_native.Engine = self.new_engine()

    def new_engine(self) -> gwtel_native.Engine:
        """One more engine of this agent's configuration (a live capture worker's)."""
        eng: gwtel_native.Engine = self._mod.Engine(**self._engine_args)
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
        classify = self._classifier.classify
        agent_id, link_id, sampling, mode = self.cfg.agent_id, self.cfg.link_id, self._sampling, self._sampling_mode
        sink = self._sink
        seq = self.meter.next_seq
        for t in eng.take():
            (reason, export_ns, ver, src, sport, dst, dport, proto, vlan, first, last, bf, pf, br, pr, ff, fr, rf, rr,
             resp, init, ts, icmp, dns) = t  # fmt: skip
            src_t, dst_t = ip_text(src), ip_text(dst)
            cls = classify(src_t, dst_t, ver, link_id)
            ext, inner = (init, resp) if cls.remote_is_initiator else (resp, init)
            s_ts, s_icmp, s_dns = _summary(ts), _summary(icmp), _summary(dns)
            rec = FlowRecord(
                FLOW_SCHEMA_VERSION, agent_id, seq, link_id, sampling, ver, src_t, sport, dst_t, dport, proto, vlan,
                first, last, export_ns, reason, bf, pf, br, pr, ff, fr, rf, rr, ext, inner, *s_ts, *s_icmp, *s_dns,
                cls.direction, cls.partner, cls.remote_country, cls.remote_asn, mode,
            )  # fmt: skip
            seq += 1
            self.meter.next_seq = seq
            self.counters.records_emitted += 1
            self.partners.add(rec)
            sink(rec)
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

    def table_bytes(self) -> int:
        """Heap bytes of the native flow table and per-flow state (the engine's own allocation accounting)."""
        return self._engine.table_bytes()

    def table_breakdown(self) -> dict[str, int]:
        """`table_bytes` by component (flow slots, index, timers, TCP and latency state...)."""
        return self._engine.table_breakdown()


def _int(v: int | dict[str, int]) -> int:
    assert isinstance(v, int)
    return v
