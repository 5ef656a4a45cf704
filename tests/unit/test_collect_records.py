"""Export records -> FlowRecords: interface map, direction, partner by ASN, sampling, no RTT."""

from __future__ import annotations

import ipaddress

import pytest

from ingest.classify import PartnerClassifier
from ingest.collect.config import CollectorConfig
from ingest.collect.decoded import Exported
from ingest.collect.records import RecordBuilder
from ingest.partners import PartnersConfig
from schemas import codec

PARTNERS = PartnersConfig.model_validate(
    {
        "domestic": {"countries": ["CN"], "prefixes": [{"prefix": "10.0.0.0/8"}]},
        "groups": {
            "asn_group": {"asns": [64500]},
            "prefix_group": {"prefixes": [{"prefix": "198.51.100.0/24", "asn": 64999}]},
        },
        "fallback": "other",
    }
)
COLLECTOR = CollectorConfig.model_validate(
    {
        "exporters": [
            {
                "address": "192.0.2.1",
                "sampling_rate": 1000,
                "interfaces": {
                    1: {"link": "hk-ix-1", "side": "external"},
                    2: {"link": "core", "side": "internal"},
                },
            }
        ]
    }
)


def _rec(src: str, dst: str, *, in_if: int, out_if: int, src_as: int = 0, dst_as: int = 0, rate: int = 1) -> Exported:
    return Exported(
        kind="ipfix",
        exporter=ipaddress.ip_address("192.0.2.1").packed,
        domain=0,
        ip_version=4,
        src=ipaddress.ip_address(src).packed,
        dst=ipaddress.ip_address(dst).packed,
        src_port=443,
        dst_port=50000,
        protocol=6,
        tos=0,
        tcp_flags=0x11,
        octets=1500,
        packets=3,
        octets_rev=0,
        packets_rev=0,
        first_ns=1,
        last_ns=2,
        in_if=in_if,
        out_if=out_if,
        src_as=src_as,
        dst_as=dst_as,
        next_hop=b"",
        sampling_rate=rate,
        vlan=0,
        flow_direction=255,
    )


@pytest.fixture
def builder() -> RecordBuilder:
    return RecordBuilder(COLLECTOR, PartnerClassifier(PARTNERS, country_of=lambda _ip: None), first_seq=7)


def test_interface_map_gives_link_direction_and_asn_partner(builder: RecordBuilder) -> None:
    inbound = _rec("203.0.113.5", "10.1.1.1", in_if=1, out_if=2, src_as=64500)
    outbound = _rec("10.1.1.1", "203.0.113.5", in_if=2, out_if=1, dst_as=64500)
    a, b = builder.build([inbound, outbound], export_ns=99, agent_id="col")
    assert (a.link_id, a.direction, a.partner, a.remote_asn) == ("hk-ix-1", "ingress", "asn_group", 64500)
    assert (b.link_id, b.direction, b.partner, b.remote_asn) == ("hk-ix-1", "egress", "asn_group", 64500)
    assert (a.seq, b.seq, a.export_ns, a.agent_id) == (7, 8, 99, "col")
    assert (a.bytes_fwd, a.packets_fwd, a.bytes_rev, a.packets_rev) == (1500, 3, 0, 0)
    assert a.end_reason == "fin" and a.tcp_flags_fwd == 0x11
    assert a.hs_rtt_ext_us is None and a.ts_rtt_count == 0 and a.dns_rtt_hist == ()


def test_unlisted_asn_falls_back_to_prefix_then_fallback(builder: RecordBuilder) -> None:
    by_prefix = _rec("198.51.100.7", "10.1.1.1", in_if=1, out_if=2, src_as=65001)
    nothing = _rec("203.0.113.5", "10.1.1.1", in_if=1, out_if=2)
    a, b = builder.build([by_prefix, nothing], export_ns=0, agent_id="col")
    assert (a.partner, a.remote_asn) == ("prefix_group", 65001)
    assert (b.partner, b.remote_asn, b.remote_country) == ("other", 0, "ZZ")


