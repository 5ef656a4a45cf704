"""The loader's allocator settings (`gwtel.allocator.keep_freed_memory`): freed blocks are reused, not mapped anew."""

from __future__ import annotations

import os
import subprocess
import sys

# A child holds 40 blocks of 1 MiB at once and frees them (as the loader holds a batch's pieces), ten times over
# after two rounds of warm-up, and prints its minor page faults: memory the kernel hands out again costs a fault
# per 4 KiB page (it maps and zeroes each), memory kept by the allocator none.
_CHILD = """
import resource, sys
from gwtel.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
for _ in range(2):  # warm-up: the heap grows to its size
    blocks = [bytes(1 << 20) for _ in range(40)]
    del blocks
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    blocks = [bytes(1 << 20) for _ in range(40)]
    del blocks
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(mode: str, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | env
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True, env=environ)
    kept, faults = out.stdout.split()
    return kept, int(faults)


def test_freed_blocks_are_reused_with_the_settings() -> None:
    kept, faults = _run("keep")
    _, plain = _run("plain")
    assert kept == "True"
    assert plain >= 10 * 256  # glibc's default: part of the heap given back after each round, 1 MiB or more
    assert faults < plain / 20


def test_an_operators_glibc_tunables_rule() -> None:
    kept, _ = _run("keep", GLIBC_TUNABLES="glibc.malloc.arena_max=2")
    assert kept == "False"
