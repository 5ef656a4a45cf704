"""Memory allocator settings of the server process: keep freed memory for the next insert.

Each landing insert allocates tens of MB (the body's pieces, chDB's copies, its blocks) and frees them. By
default glibc returns such blocks to the kernel at once (they are mmapped) and chDB's jemalloc returns dirty
pages after 5 s, so the next insert touches fresh pages: about two page faults per row, with the kernel zeroing
each page. Kept, the memory is reused: 0.01 faults per row and about 10% less CPU per row (bench/landing_parts.py,
docs/clickhouse.md). The cost is resident memory held between inserts (bounded by the largest recent insert).

glibc reads GLIBC_TUNABLES only when a process starts, so the server re-executes itself once with them.
A setting already in the environment is left as the operator set it.
"""

from __future__ import annotations

import os
import sys

ALLOCATOR_ENV = {
    # Blocks up to 32 MiB (glibc's ceiling) from the heap, and the heap not trimmed below 256 MiB.
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456",
    # chDB's jemalloc (its variable is JE_MALLOC_CONF): freed pages kept a minute instead of 5 s.
    "JE_MALLOC_CONF": "dirty_decay_ms:60000,muzzy_decay_ms:60000",
}


def missing_settings(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    return {k: v for k, v in ALLOCATOR_ENV.items() if k not in environ}


def reexec_with_settings(argv: list[str]) -> None:
    """Replace this process by `python -m gwtel.chserver argv` with the settings, unless all are set already."""
    missing = missing_settings(os.environ)
    if missing:
        os.execve(sys.executable, [sys.executable, "-m", "gwtel.chserver", *argv], {**os.environ, **missing})
