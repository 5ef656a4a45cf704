"""Synthetic gateway traffic with exact ground truth (`gwtel synth`).

Writes a pcap of flows between domestic hosts (China) and partner hosts (Japan, Korea, Belt and Road countries,
other), with real TCP handshakes and timestamps, per-partner RTT distributions with jitter and outliers,
retransmissions, ICMP echo, DNS, 802.1Q tags, and a JSON file of what it generated: bytes, packets and flows per
window x partner x direction, and every latency sample it injected, as seen at the observation point.

Deterministic for a seed. Every flow starts and ends inside one window, so the truth does not depend on how a
collector attributes flows that span windows. Packets are built with ``struct`` (Scapy is far too slow for
million-packet files); payloads are zeros so checksums are cheap and still correct.
"""

from __future__ import annotations

import ipaddress
import json
import random
import struct
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

# Address blocks and their RIR allocation country (checked against iptocc in tests/unit/test_synth.py).
DOMESTIC_BLOCKS = ("221.1.0.0/16", "58.56.0.0/16")  # CN (Shandong)
PARTNER_SITES: dict[str, list[tuple[str, str, tuple[float, float]]]] = {
    # partner -> [(block, country, (min, max) external RTT in ms)]
    "japan": [("133.1.0.0/16", "JP", (30.0, 50.0)), ("210.130.0.0/16", "JP", (32.0, 48.0))],
    "korea": [("211.234.0.0/16", "KR", (20.0, 40.0)), ("1.208.0.0/16", "KR", (22.0, 38.0))],
    "belt_and_road": [
        ("39.32.0.0/16", "PK", (90.0, 140.0)),
        ("95.56.0.0/16", "KZ", (70.0, 110.0)),
        ("2.60.0.0/16", "RU", (100.0, 160.0)),
    ],
    "other": [("8.34.0.0/16", "US", (150.0, 220.0))],
}
PARTNER_WEIGHTS = {"japan": 0.35, "korea": 0.3, "belt_and_road": 0.25, "other": 0.1}
VLANS = (0, 0, 101, 102)  # half untagged, half on two 802.1Q VLANs
EPOCH_NS = 1_795_651_200_000_000_000  # 2026-11-26T00:00:00Z, a whole number of any window size

_ETH_SRC = bytes.fromhex("020000000001")
_ETH_DST = bytes.fromhex("020000000002")


@dataclass
class SynthConfig:
    seed: int = 1
    flows: int = 2000
    duration_s: int = 60
    window_s: int = 10
    tcp_share: float = 0.8
    icmp_share: float = 0.1  # the rest is DNS
    retrans_share: float = 0.05
    outlier_share: float = 0.02
    ingress_share: float = 0.3  # flows opened from the partner side
    start_ns: int = EPOCH_NS  # first window start; must be a whole number of windows since the epoch


