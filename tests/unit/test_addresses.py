"""Addresses stored as ClickHouse IPv6 (schemas/addresses.py): the landing view's value, the Python paths' value
and the readers' text, each against hand-written expectations (the 16 bytes an address is, the text it prints as).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from processors.landing import raw_token
from processors.rows import flow_rows, late_rows
from processors.tables import FLOWS_RAW
from schemas import addresses

# the landing tests' chDB database, migrated to the last version (a module-scoped fixture: one per module)
from tests.unit.test_landing import DB, Session, fresh, land, migrated, rows


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    session = migrated(tmp_path_factory)  # the landing tests' database, every migration applied
    yield session
    session.close()


# (ip_version, text in the record, the stored address's 16 bytes in hex, the text readers print)
CASES = [
    (4, "10.1.2.3", "00000000000000000000ffff0a010203", "10.1.2.3"),
    (4, "0.0.0.0", "00000000000000000000ffff00000000", "0.0.0.0"),
    (4, "255.255.255.255", "00000000000000000000ffffffffffff", "255.255.255.255"),
    (6, "2001:DB8:0:0:0:0:0:1", "20010db8000000000000000000000001", "2001:db8::1"),
    (6, "2001:db8:0:0:1:0:0:1", "20010db8000000000001000000000001", "2001:db8::1:0:0:1"),
    (6, "fe80::1", "fe800000000000000000000000000001", "fe80::1"),
    (6, "::1", "00000000000000000000000000000001", "::1"),
    (6, "::ffff:192.0.2.4", "00000000000000000000ffffc0000204", "192.0.2.4"),
    (6, "::ffff:1.2.3.04", "00000000000000000000ffff01020304", "1.2.3.4"),  # ClickHouse's leading zeros
    (6, "1:2:3:4:5:6:7:8", "00010002000300040005000600070008", "1:2:3:4:5:6:7:8"),
]


def land_records(ch: Any, records: list[dict[str, Any]], topic: str) -> None:
    land(ch, [orjson.dumps(r) for r in records], raw_token(topic, 0, 0, len(records) - 1, 0))


def test_python_stores_what_the_address_is() -> None:
    for _version, text, packed, _shown in CASES:
        assert addresses.stored(text).packed.hex() == packed, text
    assert addresses.stored("") == ipaddress.IPv6Address("::")
    with pytest.raises(ValueError, match="not an address"):
        addresses.stored("999.1.2.3")


def test_the_landing_view_stores_and_readers_print_each_address(ch: Session) -> None:
    land_records(
        ch, [fresh(seq=i, ip_version=v, src_ip=t, dst_ip=t) for i, (v, t, _, _) in enumerate(CASES)], "t.cases"
    )
    sql = f"SELECT kafka_offset, hex(src_ip), hex(dst_ip), {addresses.text_sql('src_ip')}, toTypeName(src_ip) "
    got = rows(ch, sql + f"FROM {DB}.flows_raw WHERE kafka_topic = 't.cases' ORDER BY kafka_offset")
    assert got == [[i, packed.upper(), packed.upper(), shown, "IPv6"] for i, (_, _, packed, shown) in enumerate(CASES)]


def test_an_unknown_exporter_or_next_hop_is_unspecified_and_prints_empty(ch: Session) -> None:
    captured = fresh(seq=0)  # a capture agent's record: exporter and next hop ""
    del captured["next_hop"]  # absent reads as "" too
    exported = fresh(seq=1, exporter="192.0.2.1", next_hop="2001:db8::fe")
    land_records(ch, [captured, exported], "t.export")
    got = rows(ch, f"SELECT hex(exporter), {addresses.optional_text_sql('exporter')}, "
                   f"{addresses.optional_text_sql('next_hop')} FROM {DB}.flows_raw "
                   "WHERE kafka_topic = 't.export' ORDER BY kafka_offset")  # fmt: skip
    assert got == [["0" * 32, "", ""], ["00000000000000000000FFFFC0000201", "192.0.2.1", "2001:db8::fe"]]


def test_the_python_paths_give_the_landing_views_values(ch: Session) -> None:
    # The loader's slow path and the late topic insert rows built in Python: the same IPv6 values as the view.
    for decode in (flow_rows, late_rows):
        for version, text, packed, _ in CASES:
            value = orjson.dumps(fresh(ip_version=version, src_ip=text, dst_ip=text, exporter=""))
            [(spec, row)] = decode(value)
            cols = dict(zip(FLOWS_RAW.column_names, row, strict=False))
            assert cols["src_ip"].packed.hex() == packed, text
            assert cols["exporter"] == ipaddress.IPv6Address("::")
            assert dict(spec.columns)["src_ip"] == "IPv6"


def test_text_sql_agrees_with_pythons_reading_for_every_mapped_and_plain_address(ch: Session) -> None:
    # Independent reading: Python's ipaddress (RFC 5952 short form; a mapped address as its IPv4 quad).
    samples = ["::", "::2", "2001:db8::", "2001:0:0:1::1", "2001:db8:0:1:1:1:1:1", "64:ff9b::102:304",
               "::ffff:0:102:304", "::fffe:102:304", "2001:db8::ffff:102:304", "::ffff:10.0.0.1",
               "ff02::1:ff00:1"]  # fmt: skip
    for text in samples:
        addr = ipaddress.IPv6Address(text)
        want = str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)
        assert rows(ch, f"SELECT {addresses.text_sql(f'toIPv6({text!r})')}") == [[want]], text
