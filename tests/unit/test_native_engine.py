"""The native engine against the Python reference: identical FlowRecords, reject counters and capture errors.

Inputs: synthetic gateway traffic (several seeds and mixes) and variants made from it by hand (IPv4 fragments,
reordered neighbours, 1:N sampling, cut frames, random header bytes, a tiny flow table, short timeouts, gzip).
The shared corpus is compared in tests/corpus/test_native_corpus.py.
"""

from __future__ import annotations

import gc
import gzip
import random
import struct
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from ingest.classification import Classification
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.native import NativeAgent, bucket_thresholds
from ingest.packet import RawFrame
from ingest.partners import PartnersConfig
from ingest.sources import open_capture
from ingest.synth import SynthConfig, generate
from schemas.flow_record import FlowRecord
from schemas.histogram import MAX_BUCKET, bucket_of_us
from tests.engines import same_records
from tests.packets import Iface, pcap_bytes, pcapng_bytes

pytestmark = pytest.mark.timeout(300)


# ------------------------------------------------------------------ hand-made variants of a capture


def _frames(path: Path) -> list[RawFrame]:
    with open_capture(path) as r:
        return list(r)


def _fragment(frame: RawFrame) -> list[RawFrame]:
    """Split the IPv4 packet of an Ethernet (optionally 802.1Q) frame in two fragments at an 8-byte boundary."""
    d = frame.data
    l2 = 18 if d[12:14] == b"\x81\x00" else 14
    ip = d[l2:]
    hl = (ip[0] & 0x0F) * 4
    payload = ip[hl:]
    if len(payload) < 16:
        return [frame]
    cut = (len(payload) // 2) & ~7
    out = []
    for off, part, more in ((0, payload[:cut], True), (cut, payload[cut:], False)):
        hdr = bytearray(ip[:hl])
        struct.pack_into("!H", hdr, 2, hl + len(part))
        struct.pack_into("!H", hdr, 6, (0x2000 if more else 0) | (off // 8))
        data = d[:l2] + bytes(hdr) + part
        out.append(RawFrame(frame.ts_ns + (1000 if off else 0), frame.linktype, data, len(data)))
    return out


def _variant(src: Path, dst: Path, change: Callable[[list[RawFrame]], Iterable[RawFrame]]) -> Path:
    dst.write_bytes(pcap_bytes(change(_frames(src)), snaplen=65535))
    return dst


def _fragments(frames: list[RawFrame]) -> Iterable[RawFrame]:
    rng = random.Random(3)
    for f in frames:
        if rng.random() < 0.15:
            parts = _fragment(f)
            if len(parts) == 2 and rng.random() < 0.3:
                parts.reverse()  # a later fragment before its first one: orphan
            yield from parts
        else:
            yield f


def _reorder(frames: list[RawFrame]) -> Iterable[RawFrame]:
    rng = random.Random(5)
    out = list(frames)
    for i in range(len(out) - 1):
        if rng.random() < 0.1:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def _sample(frames: list[RawFrame]) -> Iterable[RawFrame]:
    return frames[::3]


def _cut(frames: list[RawFrame]) -> Iterable[RawFrame]:
    for i, f in enumerate(frames):  # snap length effects: truncated headers of every kind
        yield RawFrame(f.ts_ns, f.linktype, f.data[: (i * 7) % 90], f.wire_len) if i % 11 == 0 else f


def _mutate(frames: list[RawFrame]) -> Iterable[RawFrame]:
    """Random bytes of the headers changed: every decoder branch and reject reason, bad lengths, odd flags."""
    rng = random.Random(9)
    for f in frames:
        if rng.random() < 0.2 and len(f.data) > 20:
            d = bytearray(f.data)
            for _ in range(rng.randint(1, 4)):
                d[rng.randrange(min(len(d), 80))] = rng.randrange(256)
            yield RawFrame(f.ts_ns, f.linktype, bytes(d), f.wire_len)
        else:
            yield f


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("native")
    out = {}
    for name, sc in {
        "s1": SynthConfig(seed=1, flows=1500, duration_s=60),
        "s2": SynthConfig(seed=2, flows=800, duration_s=30, tcp_share=0.5, icmp_share=0.5, retrans_share=0.3),
        "s3": SynthConfig(seed=3, flows=600, duration_s=20, ingress_share=0.7, outlier_share=0.2),
    }.items():
        generate(sc, d / f"{name}.pcap", d / f"{name}.json")
        out[name] = d / f"{name}.pcap"
    base = out["s1"]
    out["frag"] = _variant(base, d / "frag.pcap", _fragments)
    out["reorder"] = _variant(base, d / "reorder.pcap", _reorder)
    out["sample"] = _variant(base, d / "sample.pcap", _sample)
    out["cut"] = _variant(out["s2"], d / "cut.pcap", _cut)
    out["mutate"] = _variant(out["s2"], d / "mutate.pcap", _mutate)
    gz = d / "s3.pcap.gz"
    gz.write_bytes(gzip.compress(out["s3"].read_bytes()))
    out["gz"] = gz
    return out


def test_bucket_thresholds_reproduce_python_bucketing() -> None:
    th = bucket_thresholds()
    assert len(th) == MAX_BUCKET
    for b, v in enumerate(th, start=1):
        assert bucket_of_us(v) >= b > bucket_of_us(v - 1)  # v is the smallest value of bucket b or above


@pytest.mark.parametrize("name", ["s1", "s2", "s3", "frag", "reorder", "sample", "cut", "mutate", "gz"])
def test_synth_captures_match(synth: dict[str, Path], name: str) -> None:
    ref = same_records(AgentConfig(), [synth[name]])
    assert len(ref.records) > 100  # the comparison had something to compare
    # a capture agent has no exporter, interface index, routing data or one-way marker: the defaults
    export_fields = {(r.exporter, r.in_if, r.out_if, r.src_asn, r.dst_asn, r.next_hop, r.one_way) for r in ref.records}
    assert export_fields == {("", 0, 0, 0, 0, "", 0)}
    if name in ("cut", "mutate"):
        assert len(ref.counters.rejected) >= 3  # and damaged frames of several kinds


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_with_several_interfaces_matches(synth: dict[str, Path], tmp_path: Path, big_endian: bool) -> None:
    # Ethernet, raw IP, Linux SLL and SLL2 interfaces with µs, ns, 2^-20 s and 10^-4 s clocks and offsets
    ifaces = [
        Iface(linktype=1),
        Iface(linktype=101, tsresol=9, tsoffset=-3),
        Iface(linktype=113, tsresol=0x80 | 20, snaplen=200),
        Iface(linktype=276, tsresol=4, tsoffset=5),
    ]
    packets = []
    for i, f in enumerate(_frames(synth["s3"])):
        k = i % 4
        l2 = 18 if f.data[12:14] == b"\x81\x00" else 14
        ip = f.data[l2:]
        sec_ns = f.ts_ns
        if k == 0:
            packets.append((0, sec_ns // 1000, f.data, f.wire_len))
        elif k == 1:
            packets.append((1, sec_ns, ip, len(ip)))
        elif k == 2:
            sll = struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, 0x0800)
            packets.append((2, (sec_ns << 20) // 1_000_000_000, (sll + ip)[:200], len(sll + ip)))
        else:
            sll2 = struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, b"\x02" * 8)
            packets.append((3, sec_ns // 100_000, sll2 + ip, len(sll2 + ip)))
    path = tmp_path / "multi.pcapng"
    path.write_bytes(pcapng_bytes(ifaces, packets, big_endian=big_endian, extra_blocks=[(5, b"\0" * 16)]))
    ref = same_records(AgentConfig(), [path])
    assert len(ref.records) > 100


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_records_longer_than_the_snap_length_are_read_whole_by_both_engines(
    synth: dict[str, Path], tmp_path: Path, fmt: str
) -> None:
    frames = _frames(synth["s2"])
    path = tmp_path / f"oversnap.{fmt}"
    if fmt == "pcap":
        path.write_bytes(pcap_bytes(frames, snaplen=40))  # most records are longer than 40 bytes
    else:
        path.write_bytes(
            pcapng_bytes([Iface(linktype=1, snaplen=40)], [(0, f.ts_ns // 1000, f.data, f.wire_len) for f in frames])
        )
    ref = same_records(AgentConfig(), [path])
    assert ref.frames == [len(frames)] and len(ref.records) > 100
    with open_capture(path) as reader:
        list(reader)
        over = reader.stats.over_snaplen
    assert over == sum(len(f.data) > 40 for f in frames) > 0
    agent = NativeAgent(AgentConfig(), PartnerClassifier(PartnersConfig()), lambda _r: None)
    agent.replay_file(path)
    assert agent.over_snaplen == over


def test_paced_replay_matches(tmp_path: Path) -> None:
    # Paced replay runs the native engine too: frames read and paced by Python, metered in batches.
    path = tmp_path / "paced.pcap"
    generate(SynthConfig(seed=5, flows=60, duration_s=1), path, tmp_path / "paced.json")
    ref = same_records(AgentConfig(idle_timeout_s=0.3), [path], pace=True)
    assert len(ref.records) > 30


def test_short_timeouts_tiny_table_and_sampling_rate_match(synth: dict[str, Path]) -> None:
    cfg = AgentConfig(idle_timeout_s=0.5, active_timeout_s=0.2, max_flows=50, sampling_rate=3)
    ref = same_records(cfg, [synth["s1"], synth["reorder"]])
    assert sum(r.end_reason == "evicted" for r in ref.records) > 0
    assert sum(r.end_reason == "active" for r in ref.records) > 0


def test_ipv4_and_ipv6_flows_through_a_tiny_table_match(tmp_path: Path) -> None:
    """IPv6 keys live out of line in the native table: evictions reuse their slots, replies reorient flows."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Packet

    from tests.packets import frame_of

    rng = random.Random(11)
    t = 1_700_000_000 * 1_000_000_000
    frames = []
    for i in range(400):
        n = rng.randrange(12)
        v6 = rng.random() < 0.5
        a, b = (
            (f"2001:db8::{n + 1:x}", f"2001:db8:1::{n % 5 + 1:x}")
            if v6
            else (f"10.0.0.{n + 1}", f"203.0.113.{n % 5 + 1}")
        )
        if rng.random() < 0.5:
            a, b = b, a
        l3: Packet = IPv6(src=a, dst=b) if v6 else IP(src=a, dst=b)
        flags = rng.choice(["S", "SA", "A", "PA", "FA"])
        l4: Packet = (
            UDP(sport=40000 + n, dport=53)
            if rng.random() < 0.3
            else TCP(sport=40000 + n, dport=443, flags=flags, seq=i, ack=i)
        )
        t += rng.randrange(1, 50) * 1_000_000
        frames.append(frame_of(l3 / l4, ts_ns=t, linktype=101))
    path = tmp_path / "mixed.pcap"
    path.write_bytes(pcap_bytes(frames, linktype=101, nanosecond=True))
    run = same_records(AgentConfig(max_flows=6, idle_timeout_s=1.0, active_timeout_s=3.0), [path])
    assert any(r.ip_version == 6 for r in run.records) and any(r.ip_version == 4 for r in run.records)


def _groups_classifier() -> PartnerClassifier:
    """Groups by prefix (with an AS number), by country and a domestic prefix: every branch of the per-flow rule."""
    return PartnerClassifier(
        PartnersConfig.model_validate(
            {
                "domestic": {"countries": ["CN"], "prefixes": ["198.51.100.0/26"]},
                "groups": {
                    "by_prefix": {"prefixes": [{"prefix": "203.0.113.0/25", "asn": 64500}, "2001:db8:1::/48"]},
                    "by_country": {"countries": ["US", "JP", "DE", "KR"]},
                },
                "fallback": "rest",
                "private_is_domestic": False,
            }
        )
    )


def test_engine_side_classification_matches_with_groups_of_every_kind(synth: dict[str, Path], tmp_path: Path) -> None:
    run = same_records(AgentConfig(), [synth["s1"], synth["s3"]], classifier=_groups_classifier())
    assert len({(r.partner, r.direction) for r in run.records}) >= 3


def test_a_link_group_names_the_partner_of_remote_sides_no_prefix_claims(synth: dict[str, Path]) -> None:
    cls = PartnerClassifier(
        PartnersConfig.model_validate({"groups": {"cable": {"links": ["link-9"]}, "pfx": {"prefixes": ["8.0.0.0/8"]}}})
    )
    run = same_records(AgentConfig(link_id="link-9"), [synth["s2"]], classifier=cls)
    assert any(r.partner == "cable" for r in run.records)


class _OtherClassifier:
    """A classifier that is not a PartnerClassifier: the engine calls it once per flow."""

    def __init__(self) -> None:
        self._inner = _groups_classifier()
        self.calls = 0

    def classify(self, src_ip: str, dst_ip: str, ip_version: int, link_id: str) -> Classification:
        self.calls += 1
        c = self._inner.classify(src_ip, dst_ip, ip_version, link_id)
        return Classification(c.direction, f'{c.partner}"é\n', c.remote_country, c.remote_asn, c.remote_is_initiator)


def test_any_other_classifier_is_called_per_flow_and_gives_the_same_records(synth: dict[str, Path]) -> None:
    cls = _OtherClassifier()
    run = same_records(AgentConfig(), [synth["s2"]], classifier=cls)
    assert run.records and all(r.partner.endswith('"é\n') for r in run.records)
    assert cls.calls >= 2 * len(run.records)  # both engines, at least once per record


def test_a_tiny_address_cache_is_emptied_when_full_and_changes_no_record(synth: dict[str, Path]) -> None:
    from ingest.agent import Agent
    from ingest.replay import replay_files
    from tests.engines import Captured

    cls = _groups_classifier()
    ref: list[FlowRecord] = []
    replay_files(Agent(AgentConfig(), cls, ref.append), [synth["s2"]])
    out = Captured()
    agent = NativeAgent(AgentConfig(), cls, out)
    agent._engine = agent.new_engine(address_cache=3)
    replay_files(agent, [synth["s2"]])
    assert out.records == ref and len(ref) > 100
    cache = agent.address_cache
    assert cache["cache_clears"] > 10 and cache["cache_size"] <= 3
    assert cache["misses"] > cache["cache_clears"] * 3


def test_table_breakdown_adds_up_to_table_bytes(synth: dict[str, Path]) -> None:
    from ingest.native import NativeAgent
    from tests.engines import _CLASSIFIER

    agent = NativeAgent(AgentConfig(idle_timeout_s=1e9, active_timeout_s=1e9), _CLASSIFIER, lambda _r: None)
    eng = agent._engine
    eng.begin(False)
    eng.push_file(str(synth["s2"]))
    parts = agent.table_breakdown()
    assert int(eng.counters()["active"]) > 0  # type: ignore[arg-type]
    assert sum(parts.values()) == agent.table_bytes()
    assert parts["flows"] > 0 and parts["tcp"] > 0 and parts["latency"] > 0


def test_an_engine_can_be_freed_on_another_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cycle collector frees objects on whichever thread it runs (the Kafka client's sender thread too).
    raised: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: raised.append(repr(u.exc_value)))
    holder = [NativeAgent(AgentConfig(), PartnerClassifier(PartnersConfig.default()), lambda _r: None)]
    freer = threading.Thread(target=holder.clear)
    freer.start()
    freer.join()
    gc.collect()
    assert holder == [] and raised == []
