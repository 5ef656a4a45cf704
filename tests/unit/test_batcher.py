"""Batch bounds and tokens, announced ranges, retry delays, and record -> row validation of the loader."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from processors import rows
from processors.batcher import PartitionBatcher, dedup_token
from processors.intent import parse_pending, pending_metadata
from processors.loader import Backoff
from processors.rows import aggregate_rows, check_value, flow_rows, late_rows
from processors.tables import AGG_TABLES, FLOWS_RAW
from schemas import codec
from schemas.codec import RecordError
from schemas.flow_record import FLOW_RECORD_FIELDS, FlowRecord, HistBin
from tests.records import sample_flow


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(max_rows: int = 3, max_seconds: float = 2.0) -> tuple[PartitionBatcher[str], FakeClock]:
    clock = FakeClock()
    return PartitionBatcher("gwtel.flows.v1", 4, max_rows, max_seconds, clock=clock), clock


def test_token_names_topic_partition_and_range() -> None:
    assert dedup_token("gwtel.flows.v1", 4, 100, 199) == "gwtel.flows.v1:4:100-199"
    assert dedup_token("t", 0, 7, 7) == "t:0:7-7"
    with pytest.raises(ValueError):
        dedup_token("t", 0, 5, 4)
    with pytest.raises(ValueError):
        dedup_token("t", 0, -1, 4)


def test_size_bound() -> None:
    b, _ = make(max_rows=3)
    b.add(10, "a")
    b.add(11, "b")
    assert not b.ready()
    b.add(13, "c")  # a gap (e.g. a transaction marker) is fine
    assert b.ready()
    batch = b.take()
    assert (batch.first, batch.last, batch.items) == (10, 13, ("a", "b", "c"))
    assert batch.token == "gwtel.flows.v1:4:10-13"
    assert len(b) == 0 and not b.ready() and b.next_offset is None


def test_time_bound_counts_from_first_record() -> None:
    b, clock = make(max_rows=1000, max_seconds=2.0)
    assert not b.ready()  # empty never ready
    clock.now = 200.0
    b.add(0, "a")
    clock.now = 201.0
    b.add(1, "b")
    clock.now = 201.99
    assert not b.ready()
    clock.now = 202.0
    assert b.ready()
    assert b.take().last == 1
    clock.now = 210.0
    b.add(2, "c")  # the clock restarts with the next batch
    assert not b.ready()


def test_offsets_must_increase() -> None:
    b, _ = make()
    b.add(5, "a")
    with pytest.raises(ValueError):
        b.add(5, "again")
    with pytest.raises(ValueError):
        b.add(4, "back")
    with pytest.raises(ValueError):
        make()[0].take()


def test_pinned_batch_ignores_size_and_time_and_ends_at_last() -> None:
    b, clock = make(max_rows=2, max_seconds=1.0)
    b.pin_to(5, 9)
    b.add(5, "a")
    b.add(7, "b")
    clock.now += 60
    assert not b.ready()  # over both bounds, but the announced range is not complete
    assert not b.closes_before(9)
    b.add(9, "c")
    assert b.ready()
    assert b.closes_before(10)
    batch = b.take()
    assert (batch.first, batch.last, batch.token) == (5, 9, "gwtel.flows.v1:4:5-9")
    assert b.pin is None
    b.add(10, "d")  # back to the normal bounds
    b.add(11, "e")
    assert b.ready()


def test_pinned_range_names_the_batch_even_if_its_first_records_are_gone() -> None:
    b, _ = make()
    b.pin_to(5, 9)
    b.add(8, "x")
    b.add(9, "y")
    assert b.take().token == "gwtel.flows.v1:4:5-9"


def test_a_pin_whose_records_are_all_gone_does_not_name_later_records() -> None:
    b, _ = make(max_rows=2)
    b.pin_to(5, 9)
    b.add(12, "x")
    b.add(13, "y")
    assert b.ready()
    assert b.take().token == "gwtel.flows.v1:4:12-13"


def test_pin_rules() -> None:
    b, _ = make()
    with pytest.raises(ValueError):
        b.pin_to(9, 5)
    b.pin_to(0, 3)
    b.add(0, "a")
    with pytest.raises(ValueError):
        b.pin_to(0, 3)  # not while holding records
    with pytest.raises(ValueError):
        b.add(4, "past the range")


def test_add_many_takes_what_fits_the_current_batch() -> None:
    b: PartitionBatcher[str] = PartitionBatcher("t", 0, max_rows=4, max_seconds=60, clock=lambda: 0.0)
    assert b.add_many([10, 11, 12], ["a", "b", "c"]) == 3 and not b.ready()
    assert b.add_many([13, 14, 15], ["d", "e", "f"]) == 1 and b.ready()  # the size bound
    batch = b.take()
    assert (batch.first, batch.last, batch.items) == (10, 13, ("a", "b", "c", "d"))
    assert b.add_many([14], ["e"]) == 1
    with pytest.raises(ValueError, match="not after"):
        b.add_many([14], ["e"])
    # Pinned: exactly up to the announced end, whatever the size bound.
    p: PartitionBatcher[str] = PartitionBatcher("t", 0, max_rows=100, max_seconds=60, clock=lambda: 0.0)
    p.pin_to(20, 22)
    assert p.add_many([20, 21, 22, 23, 24], list("vwxyz")) == 3 and p.ready()
    assert p.closes_before(23) and p.add_many([23, 24], ["y", "z"]) == 0
    assert (p.take().last, p.add_many([23, 24], ["y", "z"])) == (22, 2)
    # A pinned range whose records are all gone (retention) does not name later records.
    q: PartitionBatcher[str] = PartitionBatcher("t", 0, max_rows=100, max_seconds=60, clock=lambda: 0.0)
    q.pin_to(5, 9)
    assert q.add_many([12, 13], ["m", "n"]) == 2 and q.pin is None


def test_announced_range_round_trip() -> None:
    md = pending_metadata(120, 199)
    assert parse_pending(md, 120) == (120, 199)
    assert parse_pending(md, 200) is None  # the committed offset moved on: nothing pending
    assert parse_pending("", 120) is None
    assert parse_pending("someone else's metadata", 120) is None
    assert parse_pending(md, None) is None
    # As librdkafka writes it (a trailing NUL), read back by another client.
    assert parse_pending(md + "\x00", 120) == (120, 199)
    assert parse_pending(md + "\x00x", 120) is None
    with pytest.raises(ValueError):
        pending_metadata(5, 4)


def test_backoff_doubles_up_to_cap() -> None:
    b = Backoff(0.5, 3.0)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


# -- record -> row ------------------------------------------------------------------------------------------


def flow(**changes: Any) -> FlowRecord:
    return sample_flow(**{"hs_rtt_int_us": None, "remote_asn": 4713, **changes})


def test_flow_row_follows_the_field_table() -> None:
    [(spec, row)] = flow_rows(codec.encode(flow()))
    assert spec is FLOWS_RAW
    assert len(row) == len(FLOW_RECORD_FIELDS) == len(FLOWS_RAW.columns) - 3  # + Kafka coordinates
    by_name = dict(zip([f.name for f in FLOW_RECORD_FIELDS], row, strict=True))
    assert by_name["dst_port"] == 443
    assert by_name["hs_rtt_int_us"] is None
    assert by_name["ts_rtt_hist"] == [(529, 1), (531, 1)]
    assert by_name["remote_asn"] == 4713


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"sampling_rate": 2**32}, "out_of_range"),  # valid JSON integer, too wide for UInt32
        ({"retrans_fwd": 2**33}, "out_of_range"),
        ({"ts_rtt_hist": (HistBin(70_000, 1),)}, "out_of_range"),  # bucket wider than UInt16
        ({"ip_version": 5}, "bad_value"),  # from the record codec
    ],
)
def test_flow_values_that_do_not_fit_are_rejected(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(RecordError) as info:
        flow_rows(codec.encode(flow(**changes)))
    assert info.value.reason == reason


def test_flow_ending_beyond_the_latest_plausible_time_is_rejected() -> None:
    rec = flow()
    [(_, row)] = flow_rows(codec.encode(rec), latest_ns=rec.last_ns)  # at the bound: kept
    assert row[[f.name for f in FLOW_RECORD_FIELDS].index("last_ns")] == rec.last_ns
    for decoder in (flow_rows, late_rows):
        with pytest.raises(RecordError) as info:
            decoder(codec.encode(rec), latest_ns=rec.last_ns - 1)
        assert info.value.reason == "bad_value" and "last_ns" in str(info.value)


def test_flow_src_port_too_wide() -> None:
    d = codec.to_dict(flow())
    d["src_port"] = 65536
    with pytest.raises(RecordError) as info:
        flow_rows(orjson.dumps(d))
    assert info.value.reason == "out_of_range"
    assert "src_port" in str(info.value)


def bandwidth(**changes: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "schema_version": 1, "kind": "bandwidth", "window_s": 60, "window_start_ms": 1_700_000_040_000,
        "partner": "korea", "direction": "ingress", "link_id": "kr-2", "sampling_rate": 1, "bytes": 1500,
        "packets": 3, "retrans": 0, "flows": 2, "flows_ended": 1, "remote_hosts": 2, "bytes_scaled": 1500,
        "packets_scaled": 3, "retrans_scaled": 0, "bits_per_s": 200.0, "packets_per_s": 0.05,
        "metric": None, "bucket": None, "samples": None, "min_us": None, "max_us": None, "sum_us": None,
    }  # fmt: skip
    d.update(changes)
    return d


def test_aggregate_kinds_go_to_their_tables() -> None:
    [(spec, row)] = aggregate_rows(orjson.dumps(bandwidth()))
    assert spec is AGG_TABLES["bandwidth"]
    # written by a job older than application classes: the default class
    assert row == [60, 1_700_000_040_000, "korea", "ingress", "kr-2", "default", 1, 1500, 3, 0, 2, 1, 2, 1500, 3, 0,
                   200.0, 0.05]  # fmt: skip
    bucket = {"schema_version": 1, "kind": "latency_bucket", "window_s": 10, "window_start_ms": 1_700_000_050_000,
              "partner": "japan", "direction": "egress", "link_id": "jp-1", "app_class": "vr", "metric": "ts_rtt",
              "bucket": 529, "samples": 4}  # fmt: skip
    [(spec, row)] = aggregate_rows(orjson.dumps(bucket))
    assert spec.name == "latency_hist_window"
    assert row == [10, 1_700_000_050_000, "japan", "egress", "jp-1", "vr", "ts_rtt", 529, 4]
    latency = {**bucket, "kind": "latency", "bucket": None, "min_us": None, "max_us": None, "sum_us": 0,
               "samples": 0}  # fmt: skip
    [(spec, row)] = aggregate_rows(orjson.dumps(latency))
    assert spec.name == "latency_window"
    assert row[-4:] == [0, None, None, 0]  # min/max of an empty window stay null


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff not json", "not_json"),
        (orjson.dumps([1, 2]), "bad_type"),
        (orjson.dumps(bandwidth(schema_version=2)), "wrong_version"),
        (orjson.dumps(bandwidth(kind="throughput")), "unknown_kind"),
        (orjson.dumps({k: v for k, v in bandwidth().items() if k != "bytes"}), "missing_field"),
        (orjson.dumps(bandwidth(bytes=None)), "bad_type"),
        (orjson.dumps(bandwidth(bytes="12")), "bad_type"),
        (orjson.dumps(bandwidth(bytes=-1)), "out_of_range"),
        (orjson.dumps(bandwidth(window_start_ms=1_700_000_040_500)), "bad_value"),
        (orjson.dumps(bandwidth(window_s=0)), "bad_value"),
    ],
)
def test_bad_aggregates_name_their_reason(value: bytes, reason: str) -> None:
    with pytest.raises(RecordError) as info:
        aggregate_rows(value)
    assert info.value.reason == reason


def test_check_value_bounds() -> None:
    assert check_value("p", "UInt16", 65535) == 65535
    assert check_value("x", "Float64", 3) == 3.0
    assert check_value("m", "LowCardinality(Nullable(String))", None) is None
    for ch_type, v in (("UInt8", 256), ("UInt64", -1), ("Int64", 2**63)):
        with pytest.raises(RecordError):
            check_value("f", ch_type, v)
    with pytest.raises(RecordError):
        check_value("f", "UInt32", True)  # JSON true is not a number here
    with pytest.raises(RecordError):
        check_value("f", "Float64", float("nan"))


def test_fast_path_getters_return_tuples_for_one_index_too() -> None:
    # A schema change can leave one column alone in its type group; the checks iterate over the group.
    assert rows._tuple_getter([1])(["a", 7, "c"]) == (7,)
    assert rows._tuple_getter([0, 2])(["a", 7, "c"]) == ("a", "c")
