"""The codec's reading of an address (`ip_ok`) against ClickHouse's isIPv4String / isIPv6String (the job's reading,
in its record format, is compared with the codec's in test_flow_format.py, over the same drawn addresses).

Addresses are drawn from their grammar (groups, `::` anywhere, dotted tails with leading zeros, too many or too
few parts) and from noise over the characters an address is made of; the oracle is Python's ipaddress.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from chdb import session as chdb_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.checks import clickhouse_ipv6_sql, ip_ok

_group = st.text(alphabet="0123456789abcdefABCDEF", min_size=0, max_size=5)
_octet = st.integers(min_value=0, max_value=300).map(str) | st.sampled_from(["01", "001", "099", "0255", ""])
_tail = st.lists(_octet, min_size=3, max_size=5).map(".".join)


@st.composite
def address_like(draw: st.DrawFn) -> str:
    groups = draw(st.lists(_group, min_size=0, max_size=9))
    if draw(st.booleans()) and groups:
        # `::` somewhere (an empty group between two colons), sometimes twice
        for _ in range(draw(st.integers(min_value=1, max_value=2))):
            groups.insert(draw(st.integers(min_value=0, max_value=len(groups))), "")
    text = ":".join(groups)
    if draw(st.booleans()):
        text = (text + ":" if text and not text.endswith(":") else text) + draw(_tail)
    return text + draw(st.sampled_from(["", "", "", "\n", " ", "%eth0", ":"]))


noise = st.text(alphabet="0123456789abcdefABCDEF:.%\n ", max_size=24)
ipv4_like = st.lists(_octet, min_size=1, max_size=5).map(".".join) | _tail


# (text, an IPv4 address, an IPv6 address), by hand
BY_HAND: list[tuple[str, bool, bool]] = [
    ("999.1.2.3", False, False), ("::ffff:1.2.3.4", False, True), ("1.2.3.4", True, False), ("::", False, True),
    ("1:2:3:4:5:6:7::", False, True), ("::2:3:4:5:6:7:8", False, True), ("1:2:3:4:5:6::1.2.3.4", False, False),
    ("1:2:3:4:5::1.2.3.4", False, True), ("fe80::1%eth0", False, False), ("1.2.3.4\n", False, False),
    ("::ffff:1.2.3.04", False, True), ("01.2.3.4", False, False), ("12345::", False, False),
    ("::0.0.0.0255", False, True), ("::0.0.0.00255", False, False), ("::0.0.0.0256", False, False),
    ("1::0000.1.1.1", False, True), ("::1255.0.0.0", False, False), ("::0:0:0:0:0:0:0:0", False, False),
    ("1::2:3:4:5:6:7:8", False, False), ("1:2:3:4:5:6:7::", False, True), ("1:2:3:4:5::1.2.3.4", False, True),
]  # fmt: skip


@pytest.mark.parametrize(("text", "v4", "v6"), BY_HAND)
def test_addresses_by_hand(text: str, v4: bool, v6: bool) -> None:
    assert (ip_ok(text, 4), ip_ok(text, 6)) == (v4, v6)


_Session: Any = chdb_session.Session


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    session = _Session(str(tmp_path_factory.mktemp("chdb")))
    yield session
    session.close()


def _clickhouse_reads(ch: Any, texts: list[str]) -> list[tuple[bool, bool]]:
    """(isIPv4String, isIPv6String) of each text, with the loader's guards (see schemas.checks)."""
    arr = "[" + ", ".join("'" + t.replace("\\", "\\\\").replace("'", "\\'") + "'" for t in texts) + "]"
    v6 = clickhouse_ipv6_sql("t")
    out = ch.query(f"SELECT arrayMap(t -> (isIPv4String(t), {v6}), {arr})", "JSONCompact")
    return [(bool(a), bool(b)) for a, b in orjson.loads(out.bytes())["data"][0][0]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(address_like() | ipv4_like | noise, min_size=20, max_size=20))
def test_the_codecs_reading_is_the_loaders(ch: Any, texts: list[str]) -> None:
    # The loader checks addresses with ClickHouse's functions: the same verdict on every drawn address.
    assert _clickhouse_reads(ch, texts) == [(ip_ok(t, 4), ip_ok(t, 6)) for t in texts]


def test_clickhouse_alone_takes_a_triple_colon(ch: Any) -> None:
    # Why the loader's check has the guard: ClickHouse's isIPv6String reads "1:::2" as an address.
    out = ch.query("SELECT isIPv6String('1:::2'), isIPv6String('0:::0')", "CSV").bytes().decode().strip()
    assert out == "1,1"
    assert _clickhouse_reads(ch, ["1:::2", "0:::0"]) == [(False, False), (False, False)]


def test_clickhouse_alone_takes_a_gap_of_no_group(ch: Any) -> None:
    # Why the loader's check has the second guard (landing version 13): `::` with eight groups written.
    texts = ["::0:0:0:0:0:0:0:0", "1::2:3:4:5:6:7:8", "1:2:3:4:5:6::1.2.3.4"]
    out = ch.query(f"SELECT {', '.join(f'isIPv6String({t!r})' for t in texts[:2])}", "CSV").bytes().decode()
    assert out.strip() == "1,1"
    assert _clickhouse_reads(ch, texts) == [(False, False)] * 3
