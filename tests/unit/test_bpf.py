"""The capture socket's BPF program: hand-derived encoding, behaviour when run, and the kernel's acceptance."""

from __future__ import annotations

import errno
import math
import random
import socket
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet

from gwtel.errors import UserError
from ingest import linktypes
from ingest.sources import bpf

# Classic BPF as linux/filter.h defines it, written out from the specification for these tests.
_RANDOM_K = 0xFFFFF000 + 56  # SKF_AD_OFF (-4096) + SKF_AD_RANDOM, as an unsigned 32-bit offset


def _alu(op: int, a: int, src: int) -> int:
    ops = {
        0x00: lambda: a + src, 0x10: lambda: a - src, 0x20: lambda: a * src,
        0x30: lambda: a // src if src else 0, 0x40: lambda: a | src, 0x50: lambda: a & src,
        0x60: lambda: a << src, 0x70: lambda: a >> src, 0x80: lambda: -a,
        0x90: lambda: a % src if src else 0, 0xA0: lambda: a ^ src,
    }  # fmt: skip
    return ops[op]()


def run_bpf(prog: list[bpf.Insn], pkt: bytes, random_value: int = 0) -> int:
    """Interpret a classic BPF program over ``pkt`` (linux/filter.h semantics, 32-bit arithmetic), plus random."""
    a = x = 0
    mem = [0] * 16
    pc = 0
    mask = 0xFFFF_FFFF

    def load(off: int, width: int) -> int | None:
        if off < 0 or off + width > len(pkt):
            return None
        return int.from_bytes(pkt[off : off + width], "big")

    while True:
        ins = prog[pc]
        cls, size, mode = ins.code & 0x07, ins.code & 0x18, ins.code & 0xE0
        pc += 1
        if cls == 0x00:  # LD
            if mode == 0x20 and ins.k == _RANDOM_K:
                a = random_value
            elif mode == 0x00:
                a = ins.k
            elif mode == 0x60:
                a = mem[ins.k]
            else:
                v = load(ins.k + (x if mode == 0x40 else 0), {0x00: 4, 0x08: 2, 0x10: 1}[size])
                if v is None:
                    return 0  # a load past the packet ends the program with 0
                a = v
        elif cls == 0x01:  # LDX
            if mode == 0x00:
                x = ins.k
            elif mode == 0x60:
                x = mem[ins.k]
            else:
                assert ins.code == 0xB1  # ldxb 4*([k]&0xf)
                x = (pkt[ins.k] & 0x0F) * 4
        elif cls == 0x02:  # ST
            mem[ins.k] = a
        elif cls == 0x03:  # STX
            mem[ins.k] = x
        elif cls == 0x04:  # ALU
            op, src = ins.code & 0xF0, (x if ins.code & 0x08 else ins.k)
            a = _alu(op, a, src) & mask
        elif cls == 0x05:  # JMP
            op, src = ins.code & 0xF0, (x if ins.code & 0x08 else ins.k)
            if op == 0x00:
                pc += ins.k
                continue
            taken = {0x10: a == src, 0x20: a > src, 0x30: a >= src, 0x40: bool(a & src)}[op]
            pc += ins.jt if taken else ins.jf
        elif cls == 0x06:  # RET
            return a if ins.code & 0x18 == 0x10 else ins.k
        elif ins.code & 0xF8 == 0x00:  # MISC TAX
            x = a
        else:  # MISC TXA
            a = x


def udp_frame(dport: int) -> bytes:
    return bytes(Ether() / IP(src="10.0.0.1", dst="198.18.1.1") / UDP(sport=5000, dport=dport) / (b"q" * 20))


def tcp_frame(dport: int) -> bytes:
    return bytes(Ether() / IP(src="10.0.0.1", dst="198.18.1.1") / TCP(sport=5000, dport=dport))


def test_sampling_program_matches_hand_encoding() -> None:
    # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k} in host (little-endian) order.
    expected = (
        bytes.fromhex("2000 00 00 38f0ffff")  # ld [SKF_AD_OFF + SKF_AD_RANDOM]
        + bytes.fromhex("9400 00 00 04000000")  # mod #4
        + bytes.fromhex("1500 01 00 00000000")  # jeq #0, jt 1, jf 0
        + bytes.fromhex("0600 00 00 00000000")  # ret #0
        + bytes.fromhex("0600 00 00 80000000")  # ret #128
    )
    assert bpf.encode(bpf.build_program(128, sample=4)) == expected


def test_without_sampling_or_filter_the_program_only_cuts_to_snaplen() -> None:
    assert bpf.encode(bpf.build_program(96)) == bytes.fromhex("0600 00 00 60000000")
    assert run_bpf(bpf.build_program(96), udp_frame(53)) == 96


