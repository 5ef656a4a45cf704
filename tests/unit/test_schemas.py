"""The FlowRecord field table, the dataclass, the codec and the histogram agree with each other."""

from __future__ import annotations

import dataclasses
import math
import random

import orjson
import pytest

from schemas import codec
from schemas.flow_record import (
    FLOW_RECORD_FIELDS,
    FlowRecord,
    clickhouse_columns_ddl,
    flink_columns_ddl,
)
from schemas.histogram import RTT_GAMMA, bucket_lower_us, bucket_mid_us, bucket_of_us, bucket_upper_us
from tests.records import sample_flow

REQUIRED_WIRE_NAMES = {
    "bytes_fwd", "packets_fwd", "bytes_rev", "packets_rev", "first_ns", "last_ns", "src_ip", "src_port",
    "dst_ip", "dst_port", "protocol", "vlan", "hs_rtt_ext_us", "hs_rtt_int_us", "direction", "partner",
}  # fmt: skip


def test_dataclass_matches_field_table() -> None:
    assert [f.name for f in dataclasses.fields(FlowRecord)] == [f.name for f in FLOW_RECORD_FIELDS]


def test_stable_wire_names_present() -> None:
    assert {f.name for f in FLOW_RECORD_FIELDS} >= REQUIRED_WIRE_NAMES


def test_ddl_lists_every_field_once() -> None:
    for ddl in (flink_columns_ddl(), clickhouse_columns_ddl()):
        names = [line.split("`")[1] for line in ddl.splitlines()]
        assert names == [f.name for f in FLOW_RECORD_FIELDS]


def test_codec_round_trip() -> None:
    rec = sample_flow()
    assert codec.decode(codec.encode(rec)) == rec


def test_codec_round_trip_with_export_fields() -> None:
    rec = dataclasses.replace(sample_flow(), exporter="2001:db8::fe", in_if=7, out_if=2**32 - 1, src_asn=64_496,
                              dst_asn=4_200_000_000, next_hop="192.0.2.254", one_way=1)  # fmt: skip
    assert codec.decode(codec.encode(rec)) == rec


def test_a_record_without_the_export_fields_reads_as_their_defaults() -> None:
    # Records written before the fields existed (and every capture agent's) stay valid.
    d = codec.to_dict(sample_flow())
    for name in ("exporter", "in_if", "out_if", "src_asn", "dst_asn", "next_hop", "one_way"):
        d.pop(name)
    rec = codec.decode(orjson.dumps(d))
    assert (rec.exporter, rec.in_if, rec.out_if, rec.src_asn, rec.dst_asn, rec.next_hop, rec.one_way) == (
        "", 0, 0, 0, 0, "", 0)  # fmt: skip


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x00\xffnot json", "not_json"),
        (b"[1,2]", "bad_type"),
        (orjson.dumps({"schema_version": 2}), "wrong_version"),
    ],
)
def test_codec_rejects_garbage(value: bytes, reason: str) -> None:
    with pytest.raises(codec.RecordError) as info:
        codec.decode(value)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.pop("bytes_fwd"), "missing_field"),
        (lambda d: d.update(bytes_fwd=-5), "bad_value"),
        (lambda d: d.update(bytes_fwd="1.5"), "bad_type"),  # a quoted integer ("12") is read as one
        (lambda d: d.update(bytes_fwd=True), "bad_type"),
        (lambda d: d.update(src_ip="999.1.2.3"), "bad_value"),
        (lambda d: d.update(src_port=70_000), "out_of_range"),
        (lambda d: d.update(first_ns=5, last_ns=6), "bad_value"),
        (lambda d: d.update(last_ns=d["first_ns"] - 1), "bad_value"),
        (lambda d: d.update(sampling_rate=0), "bad_value"),
        (lambda d: d.update(ts_rtt_hist=[{"b": 1}]), "bad_type"),
        (lambda d: d.update(partner=3), "bad_type"),
        (lambda d: d.update(packets_fwd=0, packets_rev=0), "bad_value"),
        (lambda d: d.update(exporter="router1"), "bad_value"),
        (lambda d: d.update(next_hop="10.0.0.256"), "bad_value"),
        (lambda d: d.update(in_if=2**32), "out_of_range"),
        (lambda d: d.update(src_asn=-1), "bad_value"),
        (lambda d: d.update(one_way=2), "bad_value"),
        (lambda d: d.update(one_way=True), "bad_type"),
    ],
)
def test_codec_names_what_is_wrong(mutate: object, reason: str) -> None:
    d = codec.to_dict(sample_flow())
    mutate(d)  # type: ignore[operator]
    with pytest.raises(codec.RecordError) as info:
        codec.decode(orjson.dumps(d))
    assert info.value.reason == reason


def test_bucket_bounds_contain_value() -> None:
    rng = random.Random(1)
    values = [0, 1, 2, 3, 50, 51, 999, 1000, 8000, 10_000, 3_599_999_999]
    values += [rng.randint(1, 10**8) for _ in range(20_000)]
    for v in values:
        b = bucket_of_us(v)
        assert bucket_lower_us(b) <= v < bucket_upper_us(b), v


def test_bucket_midpoint_within_one_percent() -> None:
    for b in range(1, 1100):
        lo, hi, mid = bucket_lower_us(b), bucket_upper_us(b), bucket_mid_us(b)
        assert hi / lo == pytest.approx(RTT_GAMMA)
        assert abs(mid - lo) / lo <= 0.01 and abs(hi - mid) / mid <= 0.01


def test_sub_ms_resolution_below_10ms() -> None:
    b = bucket_of_us(9_999)
    assert bucket_upper_us(b) - bucket_lower_us(b) < 1000
    assert math.isclose(bucket_upper_us(b) / bucket_lower_us(b), 1.02)
