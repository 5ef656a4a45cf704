"""Classic BPF programs for the live capture socket: user filter, snap length and 1:N random sampling.

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
BPF_ALU: Final = 0x04
BPF_JMP: Final = 0x05
BPF_RET: Final = 0x06
BPF_W: Final = 0x00
BPF_ABS: Final = 0x20
BPF_MOD: Final = 0x90
BPF_JEQ: Final = 0x10
BPF_K: Final = 0x00
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


def flow_sampling_prefix(n: int, linktype: int) -> list[Insn]:
    """Not written yet: flow-consistent sampling."""
    raise UserError("flow sampling is not available yet")


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
