"""Fuzzing, bounded in time: the packet decoder and the Kafka record decoders never raise on any input.

The packet decoder returns a decoded packet or a rejection reason; the whole agent counts every frame as
decoded or rejected. The Kafka decoders (FlowRecord codec, loader row builders) raise only ``RecordError``.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gwtel.config import GwtelConfig
from ingest import linktypes
from ingest.agent import Agent
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.decode import DecodeConfig, decode
from ingest.packet import DecodedPacket, RawFrame
from processors import rows
from processors.rows import aggregate_rows, flow_rows
from processors.tables import FLOWS_RAW
from schemas import codec
from schemas.codec import RecordError
from tests.records import sample_flow

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
ALL_DECAP = DecodeConfig(decap_gre=True, decap_vxlan=True, decap_gtp=True)
LINKTYPES = st.sampled_from([*sorted(linktypes.SUPPORTED), 0xFFFF, 147])

# Frames that start as a valid Ethernet/IPv4/TCP header, so mutations reach the deeper layers.
_ETH_IP_TCP = bytes.fromhex(
    "020000000002020000000001080045000034000140004006000a0a000001cb007109"
    "9c40 01bb 00000001 00000000 8002ffff 00000000 020405b4 01030308 0101 0402".replace(" ", "")
)


@FUZZ
@given(linktype=LINKTYPES, data=st.binary(max_size=300))
def test_decoder_takes_any_bytes(linktype: int, data: bytes) -> None:
    out = decode(RawFrame(1_700_000_000 * 10**9, linktype, data, len(data)), ALL_DECAP)
    assert isinstance(out, DecodedPacket | str)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(_ETH_IP_TCP) - 1), st.integers(0, 255)), max_size=8),
       cut=st.integers(0, len(_ETH_IP_TCP)), wire=st.integers(0, 70_000))  # fmt: skip
def test_decoder_takes_mutated_headers(flips: list[tuple[int, int]], cut: int, wire: int) -> None:
    data = bytearray(_ETH_IP_TCP)
    for pos, value in flips:
        data[pos] = value
    out = decode(RawFrame(1_700_000_000 * 10**9, linktypes.ETHERNET, bytes(data[:cut]), wire), ALL_DECAP)
    assert isinstance(out, DecodedPacket | str)


@settings(max_examples=200, deadline=None, database=None)
@given(frames=st.lists(st.tuples(LINKTYPES, st.binary(max_size=120), st.integers(-(10**12), 10**12)), max_size=40))
def test_agent_counts_every_frame(frames: list[tuple[int, bytes, int]]) -> None:
    emitted: list[Any] = []
    agent = Agent(AgentConfig(agent_id="fuzz"), PartnerClassifier(GwtelConfig().partners), emitted.append)
    for linktype, data, dt in frames:
        agent.feed(RawFrame(1_700_000_000 * 10**9 + dt, linktype, data, len(data)))
    agent.finish()
    c = agent.counters
    assert c.packets_seen == len(frames) == c.packets_decoded + sum(c.rejected.values())
    assert c.records_emitted == len(emitted)


def _only_record_errors(value: bytes) -> None:
    for fn in (codec.decode, flow_rows, aggregate_rows):
        try:
            fn(value)
        except RecordError as exc:
            assert exc.reason and exc.detail


@FUZZ
@given(value=st.binary(max_size=400))
def test_kafka_decoders_take_any_bytes(value: bytes) -> None:
    _only_record_errors(value)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_FIELDS = sorted(codec.to_dict(sample_flow()))


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=4),
       drop=st.lists(st.sampled_from(_FIELDS), max_size=2))  # fmt: skip
def test_kafka_decoders_take_any_field_values(changes: dict[str, Any], drop: list[str]) -> None:
    d = {**codec.to_dict(sample_flow()), **changes}
    for name in drop:
        d.pop(name, None)
    _only_record_errors(json.dumps(d).encode())  # stdlib: also writes integers beyond 64 bits


def _same_verdicts(d: dict[str, Any], latest: int | None) -> bool:
    """The loader's row builder and the record codec on one record: the same verdict; True if accepted."""
    value = json.dumps(d).encode()
    row = _verdict(rows.flow_rows, value, latest)
    try:
        codec.decode(value, latest)
        reference: str | None = None
    except RecordError as exc:
        reference = exc.reason
    if reference is None:
        assert isinstance(row, list) and row[0][0] == FLOWS_RAW, d
    else:
        assert row == reference, d
    return reference is None


def _verdict(fn: Any, value: bytes, latest_ns: int | None) -> Any:
    try:
        return fn(value, latest_ns)
    except RecordError as exc:
        return exc.reason


_BOUNDARY_VALUES: list[Any] = (
    [0, -1, 1, 2, 3, 4, 5, 6, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, True, 1.0,
     946_684_800 * 10**9 - 1, 946_684_800 * 10**9, 4_102_444_800 * 10**9, 4_102_444_800 * 10**9 + 1, None, "", []]
)  # fmt: skip
_BOUNDARY = st.sampled_from(_BOUNDARY_VALUES)
_BIN = st.dictionaries(st.sampled_from(["b", "c", "x"]), _BOUNDARY | _JSON, max_size=3)


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(_FIELDS), _BOUNDARY | _JSON | st.lists(_BIN, max_size=3), max_size=4),
       drop=st.lists(st.sampled_from(_FIELDS), max_size=2),
       latest=st.none() | st.sampled_from([1_700_000_000_999_999_999, 1_700_000_001_000_000_000]))  # fmt: skip
def test_flow_rows_give_the_codec_verdict(changes: dict[str, Any], drop: list[str], latest: int | None) -> None:
    """The loader's row builder (slow path, late topic) accepts exactly what the codec accepts."""
    d = {**codec.to_dict(sample_flow()), **changes}
    for name in drop:
        d.pop(name, None)
    _same_verdicts(d, latest)


def test_flow_rows_agree_on_every_field_at_its_bounds() -> None:
    """Each field alone at each boundary value, each histogram bin at its bounds, and each field missing."""
    base = codec.to_dict(sample_flow())
    accepted = 0
    for name in _FIELDS:
        for v in _BOUNDARY_VALUES:
            accepted += _same_verdicts({**base, name: v}, None)
        accepted += _same_verdicts({k: x for k, x in base.items() if k != name}, None)
    for b in _BOUNDARY_VALUES:
        for c in _BOUNDARY_VALUES:
            accepted += _same_verdicts({**base, "dns_rtt_hist": [{"b": b, "c": c}]}, None)
    accepted += _same_verdicts({**base, "dns_rtt_hist": [{"b": 1, "c": 1, "x": 1}]}, None)
    for latest in (base["last_ns"] - 1, base["last_ns"]):
        accepted += _same_verdicts(base, latest)
    assert 100 < accepted < 2000  # both verdicts occur
