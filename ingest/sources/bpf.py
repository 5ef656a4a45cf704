"""Classic BPF programs for the live capture socket: user filter, snap length and 1:N sampling (random, or by flow).

The kernel runs the program on every packet of the interface before anything is copied to user space. The
program's return value is the number of bytes to keep (0 = drop), so the snap length is applied in the kernel
too. A user filter (tcpdump syntax) is compiled by ``tcpdump -ddd`` for the interface's link type; sampling is a
prefix of four instructions that draws a kernel random number and keeps the packet when it is 0 mod N:

    ld  #random          A = prandom_u32()      (ancillary load SKF_AD_OFF + SKF_AD_RANDOM)
    mod #N               A = A % N
    jeq #0, +1, +0       A == 0: skip the next instruction
    ret #0               drop
    <user filter, or ret #snaplen>

Sampling first makes the filter run on 1/N of the packets; the outcome is the same either way, because the
random draw does not depend on the packet.
"""

from __future__ import annotations

import ctypes
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass
from typing import Final

from gwtel.errors import UserError
from ingest import linktypes

# linux/filter.h, linux/bpf_common.h
BPF_LD: Final = 0x00
BPF_LDX: Final = 0x01
BPF_ST: Final = 0x02
BPF_ALU: Final = 0x04
BPF_JMP: Final = 0x05
BPF_RET: Final = 0x06
BPF_MISC: Final = 0x07
BPF_W: Final = 0x00
BPF_H: Final = 0x08
BPF_B: Final = 0x10
BPF_IMM: Final = 0x00
BPF_ABS: Final = 0x20
BPF_IND: Final = 0x40
BPF_MEM: Final = 0x60
BPF_ADD: Final = 0x00
BPF_MUL: Final = 0x20
BPF_OR: Final = 0x40
BPF_AND: Final = 0x50
BPF_LSH: Final = 0x60
BPF_RSH: Final = 0x70
BPF_MOD: Final = 0x90
BPF_XOR: Final = 0xA0
BPF_JA: Final = 0x00
BPF_JEQ: Final = 0x10
BPF_JSET: Final = 0x40
BPF_K: Final = 0x00
BPF_X: Final = 0x08
BPF_TAX: Final = 0x00
BPF_TXA: Final = 0x80
SKF_AD_OFF: Final = -0x1000
SKF_AD_RANDOM: Final = 56
SO_ATTACH_FILTER: Final = 26
BPF_MAXINSNS: Final = 4096
MAX_SNAPLEN: Final = 262_144

# tcpdump's -y name of each link type the live source can open.
_TCPDUMP_DLT: Final = {linktypes.ETHERNET: "EN10MB", linktypes.RAW: "RAW"}
_INSN: Final = struct.Struct("=HBBI")  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k


@dataclass(frozen=True, slots=True)
class Insn:
    """One classic BPF instruction (struct sock_filter)."""

    code: int
    jt: int
    jf: int
    k: int


def ret(k: int) -> Insn:
    return Insn(BPF_RET | BPF_K, 0, 0, k)


def sampling_prefix(n: int) -> list[Insn]:
    """Instructions that drop a packet unless a kernel random number is 0 mod ``n`` (empty for n = 1)."""
    if n < 1:
        raise ValueError(f"sampling rate must be >= 1, got {n}")
    if n == 1:
        return []
    return [
        Insn(BPF_LD | BPF_W | BPF_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_RANDOM) & 0xFFFF_FFFF),
        Insn(BPF_ALU | BPF_MOD | BPF_K, 0, 0, n),
        Insn(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0),
        ret(0),
    ]


# Flow sampling: the program is assembled from (instruction, jump-true label, jump-false label) rows and labels.
_Row = tuple[Insn, str | None, str | None] | str
_VLAN_TPIDS: Final = (0x8100, 0x88A8, 0x9100)
_PORT_PROTOS: Final = (6, 17, 132)  # TCP, UDP, SCTP: ports at the start of the transport header
_M_ADDR, _M_PROTO, _M_L3, _M_PORTS, _M_TMP = 0, 1, 2, 3, 4


