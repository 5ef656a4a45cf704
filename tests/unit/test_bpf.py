"""The capture socket's BPF program: hand-derived encoding, behaviour when run, and the kernel's acceptance."""

from __future__ import annotations

import errno
import socket
import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from gwtel.errors import UserError
from ingest import linktypes
from ingest.sources import bpf

# Classic BPF as linux/filter.h defines it, written out from the specification for these tests.
_RANDOM_K = 0xFFFFF000 + 56  # SKF_AD_OFF (-4096) + SKF_AD_RANDOM, as an unsigned 32-bit offset


def run_bpf(prog: list[bpf.Insn], pkt: bytes, random_value: int = 0) -> int:
    """Interpret a classic BPF program over ``pkt``: the subset tcpdump emits for simple filters, plus random."""
    a = x = 0
    pc = 0
    while True:
        ins = prog[pc]
        cls, size, mode = ins.code & 0x07, ins.code & 0x18, ins.code & 0xE0
        pc += 1
        if cls == 0x00:  # LD
            if mode == 0x20 and ins.k == _RANDOM_K:
                a = random_value
                continue
            off = ins.k + (x if mode == 0x40 else 0)
            width = {0x00: 4, 0x08: 2, 0x10: 1}[size]
            if off + width > len(pkt):
                return 0
            a = int.from_bytes(pkt[off : off + width], "big")
        elif cls == 0x01:  # LDX: only "ldxb 4*([k]&0xf)"
            assert ins.code == 0xB1
            x = (pkt[ins.k] & 0x0F) * 4
        elif cls == 0x04:  # ALU with constant
            op = ins.code & 0xF0
            a = {0x50: a & ins.k, 0x90: a % ins.k if ins.k else 0}[op]
        elif cls == 0x05:  # JMP
            op = ins.code & 0xF0
            if op == 0x00:
                pc += ins.k
                continue
            taken = {0x10: a == ins.k, 0x20: a > ins.k, 0x30: a >= ins.k, 0x40: bool(a & ins.k)}[op]
            pc += ins.jt if taken else ins.jf
        elif cls == 0x06:  # RET
            return ins.k
        else:
            raise AssertionError(f"instruction {ins} not covered by the test interpreter")


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
