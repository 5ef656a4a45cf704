"""The collector's FlowRecords built and encoded in the native engine against the Python reference
(`RecordBuilder.build` of the decoded rows): equal field by field, byte for byte what `codec.encode` writes, with
`flow_key`'s keys, sequence numbers, the unmapped count and the per-partner aggregates, on hand-built NetFlow v5,
NetFlow v9, IPFIX and sFlow datagrams through an interface map with both sides, unmapped interfaces and exporters,
and partner groups by AS number, prefix and country."""

from __future__ import annotations

from dataclasses import replace

import gwtel_native
import pytest

from ingest.agent_metrics import PartnerTally
from ingest.applications import AppClassifier, ApplicationsConfig
from ingest.classify import PartnerClassifier
from ingest.collect.config import CollectorConfig
from ingest.collect.decoded import Exported
from ingest.collect.frames import batch
from ingest.collect.records import RecordBuilder
from ingest.partners import PartnersConfig
from ingest.producer import flow_key
from ingest.sinks import EncodedBatch
from schemas import codec
from schemas.flow_record import FlowRecord
from tests.exports import ipfix_data, ipfix_template, netflow5, netflow9_data, netflow9_template, sflow_samples

PARTNERS = PartnersConfig.model_validate(
    {
        "domestic": {"countries": ["CN"], "prefixes": ["10.0.0.0/8"]},
        "groups": {
            "by_asn": {"asns": [64500, 64510]},
            "by_prefix": {"prefixes": [{"prefix": "198.51.100.0/24", "asn": 64999}]},
            "by_country": {"countries": ["US"]},
            "by_link": {"links": ["core"]},
        },
        "fallback": "rest",
        "private_is_domestic": False,
    }
)
COLLECTOR = CollectorConfig.model_validate(
    {
        "agent_id": "col-1",
        "exporters": [
            {
                "address": "192.0.2.1",
                "sampling_rate": 100,
                "interfaces": {1: {"link": "ix-1", "side": "external"}, 2: {"link": "core", "side": "internal"}},
            },
            {"address": "192.0.2.2", "interfaces": {2: {"link": "ix-2", "side": "external"}}},
            {"address": "192.0.2.3", "interfaces": {5: {"link": "ix-3", "side": "internal"}}},
            {"address": "2001:db8::1", "sampling_rate": 7},
        ],
    }
)
NO_MAP = CollectorConfig.model_validate({"agent_id": "c"})
_COUNTRY = {"8.8.8.8": "US", "1.2.3.4": "AU"}


def _classifier() -> PartnerClassifier:
    return PartnerClassifier(PARTNERS, country_of=_COUNTRY.get)


def _flows(n: int, in_if: int, out_if: int) -> list[tuple[str, str, int, int, int, int, int, int, int]]:
    remotes = ["198.51.100.7", "8.8.8.8", "1.2.3.4", "203.0.113.5", "10.9.9.9"]
    local = [f"10.0.{i}.1" if i % 4 != 3 else "8.8.4.4" for i in range(n)]  # some flows between two remote sides
    return [
        (local[i], remotes[i % len(remotes)], 1000 + i, 443, 6 if i % 3 else 17, 100 * i, i, in_if, out_if)
        if i % 2
        else (remotes[i % len(remotes)], local[i], 443, 1000 + i, 6, 100 * i, i + 1, in_if, out_if)
        for i in range(n)
    ]


def _datagrams() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for exporter in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.9"):
        out.append((exporter, ipfix_template()))
        for in_if, out_if in ((1, 2), (2, 1), (5, 6), (2, 2)):
            out.append((exporter, ipfix_data(_flows(9, in_if, out_if))))
        out.append((exporter, netflow9_template()))
        out.append((exporter, netflow9_data(_flows(6, 1, 2))))
        v5 = [(s, d, sp, dp, p, n, o) for s, d, sp, dp, p, o, n, _i, _o in _flows(5, 0, 0)]
        out.append((exporter, netflow5(v5, next_hop="192.0.2.254", src_as=64500, dst_as=64510)))
        out.append((exporter, netflow5(v5, sampling=(1 << 14) | 50, src_as=0, dst_as=64999)))
    out.append(("2001:db8::1", ipfix_template()))
    out.append(("2001:db8::1", ipfix_data(_flows(4, 1, 2))))
    pkts = [("10.0.0.1", "8.8.8.8", 1, 2, 100), ("198.51.100.1", "10.1.1.1", 3, 4, 1400)]
    out.append(("192.0.2.1", sflow_samples(pkts, agent="192.0.2.1")))
    out.append(("192.0.2.2", sflow_samples(pkts, agent="192.0.2.2", rate=1)))
    return out