@pytest.mark.parametrize(
    ("random_value", "kept"), [(0, True), (4, True), (8, True), (1, False), (6, False), (7, False)]
)
def test_sampling_keeps_a_packet_when_random_is_zero_mod_n(random_value: int, kept: bool) -> None:
    prog = bpf.build_program(128, sample=4)
    assert run_bpf(prog, udp_frame(53), random_value) == (128 if kept else 0)


def test_compiled_user_filter_runs_after_the_sampling_prefix() -> None:
    user = bpf.compile_filter("udp dst port 53", linktypes.ETHERNET, 200)
    prog = bpf.build_program(200, sample=3, user=user)
    assert prog[:4] == bpf.sampling_prefix(3)
    assert run_bpf(prog, udp_frame(53), random_value=9) == 200  # sampled in, filter matches
    assert run_bpf(prog, udp_frame(54), random_value=9) == 0  # sampled in, filter refuses
    assert run_bpf(prog, tcp_frame(53), random_value=9) == 0
    assert run_bpf(prog, udp_frame(53), random_value=10) == 0  # sampled out


def test_raw_ip_filter_is_compiled_for_bare_ip() -> None:
    user = bpf.compile_filter("udp", linktypes.RAW, 128)
    raw = bytes(IP(src="10.0.0.1", dst="198.18.1.1") / UDP(sport=1, dport=2))
    assert run_bpf(bpf.build_program(128, user=user), raw) == 128
    assert run_bpf(bpf.build_program(128, user=user), raw[:9] + b"\x06" + raw[10:]) == 0  # protocol TCP


def test_parse_ddd_checks_the_announced_count() -> None:
    assert bpf.parse_ddd("2\n40 0 0 12\n6 0 0 65535\n") == [bpf.Insn(40, 0, 0, 12), bpf.Insn(6, 0, 0, 65535)]
    with pytest.raises(ValueError, match="announced 3"):
        bpf.parse_ddd("3\n40 0 0 12\n6 0 0 65535\n")
    with pytest.raises(ValueError, match="no instruction count"):
        bpf.parse_ddd("")


def test_bad_filter_and_bad_values_are_clear_errors() -> None:
    with pytest.raises(UserError, match="not a valid filter"):
        bpf.compile_filter("udp port and", linktypes.ETHERNET, 128)
    with pytest.raises(UserError, match="cannot compile a filter"):
        bpf.compile_filter("udp", linktypes.PPP, 128)
    with pytest.raises(ValueError, match=">= 1"):
        bpf.sampling_prefix(0)
    with pytest.raises(ValueError, match="snap length"):
        bpf.build_program(0)


def _packet_socket() -> socket.socket:
    # Protocol 0 and no bind: the socket receives nothing, but the kernel verifies what is attached.
    return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)


def test_kernel_accepts_sampling_and_filter_program() -> None:
    prog = bpf.build_program(128, sample=16, user=bpf.compile_filter("tcp or udp port 53", linktypes.ETHERNET, 128))
    with _packet_socket() as sock:
        bpf.attach(sock, prog)


def test_kernel_rejects_an_invalid_program() -> None:
    # A jump past the end: the kernel's checker refuses it, so attach() cannot succeed blindly.
    bad = [bpf.Insn(0x15, 5, 0, 0), bpf.ret(0)]
    with _packet_socket() as sock, pytest.raises(OSError) as info:
        bpf.attach(sock, bad)
    assert info.value.errno == errno.EINVAL


def test_encoding_is_the_kernel_struct_layout() -> None:
    assert struct.calcsize("=HBBI") == 8
    assert len(bpf.encode(bpf.build_program(128, sample=2))) == 5 * 8


# --------------------------------------------------------------------------- flow-consistent sampling
MAC = "02:00:5e:00:53:01"  # explicit, so Scapy does not look the destination up (ARP) for every frame


