"""Router flow exports of the shared corpus (flow_payloads/) decoded by the native collector, each record's
fields checked against tshark's dissection of the same datagrams (an independent decoder: Wireshark's cflow
and sflow dissectors), plus hand-built sFlow datagrams (the corpus has none) checked the same way."""

from __future__ import annotations

import ipaddress
import json
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final
from xml.etree import ElementTree

import gwtel_native
import pytest

from ingest.classify import PartnerClassifier
from ingest.collect.config import CollectorConfig
from ingest.collect.decoded import Exported, LinkCounters
from ingest.collect.frames import batch
from ingest.collect.records import RecordBuilder
from ingest.partners import PartnersConfig
from schemas.flow_record import FlowRecord

EXPORTER = "192.0.2.1"

# (files in the order an exporter sent them, UDP port tshark dissects as cflow)
NETFLOW_CASES = {
    "netflow5_juniper": (["netflow5_test_juniper_mx80.dat"], 2055),
    "netflow5_stream": (["netflow5.dat"], 2055),
    "netflow9_softflowd": (["netflow9_test_softflowd_tpl_data.dat"], 2055),
    "netflow9_cisco_asa": (["netflow9_test_cisco_asa_1_tpl.dat", "netflow9_test_cisco_asa_1_data.dat"], 2055),
    "netflow9_invalid": (["netflow9_test_invalid01.dat"], 2055),
    "ipfix_concatenated": (["ipfix.dat"], 4739),
    "ipfix_mikrotik": (["ipfix_test_mikrotik_tpl.dat", "ipfix_test_mikrotik_data258.dat"], 4739),
    "ipfix_openbsd": (["ipfix_test_openbsd_pflow_tpl.dat", "ipfix_test_openbsd_pflow_data.dat"], 4739),
}


def _messages(data: bytes) -> Iterator[bytes]:
    """Split a file of back-to-back export messages (captured with nc) into datagrams, by each header's own
    length (IPFIX) or record count (NetFlow v5); NetFlow v9 files hold one datagram."""
    o = 0
    while o < len(data):
        version = struct.unpack_from("!H", data, o)[0]
        if version == 10:
            n = struct.unpack_from("!H", data, o + 2)[0]
        elif version == 5:
            n = 24 + 48 * struct.unpack_from("!H", data, o + 2)[0]
        else:
            n = len(data) - o
        yield data[o : o + n]
        o += n


def _pcap(payloads: list[bytes], path: Path, dport: int) -> None:
    """Wrap bare UDP payloads in Ethernet/IPv4/UDP frames from EXPORTER (a classic pcap file)."""
    src = ipaddress.IPv4Address(EXPORTER).packed
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, p in enumerate(payloads):
            udp = struct.pack("!HHHH", 50000, dport, 8 + len(p), 0) + p
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0, src, bytes([192, 0, 2, 99]))
            frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + udp
            fh.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)


