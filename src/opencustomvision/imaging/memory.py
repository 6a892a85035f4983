"""Large picture buffers go back to the system as soon as they are freed.

glibc gives an allocation above its mmap threshold a mapping of its own, but raises the threshold to the size of
each such block freed (up to 32 MiB). After the first few pictures, decode buffers therefore come from the
per-thread arenas, which keep the memory once it is freed: a server decoding in many threads then holds several
times what its decode budget allows (tests/test_decode_budget.py: 3.7 GiB instead of 1.1 GiB on 2 cores, and more
with more cores, as each core adds arenas). A fixed threshold keeps every large buffer on its own mapping.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["LARGE_BUFFER_BYTES", "return_large_buffers_to_the_system"]

LARGE_BUFFER_BYTES = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def return_large_buffers_to_the_system() -> bool:
    """Fix glibc's mmap threshold (an operator's MALLOC_MMAP_THRESHOLD_ stands). True where it took effect."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a C library without mallopt (glibc and musl have one)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES))