def _i(code: int, k: int = 0) -> Insn:
    return Insn(code, 0, 0, k & 0xFFFF_FFFF)


def _jeq(k: int, jt: str | None, jf: str | None = None) -> _Row:
    return (Insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, k), jt, jf)


def _ja(label: str) -> _Row:
    return (Insn(BPF_JMP | BPF_JA, 0, 0, 0), label, None)


def _assemble(rows: list[_Row]) -> list[Insn]:
    """Resolve labels: a conditional jump's None target is the next instruction; BPF_JA takes its label in jt."""
    where: dict[str, int] = {}
    n = 0
    for r in rows:
        if isinstance(r, str):
            where[r] = n
        else:
            n += 1
    out: list[Insn] = []
    for r in rows:
        if isinstance(r, str):
            continue
        ins, jt, jf = r
        pc = len(out) + 1

        def rel(label: str | None, pc: int = pc) -> int:
            d = 0 if label is None else where[label] - pc
            if not 0 <= d <= 255:
                raise AssertionError(f"jump to {label} out of reach ({d})")
            return d

        if ins.code == BPF_JMP | BPF_JA:
            out.append(Insn(ins.code, 0, 0, where[str(jt)] - pc))
        elif ins.code & 0x07 == BPF_JMP:
            out.append(Insn(ins.code, rel(jt), rel(jf), ins.k))
        else:
            out.append(ins)
    return out


def _xor_word_into(mem: int, load: Insn) -> list[_Row]:
    """M[mem] ^= the word ``load`` reads (X holds the network header offset and is restored from M[_M_L3])."""
    return [
        (load, None, None),
        (_i(BPF_LDX | BPF_MEM, mem), None, None),
        (_i(BPF_ALU | BPF_XOR | BPF_X), None, None),
        (_i(BPF_ST, mem), None, None),
        (_i(BPF_LDX | BPF_MEM, _M_L3), None, None),
    ]


def _ind(size: int, off: int) -> Insn:
    return _i(BPF_LD | size | BPF_IND, off)


