"""Cisco NSEL biflows (NetFlow v9 from an ASA): a record with responder counters counts both directions, so it is
not one-way, even when the responder sent nothing (a connection attempt nobody answered).

The datagram is built here field by field: NetFlow v9 (RFC 3954) with the NSEL field types 231/232
(NF_F_FWD_FLOW_DELTA_BYTES / NF_F_REV_FLOW_DELTA_BYTES, IPFIX initiatorOctets / responderOctets) and 298/299
(initiatorPackets / responderPackets).
"""

from __future__ import annotations

import ipaddress
import struct

import gwtel_native

from ingest.classify import PartnerClassifier
from ingest.collect.decoded import Exported
from ingest.collect.frames import batch
from ingest.collect.records import RecordBuilder
from tests.exports import netflow9_data, netflow9_template
from tests.unit.test_collect_records import COLLECTOR, PARTNERS

NSEL_TEMPLATE = 260
NSEL_FIELDS = ((8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (231, 4), (232, 4), (298, 8), (299, 8), (10, 4), (14, 4))


def v9(flowset: bytes) -> bytes:
    return struct.pack("!HHIIII", 9, 1, 100_000, 1_700_000_000, 0, 0) + flowset


def nsel_template() -> bytes:
    rec = struct.pack("!HH", NSEL_TEMPLATE, len(NSEL_FIELDS)) + b"".join(struct.pack("!HH", *f) for f in NSEL_FIELDS)
    return v9(struct.pack("!HH", 0, 4 + len(rec)) + rec)


def nsel_data(flows: list[tuple[str, str, int, int, int, int, int]]) -> bytes:
    """(initiator, responder, their ports, initiator octets, responder octets, ...) with packets alike."""
    body = b""
    for src, dst, sport, dport, fwd, rev, pkts_rev in flows:
        body += ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
        body += struct.pack("!HHBIIQQII", sport, dport, 6, fwd, rev, 3, pkts_rev, 2, 1)
    body += bytes(-len(body) % 4)  # a flowset is padded to 4 bytes
    return v9(struct.pack("!HH", NSEL_TEMPLATE, 4 + len(body)) + body)


def test_a_biflow_whose_responder_sent_nothing_is_not_one_way() -> None:
    col = gwtel_native.Collector()
    datagrams = [
        nsel_template(),
        nsel_data(
            [("10.1.1.1", "203.0.113.5", 40000, 443, 180, 0, 0), ("10.1.1.2", "203.0.113.6", 40001, 443, 900, 4200, 5)]
        ),
        netflow9_template(),
        netflow9_data([("10.1.1.3", "203.0.113.7", 40002, 80, 6, 700, 2, 2, 1)]),
    ]
    col.feed(batch([("192.0.2.1", 1_700_000_000_000_000_000, d) for d in datagrams]))
    rows = [Exported(*t) for t in col.take()]
    assert [(r.octets, r.octets_rev, r.packets_rev, r.biflow) for r in rows] == [
        (180, 0, 0, True), (900, 4200, 5, True), (700, 0, 0, False)
    ]  # fmt: skip
    builder = RecordBuilder(COLLECTOR, PartnerClassifier(PARTNERS, country_of=lambda _ip: None), first_seq=1)
    recs = builder.build(rows, export_ns=0, agent_id="col")
    assert [(r.bytes_fwd, r.bytes_rev, r.one_way) for r in recs] == [(180, 0, 0), (900, 4200, 0), (700, 0, 1)]