def _framed() -> bytes:
    return batch([(exporter, 1_700_000_000_000_000_000, d) for exporter, d in _datagrams()])


def test_native_records_equal_the_reference_builder() -> None:
    export_ns = 1_700_000_001_000_000_000
    ref_col = gwtel_native.Collector()
    ref_col.feed(_framed())
    ref_builder = RecordBuilder(COLLECTOR, _classifier(), first_seq=11)
    ref = ref_builder.build([Exported._make(t) for t in ref_col.take()], export_ns, COLLECTOR.agent_id)
    assert len(ref) > 100

    col = gwtel_native.Collector()
    builder = RecordBuilder(COLLECTOR, _classifier(), first_seq=11)
    builder.configure(col, COLLECTOR.agent_id)
    col.feed(_framed())
    (count, keys, values, traffic, handshake, per_partner), unmapped = col.take_records(11, export_ns)
    got = EncodedBatch(count, keys, values)
    assert got.records() == ref
    assert got.pairs() == [(flow_key(r), codec.encode(r)) for r in ref]
    assert unmapped == ref_builder.unmapped > 0
    tally = PartnerTally()
    for r in ref:
        tally.add(r)
    mine = PartnerTally()
    mine.add_batch(traffic, handshake, per_partner)
    assert (mine.traffic, mine.records) == (tally.traffic, tally.records)
    assert handshake == []
    # every branch of the map and the partner rules was taken
    assert {r.direction for r in ref} >= {"ingress", "egress", "domestic", "transit"}
    assert {r.partner for r in ref} >= {"by_asn", "by_prefix", "by_country", "by_link", "rest", "domestic"}
    assert {r.link_id for r in ref} >= {"ix-1", "ix-2", "ix-3", "core", "export-unmapped"}
    assert {r.sampling_rate for r in ref} >= {1, 7, 50, 100, 1000}
    assert any(r.next_hop for r in ref) and any(r.ip_version == 4 and r.exporter for r in ref)

    # a second batch goes on from where the first stopped, and an empty one is empty
    col.feed(batch([("192.0.2.1", 0, ipfix_data(_flows(3, 1, 2)))]))
    (count2, _k, values2, *_rest), _u = col.take_records(11 + count, export_ns)
    assert count2 == 3 and codec.decode(values2.split(b"\n")[0]).seq == 11 + count
    assert col.take_records(0, 0)[0][0] == 0


def test_records_taken_in_pieces_equal_one_take() -> None:
    """`max_records` splits the encoding, not the records: the pieces, numbered on from each other, are the whole
    batch's bytes and aggregates; records decoded by a later feed queue behind those not yet taken."""
    export_ns = 1_700_000_001_000_000_000
    whole = gwtel_native.Collector()
    RecordBuilder(COLLECTOR, _classifier()).configure(whole, COLLECTOR.agent_id)
    whole.feed(_framed())
    (count, keys, values, _t, _h, per_partner), _u = whole.take_records(5, export_ns)

    col = gwtel_native.Collector()
    RecordBuilder(COLLECTOR, _classifier()).configure(col, COLLECTOR.agent_id)
    col.feed(_framed())
    pieces: list[tuple[int, bytes, bytes, list[tuple[str, int]]]] = []
    seq = 5
    while True:
        (n, k, v, _t, _h, partners), _u = col.take_records(seq, export_ns, 7)
        if not n:
            break
        assert n <= 7
        if len(pieces) == 2:
            col.feed(batch([("192.0.2.1", 0, ipfix_data(_flows(3, 1, 2)))]))  # queued behind the rest
        pieces.append((n, k, v, partners))
        seq += n
    assert sum(p[0] for p in pieces) == count + 3
    assert b"".join(p[1] for p in pieces).startswith(keys)
    assert b"".join(p[2] for p in pieces)[: len(values)] == values
    tallied: dict[str, int] = {}
    for _n, _k, _v, partners in pieces:
        for partner, n in partners:
            tallied[partner] = tallied.get(partner, 0) + n
    assert sum(tallied.values()) == count + 3
    assert all(tallied[partner] >= n for partner, n in per_partner)  # the 3 later records may add to one