def test_sampling_from_the_export_else_the_exporter_setting(builder: RecordBuilder) -> None:
    sampled = _rec("10.1.1.1", "203.0.113.5", in_if=2, out_if=1, rate=64)
    unsaid = _rec("10.1.1.1", "203.0.113.5", in_if=2, out_if=1)
    a, b = builder.build([sampled, unsaid], export_ns=0, agent_id="col")
    assert (a.sampling_rate, b.sampling_rate) == (64, 1000)


def test_unmapped_exporter_or_interface_uses_addresses(builder: RecordBuilder) -> None:
    unmapped_if = _rec("10.1.1.1", "8.8.8.8", in_if=40, out_if=41, dst_as=64500)
    other = unmapped_if._replace(exporter=bytes([192, 0, 2, 2]))
    a, b = builder.build([unmapped_if, other], export_ns=0, agent_id="col")
    assert (a.link_id, a.direction, a.partner) == ("export-unmapped", "egress", "asn_group")
    assert (b.link_id, b.direction) == ("export-unmapped", "egress")
    assert builder.unmapped == 2


def test_export_fields_are_stored_as_exported(builder: RecordBuilder) -> None:
    r = _rec("203.0.113.5", "10.1.1.1", in_if=1, out_if=2, src_as=64500, dst_as=4_200_000_000)
    v6_hop = r._replace(next_hop=ipaddress.ip_address("2001:db8::1").packed)
    v4_hop = r._replace(next_hop=bytes([192, 0, 2, 254]))
    unset_v6 = r._replace(next_hop=bytes(16))  # "::": no next hop
    v6_exporter = r._replace(exporter=ipaddress.ip_address("2001:db8::fe").packed)
    a, b, c, d, e = builder.build([r, v6_hop, v4_hop, unset_v6, v6_exporter], export_ns=0, agent_id="col")
    assert (a.exporter, a.in_if, a.out_if, a.src_asn, a.dst_asn, a.next_hop, a.one_way) == (
        "192.0.2.1", 1, 2, 64500, 4_200_000_000, "", 1)  # fmt: skip
    assert (b.next_hop, c.next_hop, d.next_hop) == ("2001:db8::1", "192.0.2.254", "")
    assert e.exporter == "2001:db8::fe"


def test_a_biflow_is_not_one_way(builder: RecordBuilder) -> None:
    bi = _rec("10.1.1.1", "203.0.113.5", in_if=2, out_if=1)._replace(octets_rev=800, packets_rev=2)
    (a,) = builder.build([bi], export_ns=0, agent_id="col")
    assert (a.bytes_rev, a.packets_rev, a.one_way) == (800, 2, 0)


def test_records_with_export_fields_pass_the_record_checks(builder: RecordBuilder) -> None:
    r = _rec("203.0.113.5", "10.1.1.1", in_if=1, out_if=2, src_as=64500)._replace(
        next_hop=bytes([10, 0, 0, 1]), first_ns=1_700_000_000 * 10**9, last_ns=1_700_000_001 * 10**9
    )
    (a,) = builder.build([r], export_ns=1_700_000_002 * 10**9, agent_id="col")
    assert codec.decode(codec.encode(a)) == a


def test_many_next_hops_are_each_read_right(builder: RecordBuilder) -> None:
    # the address texts are cached, the cache bounded: a flood of distinct next hops still reads each right
    base = _rec("10.1.1.1", "203.0.113.5", in_if=2, out_if=1)
    hops = [ipaddress.IPv4Address(0x0A000001 + i) for i in range(5000)]
    recs = builder.build([base._replace(next_hop=h.packed) for h in hops * 2], export_ns=0, agent_id="col")
    assert [r.next_hop for r in recs] == [str(h) for h in hops * 2]
