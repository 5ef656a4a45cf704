"""The landing path in the ClickHouse engine itself (chDB, in process): the generated migration, the checks
ClickHouse runs against the Python ones on the same records, the Kafka coordinates, and deduplication of a
retried batch through the materialised views.

Expected outcomes are written by hand per case (reason and field), not taken from either checker.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from chdb import session as chdb_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.config import LoaderConfig
from processors.landing import INPUT_SETTINGS, MIGRATION, MIGRATIONS, migration_sql, raw_token
from processors.loader import PIECE_RECORDS, landing_block, refused_data
from processors.migrate import MIGRATIONS_DIR, discover, params_from, render
from schemas import codec
from schemas.checks import FIELD_KINDS, CheckError, checked
from tests.records import sample_flow

DB = "gw"
# chDB ships no type information.
Session = Any
_new_session: Any = chdb_session.Session
_tokens = itertools.count(1)


def migrated(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """A chDB session in a new folder with database `DB` at the last migration."""
    session = _new_session(str(tmp_path_factory.mktemp("chdb")))
    session.query(f"CREATE DATABASE {DB}")
    for mig in discover():
        for stmt in render(mig, params_from(DB, LoaderConfig())):
            session.query(stmt)
    return session


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    session = migrated(tmp_path_factory)
    yield session
    session.close()


def fresh(**changes: Any) -> dict[str, Any]:
    """A valid record of the last minute (older ones would fall to the raw table's TTL at insert)."""
    now = time.time_ns()
    d = codec.to_dict(sample_flow())
    d.update(first_ns=now - 2 * 10**9, last_ns=now - 10**9, export_ns=now)
    d.update(changes)
    return d


def rows(ch: Session, sql: str) -> list[list[Any]]:
    out = ch.query(sql, "JSONCompact").bytes()
    return list(orjson.loads(out)["data"]) if out else []


def land(ch: Session, lines: list[bytes], token: str) -> None:
    settings = {**INPUT_SETTINGS, "insert_deduplication_token": f"'{token}'",
                "deduplicate_blocks_in_dependent_materialized_views": 1}  # fmt: skip
    clause = ", ".join(f"{k} = {v}" for k, v in settings.items())
    ch.query(f"INSERT INTO {DB}.flows_in SETTINGS {clause} FORMAT JSONEachRow\n" + b"\n".join(lines).decode())


@pytest.mark.parametrize("version", sorted(MIGRATIONS))
def test_migration_files_are_the_generated_sql(version: int) -> None:
    # The checks have one owner (schemas/checks.py); each released migration must be what it generates.
    assert (Path(MIGRATIONS_DIR) / MIGRATIONS[version]).read_text() == migration_sql(version=version)


def test_the_current_landing_migration_is_the_last_landing_version() -> None:
    assert MIGRATIONS[max(MIGRATIONS)] == MIGRATION
    assert migration_sql() == migration_sql(version=max(MIGRATIONS))


def test_the_landing_migration_runs_again_and_keeps_the_quarantine(ch: Session) -> None:
    # Its statements are idempotent one by one: a run interrupted half way is run again from the start.
    land(ch, [orjson.dumps(fresh(src_ip="999.1.2.3"))], raw_token("t.rerun", 0, 5, 5, 0))
    for stmt in render(next(m for m in discover() if m.version == int(MIGRATION[:4])), params_from(DB, LoaderConfig())):
        ch.query(stmt)
    land(ch, [orjson.dumps(fresh(src_ip="999.1.2.4"))], raw_token("t.rerun", 0, 6, 6, 0))
    assert rows(ch, f"SELECT kafka_offset, reason FROM {DB}.flows_quarantine WHERE kafka_topic = 't.rerun' "
                    "ORDER BY kafka_offset") == [[5, "bad_value"], [6, "bad_value"]]  # fmt: skip


def test_landing_block_numbers_rows_only_when_each_value_is_one_line() -> None:
    body = landing_block([b'{"a":1}', b'{"a":2}'])
    assert body is not None and body.pieces == (b'{"a":1}\n{"a":2}\n',) and body.size == 16
    for values in ([b'{"a":1}', b""], [b'{"a":1}', b"[]"], [b'{"a":\n1}'], [b" {}"], [b'{"a":1}', None], []):
        assert landing_block(values) is None, values


def test_a_value_with_a_raw_control_byte_is_left_to_the_codec(ch: Session) -> None:
    # ClickHouse's reader takes a raw tab inside a string (and stores it), where the codec and the Flink job
    # refuse the value as not JSON; whitespace between tokens is JSON to all three. Either way the batch goes to
    # the slow path, whose codec decides as the job does.
    ok = orjson.dumps(fresh(seq=1))
    tab_in_string = ok.replace(b'"agent_id":"', b'"agent_id":"\t', 1)
    tab_between = ok.replace(b'"seq":1', b'"seq":\t1', 1)
    land(ch, [tab_in_string], raw_token("t.tab", 0, 0, 0, 0))  # what the check would keep from the fast path
    assert rows(ch, f"SELECT count() FROM {DB}.flows_raw WHERE kafka_topic = 't.tab'") == [[1]]
    with pytest.raises(codec.RecordError) as info:
        codec.decode(tab_in_string)
    assert info.value.reason == "not_json"
    assert codec.decode(tab_between).seq == 1
    for value in (tab_in_string, tab_between, ok.replace(b'"seq":1', b'"seq":\r1', 1)):
        assert landing_block([ok, value, ok]) is None
    # one control byte in the third piece is found too
    assert landing_block([ok] * (2 * PIECE_RECORDS + 3)) is not None
    assert landing_block([ok] * (2 * PIECE_RECORDS + 2) + [tab_in_string]) is None


def test_a_landing_body_in_pieces_is_the_values_line_by_line() -> None:
    # Values of random lengths, more than two pieces' worth: the pieces, put together, are each value and a
    # newline in order; no piece holds more than PIECE_RECORDS lines.
    rnd = random.Random(5)
    values = [
        b"{" + bytes(rnd.choice(b"abc ,:0123") for _ in range(rnd.randrange(0, 40)))
        for _ in range(2 * PIECE_RECORDS + 7)
    ]
    body = landing_block(values)
    assert body is not None
    whole = b"".join(body.pieces)
    assert whole == b"".join(v + b"\n" for v in values) and body.size == len(whole)
    assert [p.count(b"\n") for p in body.pieces] == [PIECE_RECORDS, PIECE_RECORDS, 7]


def _mut(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.update(changes)


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.pop(name)


def _drop_all(*names: str) -> Callable[[dict[str, Any]], None]:
    def drop(d: dict[str, Any]) -> None:
        for name in names:
            d.pop(name)

    return drop


# (name, change to a valid record, expected (reason, field) or None when valid). The twelve kinds of the
# malicious-producer trial and the bounds of each check, by hand.
CASES: list[tuple[str, Callable[[dict[str, Any]], None], tuple[str, str] | None]] = [
    ("valid", _mut(), None),
    ("quoted integer", _mut(bytes_fwd="1200"), None),
    ("ipv6 record", _mut(ip_version=6, src_ip="2001:db8::1", dst_ip="::ffff:1.2.3.4"), None),
    ("ipv6 dotted tail with a leading zero", _mut(ip_version=6, src_ip="::ffff:1.2.3.04", dst_ip="::1"), None),
    ("missing remote_asn takes 0", _drop("remote_asn"), None),
    ("missing nullable rtt", _drop("hs_rtt_ext_us"), None),
    ("missing histogram is empty", _drop("dns_rtt_hist"), None),
    ("unknown extra field", _mut(extra="x"), None),
    ("ports at their bounds", _mut(src_port=0, dst_port=65_535), None),
    ("wrong version", _mut(schema_version=2), ("wrong_version", "schema_version")),
    ("missing version", _drop("schema_version"), ("wrong_version", "schema_version")),
    ("missing counter", _drop("bytes_rev"), ("missing_field", "bytes_rev")),
    ("null string", _mut(partner=None), ("missing_field", "partner")),
    ("negative counter", _mut(bytes_fwd=-5), ("bad_value", "bytes_fwd")),
    ("port 70000", _mut(src_port=70_000), ("out_of_range", "src_port")),
    ("protocol 256", _mut(protocol=256), ("out_of_range", "protocol")),
    ("sampling rate 0", _mut(sampling_rate=0), ("bad_value", "sampling_rate")),
    ("counter above 2**63-1", _mut(bytes_fwd=2**63), ("bad_value", "bytes_fwd")),
    ("year 1990", _mut(first_ns=631_152_000 * 10**9), ("bad_value", "first_ns")),
    ("year 2150", _mut(last_ns=5_680_281_600 * 10**9), ("bad_value", "last_ns")),
    ("ends before it starts", lambda d: d.update(last_ns=d["first_ns"] - 1), ("bad_value", "last_ns")),
    ("no packets", _mut(packets_fwd=0, packets_rev=0), ("bad_value", "packets_fwd")),
    ("ip version 5", _mut(ip_version=5), ("bad_value", "ip_version")),
    ("src_ip 999.1.2.3", _mut(src_ip="999.1.2.3"), ("bad_value", "src_ip")),
    ("dst_ip not an address", _mut(dst_ip="gateway"), ("bad_value", "dst_ip")),
    ("ipv6 address on a v4 record", _mut(src_ip="::1"), ("bad_value", "src_ip")),
    ("ipv4 address on a v6 record", _mut(ip_version=6, src_ip="10.0.0.1", dst_ip="::1"), ("bad_value", "src_ip")),
    ("ipv6 src_ip not an address", _mut(ip_version=6, src_ip="gateway", dst_ip="::1"), ("bad_value", "src_ip")),
    ("ipv6 with two ::", _mut(ip_version=6, src_ip="2001:db8::1", dst_ip="1::2::3"), ("bad_value", "dst_ip")),
    ("ipv6 with nine groups", _mut(ip_version=6, src_ip="1:2:3:4:5:6:7:8:9", dst_ip="::1"), ("bad_value", "src_ip")),
    ("ipv6 with a bad dotted tail", _mut(ip_version=6, src_ip="::ffff:999.1.2.3", dst_ip="::1"),
     ("bad_value", "src_ip")),
    ("ipv6 full and compressed forms", _mut(ip_version=6, src_ip="1:2:3:4:5:6:7:8", dst_ip="1:2:3:4:5:6:7::"), None),
    ("ipv4 with a trailing newline", _mut(dst_ip="10.0.0.1\n"), ("bad_value", "dst_ip")),
    ("ipv4 with a leading zero", _mut(dst_ip="10.0.0.01"), ("bad_value", "dst_ip")),
    ("mapped ipv4 exporter", _mut(exporter="::ffff:192.0.2.1"), None),
    ("ipv6 with a triple colon", _mut(ip_version=6, src_ip="1:::2", dst_ip="::1"), ("bad_value", "src_ip")),
    ("next hop with a triple colon", _mut(next_hop="0:::0"), ("bad_value", "next_hop")),
    ("next hop with nine groups", _mut(next_hop="1:2:3:4:5:6:7:8:9"), ("bad_value", "next_hop")),
    ("histogram bucket 70000", _mut(ts_rtt_hist=[{"b": 70_000, "c": 1}]), ("out_of_range", "ts_rtt_hist")),
    ("histogram negative count", _mut(ts_rtt_hist=[{"b": 3, "c": -1}]), ("bad_value", "ts_rtt_hist")),
    ("a year ahead of its Kafka time", lambda d: d.update(last_ns=d["last_ns"] + 365 * 86_400 * 10**9),
     ("bad_value", "last_ns")),
    # router flow export fields: all optional, addresses of either family whatever the flow's version
    ("export fields", _mut(exporter="192.0.2.1", in_if=3, out_if=2**32 - 1, src_asn=64_512, dst_asn=2**32 - 1,
                           next_hop="2001:db8::1", one_way=1), None),
    ("export fields missing", _drop_all("exporter", "in_if", "out_if", "src_asn", "dst_asn", "next_hop", "one_way"),
     None),
    ("export fields null", _mut(exporter=None, in_if=None, next_hop=None, one_way=None), None),
    ("ipv6 exporter, ipv4 next hop on a v6 record",
     _mut(ip_version=6, src_ip="2001:db8::1", dst_ip="::1", exporter="2001:db8::fe", next_hop="10.0.0.1"), None),
    ("exporter not an address", _mut(exporter="router1"), ("bad_value", "exporter")),
    ("exporter 300.1.1.1", _mut(exporter="300.1.1.1"), ("bad_value", "exporter")),
    ("next hop with a scope id", _mut(next_hop="fe80::1%eth0"), ("bad_value", "next_hop")),
    ("next hop with a space", _mut(next_hop="10.0.0.1 "), ("bad_value", "next_hop")),
    ("exporter checked before next hop", _mut(exporter="x", next_hop="y"), ("bad_value", "exporter")),
    ("in_if negative", _mut(in_if=-1), ("bad_value", "in_if")),
    ("out_if 2**32", _mut(out_if=2**32), ("out_of_range", "out_if")),
    ("src_asn 2**32", _mut(src_asn=2**32), ("out_of_range", "src_asn")),
    ("dst_asn negative", _mut(dst_asn=-7), ("bad_value", "dst_asn")),
    ("one_way 2", _mut(one_way=2), ("bad_value", "one_way")),
    ("one_way negative", _mut(one_way=-1), ("bad_value", "one_way")),
    # JSON nulls ClickHouse's reader would fill with a default where the column cannot hold one (a bin's
    # elements before migration 0009); the codec calls each a bad type, or a missing or defaulted field.
    ("histogram bin of nulls", _mut(ts_rtt_hist=[{"b": None, "c": None}]), ("bad_type", "ts_rtt_hist")),
    ("histogram bin with a null bucket", _mut(icmp_rtt_hist=[{"b": None, "c": 4}]), ("bad_type", "icmp_rtt_hist")),
    ("histogram bin with a null count", _mut(dns_rtt_hist=[{"b": 4, "c": None}]), ("bad_type", "dns_rtt_hist")),
    ("histogram item null", _mut(ts_rtt_hist=[None]), ("bad_type", "ts_rtt_hist")),
    ("null bin after a good one", _mut(ts_rtt_hist=[{"b": 1, "c": 1}, {"b": 2, "c": None}]),
     ("bad_type", "ts_rtt_hist")),
    ("bucket 70000 before a null bin", _mut(ts_rtt_hist=[{"b": 70_000, "c": 1}, {"b": None, "c": None}]),
     ("out_of_range", "ts_rtt_hist")),
    ("null bin before a bucket 70000", _mut(ts_rtt_hist=[{"b": None, "c": 1}, {"b": 70_000, "c": 1}]),
     ("bad_type", "ts_rtt_hist")),
    ("negative bucket before a null count", _mut(ts_rtt_hist=[{"b": -1, "c": None}]), ("bad_value", "ts_rtt_hist")),
    ("null histogram is empty", _mut(ts_rtt_hist=None), None),
    ("good bins", _mut(ts_rtt_hist=[{"b": 0, "c": 1}, {"b": 65_535, "c": 2**63 - 1}]), None),
    ("null version", _mut(schema_version=None), ("wrong_version", "schema_version")),
    ("null counter", _mut(packets_rev=None), ("missing_field", "packets_rev")),
    ("null nullable rtt", _mut(hs_rtt_int_us=None), None),
    ("null defaulted fields", _mut(remote_asn=None, sampling_mode=None), None),
    # application classes: optional (older records), a DSCP is six bits, a class is a name
    ("classes", _mut(dscp=46, app_class="trading_2"), None),
    ("classes missing", _drop_all("dscp", "app_class"), None),
    ("classes null", _mut(dscp=None, app_class=None), None),
    ("dscp 63", _mut(dscp=63), None),
    ("dscp 64 (a ToS byte?)", _mut(dscp=184), ("bad_value", "dscp")),
    ("dscp negative", _mut(dscp=-1), ("bad_value", "dscp")),
    ("class upper case", _mut(app_class="VR"), ("bad_value", "app_class")),
    ("class empty", _mut(app_class=""), ("bad_value", "app_class")),
    ("class 33 characters", _mut(app_class="a" * 33), ("bad_value", "app_class")),
    ("class with a newline", _mut(app_class="vr\n"), ("bad_value", "app_class")),
]  # fmt: skip

# Kinds ClickHouse refuses to parse: the batch takes the slow path, where Python names them.
REFUSED: list[tuple[str, bytes, str]] = [
    ("boolean counter", orjson.dumps(fresh(bytes_fwd=True)), "bad_type"),
    ("float counter", orjson.dumps(fresh(bytes_fwd=1.5)), "bad_type"),
    ("number as a string field", orjson.dumps(fresh(partner=3)), "bad_type"),
    ("object as a string field", orjson.dumps(fresh(partner={"a": 1})), "bad_type"),
    ("histogram bin without c", orjson.dumps(fresh(ts_rtt_hist=[{"b": 1}])), "bad_type"),
    ("histogram bin with more keys", orjson.dumps(fresh(ts_rtt_hist=[{"b": 1, "c": 1, "d": 1}])), "bad_type"),
    ("truncated JSON", orjson.dumps(fresh())[:-20], "not_json"),
    ("boolean one_way", orjson.dumps(fresh(one_way=True)), "bad_type"),
    ("number as the exporter", orjson.dumps(fresh(exporter=3232235521)), "bad_type"),
]


@pytest.mark.parametrize(("name", "change", "expected"), CASES, ids=[c[0] for c in CASES])
def test_clickhouse_and_python_checks_agree(
    ch: Session, name: str, change: Callable[[dict[str, Any]], None], expected: tuple[str, str] | None
) -> None:
    d = fresh()
    change(d)
    kafka_ms = time.time_ns() // 1_000_000
    latest = kafka_ms * 1_000_000 + 900 * 10**9
    first = next(_tokens) * 10
    token = raw_token("t.flows", 0, first, first, latest)
    land(ch, [orjson.dumps(d)], token)
    stored = rows(ch, f"SELECT seq, kafka_offset FROM {DB}.flows_raw WHERE kafka_offset = {first}")
    bad = rows(ch, f"SELECT reason, field FROM {DB}.flows_quarantine WHERE kafka_offset = {first}")
    try:
        checked(d, latest)
        python = None
    except CheckError as exc:
        python = (exc.reason, exc.field)
    assert python == expected, name
    if expected is None:
        assert stored == [[d["seq"], first]] and bad == [], name
    else:
        assert stored == [] and bad == [list(expected)], name


def _verdict(ch: Session, d: dict[str, Any], topic: str) -> tuple[str, str] | str | None:
    """ClickHouse's verdict on one record: None (stored), (reason, field) (quarantined) or "refused"."""
    first = next(_tokens) * 10
    try:
        land(ch, [orjson.dumps(d)], raw_token(topic, 0, first, first, 0))
    except Exception as exc:
        assert re.search(r"Code: (26|27|117|130)\b", str(exc)), exc
        return "refused"
    bad = rows(ch, f"SELECT reason, field FROM {DB}.flows_quarantine WHERE kafka_topic = '{topic}' "
                   f"AND kafka_offset = {first}")  # fmt: skip
    stored = rows(ch, f"SELECT count() FROM {DB}.flows_raw WHERE kafka_topic = '{topic}' AND kafka_offset = {first}")
    assert stored == [[0 if bad else 1]], (d, bad, stored)
    return tuple(bad[0]) if bad else None


def _codec_verdict(d: dict[str, Any]) -> tuple[str, str] | None:
    try:
        checked(d)
    except CheckError as exc:
        return (exc.reason, exc.field)
    return None


_HISTOGRAMS = [name for name, kind in FIELD_KINDS if kind == "hist"]
_BIN_NULLS = ({"b": None, "c": 1}, {"b": 1, "c": None}, {"b": None, "c": None}, None)
# (field, its value): every field null, then each histogram holding a bin with null elements, or a null bin.
_NULL_SPOTS = [*((name, None) for name, _ in FIELD_KINDS),
               *((name, [bin_]) for name in _HISTOGRAMS for bin_ in _BIN_NULLS)]  # fmt: skip


@pytest.mark.parametrize(("name", "value"), _NULL_SPOTS, ids=[f"{n}={v}" for n, v in _NULL_SPOTS])
def test_a_null_anywhere_gets_the_codecs_verdict(ch: Session, name: str, value: Any) -> None:
    # The codec is the oracle: ClickHouse stores the record exactly when it does and names the same fault (or
    # refuses the batch, whose slow path then asks the codec). Nothing null may be stored as a default.
    d = fresh(**{name: value})
    expected = _codec_verdict(d)
    got = _verdict(ch, d, "t.nulls")
    assert got == expected or (expected is not None and got == "refused"), (name, value, expected, got)


@pytest.mark.parametrize(("name", "value", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_what_clickhouse_refuses_python_names(ch: Session, name: str, value: bytes, reason: str) -> None:
    with pytest.raises(Exception, match=r"Code: (26|27|117)\b"):
        land(ch, [orjson.dumps(fresh()), value], raw_token("t.refused", 0, 0, 1, 0))
    with pytest.raises(codec.RecordError) as info:
        codec.decode(value)
    assert info.value.reason == reason, name


def test_classes_are_stored_and_older_records_read_as_the_defaults(ch: Session) -> None:
    kafka_ms = time.time_ns() // 1_000_000
    first = next(_tokens) * 10
    old = fresh(seq=first)
    del old["dscp"], old["app_class"]
    lines = [orjson.dumps(fresh(seq=first + 1, dscp=46, app_class="trading")), orjson.dumps(old)]
    land(ch, lines, raw_token("t.flows", 0, first, first + 1, kafka_ms * 1_000_000 + 900 * 10**9))
    got = rows(ch, f"SELECT kafka_offset, dscp, app_class FROM {DB}.flows_raw WHERE kafka_offset IN ({first}, "
                   f"{first + 1}) ORDER BY kafka_offset")  # fmt: skip
    assert got == [[first, 46, "trading"], [first + 1, 0, "default"]]


def test_a_refused_batch_stores_nothing(ch: Session) -> None:
    good = [orjson.dumps(fresh(seq=i)) for i in range(5)]
    with pytest.raises(Exception, match="Code: 27"):
        land(ch, [*good, orjson.dumps(fresh(bytes_fwd=True))], raw_token("t.atomic", 0, 0, 5, 0))
    assert rows(ch, f"SELECT count() FROM {DB}.flows_raw WHERE kafka_topic = 't.atomic'") == [[0]]


def test_a_value_holding_two_records_refuses_the_batch(ch: Session) -> None:
    # One line, so the batch's block passes landing_block, but JSONEachRow reads it as two rows: every later
    # row would take the next record's offset. The codec calls the value not JSON; the batch takes the slow path.
    two = orjson.dumps(fresh(seq=2)) + orjson.dumps(fresh(seq=3))
    lines = [orjson.dumps(fresh(seq=1)), two, orjson.dumps(fresh(seq=4))]
    assert landing_block(lines) is not None
    with pytest.raises(Exception, match=r"Code: 395\b"):
        land(ch, lines, raw_token("t.two", 0, 0, 2, 0))
    assert rows(ch, f"SELECT count() FROM {DB}.flows_raw WHERE kafka_topic = 't.two'") == [[0]]
    assert rows(ch, f"SELECT count() FROM {DB}.flows_batches WHERE token LIKE 't.two:%'") == [[0]]
    with pytest.raises(codec.RecordError) as info:
        codec.decode(two)
    assert info.value.reason == "not_json"
    assert refused_data(_DatabaseError(395))


def test_a_block_with_fewer_rows_than_records_stores_nothing(ch: Session) -> None:
    # A value that ends inside a string swallows the next value's line (JSONEachRow takes the newline into the
    # string): one row for two records, and every later row would take the next record's offset (landing 13
    # stored record 3 at offset 2). The codec calls both values not JSON; the batch takes the slow path.
    ok, last = orjson.dumps(fresh(seq=1)), orjson.dumps(fresh(seq=4))
    opened, closing = orjson.dumps(fresh(seq=2))[:-1] + b',"x":"a', b'{","zz":3}'
    assert landing_block([ok, opened, closing, last]) is not None
    with pytest.raises(Exception, match=r"Code: 395\b.*does not hold the records"):
        land(ch, [ok, opened, closing, last], raw_token("t.fewer", 0, 0, 3, 0))
    assert rows(ch, f"SELECT count() FROM {DB}.flows_raw WHERE kafka_topic = 't.fewer'") == [[0]]
    assert rows(ch, f"SELECT count() FROM {DB}.flows_batches WHERE token LIKE 't.fewer:%'") == [[0]]
    for value in (opened, closing):
        with pytest.raises(codec.RecordError) as info:
            codec.decode(value)
        assert info.value.reason == "not_json"


def test_a_repeated_key_refuses_the_batch_so_the_last_one_counts_as_in_the_job(ch: Session) -> None:
    # Every field, then src_port again out of range: ClickHouse's reader skipped the rest of an object once every
    # column was seen and stored the first port (landing 13). The job and the codec take the last: out_of_range.
    record = orjson.dumps(fresh(seq=1))[:-1] + b',"src_port":70000}'
    with pytest.raises(Exception, match=r"Code: 117\b.*Duplicate field"):
        land(ch, [record], raw_token("t.repeat", 0, 0, 0, 0))
    assert rows(ch, f"SELECT count() FROM {DB}.flows_raw WHERE kafka_topic = 't.repeat'") == [[0]]
    assert refused_data(_DatabaseError(117))
    with pytest.raises(codec.RecordError) as info:
        codec.decode(record)
    assert info.value.reason == "out_of_range"


class _DatabaseError(Exception):
    """The shape of clickhouse-connect's error that `refused_data` reads: its class name and code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"Code: {code}")
        self.code = code


_DatabaseError.__name__ = "DatabaseError"


def test_coordinates_come_from_the_token_and_a_retry_stores_nothing_twice(ch: Session) -> None:
    lines = [orjson.dumps(fresh(seq=1000 + i)) for i in range(50)]
    lines[7] = orjson.dumps(fresh(seq=1007, src_ip="999.1.2.3"))
    token = raw_token("t.dedup", 3, 500, 549, 0)
    for _attempt in range(3):  # the loader retries an insert with the same token until it is acknowledged
        land(ch, lines, token)
    got = rows(ch, f"SELECT seq, kafka_partition, kafka_offset FROM {DB}.flows_raw WHERE kafka_topic = 't.dedup' "
                   "ORDER BY kafka_offset")  # fmt: skip
    assert got == [[1000 + i, 3, 500 + i] for i in range(50) if i != 7]
    assert rows(ch, f"SELECT kafka_offset, reason, field FROM {DB}.flows_quarantine WHERE kafka_topic = 't.dedup'") == [
        [507, "bad_value", "src_ip"]
    ]
    kept = [orjson.loads(v) for i, v in enumerate(lines) if i != 7]
    packets = sum(d["packets_fwd"] + d["packets_rev"] for d in kept)
    assert rows(ch, f"SELECT records, stored, packets_stored FROM {DB}.flows_batches WHERE token = '{token}'") == [
        [50, 49, packets]
    ]
    # The same bytes under another batch's token are other records: stored again.
    land(ch, lines, raw_token("t.dedup", 3, 600, 649, 0))
    assert rows(ch, f"SELECT count() FROM {DB}.flows_raw WHERE kafka_topic = 't.dedup'") == [[98]]


_SCALARS = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=6)
_BOUNDS = st.sampled_from([
    -1, 0, 1, 4, 6, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, "12", "-3", "1.5", 1.5,
    946_684_800 * 10**9 - 1, 4_102_444_800 * 10**9 + 1, "999.1.2.3", "::1", "10.0.0.1", "1.2.3.4 ",
])  # fmt: skip
_BINS = st.lists(st.fixed_dictionaries({"b": _BOUNDS | _SCALARS, "c": _BOUNDS | _SCALARS}), max_size=2)
_FIELDS = sorted(codec.to_dict(sample_flow()))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.dictionaries(st.sampled_from(_FIELDS), _BOUNDS | _SCALARS | _BINS, max_size=3),
    drop=st.lists(st.sampled_from(_FIELDS), max_size=2),
)
def test_fuzzed_records_get_the_same_verdict_in_clickhouse_and_python(
    ch: Session, changes: dict[str, Any], drop: list[str]
) -> None:
    d = fresh(**changes)
    for name in drop:
        d.pop(name, None)
    value = json.dumps(d).encode()  # stdlib: writes integers of any size, as a producer may
    first = next(_tokens) * 10
    try:
        land(ch, [value], raw_token("t.fuzz", 0, first, first, 0))
        bad = rows(ch, f"SELECT reason, field FROM {DB}.flows_quarantine WHERE kafka_topic = 't.fuzz' "
                       f"AND kafka_offset = {first}")  # fmt: skip
        clickhouse: tuple[str, str] | str | None = tuple(bad[0]) if bad else None
    except Exception as exc:  # the batch's slow path: Python names the record
        assert re.search(r"Code: (6|26|27|32|33|53|69|70|72|117|130|131|349)\b", str(exc)), exc
        clickhouse = "refused"
    try:
        codec.decode(value)
        python: tuple[str, str] | str | None = None
    except codec.RecordError as exc:
        python = exc.reason
        if clickhouse not in (None, "refused") and exc.reason not in ("not_json", "bad_type"):
            # orjson refuses integers beyond 64 bits (not_json); ClickHouse reads them and finds them too large.
            assert isinstance(clickhouse, tuple) and clickhouse[0] == exc.reason, (d, clickhouse, exc)
    assert (python is None) == (clickhouse is None), (d, clickhouse, python)