def _fmix32(h: int) -> int:
    """murmur3's 32-bit finaliser, from its published definition."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFF_FFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFF_FFFF
    return h ^ (h >> 16)


def _expected_keep(src: str, dst: str, proto: int, sport: int | None, dport: int | None, n: int) -> bool:
    """The documented key: XOR of the address words, XOR of the ports (when used), XOR of the protocol."""
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    words = [
        int.from_bytes(socket.inet_pton(fam, a)[i : i + 4], "big")
        for a in (src, dst)
        for i in range(0, 16 if fam == socket.AF_INET6 else 4, 4)
    ]
    h = 0
    for w in words:
        h ^= w
    if sport is not None and dport is not None:
        h ^= sport ^ dport
    return _fmix32(h ^ proto) % n == 0


def _flows(count: int) -> list[tuple[str, str, int, int, int]]:
    rnd = random.Random(20)
    out = []
    for i in range(count):
        if i % 3 == 2:
            src, dst = f"2001:db8::{rnd.randrange(1, 1 << 16):x}", f"fd77::{rnd.randrange(1, 1 << 16):x}"
        else:
            src, dst = (
                f"10.77.{rnd.randrange(256)}.{rnd.randrange(256)}",
                f"198.18.{rnd.randrange(256)}.{rnd.randrange(1, 255)}",
            )
        out.append((src, dst, rnd.choice((6, 17)), rnd.randrange(1024, 65536), rnd.choice((53, 80, 443, 8080))))
    return out


def _frame(src: str, dst: str, proto: int, sport: int, dport: int, vlans: tuple[int, ...] = ()) -> bytes:
    l4 = TCP(sport=sport, dport=dport, flags="S") if proto == 6 else UDP(sport=sport, dport=dport)
    l3 = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    eth: Packet = Ether(src=MAC, dst=MAC)
    for v in vlans:
        eth = eth / Dot1Q(vlan=v)
    return bytes(eth / l3 / l4 / b"x")


def test_flow_sampling_keeps_or_drops_both_directions_together_by_the_documented_hash() -> None:
    n = 4
    prog = bpf.build_program(128, n, mode="flow")
    kept = 0
    for src, dst, proto, sport, dport in _flows(1200):
        want = _expected_keep(src, dst, proto, sport, dport, n)
        for vlans in ((), (42,), (100, 200)):
            fwd = run_bpf(prog, _frame(src, dst, proto, sport, dport, vlans))
            rev = run_bpf(prog, _frame(dst, src, proto, dport, sport, vlans))
            assert fwd == rev == (128 if want else 0), (src, dst, proto, sport, dport, vlans)
        kept += want
    # Each flow is kept with p = 1/4: binomial(1200, 1/4), 5 sigma.
    assert abs(kept - 300) <= 5 * math.sqrt(1200 * 0.25 * 0.75)


def test_flow_sampling_keeps_fragments_icmp_pairs_and_non_ip_frames_consistently() -> None:
    n = 3
    prog = bpf.build_program(128, n, mode="flow")
    for i in range(200):
        src, dst = f"10.77.0.{i}", f"198.18.1.{255 - i}"
        dgram = IP(src=src, dst=dst, id=i) / UDP(sport=5000 + i, dport=53) / (b"z" * 3000)
        frags: list[Packet] = fragment(dgram, fragsize=1000)  # type: ignore[no-untyped-call]
        verdicts = {run_bpf(prog, bytes(Ether(src=MAC, dst=MAC) / f)) for f in frags}
        assert verdicts == {128 if _expected_keep(src, dst, 17, None, None, n) else 0}
        req = run_bpf(prog, bytes(Ether(src=MAC, dst=MAC) / IP(src=src, dst=dst) / ICMP(type=8, id=i)))
        rep = run_bpf(prog, bytes(Ether(src=MAC, dst=MAC) / IP(src=dst, dst=src) / ICMP(type=0, id=i)))
        assert req == rep == (128 if _expected_keep(src, dst, 1, None, None, n) else 0)
        v6 = IPv6(src=f"2001:db8::{i + 1:x}", dst="fd77::1") / IPv6ExtHdrFragment(id=i, m=1) / UDP(sport=1, dport=2)
        v6_back = IPv6(src="fd77::1", dst=f"2001:db8::{i + 1:x}") / IPv6ExtHdrFragment(id=i, offset=100)
        eth = Ether(src=MAC, dst=MAC)
        assert run_bpf(prog, bytes(eth / v6)) == run_bpf(prog, bytes(eth / v6_back) + b"y" * 8)
    assert run_bpf(prog, bytes(Ether(src=MAC, dst=MAC) / ARP())) == 128


def test_flow_sampling_on_bare_ip_links_and_kernel_acceptance() -> None:
    n = 5
    raw = bpf.build_program(96, n, mode="flow", linktype=linktypes.RAW)
    for src, dst, proto, sport, dport in _flows(300):
        l4 = TCP(sport=sport, dport=dport) if proto == 6 else UDP(sport=sport, dport=dport)
        l3 = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
        want = 96 if _expected_keep(src, dst, proto, sport, dport, n) else 0
        assert run_bpf(raw, bytes(l3 / l4)) == want
    for lt in (linktypes.ETHERNET, linktypes.RAW):
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
            bpf.attach(sock, bpf.build_program(128, 1000, mode="flow", linktype=lt))
    with pytest.raises(ValueError, match="packet or flow"):
        bpf.build_program(128, 2, mode="bytes")