def test_take_records_needs_configure() -> None:
    with pytest.raises(RuntimeError, match="configure_records"):
        gwtel_native.Collector().take_records(0, 0)


def test_exported_tos_gives_the_dscp_and_the_class_in_both_builders() -> None:
    # NetFlow v5 records whose ToS byte is 0xB8 (EF, DSCP 46) and 0x88 (AF41, 34): the DSCP is ToS >> 2
    apps = AppClassifier(
        ApplicationsConfig.model_validate(
            {"default": "bulk", "rules": [{"class": "trading", "protocols": ["tcp"], "dscp": ["EF"]}]}
        )
    )
    data = [
        ("192.0.2.9", netflow5([("10.0.0.1", "203.0.113.5", 50_000, 9000, 6, 3, 180)], tos=0xB8)),
        ("192.0.2.9", netflow5([("10.0.0.2", "203.0.113.5", 50_001, 9000, 6, 3, 180)], tos=0x88)),
    ]
    framed = batch([(exporter, 1_700_000_000_000_000_000, d) for exporter, d in data])
    ref_col = gwtel_native.Collector()
    ref_col.feed(framed)
    ref = RecordBuilder(COLLECTOR, _classifier(), apps=apps).build(
        [Exported._make(t) for t in ref_col.take()], 1_700_000_001_000_000_000, "c"
    )
    assert [(r.dscp, r.app_class) for r in ref] == [(46, "trading"), (34, "bulk")]
    col = gwtel_native.Collector()
    RecordBuilder(COLLECTOR, _classifier(), apps=apps).configure(col, "c")
    col.feed(framed)
    (count, keys, values, *_rest), _unmapped = col.take_records(0, 1_700_000_001_000_000_000)
    assert EncodedBatch(count, keys, values).records() == ref