@dataclass
class Truth:
    window_s: int
    bandwidth: dict[tuple[int, str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    latency: dict[tuple[str, int, str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    retrans: dict[tuple[int, str, str], int] = field(default_factory=lambda: defaultdict(int))
    packets: int = 0

    def to_json(self, cfg: SynthConfig, pcap: str) -> dict[str, Any]:
        bw = [
            {"window_start_ns": w, "partner": p, "direction": d, "bytes": v[0], "packets": v[1], "flows": v[2]}
            for (w, p, d), v in sorted(self.bandwidth.items())
        ]
        lat = [
            {"metric": m, "window_start_ns": w, "partner": p, "direction": d, "samples_us": sorted(s)}
            for (m, w, p, d), s in sorted(self.latency.items())
        ]
        rt = [
            {"window_start_ns": w, "partner": p, "direction": d, "retransmissions": n}
            for (w, p, d), n in sorted(self.retrans.items())
        ]
        return {
            "format": "gwtel-synth-truth/1",
            "pcap": pcap,
            "seed": cfg.seed,
            "window_s": cfg.window_s,
            "start_ns": cfg.start_ns,
            "end_ns": cfg.start_ns + cfg.duration_s * 1_000_000_000,
            "packets": self.packets,
            "bytes_are": "IP-layer octets (IP header + payload)",
            "direction_of_bytes": "egress = domestic -> partner, ingress = partner -> domestic",
            "flows_are": "counted in the window of their last packet, in the direction of their initiator",
            "bandwidth": bw,
            "latency": lat,
            "retransmissions": rt,
        }


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class _Writer:
    """Classic pcap, microsecond timestamps, Ethernet."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.count = 0

    def frame(self, t_us: int, vlan: int, ip_packet: bytes) -> None:
        eth = _ETH_DST + _ETH_SRC
        eth += struct.pack("!HHH", 0x8100, vlan, 0x0800) if vlan else b"\x08\x00"
        frame = eth + ip_packet
        sec, usec = divmod(t_us, 1_000_000)
        self.out.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
        self.out.write(frame)
        self.count += 1


def _ipv4(src: bytes, dst: bytes, proto: int, l4: bytes, ident: int) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident & 0xFFFF, 0x4000, 64, proto, 0, src, dst)
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return hdr + l4


def _l4_csum(src: bytes, dst: bytes, proto: int, l4: bytes) -> bytes:
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(l4))
    # TCP payloads are zeros and add nothing to the sum, so only the header needs summing; UDP (DNS) is small.
    hlen = len(l4) if proto == 17 else (l4[12] >> 4) * 4
    c = _csum(pseudo + l4[:hlen])
    if proto == 17 and c == 0:
        c = 0xFFFF
    off = 6 if proto == 17 else 16
    return l4[:off] + struct.pack("!H", c) + l4[off + 2 :]


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int, tsval: int, tsecr: int, payload: int) -> bytes:
    opts = struct.pack("!BBBBII", 1, 1, 8, 10, tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF)
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (8 << 4), flags, 65535, 0, 0)
    return hdr + opts + bytes(payload)


SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01


@dataclass
class _Pkt:
    t_us: int
    from_init: bool
    ip: bytes
    ip_len: int
    retrans: bool = False
    tsval: int | None = None
    tsecr: int | None = None


class Generator:
    def __init__(self, cfg: SynthConfig) -> None:
        if cfg.start_ns % (cfg.window_s * 1_000_000_000):
            raise ValueError("start_ns must fall on a window boundary")
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.truth = Truth(cfg.window_s)
        self.ident = 0
        self.port = 20000
        self.samples: dict[str, list[int]] = {}  # latency injected into the flow being built

    # -- addresses ---------------------------------------------------------------------------------
    def _host(self, block: str) -> bytes:
        net = ipaddress.ip_network(block)
        return (net.network_address + self.rng.randint(1, net.num_addresses - 2)).packed

    def _rtt_us(self, lo_ms: float, hi_ms: float) -> int:
        v = self.rng.uniform(lo_ms, hi_ms) * 1000.0
        if self.rng.random() < self.cfg.outlier_share:
            v *= self.rng.uniform(2.0, 4.0)
        return round(v)

    def _next_port(self) -> int:
        self.port = 20000 + (self.port - 19999) % 40000
        return self.port

    # -- flows -------------------------------------------------------------------------------------
    def run(self, out: BinaryIO) -> Truth:
        cfg = self.cfg
        flows: list[list[_Pkt]] = []
        meta: list[tuple[str, str, int]] = []
        n_windows = max(1, cfg.duration_s // cfg.window_s)
        partners = list(PARTNER_WEIGHTS)
        weights = [PARTNER_WEIGHTS[p] for p in partners]
        for _ in range(cfg.flows):
            partner = self.rng.choices(partners, weights)[0]
            block, _country, (lo, hi) = self.rng.choice(PARTNER_SITES[partner])
            domestic = self._host(self.rng.choice(DOMESTIC_BLOCKS))
            remote = self._host(block)
            ext = self._rtt_us(lo, hi)
            internal = self.rng.randint(200, 2000)
            vlan = self.rng.choice(VLANS)
            window = self.rng.randrange(n_windows)
            kind = self.rng.random()
            ingress = self.rng.random() < cfg.ingress_share
            if kind < cfg.tcp_share:
                pkts = self._tcp_flow(domestic, remote, ext, internal, ingress)
            elif kind < cfg.tcp_share + cfg.icmp_share:
                ingress = False
                pkts = self._icmp_flow(domestic, remote, ext)
            else:
                ingress = False
                pkts = self._dns_flow(domestic, remote, ext)
            span = pkts[-1].t_us
            w_start_us = window * cfg.window_s * 1_000_000
            room = cfg.window_s * 1_000_000 - span - 1000
            if room <= 0:
                continue  # longer than a window: skip rather than straddle a boundary
            offset = w_start_us + self.rng.randrange(room)
            for p in pkts:
                p.t_us += offset
            direction = "ingress" if ingress else "egress"
            flows.append(pkts)
            meta.append((partner, direction, vlan))
            self._account(pkts, partner, direction, ingress)
        self._write(out, flows, meta)
        return self.truth

    def _account(self, pkts: list[_Pkt], partner: str, direction: str, ingress: bool) -> None:
        w_ns = self.cfg.window_s * 1_000_000_000
        last_ns = self.cfg.start_ns + pkts[-1].t_us * 1000
        window = last_ns - last_ns % w_ns
        other = "egress" if ingress else "ingress"
        for p in pkts:
            d = direction if p.from_init else other
            row = self.truth.bandwidth[(window, partner, d)]
            row[0] += p.ip_len
            row[1] += 1
            if p.retrans:
                self.truth.retrans[(window, partner, d)] += 1
        self.truth.bandwidth[(window, partner, direction)][2] += 1
        for metric, values in self.samples.items():
            self.truth.latency[(metric, window, partner, direction)].extend(values)
        self._ts_samples(pkts, window, partner, direction, ingress)

    def _ts_samples(self, pkts: list[_Pkt], window: int, partner: str, direction: str, ingress: bool) -> None:
        # Round trips beyond the observation point: a domestic TSval first seen at t, first echoed by the
        # remote host at t'. The domestic side is the responder of ingress flows.
        first_seen: dict[int, int] = {}
        echoed: set[int] = set()
        for p in pkts:
            domestic_sent = p.from_init != ingress
            if domestic_sent and p.tsval is not None and p.tsval not in first_seen:
                first_seen[p.tsval] = p.t_us
            elif not domestic_sent and p.tsecr is not None and p.tsecr in first_seen and p.tsecr not in echoed:
                echoed.add(p.tsecr)
                self.truth.latency[("ts_rtt", window, partner, direction)].append(p.t_us - first_seen[p.tsecr])

    def _tcp_flow(self, domestic: bytes, remote: bytes, ext: int, internal: int, ingress: bool) -> list[_Pkt]:
        init, resp = (remote, domestic) if ingress else (domestic, remote)
        leg_resp, leg_init = (internal, ext) if ingress else (ext, internal)
        sport, dport = self._next_port(), self.rng.choice((443, 443, 80, 8443))
        isn_i, isn_r = self.rng.getrandbits(32), self.rng.getrandbits(32)
        ts_i, ts_r = self.rng.getrandbits(30), self.rng.getrandbits(30)
        pkts: list[_Pkt] = []
        last_ts = {True: 0, False: 0}

        def send(t: int, from_init: bool, seq: int, ack: int, flags: int, payload: int, echo: int,
                 retrans: bool = False) -> int:  # fmt: skip
            # 1 kHz timestamp clocks; a host never sends two different packets with one TSval here.
            base = ts_i if from_init else ts_r
            tsval = max(base + t // 1000, last_ts[from_init] + 1)
            last_ts[from_init] = tsval
            src, dst = (init, resp) if from_init else (resp, init)
            sp, dp = (sport, dport) if from_init else (dport, sport)
            l4 = _l4_csum(src, dst, 6, _tcp(sp, dp, seq, ack, flags, tsval, echo, payload))
            self.ident += 1
            ip = _ipv4(src, dst, 6, l4, self.ident)
            pkts.append(_Pkt(t, from_init, ip, len(ip), retrans, tsval, echo))
            return tsval

        t = 0
        tv_syn = send(t, True, isn_i, 0, SYN, 0, 0)
        t += leg_resp
        tv_synack = send(t, False, isn_r, isn_i + 1, SYN | ACK, 0, tv_syn)
        t += leg_init
        send(t, True, isn_i + 1, isn_r + 1, ACK, 0, tv_synack)
        pkts[0].tsecr = None  # a SYN carries no echo
        self.samples = {"hs_rtt_ext": [ext], "hs_rtt_int": [internal]}
        seq_i, seq_r = isn_i + 1, isn_r + 1
        for _ in range(self.rng.randint(1, 6)):
            t += self.rng.randint(1000, 20000)
            req = self.rng.randint(100, 600)
            tv_req = send(t, True, seq_i, seq_r, ACK | PSH, req, last_ts[False])
            seq_i += req
            t += leg_resp
            segs = self.rng.randint(1, 8)
            tv_last = 0
            for k in range(segs):
                size = 1448 if k < segs - 1 else self.rng.randint(200, 1448)
                tv_last = send(t + k * 20, False, seq_r, seq_i, ACK, size, tv_req)
                if k == 0 and self.rng.random() < self.cfg.retrans_share:
                    send(t + k * 20 + 5, False, seq_r, seq_i, ACK, size, tv_req, retrans=True)
                seq_r += size
            t += (segs - 1) * 20 + leg_init
            send(t, True, seq_i, seq_r, ACK, 0, tv_last)
        t += self.rng.randint(1000, 5000)
        tv_fin = send(t, True, seq_i, seq_r, FIN | ACK, 0, last_ts[False])
        t += leg_resp
        tv_finack = send(t, False, seq_r, seq_i + 1, FIN | ACK, 0, tv_fin)
        t += leg_init
        send(t, True, seq_i + 1, seq_r + 1, ACK, 0, tv_finack)
        return pkts

    def _icmp_flow(self, domestic: bytes, remote: bytes, ext: int) -> list[_Pkt]:
        ident = self.rng.getrandbits(16)
        pkts: list[_Pkt] = []
        rtts: list[int] = []
        t = 0
        for seq in range(1, self.rng.randint(2, 5)):
            rtts.append(ext + self.rng.randint(0, 500))
            for typ, src, dst, dt in ((8, domestic, remote, 0), (0, remote, domestic, rtts[-1])):
                t += dt
                body = struct.pack("!BBHHH", typ, 0, 0, ident, seq) + bytes(56)
                body = body[:2] + struct.pack("!H", _csum(body)) + body[4:]
                self.ident += 1
                ip = _ipv4(src, dst, 1, body, self.ident)
                pkts.append(_Pkt(t, typ == 8, ip, len(ip)))
            t += 1_000_000 // 4
        self.samples = {"icmp_rtt": rtts}
        return pkts

    def _dns_flow(self, domestic: bytes, remote: bytes, ext: int) -> list[_Pkt]:
        sport = self._next_port()
        qid = self.rng.getrandbits(16)
        pkts: list[_Pkt] = []
        rtt = ext + self.rng.randint(0, 3000)
        self.samples = {"dns_rtt": [rtt]}
        for i, (src, dst, sp, dp, flags, size, t) in enumerate(
            (
                (domestic, remote, sport, 53, 0x0100, 40, 0),
                (remote, domestic, 53, sport, 0x8180, 120, rtt),
            )
        ):
            dns = struct.pack("!HHHHHH", qid, flags, 1, 1 if i else 0, 0, 0) + bytes(size - 12)
            l4 = _l4_csum(src, dst, 17, struct.pack("!HHHH", sp, dp, 8 + len(dns), 0) + dns)
            self.ident += 1
            ip = _ipv4(src, dst, 17, l4, self.ident)
            pkts.append(_Pkt(t, i == 0, ip, len(ip)))
        return pkts

    def _write(self, out: BinaryIO, flows: list[list[_Pkt]], meta: list[tuple[str, str, int]]) -> None:
        merged = [(p.t_us, i, j) for i, pkts in enumerate(flows) for j, p in enumerate(pkts)]
        merged.sort()
        w = _Writer(out)
        base_us = self.cfg.start_ns // 1000
        for t_us, i, j in merged:
            w.frame(base_us + t_us, meta[i][2], flows[i][j].ip)
        self.truth.packets = w.count


def generate(cfg: SynthConfig, pcap: Path, truth_path: Path) -> dict[str, Any]:
    """Write the pcap and its ground truth; return the truth document."""
    with pcap.open("wb") as out:
        truth = Generator(cfg).run(out)
    doc = truth.to_json(cfg, pcap.name)
    truth_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return doc