def flow_sampling_prefix(n: int, linktype: int) -> list[Insn]:
    """Instructions that keep a packet when a symmetric hash of its flow key is 0 mod ``n`` (empty for n = 1).

    The key is the XOR of the two addresses (IPv6: of all their words), the XOR of the two ports for TCP, UDP
    and SCTP, and the protocol, so both directions of a flow hash the same; a 32-bit finaliser (murmur3's) mixes
    it before ``mod n``. Up to two VLAN tags left in the frame are skipped (Linux usually strips the outer one
    before the filter runs). IPv4 fragments, IPv6 packets with a fragment or any other extension header, and
    protocols without ports hash on addresses and protocol alone: every fragment of a datagram gets the same
    verdict, and so do both directions of an ICMP echo. Frames that are not IP are kept.
    """
    if n < 1:
        raise ValueError(f"sampling rate must be >= 1, got {n}")
    if n == 1:
        return []
    rows: list[_Row] = []
    if linktype == linktypes.ETHERNET:
        rows += [(_i(BPF_LDX | BPF_IMM, 14), None, None), (_i(BPF_LD | BPF_H | BPF_ABS, 12), None, None)]
        for depth in (1, 2):
            rows += [_jeq(t, f"tag{depth}") for t in _VLAN_TPIDS]
            rows += [_ja("ethertype"), f"tag{depth}"]
            rows += [
                (_i(BPF_LDX | BPF_IMM, 14 + 4 * depth), None, None),
                (_i(BPF_LD | BPF_H | BPF_ABS, 12 + 4 * depth), None, None),
            ]
        rows += ["ethertype", _jeq(0x0800, "v4"), _jeq(0x86DD, "v6"), _ja("keep")]
    elif linktype == linktypes.RAW:
        rows += [
            (_i(BPF_LDX | BPF_IMM, 0), None, None),
            (_i(BPF_LD | BPF_B | BPF_ABS, 0), None, None),
            (_i(BPF_ALU | BPF_RSH | BPF_K, 4), None, None),
            _jeq(4, "v4"),
            _jeq(6, "v6"),
            _ja("keep"),
        ]
    else:
        raise UserError(f"flow sampling does not support link type {linktypes.name(linktype)}")
    # IPv4: X = network header offset.
    rows += [
        "v4",
        (_i(BPF_MISC | BPF_TXA), None, None),
        (_i(BPF_ST, _M_L3), None, None),
        (_ind(BPF_W, 12), None, None),
        (_i(BPF_ST, _M_ADDR), None, None),
        *_xor_word_into(_M_ADDR, _ind(BPF_W, 16)),
        (_ind(BPF_B, 9), None, None),
        (_i(BPF_ST, _M_PROTO), None, None),
        (_ind(BPF_H, 6), None, None),
        (Insn(BPF_JMP | BPF_JSET | BPF_K, 0, 0, 0x3FFF), "noports", None),  # MF or a fragment offset
        (_ind(BPF_B, 9), None, None),
        *[_jeq(p, "v4ports") for p in _PORT_PROTOS],
        _ja("noports"),
        "v4ports",
        (_ind(BPF_B, 0), None, None),
        (_i(BPF_ALU | BPF_AND | BPF_K, 0x0F), None, None),
        (_i(BPF_ALU | BPF_LSH | BPF_K, 2), None, None),
        (_i(BPF_ALU | BPF_ADD | BPF_X), None, None),
        (_i(BPF_MISC | BPF_TAX), None, None),
        (_ind(BPF_W, 0), None, None),
        _ja("ports"),
        # IPv6: the fixed header only; the next header must be the transport itself to use its ports.
        "v6",
        (_i(BPF_MISC | BPF_TXA), None, None),
        (_i(BPF_ST, _M_L3), None, None),
        (_ind(BPF_W, 8), None, None),
        (_i(BPF_ST, _M_ADDR), None, None),
        *[r for off in (12, 16, 20, 24, 28, 32, 36) for r in _xor_word_into(_M_ADDR, _ind(BPF_W, off))],
        (_ind(BPF_B, 6), None, None),
        (_i(BPF_ST, _M_PROTO), None, None),
        *[_jeq(p, "v6ports") for p in _PORT_PROTOS],
        _ja("noports"),
        "v6ports",
        (_ind(BPF_W, 40), None, None),
        # A = source port << 16 | destination port
        "ports",
        (_i(BPF_ST, _M_TMP), None, None),
        (_i(BPF_ALU | BPF_RSH | BPF_K, 16), None, None),
        (_i(BPF_LDX | BPF_MEM, _M_TMP), None, None),
        (_i(BPF_ALU | BPF_XOR | BPF_X), None, None),
        (_i(BPF_ALU | BPF_AND | BPF_K, 0xFFFF), None, None),
        _ja("hash"),
        "noports",
        (_i(BPF_LD | BPF_IMM, 0), None, None),
        "hash",
        (_i(BPF_LDX | BPF_MEM, _M_ADDR), None, None),
        (_i(BPF_ALU | BPF_XOR | BPF_X), None, None),
        (_i(BPF_LDX | BPF_MEM, _M_PROTO), None, None),
        (_i(BPF_ALU | BPF_XOR | BPF_X), None, None),
        *_fmix32(),
        (_i(BPF_ALU | BPF_MOD | BPF_K, n), None, None),
        _jeq(0, "keep"),
        (ret(0), None, None),
        "keep",
    ]
    return _assemble(rows)


def _fmix32() -> list[_Row]:
    """murmur3's finaliser on A: h ^= h >> 16; h *= 0x85ebca6b; h ^= h >> 13; h *= 0xc2b2ae35; h ^= h >> 16."""

    def xorshift(r: int) -> list[_Row]:
        return [
            (_i(BPF_ST, _M_TMP), None, None),
            (_i(BPF_ALU | BPF_RSH | BPF_K, r), None, None),
            (_i(BPF_LDX | BPF_MEM, _M_TMP), None, None),
            (_i(BPF_ALU | BPF_XOR | BPF_X), None, None),
        ]

    return [
        *xorshift(16),
        (_i(BPF_ALU | BPF_MUL | BPF_K, 0x85EBCA6B), None, None),
        *xorshift(13),
        (_i(BPF_ALU | BPF_MUL | BPF_K, 0xC2B2AE35), None, None),
        *xorshift(16),
    ]