class _Counting(PartnerClassifier):
    """The test classifier, counting the engine's questions: addresses in each call."""

    def __init__(self) -> None:
        super().__init__(PARTNERS, country_of=_COUNTRY.get)
        self.asked: list[int] = []

    def sides_of_packed(self, v4: bytes, v6: bytes) -> tuple[list[tuple[bool, str, str | None, int]], bytes]:
        self.asked.append(len(v4) // 4 + len(v6) // 16)
        return super().sides_of_packed(v4, v6)


def _addresses(records: list[FlowRecord]) -> set[str]:
    return {r.src_ip for r in records} | {r.dst_ip for r in records}


def _reference(cfg: CollectorConfig, export_ns: int) -> list[FlowRecord]:
    """The Python reference builder's records of `_framed()`, agent id "c"."""
    col = gwtel_native.Collector()
    col.feed(_framed())
    return RecordBuilder(cfg, _classifier()).build([Exported._make(t) for t in col.take()], export_ns, "c")


def test_the_classifier_is_asked_once_a_take_about_its_new_addresses() -> None:
    """One call per take, about every address of it the engine has not cached, each once; records as the
    reference builds them; a later take of the same addresses asks nothing."""
    export_ns = 1_700_000_001_000_000_000
    ref = _reference(COLLECTOR, export_ns)
    cls = _Counting()
    col = gwtel_native.Collector()
    RecordBuilder(COLLECTOR, cls).configure(col, "c")
    col.feed(_framed())
    (count, _k, values, *_r), _u = col.take_records(0, export_ns)
    assert EncodedBatch(count, _k, values).records() == ref
    assert cls.asked == [len(_addresses(ref))]
    col.feed(_framed())
    (count2, *_r), _u = col.take_records(count, export_ns)
    assert count2 == count and cls.asked == [len(_addresses(ref))]


@pytest.mark.parametrize("cache", [1, 2, 5])
def test_a_tiny_address_cache_changes_no_record(cache: int) -> None:
    """An address cache smaller than one take's new addresses is emptied while the answers of the take are
    still used: records are the reference's (no interface map: the addresses decide every direction), the
    classifier still asked once a take."""
    export_ns = 1_700_000_001_000_000_000
    ref = _reference(NO_MAP, export_ns)
    cls = _Counting()
    col = gwtel_native.Collector()
    _configure_cache(col, cls, cache)
    got = []
    for _ in range(2):
        col.feed(_framed())
        (count, keys, values, *_r), _u = col.take_records(0, export_ns, 40)
        while count:
            got += EncodedBatch(count, keys, values).records()
            (count, keys, values, *_r), _u = col.take_records(0, export_ns, 40)
    assert [replace(r, seq=0) for r in got] == [replace(r, seq=0) for r in ref] * 2
    takes = -(-len(ref) // 40)
    assert takes < len(cls.asked) <= 2 * takes  # the second pass asks again: the cache held almost nothing


def _configure_cache(
    col: gwtel_native.Collector, cls: PartnerClassifier, cache: int, sides: gwtel_native.Sides | None = None
) -> None:
    from ingest.native import record_args

    col.configure_records(
        agent_id="c",
        default_link_id=NO_MAP.default_link_id,
        exporters=[],
        rules=cls.engine_rules(),
        apps=AppClassifier(ApplicationsConfig()).engine_rules(),
        sides=sides or cls.sides_of_packed,
        address_cache=cache,
        **record_args(),
    )


def test_a_failing_or_wrong_classifier_answer_is_raised_by_the_take() -> None:
    """An exception of the classifier, or answers that do not fit the question, are the take's error: no batch
    of records built on them."""

    def raises(_v4: bytes, _v6: bytes) -> tuple[list[tuple[bool, str, str | None, int]], bytes]:
        raise KeyError("boom")

    def short(v4: bytes, v6: bytes) -> tuple[list[tuple[bool, str, str | None, int]], bytes]:
        answers, codes = _classifier().sides_of_packed(v4, v6)
        return answers, codes[:-4]

    def out_of_range(v4: bytes, v6: bytes) -> tuple[list[tuple[bool, str, str | None, int]], bytes]:
        answers, codes = _classifier().sides_of_packed(v4, v6)
        return answers[:1], codes

    for sides, error in ((raises, KeyError), (short, ValueError), (out_of_range, ValueError)):
        col = gwtel_native.Collector()
        _configure_cache(col, _classifier(), 1 << 10, sides)
        col.feed(_framed())
        with pytest.raises(error):
            col.take_records(0, 0)


def test_addresses_of_a_failed_question_are_asked_again() -> None:
    """A failed call caches no answer: once the classifier answers again, the next take's records are the
    reference's, not `unknown` ones."""
    export_ns = 1_700_000_001_000_000_000
    ref = _reference(NO_MAP, export_ns)
    calls: list[int] = []

    def fails_once(v4: bytes, v6: bytes) -> tuple[list[tuple[bool, str, str | None, int]], bytes]:
        calls.append(len(v4) // 4 + len(v6) // 16)
        if len(calls) == 1:
            raise KeyError("boom")
        return _classifier().sides_of_packed(v4, v6)

    col = gwtel_native.Collector()
    _configure_cache(col, _classifier(), 1 << 10, fails_once)
    col.feed(_framed())
    with pytest.raises(KeyError):
        col.take_records(0, 0)
    col.feed(_framed())
    (count, keys, values, *_r), _u = col.take_records(0, export_ns)
    assert [replace(r, seq=0) for r in EncodedBatch(count, keys, values).records()] == [replace(r, seq=0) for r in ref]
    assert calls == [len(_addresses(ref))] * 2
