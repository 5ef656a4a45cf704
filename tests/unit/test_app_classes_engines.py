"""DSCP and application classes through both agent engines: a capture built with Scapy whose classes are known by
hand (trading TCP on chosen ports marked EF, VR on a UDP range marked AF41, bulk web unmarked), every record the
same in the native engine and the Python reference, and equal to the hand-worked truth."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet, Raw

from ingest.applications import AppClassifier, ApplicationsConfig
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.partners import PartnersConfig
from ingest.synth import SynthConfig, generate
from tests.engines import same_records
from tests.packets import eth, frame_of, pcap_bytes

pytestmark = pytest.mark.timeout(300)

EF, AF41, CS1 = 46 << 2, 34 << 2, 8 << 2  # ToS bytes (DSCP << 2)
PARTNERS = PartnersConfig.model_validate(
    {
        "domestic": {"countries": [], "prefixes": ["10.0.0.0/8", "2001:db8:1::/48"]},
        "groups": {
            "japan": {"prefixes": ["203.0.113.0/24", "2001:db8:77::/48"]},
            "korea": {"prefixes": [{"prefix": "198.51.100.0/24", "asn": 64500}]},
        },
    }
)
CLASSIFIER = PartnerClassifier(PARTNERS, country_of=lambda _ip: None)
APPS = AppClassifier(
    ApplicationsConfig.model_validate(
        {
            "default": "bulk",
            "rules": [
                {"class": "trading", "protocols": ["tcp"], "server_ports": ["9000-9099"], "dscp": ["EF"]},
                {"class": "vr", "protocols": ["udp"], "server_ports": ["40000-40999"]},
                {"class": "korea_any", "asns": [64500]},
            ],
        }
    )
)


def _ip(src: str, dst: str, tos: int) -> Packet:
    return IP(src=src, dst=dst, tos=tos) if ":" not in src else IPv6(src=src, dst=dst, tc=tos)


def _tcp_flow(
    ends: tuple[str, str], sport: int, dport: int, tos: int, t0: float, data: int, later_tos: int | None = None
) -> list[tuple[float, Packet]]:
    """A TCP connection: handshake, `data` bytes each way, FIN both ways. The first packet carries `tos`, the
    others `later_tos` (default the same)."""
    later = tos if later_tos is None else later_tos
    c, s = ends
    d = data
    return [
        (t0, _ip(c, s, tos) / TCP(sport=sport, dport=dport, flags="S", seq=100)),
        (t0 + 0.01, _ip(s, c, later) / TCP(sport=dport, dport=sport, flags="SA", seq=500, ack=101)),
        (t0 + 0.02, _ip(c, s, later) / TCP(sport=sport, dport=dport, flags="A", seq=101, ack=501)),
        (t0 + 0.03, _ip(c, s, later) / TCP(sport=sport, dport=dport, flags="PA", seq=101, ack=501) / Raw(b"q" * d)),
        (t0 + 0.04, _ip(s, c, later) / TCP(sport=dport, dport=sport, flags="PA", seq=501, ack=101 + d) / Raw(b"r" * d)),
        (t0 + 0.05, _ip(c, s, later) / TCP(sport=sport, dport=dport, flags="FA", seq=101 + d, ack=501 + d)),
        (t0 + 0.06, _ip(s, c, later) / TCP(sport=dport, dport=sport, flags="FA", seq=501 + d, ack=102 + d)),
        (t0 + 0.07, _ip(c, s, later) / TCP(sport=sport, dport=dport, flags="A", seq=102 + d, ack=502 + d)),
    ]


def _udp_flow(src: str, dst: str, sport: int, dport: int, tos: int, t0: float, n: int) -> list[tuple[float, Packet]]:
    return [(t0 + i * 0.005, IP(src=src, dst=dst, tos=tos) / UDP(sport=sport, dport=dport) / Raw(b"v" * 200))
            for i in range(n)]  # fmt: skip


# (packets, expected (src_ip, dst_port, protocol) -> (dscp, app_class, partner)) worked out by hand
PACKETS = [
    *_tcp_flow(("10.0.0.1", "203.0.113.5"), 50000, 9000, EF, 1.0, 100),  # trading: port in range, EF
    *_tcp_flow(("203.0.113.9", "10.0.0.2"), 40001, 9099, EF, 1.1, 50),  # trading, opened by the partner
    *_tcp_flow(("10.0.0.3", "203.0.113.5"), 50001, 9000, CS1, 1.2, 70),  # port fits, DSCP does not: bulk
    # the first packet decides: marked EF, the rest unmarked (a re-marking router after the SYN): trading
    *_tcp_flow(("10.0.0.4", "203.0.113.5"), 50002, 9050, EF, 1.3, 10, later_tos=0),
    *_tcp_flow(("2001:db8:1::4", "2001:db8:77::5"), 50003, 9001, EF, 1.4, 20),  # IPv6 traffic class: trading
    *_tcp_flow(("10.0.0.5", "203.0.113.6"), 50004, 443, 0, 1.5, 300),  # bulk web
    *_udp_flow("10.0.0.6", "203.0.113.7", 50005, 40010, AF41, 1.6, 6),  # VR: UDP range, any DSCP
    *_udp_flow("10.0.0.6", "203.0.113.7", 50006, 41000, AF41, 1.7, 3),  # just past the range: bulk
    *_tcp_flow(("10.0.0.7", "198.51.100.8"), 50007, 22, 0, 1.8, 40),  # korea's AS number: korea_any
]
TRUTH = {
    ("10.0.0.1", 9000, 6): (46, "trading", "japan"),
    ("203.0.113.9", 9099, 6): (46, "trading", "japan"),
    ("10.0.0.3", 9000, 6): (8, "bulk", "japan"),
    ("10.0.0.4", 9050, 6): (46, "trading", "japan"),
    ("2001:db8:1::4", 9001, 6): (46, "trading", "japan"),
    ("10.0.0.5", 443, 6): (0, "bulk", "japan"),
    ("10.0.0.6", 40010, 17): (34, "vr", "japan"),
    ("10.0.0.6", 41000, 17): (34, "bulk", "japan"),
    ("10.0.0.7", 22, 6): (0, "korea_any", "korea"),
}


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = [
        frame_of(eth() / p, ts_ns=round((1_700_000_000 + t) * 1e9)) for t, p in sorted(PACKETS, key=lambda x: x[0])
    ]
    path = tmp_path_factory.mktemp("classes") / "classes.pcap"
    path.write_bytes(pcap_bytes(frames))
    return path


def test_both_engines_give_each_flow_its_hand_worked_class(capture: Path) -> None:
    ref = same_records(AgentConfig(), [capture], classifier=CLASSIFIER, apps=APPS)
    got = {(r.src_ip, r.dst_port, r.protocol): (r.dscp, r.app_class, r.partner) for r in ref.records}
    assert got == TRUTH
    assert len(ref.records) == len(TRUTH)  # one record per flow: the classes are per flow


def test_without_rules_every_flow_is_in_the_default_class_with_its_dscp(capture: Path) -> None:
    ref = same_records(AgentConfig(), [capture], classifier=CLASSIFIER)
    assert {r.app_class for r in ref.records} == {"default"}
    assert {(r.src_ip, r.dst_port): r.dscp for r in ref.records} == {(k[0], k[1]): v[0] for k, v in TRUTH.items()}


def test_synthetic_traffic_classes_agree_between_engines(tmp_path: Path) -> None:
    # many flows on many ports and addresses: the rules by port range and protocol split them
    path = tmp_path / "s.pcap"
    generate(SynthConfig(seed=11, flows=300), path, tmp_path / "truth.json")
    apps = AppClassifier(
        ApplicationsConfig.model_validate(
            {
                "rules": [
                    {"class": "web", "protocols": ["tcp"], "server_ports": [80, 443, "8000-8999"]},
                    {"class": "dns", "protocols": ["udp"], "server_ports": [53]},
                    {"class": "other_udp", "protocols": ["udp"]},
                ]
            }
        )
    )
    ref = same_records(AgentConfig(), [path], apps=apps)
    assert len({r.app_class for r in ref.records}) >= 3
