"""Memory allocator settings of the processes that move large batches: keep freed memory for the next batch.

Each landing insert allocates tens of MB (the loader's body, the server's pieces, chDB's copies and blocks) and
frees them. By default glibc returns such blocks to the kernel at once (they are mmapped, and the heap's top is
trimmed) and chDB's jemalloc returns dirty pages after 5 s, so the next batch touches fresh pages that the kernel
maps and zeroes. Kept, the memory is reused: in the server 0.01 page faults per row instead of about two and
about 10% less CPU per row (bench/landing_parts.py, docs/clickhouse.md). The cost is resident memory held
between batches (bounded by the largest recent one).

One definition of the settings, two ways to apply them: the embedded server re-executes itself once with them
in the environment (glibc and chDB's jemalloc read theirs only when a process starts; a setting already in the
environment is left as the operator set it); the loader, which loads no jemalloc, sets glibc's two thresholds at
start-up with `mallopt`.
"""

from __future__ import annotations

import ctypes
import os
import sys

# Blocks up to 32 MiB (glibc's ceiling for the mmap threshold) from the heap; the heap not trimmed below 256 MiB.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20
# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

ALLOCATOR_ENV = {
    "GLIBC_TUNABLES": f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}",
    # chDB's jemalloc (its variable is JE_MALLOC_CONF): freed pages kept a minute instead of 5 s.
    "JE_MALLOC_CONF": "dirty_decay_ms:60000,muzzy_decay_ms:60000",
}


def missing_settings(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    return {k: v for k, v in ALLOCATOR_ENV.items() if k not in environ}


def reexec_with_settings(module: str, argv: list[str]) -> None:
    """Replace this process by `python -m module argv` with the settings, unless all are set already."""
    missing = missing_settings(os.environ)
    if missing:
        os.execve(sys.executable, [sys.executable, "-m", module, *argv], {**os.environ, **missing})


def keep_freed_memory() -> bool:
    """Set glibc's thresholds in this process (as GLIBC_TUNABLES would at start); False where there is no
    `mallopt` (another C library) or glibc refused a value. An operator's GLIBC_TUNABLES is left to rule."""
    if "GLIBC_TUNABLES" in os.environ:
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    # mallopt returns 1 on success.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
