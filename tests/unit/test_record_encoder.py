"""The native record encoder against `schemas.codec.encode` (orjson) and `flow_key`, on arbitrary values: ids
with quotes, backslashes, control characters and non-ASCII text, every integer at its type's extremes, empty and
long histograms; and record addresses against the C library's `inet_ntop`."""

from __future__ import annotations

import dataclasses
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.native import load_module
from ingest.producer import flow_key
from schemas import codec
from schemas.flow_record import FLOW_RECORD_FIELDS, FlowRecord, HistBin

_MOD = load_module()
_U64 = st.integers(0, 2**64 - 1)
_I64 = st.integers(-(2**63), 2**63 - 1)
_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12) | st.sampled_from(
    ['"', "\\", "\n\r\t\b\f", "\x00\x1f\x7f", "é€😀", "\u2028"]
)
_HIST = st.lists(st.builds(HistBin, _U64, _U64), max_size=4).map(tuple)
_OPT = st.none() | _I64


def _strategy(name: str, annotation: object) -> st.SearchStrategy[object]:
    if name.endswith("_hist"):
        return _HIST
    if annotation in ("int | None",):
        return _OPT
    if annotation == "str":
        return _TEXT
    if name in ("first_ns", "last_ns", "export_ns") or name.endswith("_sum_us"):
        return _I64
    return _U64


_RECORDS = st.builds(FlowRecord, **{f.name: _strategy(f.name, f.type) for f in dataclasses.fields(FlowRecord)})


def test_every_field_has_a_strategy_of_its_type() -> None:
    assert [f.name for f in dataclasses.fields(FlowRecord)] == [f.name for f in FLOW_RECORD_FIELDS]
    assert {str(f.type) for f in dataclasses.fields(FlowRecord)} <= {"int", "str", "int | None", "tuple[HistBin, ...]"}


def _values(rec: FlowRecord) -> tuple[object, ...]:
    return tuple(
        [(h.b, h.c) for h in v] if f.name.endswith("_hist") else v
        for f in FLOW_RECORD_FIELDS
        for v in [getattr(rec, f.name)]
    )


@settings(max_examples=400, deadline=None)
@given(_RECORDS)
def test_encoder_writes_what_orjson_writes(rec: FlowRecord) -> None:
    key, value = _MOD.encode_record(_values(rec))
    assert value == codec.encode(rec)
    assert key == flow_key(rec)


def test_a_plain_record() -> None:
    rec = FlowRecord(
        1, 'a"g\\\n', 0, "l", 1, 4, "10.0.0.1", 1, "192.0.2.1", 53, 17, 0, -5, 2**63 - 1, 0, "idle",
        0, 0, 0, 0, 0, 0, 0, 0, None, 3, 1, 2, 2, 2, (HistBin(1, 1),), 0, None, None, 0, (), 0, None, None, 0, (),
        "egress", "p\x01", "ZZ",
    )  # fmt: skip
    key, value = _MOD.encode_record(_values(rec))
    assert value == codec.encode(rec)
    assert value.startswith(b'{"schema_version":1,"agent_id":"a\\"g\\\\\\n","seq":0,')
    assert key == b"10.0.0.1/1>192.0.2.1/53/17"


_GROUP = st.sampled_from([0, 0, 0, 1, 0xFFFF, 0x0102, 0xABCD])


@settings(max_examples=2000, deadline=None)
@given(st.lists(_GROUP, min_size=8, max_size=8) | st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8))
def test_ipv6_text_is_inet_ntop(groups: list[int]) -> None:
    packed = b"".join(g.to_bytes(2, "big") for g in groups)
    assert _MOD.address_text(packed) == socket.inet_ntop(socket.AF_INET6, packed)


@given(st.binary(min_size=4, max_size=4))
def test_ipv4_text_is_inet_ntop(packed: bytes) -> None:
    assert _MOD.address_text(packed) == socket.inet_ntop(socket.AF_INET, packed)


def test_the_engine_refuses_another_schema() -> None:
    from ingest.classify import PartnerClassifier
    from ingest.config import AgentConfig
    from ingest.native import NativeAgent
    from ingest.partners import PartnersConfig

    agent = NativeAgent(AgentConfig(), PartnerClassifier(PartnersConfig.default()), lambda r: None)
    args = dict(agent._engine_args)
    args["fields"] = [*args["fields"][:-1], "something_else"]
    with pytest.raises(ValueError, match="FLOW_RECORD_FIELDS"):
        _MOD.Engine(**args)
