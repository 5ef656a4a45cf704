"""Interface counter increases (wraps, restarts), the sampling spread, and the LinkCounter record.

Every expected figure is worked out by hand in the comment beside it, not taken from the code."""

from __future__ import annotations

import orjson
import pytest

from ingest.collect.counters import counter_pairs
from ingest.collect.decoded import LinkCounters
from processors.counter_rows import LINK_COUNTERS, counter_rows
from processors.link_counters import (
    CounterSample,
    Increase,
    LinkCheck,
    counter_increase,
    expected_spread,
    total_increase,
)
from schemas.codec import RecordError
from schemas.link_counter import LinkCounter, decode, encode
from tests.unit.test_migrations_sql import TABLES, columns_of

S = 1_000_000_000
TEN_G = 10_000_000_000


def sample(t_s: int, octets: int, seq: int, speed: int = TEN_G) -> CounterSample:
    return CounterSample(t_s * S, octets, seq, speed)


def test_rise_is_the_difference() -> None:
    assert counter_increase(sample(0, 100, 1), sample(20, 1100, 2)) == Increase(1000, 0, 0)
    # the sFlow agent restarted (sequence back to 0) but the interface kept counting: still the difference
    assert counter_increase(sample(0, 100, 57), sample(20, 1100, 0)) == Increase(1000, 0, 0)


def test_32_bit_wrap() -> None:
    # 4_294_967_000 -> 704 through 2^32 = 4_294_967_296: 296 + 704 = 1000 octets
    assert counter_increase(sample(0, 4_294_967_000, 1), sample(20, 704, 2)) == Increase(1000, 1, 0)
    # ifSpeed unknown (0): a fall of a 32-bit value is taken as a wrap
    assert counter_increase(sample(0, 4_294_967_000, 1, 0), sample(20, 704, 2, 0)) == Increase(1000, 1, 0)


def test_64_bit_wrap() -> None:
    # 2^64 - 500 -> 300: 500 + 300 = 800 octets
    assert counter_increase(sample(0, 2**64 - 500, 1), sample(20, 300, 2)) == Increase(800, 1, 0)


def test_restart_counts_from_zero() -> None:
    # counter and sequence both went back: the router restarted, 1234 octets counted since
    assert counter_increase(sample(0, 5_000_000_000, 57), sample(20, 1234, 2)) == Increase(1234, 0, 1)
    # a 64-bit counter that fell far from 2^64: no wrap fits 10 Gb/s x 20 s = 25e9 octets, so a reset
    assert counter_increase(sample(0, 5_000_000_000, 1), sample(20, 1234, 2)) == Increase(1234, 0, 1)


def test_wrap_beyond_the_line_rate_is_a_reset() -> None:
    # 3e9 -> 10 would be 10 + 2^32 - 3e9 = 1_294_967_306 octets in 1 s on a 1 Mb/s port (125_000 octets/s): reset
    assert counter_increase(sample(0, 3_000_000_000, 1, 1_000_000), sample(1, 10, 2, 1_000_000)) == Increase(10, 0, 1)


def test_total_over_a_series() -> None:
    series = [
        sample(0, 100, 1),
        sample(20, 4_294_967_200, 2),  # +4_294_967_100
        sample(40, 50, 3),  # wrap: 96 + 50 = +146
        sample(60, 70, 4),  # +20
        sample(80, 5, 0),  # restart: +5
    ]
    assert total_increase(series) == Increase(4_294_967_100 + 146 + 20 + 5, 1, 1)
    assert total_increase(series[:1]) == Increase(0, 0, 0)


def test_expected_spread_and_agreement() -> None:
    assert expected_spread(10_000) == pytest.approx(0.0196)  # 1.96 / 100
    assert expected_spread(0) is None

    def check(frame_octets: int, sampled: int) -> LinkCheck:
        return LinkCheck("192.0.2.1", 1, "in", 3, 1_000_000, 0, 0, frame_octets, sampled, frame_octets)

    assert check(1_010_000, 10_000).agrees is True  # 1% off, 1.96% allowed
    assert check(1_030_000, 10_000).agrees is False  # 3% off
    assert check(1_030_000, 100).agrees is True  # 100 packets: 19.6% allowed
    assert check(0, 0).agrees is None


def _counters() -> LinkCounters:
    # 192.0.2.1, ifIndex 7, in 1000 octets / 10 packets, out 2000 / 20, 10 Gb/s, received at 123 ns, sequence 9
    return LinkCounters(bytes([192, 0, 2, 1]), 7, 1000, 2000, 10, 20, TEN_G, 123, 9)


def test_a_sample_becomes_two_records() -> None:
    pairs = counter_pairs("col-1", [_counters()])
    assert [k for k, _ in pairs] == [b"192.0.2.1|7", b"192.0.2.1|7"]
    assert [orjson.loads(v) for _, v in pairs] == [
        {"schema_version": 1, "agent_id": "col-1", "exporter": "192.0.2.1", "source_id": 7, "direction": d,
         "sample_ns": 123, "octets": o, "packets": p, "speed_bps": TEN_G, "sequence": 9}
        for d, o, p in (("in", 1000, 10), ("out", 2000, 20))
    ]  # fmt: skip
    rows = counter_rows(pairs[1][1])
    assert rows == [(LINK_COUNTERS, [1, "col-1", "192.0.2.1", 7, "out", 123, 2000, 20, TEN_G, 9])]


def test_bad_values_are_record_errors() -> None:
    good = LinkCounter(1, "c", "192.0.2.1", 7, "in", 1, 2, 3, 4, 5)
    assert decode(encode(good)) == good
    d = orjson.loads(encode(good))
    cases = {
        b"{nope": "not_json",
        b"[1]": "not_json",
        orjson.dumps({**d, "direction": "up"}): "bad_value",
        orjson.dumps({**d, "exporter": "router-1"}): "bad_value",
        orjson.dumps({**d, "octets": -1}): "out_of_range",
        orjson.dumps({**d, "sequence": 2**32}): "out_of_range",
        orjson.dumps({**d, "octets": "12"}): "bad_type",
        orjson.dumps({**d, "schema_version": 2}): "wrong_version",
        orjson.dumps({k: v for k, v in d.items() if k != "speed_bps"}): "missing_field",
        orjson.dumps({**d, "extra": 1}): "bad_value",
    }
    for value, reason in cases.items():
        with pytest.raises(RecordError) as exc:
            counter_rows(value)
        assert exc.value.reason == reason, value


def test_the_migration_creates_the_loaders_columns() -> None:
    stored = [(n, t) for n, t in columns_of(TABLES["link_counters"]) if "MATERIALIZED" not in t]
    assert stored == list(LINK_COUNTERS.columns)
