"""The job's record format (`gwtel-flow`, processors/java/gwtel/format) against the loader's codec as oracle.

Each value goes through the format's deserializer in a JVM (`gwtel.format.Verdicts`, no Flink job) and through
`orjson` + `schemas.checks.checked` (the loader's slow path): both must refuse the same values with the same
reason and field, and read the same values from the others. The record rules across fields are the job's SQL
(tests/unit/test_aggregate.py), so the oracle here runs without them.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from chdb import session as chdb_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors import udf
from schemas import addresses, checks, codec
from schemas.flow_record import FLOW_RECORD_FIELDS
from tests.records import sample_flow
from tests.unit.test_address_checks import BY_HAND, address_like, ipv4_like, noise

Verdict = tuple[str, str, tuple[str, ...] | None]  # reason ("" accepted), field, the record's values as text


@pytest.fixture(scope="module")
def jar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return udf.udf_jar(tmp_path_factory.mktemp("home"))


def format_rows(jar: Path, values: list[bytes], *, lines: bool = False) -> list[tuple[int, int, Verdict]]:
    """(value number, line index, verdict) per row the format makes of `values`."""
    o = checks.flink_format_options()
    ints = ",".join(f.name for f in FLOW_RECORD_FIELDS if f.flink == "INT")
    args = [o["fields"], o["bins"], o["reasons"], o["version-field"], o["version"], str(lines).lower(), ints,
            o["addresses"]]  # fmt: skip
    done = subprocess.run(
        ["java", "-cp", f"{jar}:{udf._flink_lib()}/*", "gwtel.format.Verdicts", *args],
        input="".join(base64.b64encode(v).decode() + "\n" for v in values),
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    rows = []
    for text in done.stdout.splitlines():
        number, line, reason, field, *cols = text.split("\t")
        rows.append((int(number), int(line), (reason, field, None if reason else tuple(cols))))
    return rows


def _text(kind: str, v: Any) -> str:
    if v is None:
        return "null"
    if kind == "str":
        return base64.b64encode(v.encode()).decode()
    if kind == "hist":
        return ",".join(f"{b}:{c}" for b, c in v)
    return str(v)


def canonical(text: str, version: int | None) -> str | None:
    """An address field's text as the job must get it: the text of the stored value (schemas.addresses, Python's
    ipaddress), or None when it is not an address: for `version` 4 an IPv4 one, any other an IPv6 one, None
    either family or "" (an exporter or next hop, whose `::` the store prints as "")."""
    if version is None:
        if text == "":
            return ""
        ok = checks.ip_ok(text, 4) or checks.ip_ok(text, 6)
    else:
        ok = checks.ip_ok(text, 4 if version == 4 else 6)
    if not ok:
        return None
    shown = addresses.text(addresses.stored(text))
    return "" if version is None and shown == "::" else shown


def _canonical_fields(out: dict[str, Any]) -> dict[str, Any]:
    return {**out, **{n: canonical(out[n], None if n in addresses.OPTIONAL_ADDRESS_FIELDS else out["ip_version"])
                      for n in addresses.ADDRESS_FIELDS}}  # fmt: skip


def oracle(value: bytes, monkeypatch: pytest.MonkeyPatch) -> Verdict:
    """The codec's verdict on one value, without the record rules (the job's SQL applies those); the addresses as
    `canonical` reads them (the job's rule then refuses a null one)."""
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError:
        return ("not_json", "", None)
    with monkeypatch.context() as m:
        m.setattr(checks, "RECORD_RULES", ())
        try:
            out = _canonical_fields(checks.checked(d))
        except checks.CheckError as exc:
            return (exc.reason, exc.field, None)
    return ("", "", tuple(_text(kind, out[name]) for name, kind in checks.FIELD_KINDS))


BASE = codec.to_dict(sample_flow())


def rec(**changes: Any) -> bytes:
    return orjson.dumps({**BASE, **changes})


def without(*names: str) -> bytes:
    return orjson.dumps({k: v for k, v in BASE.items() if k not in names})


def raw(text: str) -> bytes:
    """A record with `text` spliced in as its last member (JSON orjson cannot write: repeated keys, big numbers)."""
    return orjson.dumps(BASE)[:-1] + b"," + text.encode() + b"}"


SAMPLE = orjson.dumps(BASE)
# Values the job's former JSON format converted or cut before its checks, and their neighbours.
CASES: dict[str, bytes] = {
    "valid": SAMPLE,
    "float_in_int": rec(bytes_fwd=1.5),
    "whole_float_in_int": rec(bytes_fwd=1.0),
    "version_float": rec(schema_version=1.0),
    "version_true": rec(schema_version=True),
    "version_string": rec(schema_version="1"),
    "version_01": rec(schema_version="01"),
    "version_2": rec(schema_version=2),
    "version_absent": without("schema_version"),
    "bool_in_int": rec(vlan=False),
    "number_in_string": rec(src_ip=5),
    "float_in_string": rec(agent_id=1.5),
    "bool_in_string": rec(partner=True),
    "object_in_string": rec(link_id={"a": 1}),
    "string_in_int": rec(bytes_fwd="lots"),
    "quoted_int": rec(bytes_fwd="12"),
    "quoted_signed": rec(bytes_rev="+7"),
    "quoted_negative": rec(bytes_rev="-1"),
    "quoted_empty": rec(retrans_fwd=""),
    "quoted_spaced": rec(retrans_fwd=" 12"),
    "quoted_exponent": rec(retrans_fwd="1e3"),
    "quoted_huge": rec(bytes_fwd="9" * 40),
    "text_after": SAMPLE + b" x",
    "two_objects": SAMPLE + SAMPLE,
    "two_lines": SAMPLE + b"\n" + SAMPLE,
    "final_newline": SAMPLE + b"\n",
    "spaces_around": b"  " + SAMPLE + b" \r\n",
    "nested_junk": rec(extra={"x": [1, {"y": None, "z": [True, "s", 2.5]}]}),
    "nested_infinite": rec(extra={"x": [1e300]})[:-1].replace(b"1e+300", b"1e400") + b"}",
    "nested_lone_surrogate": raw('"extra": ["\\ud800"]'),
    "escaped_pair": raw('"extra": "\\ud83d\\ude00"'),
    "string_lone_surrogate": raw('"agent_id": "a\\udc00"'),
    "object_in_optional": rec(exporter={"a": 1}),
    "array_in_int": rec(seq=[1]),
    "bin_extra_key": rec(ts_rtt_hist=[{"b": 1, "c": 1, "d": 0}]),
    "bin_missing_key": rec(ts_rtt_hist=[{"b": 1}]),
    "bin_not_object": rec(ts_rtt_hist=[[1, 1]]),
    "bin_null": rec(ts_rtt_hist=[None]),
    "bin_null_values": rec(ts_rtt_hist=[{"b": None, "c": None}]),
    "bin_quoted": rec(ts_rtt_hist=[{"b": "3", "c": "4"}]),
    "bin_float": rec(ts_rtt_hist=[{"b": 3, "c": 4.0}]),
    "bins_not_list": rec(ts_rtt_hist={"b": 1, "c": 1}),
    "bins_null": rec(dns_rtt_hist=None),
    "bins_absent": without("dns_rtt_hist", "icmp_rtt_hist"),
    "duplicate_last_good": raw('"bytes_fwd": "x", "bytes_fwd": 5').replace(b'"bytes_fwd":1200,', b""),
    "duplicate_last_bad": raw('"bytes_fwd": 5, "bytes_fwd": "x"').replace(b'"bytes_fwd":1200,', b""),
    "duplicate_kept": raw('"src_port": 1'),
    "u64_max": raw('"bytes_fwd": 18446744073709551615').replace(b'"bytes_fwd":1200,', b""),
    "beyond_u64": raw('"bytes_fwd": 18446744073709551616').replace(b'"bytes_fwd":1200,', b""),
    "i63": rec(packets_fwd=2**63),
    "below_i64": raw('"bytes_fwd": -9223372036854775809').replace(b'"bytes_fwd":1200,', b""),
    "huge_int": raw('"bytes_fwd": 1' + "0" * 400).replace(b'"bytes_fwd":1200,', b""),
    "missing_required": without("bytes_rev"),
    "null_required": rec(partner=None),
    "null_optional": rec(exporter=None, next_hop=None, app_class=None, dscp=None),
    "null_nullable_int": rec(hs_rtt_ext_us=None),
    "port_70000": rec(dst_port=70_000),
    "negative": rec(bytes_fwd=-5),
    "leading_zero": raw('"extra": 01'),
    "nan": raw('"extra": NaN'),
    "trailing_comma": SAMPLE[:-1] + b",}",
    "not_object": b"[1, 2]",
    "scalar": b'"x"',
    "json_null": b"null",
    "empty": b"",
    "blank": b"  ",
    "garbage": b"\x00\xff not a record",
    "bom": b"\xef\xbb\xbf" + SAMPLE,
    "overlong_utf8": rec(agent_id="A")[:-1].replace(b'"agent_id":"A"', b'"agent_id":"\xc0\x80"') + b"}",
    "encoded_surrogate": rec(agent_id="A").replace(b'"agent_id":"A"', b'"agent_id":"\xed\xa0\x80"'),
    "utf8_text": rec(partner="\u00e9t\u00e9 \U0001f600"),
    "control_char": rec(agent_id="A").replace(b'"agent_id":"A"', b'"agent_id":"\t"'),
    "escaped_nul": raw('"agent_id": "x\\u0000"'),
    "truncated": SAMPLE[:-25],
}


def fuzzed(n: int, seed: int = 21) -> list[bytes]:
    """Records with one to three fields set to a value of another type, a bound or a junk value."""
    rnd = random.Random(seed)
    pool: list[Any] = [None, True, False, 0, -1, 1, 1.5, 2.0, "", "0", "12", "-3", "x", "10.0.0.1", [], {}, [1],
                       {"b": 1, "c": 2}, [{"b": 1, "c": 2}], [{"b": 70000, "c": 1}], 2**31, 2**32, 2**63 - 1,
                       2**63, 2**64 - 1, 65535, 65536, 255, 256, checks.MIN_NS, checks.MAX_NS + 1]  # fmt: skip
    names = [name for name, _ in checks.FIELD_KINDS]
    out = []
    for _ in range(n):
        d = dict(BASE)
        for name in rnd.sample(names, rnd.randint(1, 3)):
            if rnd.random() < 0.1:
                d.pop(name, None)
            else:
                d[name] = rnd.choice(pool)
        out.append(orjson.dumps(d))
    return out


def test_the_format_refuses_what_the_codec_refuses_and_reads_the_same_values(
    jar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = [*CASES.values(), *fuzzed(400)]
    rows = format_rows(jar, values)
    assert [(n, line) for n, line, _ in rows] == [(n, 0) for n in range(len(values))]  # one row per value
    names = [*CASES, *(f"fuzzed_{i}" for i in range(len(values) - len(CASES)))]
    got = {names[n]: verdict for n, _, verdict in rows}
    want = {name: oracle(v, monkeypatch) for name, v in zip(names, values, strict=True)}
    differ = {k: (got[k], want[k]) for k in names if got[k] != want[k]}
    assert differ == {}
    # The coerced kinds, by hand: what each must be.
    expect = {
        "float_in_int": ("bad_type", "bytes_fwd"), "version_float": ("bad_type", "schema_version"),
        "version_true": ("bad_type", "schema_version"), "version_01": ("wrong_version", "schema_version"),
        "number_in_string": ("bad_type", "src_ip"), "string_in_int": ("bad_type", "bytes_fwd"),
        "text_after": ("not_json", ""), "two_objects": ("not_json", ""), "two_lines": ("not_json", ""),
        "nested_junk": ("", ""), "nested_infinite": ("not_json", ""), "duplicate_last_good": ("", ""),
        "duplicate_last_bad": ("bad_type", "bytes_fwd"), "bin_extra_key": ("bad_type", "ts_rtt_hist"),
        "beyond_u64": ("bad_type", "bytes_fwd"), "u64_max": ("bad_value", "bytes_fwd"),
        "quoted_empty": ("", ""), "object_in_optional": ("bad_type", "exporter"), "not_object": ("bad_type", ""),
    }  # fmt: skip
    assert {k: got[k][:2] for k in expect} == expect
    assert got["quoted_int"][2] is not None and got["duplicate_last_good"][2] is not None
    bytes_fwd = [name for name, _ in checks.FIELD_KINDS].index("bytes_fwd")
    assert (got["quoted_int"][2][bytes_fwd], got["duplicate_last_good"][2][bytes_fwd]) == ("12", "5")
    assert sum(1 for v in got.values() if v[0] == "") > 20  # the fuzzing leaves accepted records too


def test_a_sampling_rate_has_the_loaders_range(jar: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The job reads the rate as BIGINT: every rate the loader stores (UInt32) is read, the next one is out of range.
    values = [rec(sampling_rate=r) for r in (2**31 - 1, 2**31, 2**32 - 1, 2**32)]
    got = [verdict for _, _, verdict in format_rows(jar, values)]
    assert got == [oracle(v, monkeypatch) for v in values]
    rate = [name for name, _ in checks.FIELD_KINDS].index("sampling_rate")
    assert [v[2][rate] if v[2] else v[:2] for v in got] == [
        str(2**31 - 1),
        str(2**31),
        str(2**32 - 1),
        ("out_of_range", "sampling_rate"),
    ]


def test_json_lines_give_one_row_per_line_each_judged_alone(jar: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [SAMPLE, rec(seq=8, bytes_fwd=1.5), rec(seq=9), b"", rec(seq=10) + b" x", rec(seq=11, src_port="80")]
    values = [b"\n".join(lines) + b"\n", SAMPLE, SAMPLE + b"\n", b"\n", rec(seq=12) + b"\n\n"]
    rows = format_rows(jar, values, lines=True)
    assert [(n, line) for n, line, _ in rows] == [(0, i) for i in range(6)] + [(1, 0), (2, 0), (3, 0), (4, 0), (4, 1)]
    for (n, _, verdict), text in zip(rows[:6], lines, strict=True):
        assert (n, verdict) == (0, oracle(text, monkeypatch))
    assert [v[:2] for _, _, v in rows[:6]] == [("", ""), ("bad_type", "bytes_fwd"), ("", ""), ("not_json", ""),
                                              ("not_json", ""), ("", "")]  # fmt: skip
    # A final '\n' ends the last line; an empty line before it is a line of its own, and no record.
    assert [v[0] for _, _, v in rows[6:]] == ["", "", "not_json", "", "not_json"]


# ---- addresses: one text per address ------------------------------------------------------------------------


_Session: Any = chdb_session.Session


def spell(rng: random.Random, value: int) -> str:
    """One of the many ways to write the IPv6 address `value`: either case, leading zeros, any run of zero groups
    (or part of one) as `::`, the last 32 bits as a dotted tail (leading zeros up to four digits)."""
    groups = [(value >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    tail = rng.random() < 0.3
    parts = [format(g, "X" if rng.random() < 0.3 else "x").zfill(rng.randint(len(f"{g:x}"), 4))
             for g in groups[: 6 if tail else 8]]  # fmt: skip
    dotted = [".".join(str(o).zfill(rng.randint(len(str(o)), 4)) for o in (value & 0xFFFFFFFF).to_bytes(4, "big"))]
    zeros = [i for i, g in enumerate(groups[: len(parts)]) if g == 0]
    if zeros and rng.random() < 0.8:
        a = rng.choice(zeros)
        b = a + 1
        while b < len(parts) and groups[b] == 0 and rng.random() < 0.8:
            b += 1
        return ":".join(parts[:a]) + "::" + ":".join(parts[b:] + (dotted if tail else []))
    return ":".join(parts + (dotted if tail else []))


def drawn_values(rng: random.Random, n: int) -> list[int]:
    """IPv6 values with many zero groups, IPv4-mapped and IPv4-compatible ones, and the smallest."""
    out = [0, 1, 0xFFFF << 32, (0xFFFF << 32) | 0xC0000207, 0x01020304, 0x00010000, 0xFFFF0000]
    while len(out) < n:
        kind = rng.random()
        if kind < 0.2:
            out.append((0xFFFF << 32) | rng.getrandbits(32))
        elif kind < 0.3:
            out.append(rng.getrandbits(32))
        else:
            out.append(sum((0 if rng.random() < 0.5 else rng.getrandbits(16)) << (16 * i) for i in range(8)))
    return out


HAND_SPELLINGS = {
    # the three, and the text ClickHouse prints for each
    "2001:db8::1": "2001:db8::1", "2001:DB8:0:0::1": "2001:db8::1", "2001:db8:0:0:0:0:0:1": "2001:db8::1",
    "::ffff:192.0.2.1": "192.0.2.1", "::FFFF:C000:0201": "192.0.2.1", "0:0:0:0:0:ffff:192.000.2.01": "192.0.2.1",
    "::1.2.3.4": "::1.2.3.4", "::0.0.1.0": "::100", "::ffff:0": "::255.255.0.0", "1:0:0:1:0:0:0:1": "1:0:0:1::1",
    "1:0:0:1:0:0:1:1": "1::1:0:0:1:1", "1:0:1:0:1:0:1:0": "1:0:1:0:1:0:1:0", "0:0:0:0:0:1:0:0": "::1:0:0",
    "FE80:0000::0001": "fe80::1", "::": "::", "0::0": "::", "1::": "1::", "::ffff:0.0.0.0": "0.0.0.0",
    "64:ff9b::1.2.3.4": "64:ff9b::102:304",
}  # fmt: skip


def address_rows(jar: Path, texts: list[str]) -> dict[tuple[int, str], list[str | None]]:
    """(ip_version, text) -> the four address columns the format hands on, from records with the text in each."""
    values = [rec(ip_version=v, src_ip=t, dst_ip=t, exporter=t, next_hop=t) for t in texts for v in (4, 6)]
    rows = format_rows(jar, values)
    assert [n for n, _, _ in rows] == list(range(len(values)))
    index = {name: i for i, (name, _) in enumerate(checks.FIELD_KINDS)}
    out: dict[tuple[int, str], list[str | None]] = {}
    for (n, _, (reason, field, cols)), v in zip(rows, [v for _ in texts for v in (4, 6)], strict=True):
        assert (reason, field) == ("", ""), texts[n // 2]
        assert cols is not None
        got = [None if cols[index[f]] == "null" else base64.b64decode(cols[index[f]]).decode()
               for f in addresses.ADDRESS_FIELDS]  # fmt: skip
        out[(v, texts[n // 2])] = got
    return out


def _want(text: str, version: int) -> list[str | None]:
    return [
        canonical(text, None if f in addresses.OPTIONAL_ADDRESS_FIELDS else version) for f in addresses.ADDRESS_FIELDS
    ]


def test_the_format_hands_on_each_address_in_the_text_clickhouse_prints(jar: Path) -> None:
    rng = random.Random(5952)
    drawn = {spell(rng, v): v for v in drawn_values(rng, 2500)}
    texts = [*HAND_SPELLINGS, *drawn, *(t for t, _, _ in BY_HAND), "", "1.2.3.4", "10.0.0.1", "0.0.0.0", "x"]
    got = address_rows(jar, texts)
    want = {(v, t): _want(t, v) for t in texts for v in (4, 6)}
    assert {k: (got[k], want[k]) for k in want if got[k] != want[k]} == {}
    # the oracle itself: the value each drawn spelling was made from, and the spellings by hand
    for text, value in drawn.items():
        assert canonical(text, 6) == addresses.text(ipaddress.IPv6Address(value)), text
    assert {t: got[(6, t)][0] for t in HAND_SPELLINGS} == HAND_SPELLINGS
    assert got[(6, "::")] == ["::", "::", "", ""]  # an unknown exporter, as the store prints it
    assert got[(4, "::ffff:192.0.2.1")] == [None, None, "192.0.2.1", "192.0.2.1"]  # not IPv4 text: the rule refuses it


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(address_like() | ipv4_like | noise, min_size=100, max_size=100))
def test_the_formats_reading_of_an_address_is_the_codecs(jar: Path, texts: list[str]) -> None:
    # Anything that looks like an address: the format takes exactly what the codec (and so ClickHouse) takes.
    got = address_rows(jar, texts)
    assert {(v, t): got[(v, t)] for t in texts for v in (4, 6) if got[(v, t)] != _want(t, v)} == {}


def test_the_text_is_clickhouses_own(tmp_path: Path) -> None:
    # ClickHouse's printing of the stored IPv6 value (schemas.addresses.text_sql) over the same spellings.
    rng = random.Random(6)
    drawn = {spell(rng, v): v for v in drawn_values(rng, 2000)}
    texts = [*HAND_SPELLINGS, *drawn]
    session = _Session(str(tmp_path / "chdb"))
    try:
        arr = "[" + ", ".join(f"'{t}'" for t in texts) + "]"
        out = session.query(f"SELECT arrayMap(t -> {addresses.text_sql('toIPv6(t)')}, {arr})", "JSONCompact")
    finally:
        session.close()
    printed = dict(zip(texts, orjson.loads(out.bytes())["data"][0][0], strict=True))
    assert {t: printed[t] for t in texts if printed[t] != canonical(t, 6)} == {}
    assert {t: printed[t] for t in HAND_SPELLINGS} == HAND_SPELLINGS