def _tshark(path: Path, dport: int, proto: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["tshark", "-r", str(path), "-d", f"udp.port=={dport},{proto}", "-T", "json"],
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    return [pkt["_source"]["layers"] for pkt in json.loads(out, object_pairs_hook=_keep_duplicates)]


def _keep_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """tshark's JSON repeats keys (two samples with one sequence number): keep each, the later ones renamed."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        key, n = k, 1
        while key in out:
            n += 1
            key = f"{k} #{n}"
        out[key] = v
    return out


def _flows(node: Any) -> Iterator[dict[str, Any]]:
    """tshark's flow records, in order: the subtrees that hold a source address."""
    if isinstance(node, dict):
        if "cflow.srcaddr" in node or "cflow.srcaddrv6" in node:
            yield node
            return
        for v in node.values():
            yield from _flows(v)
    elif isinstance(node, list):
        for v in node:
            yield from _flows(v)


def _decode(payloads: list[bytes]) -> tuple[list[Exported], dict[str, Any]]:
    col = gwtel_native.Collector()
    col.feed(batch([(EXPORTER, 1_700_000_000_000_000_000, p) for p in payloads]))
    return [Exported(*t) for t in col.take()], col.counters()


def _ip(b: bytes) -> str:
    return str(ipaddress.ip_address(b))


def _norm(v: str) -> str | int:
    """tshark prints flags in hex as wide as the field (0x18, 0x0018): compare those as numbers."""
    return int(v, 16) if v.startswith("0x") else v


# tshark field -> how to read our record's value as tshark prints it
_CFLOW_FIELDS: dict[str, Any] = {
    # a template may hold both families with the unused one zero
    "cflow.srcaddr": lambda r: _ip(r.src) if r.ip_version == 4 else "0.0.0.0",
    "cflow.dstaddr": lambda r: _ip(r.dst) if r.ip_version == 4 else "0.0.0.0",
    "cflow.srcaddrv6": lambda r: _ip(r.src) if r.ip_version == 6 else "::",
    "cflow.dstaddrv6": lambda r: _ip(r.dst) if r.ip_version == 6 else "::",
    "cflow.srcport": lambda r: str(r.src_port),
    "cflow.dstport": lambda r: str(r.dst_port),
    "cflow.protocol": lambda r: str(r.protocol),
    "cflow.octets": lambda r: str(r.octets),
    "cflow.packets": lambda r: str(r.packets),
    "cflow.inputint": lambda r: str(r.in_if),
    "cflow.outputint": lambda r: str(r.out_if),
    "cflow.srcas": lambda r: str(r.src_as),
    "cflow.dstas": lambda r: str(r.dst_as),
    "cflow.nexthop": lambda r: _ip(r.next_hop) if r.next_hop else "0.0.0.0",
    "cflow.tcpflags": lambda r: r.tcp_flags,
}


# tshark field -> the stored FlowRecord's value as tshark prints it (what the export brings, kept as exported)
_STORED_CFLOW_FIELDS: dict[str, Any] = {
    "cflow.inputint": lambda s: str(s.in_if),
    "cflow.outputint": lambda s: str(s.out_if),
    "cflow.srcas": lambda s: str(s.src_asn),
    "cflow.dstas": lambda s: str(s.dst_asn),
}
_UNSET: Final = ("0.0.0.0", "::")


def _same_address(a: str, b: str) -> bool:
    return ipaddress.ip_address(a) == ipaddress.ip_address(b)


def _next_hop_shown(t: dict[str, Any]) -> str | None:
    """The next hop tshark shows: the IP next hop, else the BGP one (zero: none), None when neither is exported."""
    shown = [t[k] for k in ("cflow.nexthop", "cflow.nexthopv6", "cflow.bgpnexthop", "cflow.bgpnexthopv6") if k in t]
    if not shown:
        return None
    return next((a for a in shown if a not in _UNSET), "")


def _stored(ours: list[Exported]) -> list[FlowRecord]:
    """The FlowRecords the collector makes of decoded records (no interface map, no partner groups)."""
    partners = PartnersConfig.model_validate({"domestic": {"prefixes": [{"prefix": "10.0.0.0/8"}]}, "groups": {}})
    builder = RecordBuilder(CollectorConfig(), PartnerClassifier(partners, country_of=lambda _ip: None))
    return builder.build(ours, export_ns=1_700_000_000 * 10**9, agent_id="corpus")


def _check_cflow(what: str, ours: list[Exported], theirs: list[dict[str, Any]], senders: list[str]) -> int:
    """Every field tshark shows for a record equals ours, record by record (at least 4 fields each); the stored
    FlowRecord carries the exporter (the datagram's source as tshark reads it), interfaces, ASNs and next hop.
    Returns how many of those stored fields tshark showed (an export template may carry none of them)."""
    compared = 0
    for i, (r, t) in enumerate(zip(ours, theirs, strict=True)):
        for name, value in _CFLOW_FIELDS.items():
            if name in t:
                assert value(r) == _norm(t[name]), f"{what} record {i}: {name} ours {value(r)!r}, tshark {t[name]!r}"
                compared += 1
    assert compared >= 4 * len(ours)
    stored = 0
    for i, (s, t, sender) in enumerate(zip(_stored(ours), theirs, senders, strict=True)):
        assert s.exporter == sender, f"{what} record {i}: exporter {s.exporter!r}, tshark {sender!r}"
        for name, value in _STORED_CFLOW_FIELDS.items():
            if name in t:
                assert value(s) == t[name], f"{what} record {i}: stored {name} {value(s)!r}, tshark {t[name]!r}"
                stored += 1
        hop = _next_hop_shown(t)
        if hop is not None:
            # compared as addresses: tshark writes an IPv4-mapped one in hex, inet_ntop in dotted form
            ok = s.next_hop == hop == "" or (s.next_hop != "" != hop and _same_address(s.next_hop, hop))
            assert ok, f"{what} record {i}: stored next_hop {s.next_hop!r}, tshark {hop!r}"
            stored += 1
    return stored


def _cflow_records(packets: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """tshark's flow records in order, and the source address of the datagram that carried each."""
    flows: list[dict[str, Any]] = []
    senders: list[str] = []
    for layers in packets:
        found = list(_flows(layers.get("cflow", {})))
        flows += found
        sender = str((layers.get("ip") or {}).get("ip.src") or (layers.get("ipv6") or {}).get("ipv6.src"))
        senders += [sender] * len(found)
    return flows, senders


@pytest.mark.parametrize("case", sorted(NETFLOW_CASES))
def test_netflow_and_ipfix_records_match_tshark(case: str, corpus_dir: Path, tmp_path: Path) -> None:
    files, port = NETFLOW_CASES[case]
    payloads = [m for f in files for m in _messages((corpus_dir / "flow_payloads" / f"logstash__{f}").read_bytes())]
    pcap = tmp_path / f"{case}.pcap"
    if case == "netflow9_invalid":
        # Its header counts 2 records while 6 flowsets follow; tshark stops at the count, the collector walks the
        # sets by their lengths (exporters disagree on what the count counts). tshark reads a raised count.
        _pcap([p[:2] + struct.pack("!H", 200) + p[4:] for p in payloads], pcap, port)
    else:
        _pcap(payloads, pcap, port)
    theirs, senders = _cflow_records(_tshark(pcap, port, "cflow"))
    ours, counters = _decode(payloads)
    assert theirs, f"{case}: tshark dissected no flow record"
    assert len(ours) == len(theirs), counters
    stored = _check_cflow(case, ours, theirs, senders)
    if case.startswith("netflow5"):
        assert stored == 5 * len(ours)  # every v5 record has both interfaces, both ASNs and a next hop
    assert counters["errors"] == []
    if case == "netflow9_invalid":
        # its options record (tshark: "Sampling interval: 100") applies to the source id's data records
        assert {r.sampling_rate for r in ours} == {100}


def test_netflow5_count_beyond_the_datagram_is_refused(corpus_dir: Path) -> None:
    data = (corpus_dir / "flow_payloads" / "logstash__netflow5_test_invalid01.dat").read_bytes()
    assert struct.unpack_from("!H", data, 2)[0] * 48 + 24 > len(data)  # the file's defect, read independently
    ours, counters = _decode([data])
    assert ours == []
    assert counters["errors"] == [(ipaddress.IPv4Address(EXPORTER).packed, "bad_count", 1)]


# RFC 5103 biflows, built field by field from RFC 7011 / RFC 5103: reverse elements are IANA elements under
# private enterprise number 29305
_REVERSE_PEN = 29305


def _ipfix_message(sets: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(struct.pack("!HH", sid, 4 + len(b)) + b for sid, b in sets)
    return struct.pack("!HHIII", 10, 16 + len(body), 1_700_000_000, 1, 7) + body


def _biflow_datagrams() -> list[bytes]:
    """Template 300: addresses, octetDeltaCount (8), packetDeltaCount (4), their reverse elements; template 301:
    the total counts (85, 86) and their reverse elements, with an unrelated enterprise's element 1 between."""
    fwd = struct.pack("!HHHHHHHH", 8, 4, 12, 4, 1, 8, 2, 4)
    rev = struct.pack("!HHIHHI", 0x8000 | 1, 8, _REVERSE_PEN, 0x8000 | 2, 4, _REVERSE_PEN)
    t300 = struct.pack("!HH", 300, 6) + fwd + rev
    totals = struct.pack("!HHHHHHHH", 8, 4, 12, 4, 85, 8, 86, 8)
    other = struct.pack("!HHI", 0x8000 | 1, 4, 9)
    rev_totals = struct.pack("!HHIHHI", 0x8000 | 85, 8, _REVERSE_PEN, 0x8000 | 86, 8, _REVERSE_PEN)
    t301 = struct.pack("!HH", 301, 7) + totals + other + rev_totals
    d300 = b"".join(
        bytes([10, 0, 0, i, 203, 0, 113, i]) + struct.pack("!QIQI", 1500 * i, 3 * i, 40_000 * (i - 1), 20 * (i - 1))
        for i in (1, 2, 3)
    )
    d301 = bytes([10, 0, 0, 9, 198, 51, 100, 9]) + struct.pack("!QQIQQ", 800, 4, 0xFFFFFFFF, 6_400, 9)
    return [_ipfix_message([(2, t300 + t301)]), _ipfix_message([(300, d300), (301, d301)])]


def _tshark_biflows(path: Path) -> list[dict[str, int]]:
    """Per flow record tshark dissects: its forward and reverse octets and packets, told apart by tshark's own
    "Reverse" naming of the enterprise 29305 elements (PDML shownames)."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-d", "udp.port==4739,cflow", "-T", "pdml"],
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    flows: list[dict[str, int]] = []
    for f in ElementTree.fromstring(out).iter("field"):
        name = f.get("name", "")
        if name == "cflow.srcaddr":
            flows.append({})
        elif flows and name in ("cflow.octets", "cflow.packets", "cflow.permanent_octets", "cflow.permanent_packets"):
            what = "octets" if name.endswith("octets") else "packets"
            flows[-1][what + ("_rev" if "Reverse" in f.get("showname", "") else "")] = int(f.get("show", ""))
    return flows


def test_rfc5103_reverse_counters_match_tshark(tmp_path: Path) -> None:
    payloads = _biflow_datagrams()
    pcap = tmp_path / "biflow.pcap"
    _pcap(payloads, pcap, 4739)
    theirs = _tshark_biflows(pcap)
    ours, counters = _decode(payloads)
    assert counters["errors"] == []
    assert len(theirs) == len(ours) == 4
    for r, s, t in zip(ours, _stored(ours), theirs, strict=True):
        assert set(t) == {"octets", "packets", "octets_rev", "packets_rev"}, t
        assert (r.octets, r.packets, r.octets_rev, r.packets_rev) == (
            t["octets"],
            t["packets"],
            t["octets_rev"],
            t["packets_rev"],
        )
        assert (s.bytes_fwd, s.packets_fwd, s.bytes_rev, s.packets_rev) == (
            t["octets"],
            t["packets"],
            t["octets_rev"],
            t["packets_rev"],
        )
        # the reverse elements make a biflow even where the reverse direction sent nothing (the first record)
        assert r.biflow and s.one_way == 0


# sFlow v5, built field by field from the sFlow v5 specification (sflow.org/sflow_version_5.txt)
def _u32(*values: int) -> bytes:
    return b"".join(struct.pack("!I", v) for v in values)


def _record(fmt: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return _u32(fmt, len(body)) + body


def _eth_vlan_ipv4_tcp() -> bytes:
    tcp = struct.pack("!HHIIBBHHH", 33000, 443, 1, 0, 0x50, 0x12, 1000, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1400, 1, 0, 64, 6, 0, bytes([192, 0, 2, 10]), bytes([198, 51, 100, 20]))
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!HHH", 0x8100, 100, 0x0800) + ip + tcp


def _ipv6_udp() -> bytes:
    udp = struct.pack("!HHHH", 5353, 53, 108, 0)
    src = ipaddress.IPv6Address("2001:db8::1").packed
    dst = ipaddress.IPv6Address("2001:db8::2").packed
    return struct.pack("!IHBB", 0x60000000, 108, 17, 64) + src + dst + udp


def _raw_header(protocol: int, header: bytes, frame_length: int) -> bytes:
    return _record(1, _u32(protocol, frame_length, 4, len(header)) + header)


def _sflow_datagram() -> bytes:
    gateway = _u32(1) + bytes([10, 0, 0, 1]) + _u32(65000, 64500, 64501, 1, 2, 3, 64510, 64515, 64520, 0, 100)
    flow = _u32(7, 5, 2048, 100000, 0, 11, 12, 2) + _raw_header(1, _eth_vlan_ipv4_tcp(), 1418) + _record(1003, gateway)
    expanded = _u32(8, 0, 5, 512, 50000, 0, 0, 21, 0, 22, 1) + _raw_header(12, _ipv6_udp(), 152)
    ifc = _u32(11, 6) + struct.pack("!Q", 10**10) + _u32(1, 3) + struct.pack("!Q", 123456789) + _u32(10, 1, 2, 0, 0, 0)
    ifc += struct.pack("!Q", 987654321) + _u32(20, 3, 4, 0, 0, 0)
    counters = _u32(9, 11, 1) + _record(1, ifc)
    header = _u32(5, 1) + bytes([10, 9, 9, 9]) + _u32(0, 1, 1000, 3)
    return header + _record(1, flow) + _record(3, expanded) + _record(2, counters)


def _find(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        if key in node:
            return node[key]
        for v in node.values():
            found = _find(v, key)
            if found is not None:
                return found
    return None


def _check_sflow(ours: list[Exported], links: list[LinkCounters], packets: list[dict[str, Any]]) -> int:
    """Compare decoded sFlow records and interface counters with tshark's samples; returns fields compared."""
    samples = []
    counters = []
    agents = []
    for layers in packets:
        for sflow in (
            layers.get("sflow", {}),
            *(layers.get("sflow", []) if isinstance(layers.get("sflow"), list) else []),
        ):
            if not isinstance(sflow, dict):
                continue
            for key, v in sflow.items():
                if "flow sample" in key.lower():
                    hdr = _find(v, "sflow_245.header_tree")
                    if hdr is not None and (("ip" in hdr) or _find(hdr, "ipv6") is not None):
                        samples.append(v)
                        agents.append(sflow["sflow_245.agent"])
                elif "counters sample" in key.lower():
                    c = _find(v, "Generic interface counters")
                    if c is not None:
                        counters.append(c)
    assert len(ours) == len(samples)
    n = 0
    for r, rec, s, agent in zip(ours, _stored(ours), samples, agents, strict=True):
        assert _ip(r.exporter) == agent == rec.exporter
        assert str(r.sampling_rate) == s["sflow.flow_sample.sampling_rate"]
        in_if = _find(s, "sflow.flow_sample.input_interface_value") or s["sflow.flow_sample.input_interface"]
        assert str(r.in_if) == in_if == str(rec.in_if)
        out_if = _find(s, "sflow.flow_sample.output_interface_value")
        if out_if is not None and _find(s, "sflow.flow_sample.output_interface_format") in (None, "0"):
            assert str(r.out_if) == out_if
        hdr = _find(s, "sflow_245.header_tree")
        l3 = hdr.get("ip") or _find(hdr, "ipv6")
        if r.ip_version == 4:
            assert (_ip(r.src), _ip(r.dst), str(r.octets)) == (l3["ip.src"], l3["ip.dst"], l3["ip.len"])
        else:
            assert (_ip(r.src), _ip(r.dst)) == (l3["ipv6.src"], l3["ipv6.dst"])
            assert r.octets == int(l3["ipv6.plen"]) + 40
        for proto in ("tcp", "udp"):
            l4 = _find(hdr, proto)
            if isinstance(l4, dict) and f"{proto}.srcport" in l4:
                assert (str(r.src_port), str(r.dst_port)) == (l4[f"{proto}.srcport"], l4[f"{proto}.dstport"])
        assert r.packets == 1 and r.first_ns == r.last_ns
        assert str(r.vlan) == (_find(hdr, "vlan.id") or "0")
        assert str(r.src_as) == (_find(s, "sflow_245.srcAS") or "0") == str(rec.src_asn)
        path = _find_all(s, "sflow_245.dstAS")
        assert str(r.dst_as) == (path[-1] if path else "0") == str(rec.dst_asn)  # the AS path's last AS
        n += 12
    assert len(links) == len(counters)
    for link, c in zip(links, counters, strict=True):
        ifindex, in_octets, out_octets = link[1:4]
        want = (c["sflow_245.ifindex"], c["sflow_245.ifinoct"], c["sflow_245.ifoutoct"])
        assert (str(ifindex), str(in_octets), str(out_octets)) == want
        n += 3
    return n


def _find_all(node: Any, key: str) -> list[Any]:
    """Every value of `key` (and its repeats, see _keep_duplicates) under `node`, in document order."""
    out: list[Any] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key or k.startswith(f"{key} #"):
                out.append(v)
            else:
                out.extend(_find_all(v, key))
    return out


def test_sflow_samples_match_tshark(tmp_path: Path) -> None:
    dg = _sflow_datagram()
    pcap = tmp_path / "sflow.pcap"
    _pcap([dg], pcap, 6343)
    col = gwtel_native.Collector()
    col.feed(batch([(EXPORTER, 5, dg)], "sflow"))
    ours = [Exported(*t) for t in col.take()]
    assert len(ours) == 2 and col.counters()["errors"] == []
    assert (ours[0].src_as, ours[0].dst_as, _ip(ours[0].next_hop), ours[0].vlan) == (64500, 64520, "10.0.0.1", 100)
    first, second = _stored(ours)
    assert (first.exporter, first.next_hop, first.in_if, first.out_if, first.one_way) == (
        "10.9.9.9",
        "10.0.0.1",
        11,
        12,
        1,
    )
    assert (second.exporter, second.next_hop, second.in_if, second.out_if) == ("10.9.9.9", "", 21, 22)
    assert (
        _check_sflow(ours, [LinkCounters._make(t) for t in col.take_links()], _tshark(pcap, 6343, "sflow"))
        == 2 * 12 + 3
    )


# Captures of real exporters in the corpus: (file, UDP port, tshark dissector)
CAPTURES = {
    "graylog__netgraph-netflow5.pcap": (2055, "cflow"),
    "graylog__nprobe-netflow9-3.pcap": (2055, "cflow"),
    "ndpi__netflow-fritz.pcap": (2055, "cflow"),
    "ndpi__netflowv9.pcap": (2057, "cflow"),
    "pmacct__401-IPFIXv10-BMP-IPv6-CISCO-MPLS-multiple-sources_traffic-00.pcap": (9991, "cflow"),
    "ndpi__sflow.pcap": (6343, "sflow"),
    "tcpdump__sflow_multiple_counter_30_pdus.pcap": (6343, "sflow"),
}


def _payloads(path: Path, port: int) -> list[tuple[str, int, bytes]]:
    """(source address, 0, UDP payload) of each datagram to `port`, as tshark extracts them."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", f"udp.dstport=={port}",
         "-T", "fields", "-e", "ip.src", "-e", "ipv6.src", "-e", "udp.payload"],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    rows = []
    for line in out.splitlines():
        v4, v6, payload = line.split("\t")
        if payload:
            # an ICMP error quoting a datagram lists two addresses: the outer one is the sender
            rows.append(((v4 or v6).split(",")[0], 0, bytes.fromhex(payload.replace(":", ""))))
    return rows


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_exporter_captures_match_tshark(name: str, corpus_dir: Path) -> None:
    path = corpus_dir / "pcaps" / name
    port, dissector = CAPTURES[name]
    col = gwtel_native.Collector()
    col.feed(batch(_payloads(path, port), "sflow" if dissector == "sflow" else "any"))
    ours = [Exported(*t) for t in col.take()]
    packets = _tshark(path, port, dissector)
    if dissector == "sflow":
        assert _check_sflow(ours, [LinkCounters._make(t) for t in col.take_links()], packets) > 0
        return
    theirs, senders = _cflow_records(packets)
    assert len(ours) == len(theirs), col.counters()
    _check_cflow(name, ours, theirs, senders)