def parse_ddd(text: str) -> list[Insn]:
    """Parse ``tcpdump -ddd`` output: a count line, then one ``code jt jf k`` line per instruction."""
    lines = [ln.split() for ln in text.strip().splitlines() if ln.strip()]
    if not lines or len(lines[0]) != 1:
        raise ValueError("not tcpdump -ddd output: no instruction count")
    count = int(lines[0][0])
    prog = []
    for fields in lines[1:]:
        if len(fields) != 4:
            raise ValueError(f"not tcpdump -ddd output: bad instruction line {' '.join(fields)!r}")
        code, jt, jf, k = (int(f) for f in fields)
        prog.append(Insn(code, jt, jf, k & 0xFFFF_FFFF))
    if len(prog) != count:
        raise ValueError(f"tcpdump -ddd announced {count} instructions and printed {len(prog)}")
    return prog


def compile_filter(expr: str, linktype: int, snaplen: int) -> list[Insn]:
    """Compile a tcpdump filter expression for ``linktype``; its accepting returns keep ``snaplen`` bytes."""
    dlt = _TCPDUMP_DLT.get(linktype)
    if dlt is None:
        raise UserError(f"cannot compile a filter for link type {linktypes.name(linktype)}")
    tcpdump = shutil.which("tcpdump") or shutil.which("tcpdump", path="/usr/sbin:/usr/bin:/sbin")
    if tcpdump is None:
        raise UserError("--bpf needs tcpdump to compile the filter; install it: apt-get install tcpdump")
    try:
        proc = subprocess.run(
            [tcpdump, "-y", dlt, "-s", str(snaplen), "-ddd", "--", expr],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"--bpf: running {tcpdump} failed: {exc}") from None
    if proc.returncode != 0:
        why = " ".join(ln for ln in proc.stderr.splitlines() if not ln.startswith("Warning")).strip()
        raise UserError(f"--bpf {expr!r}: not a valid filter ({why or 'tcpdump exit ' + str(proc.returncode)})")
    try:
        return parse_ddd(proc.stdout)
    except ValueError as exc:
        raise UserError(f"--bpf {expr!r}: {exc}") from None


def build_program(
    snaplen: int,
    sample: int = 1,
    user: list[Insn] | None = None,
    *,
    mode: str = "packet",
    linktype: int = linktypes.ETHERNET,
) -> list[Insn]:
    """The whole program: sampling prefix (``packet``: random; ``flow``: by flow hash), then the compiled user
    filter or ``ret #snaplen``."""
    if not 1 <= snaplen <= MAX_SNAPLEN:
        raise ValueError(f"snap length must be 1..{MAX_SNAPLEN}, got {snaplen}")
    if mode == "flow":
        prefix = flow_sampling_prefix(sample, linktype)
    elif mode == "packet":
        prefix = sampling_prefix(sample)
    else:
        raise ValueError(f"sampling mode must be packet or flow, got {mode!r}")
    prog = [*prefix, *(user if user else [ret(snaplen)])]
    if len(prog) > BPF_MAXINSNS:
        raise UserError(f"the capture filter has {len(prog)} instructions; the kernel accepts {BPF_MAXINSNS}")
    return prog


def encode(prog: list[Insn]) -> bytes:
    """The array of struct sock_filter, in host byte order, as the kernel reads it."""
    return b"".join(_INSN.pack(i.code, i.jt, i.jf, i.k) for i in prog)


def attach(sock: socket.socket, prog: list[Insn]) -> None:
    """Attach ``prog`` with SO_ATTACH_FILTER; the kernel verifies it and raises OSError (EINVAL) if invalid."""
    code = ctypes.create_string_buffer(encode(prog))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; } with native alignment.
    fprog = struct.pack("@HP", len(prog), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
