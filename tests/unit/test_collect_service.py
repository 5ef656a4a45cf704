"""The collector loop on loopback: sockets, fairness between sockets, kernel drops, templates across restarts."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.classify import PartnerClassifier
from ingest.collect.config import CollectorConfig, parse_listen
from ingest.collect.frames import HEADER
from ingest.collect.listener import Listeners
from ingest.collect.records import RecordBuilder
from ingest.collect.service import CollectorService
from ingest.collect.templates import TemplateFiles
from ingest.partners import PartnersConfig
from schemas.flow_record import FlowRecord
from tests.exports import ipfix_data, ipfix_template, netflow5


def _send(port: int, *payloads: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in payloads:
            s.sendto(p, ("127.0.0.1", port))


def _service(listeners: Listeners, out: list[FlowRecord], tpl_dir: Path | None = None) -> CollectorService:
    cfg = CollectorConfig()
    builder = RecordBuilder(cfg, PartnerClassifier(PartnersConfig.default(), country_of=lambda _ip: None))
    return CollectorService(cfg, listeners, builder, out.append, None if tpl_dir is None else TemplateFiles(tpl_dir))


def _drain(svc: CollectorService, want: int, out: list[FlowRecord]) -> None:
    deadline = time.monotonic() + 5
    while len(out) < want and time.monotonic() < deadline:
        svc.step(0.05)


@pytest.fixture
def listeners() -> Iterator[Listeners]:
    lst = Listeners(
        [parse_listen("netflow://127.0.0.1:0"), parse_listen("ipfix://127.0.0.1:0")],
        sockets_per_listener=2,
        receive_buffer=1 << 20,
    )
    yield lst
    lst.close()


def test_records_from_two_protocols(listeners: Listeners) -> None:
    nf_port, ipfix_port = (int(s.listen.rsplit(":", 1)[1]) for s in listeners.stats[::2])
    out: list[FlowRecord] = []
    svc = _service(listeners, out)
    _send(nf_port, netflow5([("192.0.2.7", "198.51.100.1", 1234, 80, 6, 3, 180)], sampling=0x4000 | 10))
    _send(ipfix_port, ipfix_template(), ipfix_data([("192.0.2.8", "198.51.100.2", 53, 5353, 17, 999, 2, 5, 6)]))
    _drain(svc, 2, out)
    got = sorted((r.src_ip, r.dst_port, r.protocol, r.bytes_fwd, r.packets_fwd, r.sampling_rate) for r in out)
    assert got == [("192.0.2.7", 80, 6, 180, 3, 10), ("192.0.2.8", 5353, 17, 999, 2, 1)]
    assert [r.seq for r in out] == [0, 1]
    counters = svc.engine.counters()
    assert counters["errors"] == []


def test_a_flooded_socket_does_not_starve_the_others(listeners: Listeners) -> None:
    nf_port, ipfix_port = (int(s.listen.rsplit(":", 1)[1]) for s in listeners.stats[::2])
    flood = netflow5([("192.0.2.7", "198.51.100.1", 1, 2, 17, 1, 100)])
    _send(nf_port, *[flood] * 300)
    _send(ipfix_port, ipfix_template())
    time.sleep(0.2)
    buf = bytearray()
    n = listeners.read(buf, max_datagrams=40, quota=8, timeout_s=1)
    assert n == 40
    versions = []
    o = 0
    while o < len(buf):
        length = HEADER.unpack_from(buf, o)[0]
        versions.append(int.from_bytes(buf[o + HEADER.size : o + HEADER.size + 2], "big"))
        o += HEADER.size + length
    assert 10 in versions  # the IPFIX socket was served although the NetFlow one had 300 waiting


def test_kernel_drops_are_read_per_socket() -> None:
    lst = Listeners([parse_listen("netflow://127.0.0.1:0")], sockets_per_listener=1, receive_buffer=4096)
    try:
        port = int(lst.stats[0].listen.rsplit(":", 1)[1])
        _send(port, *[netflow5([("192.0.2.7", "198.51.100.1", 1, 2, 17, 1, 100)] * 20)] * 500)
        time.sleep(0.2)
        buf = bytearray()
        while lst.read(buf, max_datagrams=1000, quota=1000, timeout_s=0.1):
            pass
        _send(port, netflow5([("192.0.2.7", "198.51.100.1", 1, 2, 17, 1, 100)]))
        lst.read(buf, max_datagrams=10, quota=10, timeout_s=1)
        st = lst.stats[0]
        assert st.kernel_drops > 0
        assert st.kernel_drops + st.datagrams == 501
    finally:
        lst.close()


def test_templates_survive_a_restart(listeners: Listeners, tmp_path: Path) -> None:
    ipfix_port = int(listeners.stats[2].listen.rsplit(":", 1)[1])
    out: list[FlowRecord] = []
    svc = _service(listeners, out, tmp_path)
    _send(ipfix_port, ipfix_template())
    deadline = time.monotonic() + 5
    while svc.engine.counters()["templates"] == 0 and time.monotonic() < deadline:
        svc.step(0.05)
    svc.save_templates()
    assert [p.name for p in tmp_path.iterdir()] == ["127.0.0.1.tpl"]
    # a new process: the data arrives before any template refresh
    again = _service(listeners, out, tmp_path)
    assert again.restored == 1
    _send(ipfix_port, ipfix_data([("192.0.2.8", "198.51.100.2", 53, 5353, 17, 999, 2, 5, 6)]))
    _drain(again, 1, out)
    assert [(r.src_ip, r.bytes_fwd) for r in out] == [("192.0.2.8", 999)]
    assert again.engine.counters()["errors"] == []
