"""Hand the memory freed after a big photo back to the system.

glibc's malloc keeps what worker threads free in per-thread arenas, for reuse: after one
99-megapixel photo (a 96 KB JPEG can declare 11000 x 9000 pixels) a server stayed at
1.75 GB while it went on cutting out small photos. malloc_trim(0) returns the free pages
of every arena. It runs only when the process is over its budget, so the usual requests
pay nothing; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

# The server's resident-memory goal under normal load (README, "Serving").
RESIDENT_BUDGET_MB = 400


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # the C library this process already runs on
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None


def resident_mb() -> float | None:
    """This process's resident memory in MB, or None where /proc is not there."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def release_freed_memory(budget_mb: float = RESIDENT_BUDGET_MB) -> bool:
    """malloc_trim(0) if this process is over `budget_mb` resident; whether it ran."""
    trim = _malloc_trim()
    resident = resident_mb()
    if trim is None or resident is None or resident <= budget_mb:
        return False
    trim(0)
    return True
